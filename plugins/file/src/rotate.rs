//! The output file: appends whole exports, rotates by size, syncs per policy.
//!
//! Rotation happens before a write that would push the file past `max_bytes`: `path.N-1` becomes
//! `path.N` (the oldest beyond `max_files` is overwritten), …, `path` becomes `path.1`, and a fresh
//! `path` is created. An export is never split across files, so one larger than `max_bytes` goes
//! whole into a fresh file.
//!
//! A failed write leaves no partial line behind: the file is cut back to its size before the
//! write, so the host's retry writes the export once.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::config::{FileConfig, Fsync};

/// The file could not be opened when the exporter was created.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The parent directory is missing and could not be created.
    #[error("cannot create directory {dir} for the output file {path}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The output file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file could not be opened for appending.
    #[error("cannot open {path} for writing: {source}")]
    Open {
        /// The output file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// An export could not be written; the host should retry it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Rotating the files failed.
    #[error("cannot rotate {path}: {source}")]
    Rotate {
        /// The output file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing or syncing the data failed (a full disk, an I/O error).
    #[error("cannot write to {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// An append-only file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in `file`, counted by this writer (starting from the size found on open).
    size: u64,
    max_bytes: u64,
    max_files: u32,
    fsync: Fsync,
}

impl RotatingFile {
    /// Opens (or creates) `config.path` for appending, creating its parent directory if missing.
    pub fn open(config: &FileConfig) -> Result<Self, OpenError> {
        let path = config.path.clone();
        if let Some(dir) = parent_dir(&path) {
            fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                dir: dir.to_owned(),
                path: path.clone(),
                source,
            })?;
        }
        let (file, size) = open_append(&path).map_err(|source| OpenError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(RotatingFile {
            path,
            file,
            size,
            max_bytes: config.max_bytes.0,
            max_files: config.max_files,
            fsync: config.fsync,
        })
    }

    /// Appends `bytes` in one write, rotating first if they would not fit, and syncs them when the
    /// policy says so. On error nothing of `bytes` stays in the file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let len = bytes.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate().map_err(|source| WriteError::Rotate {
                path: self.path.clone(),
                source,
            })?;
        }
        match self.append(bytes) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(source) => {
                // Best effort: if even this fails, the next write's error reports the trouble.
                let _ = self.file.set_len(self.size);
                Err(WriteError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// Forces everything written so far to disk, whatever the policy.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.file.sync_data().map_err(|source| WriteError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The path of the `n`th rotated file (`path.n`).
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        if self.fsync == Fsync::Always {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 0 {
            ignore_missing(fs::remove_file(&self.path))?;
        } else {
            for n in (1..self.max_files).rev() {
                ignore_missing(fs::rename(self.rotated_path(n), self.rotated_path(n + 1)))?;
            }
            ignore_missing(fs::rename(&self.path, self.rotated_path(1)))?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        if self.fsync == Fsync::Always {
            // Make the renames and the new file durable too.
            File::open(parent_dir(&self.path).unwrap_or(Path::new(".")))?.sync_all()?;
        }
        Ok(())
    }
}

/// The directory holding `path`, if the path names one.
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|dir| !dir.as_os_str().is_empty())
}

/// Opens `path` for appending; its size. A file whose last line is torn (a crash in the middle
/// of a write, or another writer) gets a newline first, so the next export starts a line of its
/// own instead of gluing onto the broken one.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    use std::os::unix::fs::FileExt as _;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let mut size = file.metadata()?.len();
    if size > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            size += 1;
        }
    }
    Ok((file, size))
}

/// A file that is not there needs no renaming or removing.
fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::ByteSize;

    fn config(path: PathBuf, max_bytes: u64, max_files: u32) -> FileConfig {
        FileConfig {
            path,
            max_bytes: ByteSize(max_bytes),
            max_files,
            fsync: Fsync::Always,
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn creates_missing_directories_and_appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.ndjson");
        let mut file = RotatingFile::open(&config(path.clone(), 100, 1)).unwrap();
        file.write(b"one\n").unwrap();
        drop(file);
        let mut file = RotatingFile::open(&config(path.clone(), 100, 1)).unwrap();
        file.write(b"two\n").unwrap();
        assert_eq!(read(&path), "one\ntwo\n");
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        fs::write(&path, "{\"whole\":1}\n{\"torn\":").unwrap();
        let mut file = RotatingFile::open(&config(path.clone(), 1000, 1)).unwrap();
        file.write(b"{\"next\":2}\n").unwrap();
        assert_eq!(read(&path), "{\"whole\":1}\n{\"torn\":\n{\"next\":2}\n");
    }

    #[test]
    fn rotates_before_a_write_that_would_not_fit_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut file = RotatingFile::open(&config(path.clone(), 8, 2)).unwrap();
        for line in ["1111\n", "2222\n", "3333\n", "4444\n"] {
            file.write(line.as_bytes()).unwrap();
        }
        // Each line fits alone but not two together: every write after the first rotates.
        assert_eq!(read(&path), "4444\n");
        assert_eq!(read(&file.rotated_path(1)), "3333\n");
        assert_eq!(read(&file.rotated_path(2)), "2222\n");
        assert!(!file.rotated_path(3).exists());
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["out.ndjson", "out.ndjson.1", "out.ndjson.2"]);
    }

    #[test]
    fn writes_that_fit_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut file = RotatingFile::open(&config(path.clone(), 10, 3)).unwrap();
        file.write(b"aaaa\n").unwrap();
        file.write(b"bbbb\n").unwrap();
        assert_eq!(read(&path), "aaaa\nbbbb\n");
        assert!(!file.rotated_path(1).exists());
        file.write(b"c\n").unwrap();
        assert_eq!(read(&path), "c\n");
        assert_eq!(read(&file.rotated_path(1)), "aaaa\nbbbb\n");
    }

    #[test]
    fn an_export_larger_than_max_bytes_goes_whole_into_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut file = RotatingFile::open(&config(path.clone(), 4, 1)).unwrap();
        file.write(b"0123456789\n").unwrap();
        file.write(b"abcdefghij\n").unwrap();
        assert_eq!(read(&path), "abcdefghij\n");
        assert_eq!(read(&file.rotated_path(1)), "0123456789\n");
    }

    #[test]
    fn zero_max_files_keeps_no_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut file = RotatingFile::open(&config(path.clone(), 4, 0)).unwrap();
        file.write(b"old\n").unwrap();
        file.write(b"new\n").unwrap();
        assert_eq!(read(&path), "new\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_parent_that_is_a_regular_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "").unwrap();
        let path = blocker.join("sub/out.ndjson");
        let err = RotatingFile::open(&config(path.clone(), 4, 0)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OpenError::CreateDir { .. }), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("os error"), "{text}");
    }

    #[test]
    fn a_path_that_is_a_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = RotatingFile::open(&config(dir.path().to_owned(), 4, 0)).unwrap_err();
        assert!(matches!(err, OpenError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
