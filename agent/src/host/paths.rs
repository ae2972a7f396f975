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

/// `real` with the symlinks of its directory resolved, once, now: the path the
/// checks and the open that follow use, so that none of them follows a symlink
/// (the last component is never followed; see [`open_regular`]). A path that
/// resolves outside `root` is refused.
pub fn resolve(root: &Path, real: &Path) -> std::io::Result<std::path::PathBuf> {
    let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else {
        return Ok(real.to_owned());
    };
    let dir = std::fs::canonicalize(parent)?;
    let root = std::fs::canonicalize(root)?;
    if !dir.starts_with(&root) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "its directory resolves to {}, outside {}",
                escape(&dir),
                escape(&root)
            ),
        ));
    }
    Ok(dir.join(name))
}

/// Opens `real` for reading as the regular file `before` described: no
/// component of the path may be a symlink (`openat2` with
/// `RESOLVE_NO_SYMLINKS`; where the kernel lacks `openat2` — before 5.6 — only
/// the last component is checked, with `O_NOFOLLOW`), and without blocking
/// (`O_NONBLOCK`: a FIFO swapped in after the check opens at once instead of
/// waiting for a writer, and a device never stalls the agent); then checks the
/// open descriptor itself (`fstat`): a regular file, with the device and inode
/// that were checked. Give it a path from [`resolve`].
pub fn open_regular(real: &Path, before: &std::fs::Metadata) -> Result<std::fs::File, OpenError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let file = match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, real, how) {
        Ok(fd) => std::fs::File::from(fd),
        // No openat2 here (an old kernel, or a seccomp filter without it).
        Err(nix::errno::Errno::ENOSYS) => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(real)?,
        Err(nix::errno::Errno::ELOOP) => {
            return Err(OpenError::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a component of the path is a symlink (not followed)",
            )));
        }
        Err(e) => return Err(OpenError::Io(e.into())),
    };
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
        // A directory of the path swapped for a symlink after the check: refused,
        // even though the file it leads to is the very file checked.
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).expect("dir");
        let inside = real_dir.join("file");
        std::fs::write(&inside, b"data").expect("write");
        let checked = std::fs::symlink_metadata(&inside).expect("lstat");
        let moved = dir.path().join("moved");
        std::fs::rename(&real_dir, &moved).expect("move the directory away");
        std::os::unix::fs::symlink(&moved, &real_dir).expect("symlink in its place");
        assert!(
            matches!(open_regular(&inside, &checked), Err(OpenError::Io(_))),
            "a symlinked directory was followed"
        );
        // resolve() names the real place once, and that opens.
        let resolved = resolve(dir.path(), &inside).expect("resolve");
        assert_eq!(
            resolved,
            std::fs::canonicalize(&moved).expect("c").join("file")
        );
        assert!(open_regular(&resolved, &checked).is_ok());
        // A path resolving outside the root is refused.
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
        assert!(resolve(dir.path(), &dir.path().join("out").join("x")).is_err());
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
