//! Finding, vetting and loading exporter plugins (shared libraries).
//!
//! Rules: plugins load only from the configured directories; a file that is group- or
//! world-writable is refused; an optional SHA-256 pin must match; the ABI version is checked before
//! anything else and a mismatch is one line naming the file and both versions. Each file is loaded
//! with `lib_header_from_path` + `init_root_module` (never abi_stable's per-type cached loaders, which
//! hand back the first plugin for every later file). Libraries are never unloaded.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use periscope_plugin_api::abi::ExporterModRef;
use sha2::{Digest as _, Sha256};

/// Why a plugin could not be loaded. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No file for the plugin in any plugin directory.
    #[error("plugin `{name}` not found: looked for {file} in {dirs}")]
    NotFound {
        /// The plugin name from the config.
        name: String,
        /// The file name looked for.
        file: String,
        /// The directories searched.
        dirs: String,
    },
    /// The file resolves outside every plugin directory (a symlink, or `..`).
    #[error("{path}: refused, it is outside the plugin directories ({dirs})")]
    OutsideDirs {
        /// The plugin file.
        path: PathBuf,
        /// The plugin directories.
        dirs: String,
    },
    /// Others than the owner may write the file.
    #[error(
        "{path}: refused, the file is group- or world-writable (mode {mode:o}); run `chmod go-w` on it"
    )]
    Writable {
        /// The plugin file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The SHA-256 pin does not match.
    #[error("{path}: refused, its sha256 is {actual} but the config pins {expected}")]
    HashMismatch {
        /// The plugin file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// Built against another ABI version.
    #[error(
        "{path}: built for plugin ABI version {found}, this host speaks version {expected}; rebuild the plugin against periscope-plugin-api with ABI version {expected}"
    )]
    AbiVersion {
        /// The plugin file.
        path: PathBuf,
        /// The host's ABI version.
        expected: u32,
        /// The plugin's ABI version.
        found: u32,
    },
    /// Same version, different layout: the plugin was built against a changed plugin-api.
    #[error(
        "{path}: its plugin ABI layout differs from this host's (same version {version}, different types); rebuild the plugin against this host's periscope-plugin-api"
    )]
    AbiLayout {
        /// The plugin file.
        path: PathBuf,
        /// The (equal) ABI version.
        version: u32,
    },
    /// Anything else: unreadable, not a shared library, not a Periscope plugin.
    #[error("{path}: {reason}")]
    Load {
        /// The plugin file.
        path: PathBuf,
        /// The first line of the loader's error.
        reason: String,
    },
}

/// A loaded plugin library.
#[derive(Clone, Copy)]
pub struct Plugin {
    module: ExporterModRef,
}

/// What `periscope plugins inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The ABI version it was built against.
    pub abi_version: u32,
    /// The plugin crate's version.
    pub plugin_version: String,
    /// The compiler that built it.
    pub rustc_version: String,
}

impl Plugin {
    /// A plugin whose root module lives in this process (built with
    /// `periscope_plugin_api::__private::root_module`): for benchmarks and embedding, where going
    /// through a shared library would only add the `dlopen`.
    pub fn in_process(module: ExporterModRef) -> Plugin {
        Plugin { module }
    }

    /// The root module, to create exporters with.
    pub fn module(&self) -> ExporterModRef {
        self.module
    }

    /// The plugin's self-description.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.module.name().to_string(),
            abi_version: self.module.abi_version(),
            plugin_version: self.module.plugin_version().to_string(),
            rustc_version: self.module.rustc_version().to_string(),
        }
    }

    /// Checks an exporter config with the plugin's own parser.
    pub fn check_config(&self, config: &str) -> Result<(), String> {
        self.module.check_config()(config.into())
            .into_result()
            .map_err(|e| e.to_string())
    }
}

/// The file name a plugin called `name` has: `libperiscope_exporter_<name>.so`.
pub fn file_name(name: &str) -> String {
    format!(
        "{}periscope_exporter_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Finds the plugin `name` in `dirs` (first match wins) and checks that it lies inside them.
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    let file = file_name(name);
    let dirs_text = || {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for dir in dirs {
        let candidate = dir.join(&file);
        if candidate.is_file() {
            let (Ok(real), Ok(real_dir)) = (candidate.canonicalize(), dir.canonicalize()) else {
                continue;
            };
            if !real.starts_with(&real_dir) {
                return Err(PluginError::OutsideDirs {
                    path: candidate,
                    dirs: dirs_text(),
                });
            }
            return Ok(candidate);
        }
    }
    Err(PluginError::NotFound {
        name: name.to_owned(),
        file,
        dirs: if dirs.is_empty() {
            "(no plugin directory)".to_owned()
        } else {
            dirs_text()
        },
    })
}

/// Vets and loads the plugin file at `path`; `sha256` is the optional pin (hex).
pub fn load(path: &Path, sha256: Option<&str>) -> Result<Plugin, PluginError> {
    let load_error = |reason: String| PluginError::Load {
        path: path.to_owned(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| load_error(e.to_string()))?;
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(PluginError::Writable {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    if let Some(expected) = sha256 {
        let actual = file_sha256(path).map_err(|e| load_error(e.to_string()))?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(PluginError::HashMismatch {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    let header = lib_header_from_path(path).map_err(|e| from_library_error(path, e))?;
    let module = header
        .init_root_module::<ExporterModRef>()
        .map_err(|e| from_library_error(path, e))?;
    Ok(Plugin { module })
}

/// The SHA-256 of a file, in lower-case hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn from_library_error(path: &Path, error: LibraryError) -> PluginError {
    match error {
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => PluginError::AbiVersion {
            path: path.to_owned(),
            expected: expected_version.major,
            found: actual_version.major,
        },
        LibraryError::AbiInstability(_) => PluginError::AbiLayout {
            path: path.to_owned(),
            version: periscope_plugin_api::ABI_VERSION,
        },
        LibraryError::GetSymbolError { .. } => PluginError::Load {
            path: path.to_owned(),
            reason: format!(
                "not a Periscope plugin (it exports no `{}` root module)",
                ExporterModRef::NAME
            ),
        },
        other => PluginError::Load {
            path: path.to_owned(),
            reason: other
                .to_string()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown loader error")
                .trim()
                .to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_follows_the_platform_convention() {
        assert_eq!(file_name("file"), "libperiscope_exporter_file.so");
        assert_eq!(
            file_name("abi-mismatch"),
            "libperiscope_exporter_abi_mismatch.so"
        );
    }

    #[test]
    fn missing_plugin_names_the_file_and_the_directories() {
        let dir = tempfile::tempdir().unwrap();
        let err = find("nope", &[dir.path().to_owned()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("libperiscope_exporter_nope.so"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    #[test]
    fn group_writable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("x"));
        std::fs::write(&path, b"not a library").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            load(&path, None),
            Err(PluginError::Writable { .. })
        ));
    }

    #[test]
    fn hash_pin_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("x"));
        std::fs::write(&path, b"abc").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path, Some("00")).err().unwrap();
        assert!(matches!(err, PluginError::HashMismatch { .. }), "{err}");
        assert_eq!(
            file_sha256(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_file_that_is_no_library_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("x"));
        std::fs::write(&path, b"abc").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = load(&path, None).err().unwrap().to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn symlink_out_of_the_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("real.so");
        std::fs::write(&target, b"abc").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(file_name("x"))).unwrap();
        let err = find("x", &[dir.path().to_owned()]).unwrap_err();
        assert!(matches!(err, PluginError::OutsideDirs { .. }), "{err}");
    }
}
