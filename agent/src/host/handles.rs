//! The kernel's identity of a directory as fanotify reports it: the file
//! system id (`statfs`'s `f_fsid`) and the file handle (`name_to_handle_at`).
//! A group initialised with `FAN_REPORT_DFID_NAME` names the directory an event
//! happened in by exactly these bytes, so a watcher maps them back to the path
//! it marked.
//!
//! The agent's only `unsafe`: two system calls neither `nix` nor `rustix`
//! wraps. Each is given buffers of the size the kernel's ABI says, and nothing
//! the kernel writes is read past what it reports.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The largest file handle the kernel hands out (`MAX_HANDLE_SZ`, `linux/exportfs.h`).
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The key fanotify names `dir` by: `fsid` (8 bytes), then `handle_type`
/// (4 bytes, native order), then the handle's bytes — the layout of a
/// `FAN_EVENT_INFO_TYPE_DFID_NAME` record up to the name, minus `handle_bytes`.
pub fn dir_key(dir: &Path) -> std::io::Result<Vec<u8>> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let mut handle = FileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `c` is NUL-terminated; `handle` is a `struct file_handle` whose
    // `handle_bytes` says how many bytes follow its header, which is what the
    // kernel may write; `mount_id` is a valid `int`.
    let rc = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            c.as_ptr(),
            (&raw mut handle).cast::<libc::file_handle>(),
            &raw mut mount_id,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `statfs` is plain old data the kernel fills in whole; an
    // all-zero value is a valid one.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` a valid `struct statfs`.
    if unsafe { libc::statfs(c.as_ptr(), &raw mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fsid_t` is two `int`s (`__val`), which libc keeps private.
    let fsid: [i32; 2] = unsafe { std::mem::transmute(st.f_fsid) };
    let n = (handle.handle_bytes as usize).min(MAX_HANDLE_SZ);
    let mut key = Vec::with_capacity(12 + n);
    key.extend_from_slice(&fsid[0].to_ne_bytes());
    key.extend_from_slice(&fsid[1].to_ne_bytes());
    key.extend_from_slice(&handle.handle_type.to_ne_bytes());
    key.extend_from_slice(&handle.f_handle[..n]);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_have_distinct_stable_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("a")).expect("a");
        std::fs::create_dir(dir.path().join("b")).expect("b");
        let a = dir_key(&dir.path().join("a")).expect("a key");
        let b = dir_key(&dir.path().join("b")).expect("b key");
        assert!(a.len() > 12, "fsid, type and a handle: {a:?}");
        assert_ne!(a, b);
        assert_eq!(a, dir_key(&dir.path().join("a")).expect("again"));
        assert!(dir_key(&dir.path().join("missing")).is_err());
    }
}
