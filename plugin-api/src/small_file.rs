//! Reading a file that a config names for a secret or a certificate: a regular file of bounded
//! size. A FIFO would block the reading thread forever and `/dev/zero` would fill the memory, at
//! every scrape for a credentials file that is read again each time.

use std::io::{self, Read as _};
use std::path::Path;

/// The largest secret file (a token or password), in bytes.
pub(crate) const MAX_SECRET_BYTES: u64 = 64 << 10;

/// The largest PEM file (a CA bundle, a certificate chain, a key), in bytes.
pub(crate) const MAX_PEM_BYTES: u64 = 4 << 20;

/// The content of `path`, which must be a regular file (after symlinks) of at most `max_bytes`.
pub(crate) fn read(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    // Looked at before opening: opening a FIFO waits for a writer.
    regular(std::fs::metadata(path)?.file_type())?;
    let file = std::fs::File::open(path)?;
    regular(file.metadata()?.file_type())?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

fn regular(kind: std::fs::FileType) -> io::Result<()> {
    if kind.is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({})", file_kind(kind)),
    ))
}

/// What a file that is not a regular file is, for messages: "a directory", "a FIFO", …
pub fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"token\n").unwrap();
        assert_eq!(read(&small, 6).unwrap(), b"token\n");
        let error = read(&small, 5).unwrap_err();
        assert_eq!(error.to_string(), "larger than 5 bytes");
        let error = read(Path::new("/dev/zero"), 5).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file (a character device)");
        let error = read(dir.path(), 5).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file (a directory)");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // Refused without waiting for a writer.
        let error = read(&fifo, 5).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file (a FIFO)");
    }
}
