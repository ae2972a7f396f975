//! Host paths as text a person can read and no terminal or report can be tricked by.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why [`open_regular`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not there, unreadable, or a symlink as the last component.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The open file is not a regular file.
    #[error("not a regular file (a FIFO, device or socket was put in its place)")]
    NotRegular,
    /// The open file is not the one checked before.
    #[error("changed while being opened")]
    Swapped,
}

/// Opens `real` for reading as the regular file `before` described: without
/// following a symlink as the last component (`O_NOFOLLOW`) and without
/// blocking (`O_NONBLOCK`: a FIFO swapped in after the check opens at once
/// instead of waiting for a writer, and a device never stalls the agent), then
/// checks the open descriptor itself (`fstat`): a regular file, with the device
/// and inode that were checked.
pub fn open_regular(real: &Path, before: &std::fs::Metadata) -> Result<std::fs::File, OpenError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(real)?;
    let opened = file.metadata()?;
    if !opened.file_type().is_file() {
        return Err(OpenError::NotRegular);
    }
    if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
        return Err(OpenError::Swapped);
    }
    Ok(file)
}

/// A path printable on one line: control characters and bytes that are not
/// UTF-8 are escaped as `\xNN`, backslashes doubled.
pub fn escape(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_or_symlink_swapped_in_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"data").expect("write");
        let before = std::fs::symlink_metadata(&f).expect("lstat");
        assert!(open_regular(&f, &before).is_ok());
        // Swapped for a FIFO after the check: opening returns at once.
        std::fs::remove_file(&f).expect("rm");
        let made = std::process::Command::new("mkfifo")
            .arg(&f)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(matches!(
            open_regular(&f, &before),
            Err(OpenError::NotRegular)
        ));
        // Swapped for a symlink: not followed.
        std::fs::remove_file(&f).expect("rm");
        std::fs::write(dir.path().join("other"), b"x").expect("other");
        std::os::unix::fs::symlink(dir.path().join("other"), &f).expect("symlink");
        assert!(matches!(open_regular(&f, &before), Err(OpenError::Io(_))));
        // Replaced by another regular file (renamed over it, so its inode is new).
        let g = dir.path().join("g");
        std::fs::write(&g, b"checked").expect("write");
        let checked = std::fs::symlink_metadata(&g).expect("lstat");
        std::fs::write(dir.path().join("h"), b"swapped in").expect("write");
        std::fs::rename(dir.path().join("h"), &g).expect("rename");
        assert!(matches!(
            open_regular(&g, &checked),
            Err(OpenError::Swapped)
        ));
    }
}
