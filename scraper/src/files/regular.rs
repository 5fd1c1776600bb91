//! Reading a manifest file without trusting what the path names: only a regular file (after
//! following symlinks), and at most a configured number of bytes.
//!
//! The file is opened non-blocking, so a FIFO cannot hold the read forever, and its type and
//! size are taken from the opened file, so a rename between the check and the read changes
//! nothing. `/dev/zero`, FIFOs, sockets and symlink loops are refused with a reason.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    /// Opening or reading failed (a symlink loop is an `ELOOP` here).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A device, FIFO or socket.
    #[error("not a regular file ({0}); only regular files are read")]
    NotRegular(&'static str),
    /// Larger than the cap.
    #[error("larger than `max_file_bytes` ({cap} bytes); raise it or split the file")]
    TooLarge {
        /// The cap.
        cap: u64,
    },
}

/// The content of the regular file at `path`, if it holds at most `cap` bytes.
pub(super) fn read(path: &Path, cap: u64) -> Result<Vec<u8>, Refused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Refused::NotRegular(
            periscope_plugin_api::small_file::file_kind(meta.file_type()),
        ));
    }
    if meta.len() > cap {
        return Err(Refused::TooLarge { cap });
    }
    // The file may grow between the size check and the read: read one byte past the cap at most.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(Refused::TooLarge { cap });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read(&path, 10).unwrap(), b"0123456789");
        assert!(matches!(read(&path, 9), Err(Refused::TooLarge { cap: 9 })));
    }

    #[test]
    fn devices_fifos_and_symlink_loops_are_refused_without_blocking() {
        assert!(matches!(
            read(Path::new("/dev/zero"), 1 << 20),
            Err(Refused::NotRegular("a character device"))
        ));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(
            read(&fifo, 1 << 20),
            Err(Refused::NotRegular("a FIFO"))
        ));
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let Err(Refused::Io(e)) = read(&a, 1 << 20) else {
            panic!("a symlink loop is refused");
        };
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
