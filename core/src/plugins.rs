//! Finding, vetting and loading exporter plugins (shared libraries).
//!
//! Rules: plugins load only from the configured directories; a file, or the directory holding it,
//! that is group- or world-writable or owned by another user (than the host's or root) is refused
//! (anyone who can write the directory can swap the file by a rename); an optional SHA-256 pin
//! must match; a file that is not an ELF shared library is refused with that reason. Then
//! [`periscope_plugin_api::host::Plugin::load`] checks the ABI version before anything else (a
//! mismatch is one line naming the file and both versions) and the layout. Libraries are never
//! unloaded.
//!
//! A plugin file replaced on disk while the host runs (a new version, picked up by a reload) is
//! loaded as a new library beside the old one, which exporters not yet replaced still run: the
//! loader would hand back the library already loaded from that path, so the new file is loaded
//! from a private in-memory copy (`memfd`) instead.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

pub use periscope_plugin_api::host::{About, LoadError, Plugin};
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
    /// Others than the owner may write the directory holding the file.
    #[error(
        "{dir}: refused, the plugin directory is group- or world-writable (mode {mode:o}), so \
         anyone may swap a plugin in; run `chmod go-w` on it"
    )]
    WritableDir {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file or its directory belongs to another user than the host's (or root).
    #[error(
        "{path}: refused, it is owned by uid {owner}, neither this process's user ({user}) nor root"
    )]
    ForeignOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The host's effective user.
        user: u32,
    },
    /// The file is not a shared library at all.
    #[error("{path}: refused, {reason}")]
    NotElf {
        /// The plugin file.
        path: PathBuf,
        /// What it is instead.
        reason: &'static str,
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
    /// The library itself was refused by the loader (another ABI version or layout, not a plugin).
    #[error("{path}: {error}")]
    Library {
        /// The plugin file.
        path: PathBuf,
        /// What the loader found.
        error: LoadError,
    },
    /// The file cannot be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
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
    let load_error = |reason: String| PluginError::Unreadable {
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
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir_metadata = std::fs::metadata(dir).map_err(|e| load_error(e.to_string()))?;
    let dir_mode = dir_metadata.permissions().mode();
    if dir_mode & 0o022 != 0 {
        return Err(PluginError::WritableDir {
            dir: dir.to_owned(),
            mode: dir_mode & 0o7777,
        });
    }
    let user = nix::unistd::geteuid().as_raw();
    for (owned, owner) in [(path, metadata.uid()), (dir, dir_metadata.uid())] {
        if owner != user && owner != 0 {
            return Err(PluginError::ForeignOwner {
                path: owned.to_owned(),
                owner,
                user,
            });
        }
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
    if let Some(reason) = not_elf(path).map_err(|e| load_error(e.to_string()))? {
        return Err(PluginError::NotElf {
            path: path.to_owned(),
            reason,
        });
    }
    open_library(path).map_err(|error| PluginError::Library {
        path: path.to_owned(),
        error,
    })
}

/// Each plugin path loaded, with the version of the file loaded from it.
static LOADED: Mutex<Option<HashMap<PathBuf, FileVersion>>> = Mutex::new(None);
/// The in-memory copies of replaced plugin files, kept open for as long as their libraries stay
/// loaded: for good.
static COPIES: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Loads the library at `path`; a file replaced since it was first loaded from there is loaded
/// from an in-memory copy, as a new library.
fn open_library(path: &Path) -> Result<Plugin, LoadError> {
    let version = FileVersion::of(path).map_err(|e| LoadError::Other(e.to_string()))?;
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let loaded = loaded.get_or_insert_with(HashMap::new);
    match loaded.get(path) {
        Some(first) if *first != version => {
            let copy = memory_copy(path).map_err(|e| {
                LoadError::Other(format!("cannot copy the replaced plugin file: {e}"))
            })?;
            let plugin = Plugin::load(Path::new(&format!("/proc/self/fd/{}", copy.as_raw_fd())));
            COPIES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(copy);
            plugin
        }
        _ => {
            let plugin = Plugin::load(path)?;
            loaded.insert(path.to_owned(), version);
            Ok(plugin)
        }
    }
}

/// The file at `path`, copied into an anonymous in-memory file.
fn memory_copy(path: &Path) -> std::io::Result<OwnedFd> {
    let fd =
        nix::sys::memfd::memfd_create(c"periscope-plugin", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    std::io::copy(&mut std::fs::File::open(path)?, &mut file)?;
    Ok(OwnedFd::from(file))
}

/// Why the file at `path` is not an ELF shared library, judged by its first bytes (`None` when it
/// may be one: the loader has the last word).
fn not_elf(path: &Path) -> std::io::Result<Option<&'static str>> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..])? {
            0 => break,
            n => read += n,
        }
    }
    Ok(match read {
        0 => Some("the file is empty, not an ELF shared library"),
        _ if magic != *b"\x7fELF" => Some("not an ELF shared library (no ELF header)"),
        _ => None,
    })
}

/// What tells one version of a plugin file from another without reading it: device, inode, size
/// and modification time. Replacing the file (by rename or by writing over it) changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileVersion {
    /// The version of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<FileVersion> {
        let meta = std::fs::metadata(path)?;
        Ok(FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
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
    fn a_group_writable_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("x"));
        std::fs::write(&path, b"\x7fELF").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = load(&path, None).err().unwrap();
        assert!(matches!(err, PluginError::WritableDir { .. }), "{err}");
    }

    #[test]
    fn empty_and_non_elf_files_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("x"));
        for (content, expected) in [
            (&b""[..], "the file is empty, not an ELF shared library"),
            (
                &b"#!/bin/sh\n"[..],
                "not an ELF shared library (no ELF header)",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let text = load(&path, None).err().unwrap().to_string();
            assert!(text.ends_with(expected), "{text}");
        }
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
