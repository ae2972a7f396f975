//! SSH keys that let someone in: each account's `authorized_keys` files, as
//! `sshd` finds them (`AuthorizedKeysFile` in `sshd_config` and its
//! `Include`s, plus `.ssh/authorized_keys` and `.ssh/authorized_keys2`), read
//! as `sshd` reads them: one key per line, options first, then the type, the
//! base64 blob and a comment.
//!
//! The files are written by users (and by intruders): they are opened without
//! following a symlink and without blocking (a FIFO would hang the reader),
//! must be regular files of at most [`MAX_FILE_BYTES`], and at most
//! [`MAX_KEYS`] keys are kept from one file.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::HostRoot;
use super::accounts::User;

/// The largest key file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most keys kept from one file.
pub const MAX_KEYS: usize = 1000;
/// Where `sshd` looks when its config does not say.
const DEFAULT_FILES: &[&str] = &[".ssh/authorized_keys", ".ssh/authorized_keys2"];
/// Most `Include`d files followed.
const MAX_INCLUDES: usize = 64;

/// One authorized key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Its type (`ssh-ed25519`, `ssh-rsa`…).
    pub key_type: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The comment after the key ("" if none).
    pub comment: String,
    /// The options before it (`from="…",command="…"`; "" if none).
    pub options: String,
}

/// Why a key file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A symlink, FIFO, device or directory where a file was expected.
    #[error("not a regular file (sshd would follow a symlink; Bannin does not)")]
    NotAFile,
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
}

/// Reads the keys of one file (`real`: a path on this machine). `Ok(None)`:
/// there is no such file.
pub fn read_keys(real: &Path) -> Result<Option<Vec<Key>>, KeyFileError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(real)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(KeyFileError::NotAFile),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(KeyFileError::TooLarge);
    }
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut text)?;
    Ok(Some(
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(parse_line)
            .take(MAX_KEYS)
            .collect(),
    ))
}

/// Parses one line of an `authorized_keys` file (`None`: a comment, a blank
/// line, or no valid key).
pub fn parse_line(line: &str) -> Option<Key> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // A line starts with the key type, or with options and then the type.
    key_at(line, "").or_else(|| {
        let (options, rest) = split_options(line);
        key_at(rest.trim_start(), options)
    })
}

/// The key at the start of `text` (type, blob, comment).
fn key_at(text: &str, options: &str) -> Option<Key> {
    let mut parts = text.splitn(3, [' ', '\t']);
    let key_type = parts.next()?;
    let blob = parts.next()?.trim();
    let comment = parts.next().unwrap_or("").trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    // The blob starts with its own type, length-prefixed.
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if bytes.get(4..4 + len)? != key_type.as_bytes() {
        return None;
    }
    let digest = Sha256::digest(&bytes);
    Some(Key {
        key_type: key_type.to_owned(),
        fingerprint: format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        ),
        comment: comment.to_owned(),
        options: options.to_owned(),
    })
}

/// Splits the options (up to the first blank outside double quotes) from the rest.
fn split_options(line: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return (&line[..i], &line[i..]),
            _ => {}
        }
    }
    (line, "")
}

/// The `AuthorizedKeysFile` patterns of the host's `sshd_config` (the first
/// value found, following `Include`s in place, outside `Match` blocks), with
/// the default files always added.
pub fn patterns(root: &HostRoot) -> Vec<String> {
    let mut found: Option<Vec<String>> = None;
    let mut budget = MAX_INCLUDES;
    read_config(
        root,
        Path::new("/etc/ssh/sshd_config"),
        &mut found,
        &mut budget,
    );
    let mut out: Vec<String> = DEFAULT_FILES.iter().map(|s| (*s).to_owned()).collect();
    for p in found.unwrap_or_default() {
        if p != "none" && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn read_config(root: &HostRoot, file: &Path, found: &mut Option<Vec<String>>, budget: &mut usize) {
    if *budget == 0 || found.is_some() {
        return;
    }
    *budget -= 1;
    let Ok(text) = std::fs::read_to_string(root.join(file)) else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (keyword, value) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .map(|(k, v)| {
                (
                    k,
                    v.trim_start_matches(|c: char| c.is_whitespace() || c == '='),
                )
            })
            .unwrap_or((line, ""));
        match keyword.to_ascii_lowercase().as_str() {
            "match" => return,
            "authorizedkeysfile" if found.is_none() => {
                *found = Some(value.split_whitespace().map(str::to_owned).collect());
            }
            "include" => {
                for pattern in value.split_whitespace() {
                    let pattern = if pattern.starts_with('/') {
                        PathBuf::from(pattern)
                    } else {
                        Path::new("/etc/ssh").join(pattern)
                    };
                    for included in glob_last(root, &pattern) {
                        read_config(root, &included, found, budget);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `pattern`'s matches when only its last component may hold one `*`, sorted
/// (as `glob(3)` returns them).
fn glob_last(root: &HostRoot, pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (
        pattern.parent(),
        pattern.file_name().and_then(|n| n.to_str()),
    ) else {
        return Vec::new();
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern.to_owned()];
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| {
                    n.len() >= prefix.len() + suffix.len()
                        && n.starts_with(prefix)
                        && n.ends_with(suffix)
                })
                .map(|n| dir.join(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Each account's key files (host paths) from `patterns`: `%h` is the home,
/// `%u` the name, `%U` the uid, `%%` a `%`; a relative path is under the home.
/// Accounts whose home is `/` or empty get only absolute patterns.
pub fn key_files(users: &[User], patterns: &[String]) -> BTreeSet<(String, PathBuf)> {
    let mut out = BTreeSet::new();
    for u in users {
        for p in patterns {
            let mut expanded = String::new();
            let mut chars = p.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    expanded.push(c);
                    continue;
                }
                match chars.next() {
                    Some('h') => expanded.push_str(&u.home),
                    Some('u') => expanded.push_str(&u.name),
                    Some('U') => expanded.push_str(&u.uid.to_string()),
                    Some('%') => expanded.push('%'),
                    // An unknown token: sshd refuses the pattern.
                    _ => {
                        expanded.clear();
                        break;
                    }
                }
            }
            if expanded.is_empty() {
                continue;
            }
            let path = if expanded.starts_with('/') {
                PathBuf::from(expanded)
            } else if u.home.starts_with('/') && u.home != "/" {
                Path::new(&u.home).join(expanded)
            } else {
                continue;
            };
            // `..` would let a pattern leave the host root's view.
            if path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                continue;
            }
            out.insert((u.name.clone(), path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519 -C alice@laptop`, and its fingerprint as
    /// `ssh-keygen -lf` prints it.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5Sk4fD/kD2wmeRxx8U2JDJSxpfjDbc95BhLIlJQgmd alice@laptop";
    const ED25519_FP: &str = "SHA256:r9jPzQxvSX1M2tMh6cyeh2ln41IrAogPTFWBqGpNT4c";

    #[test]
    fn keys_with_and_without_options_and_their_fingerprints() {
        let k = parse_line(ED25519).expect("key");
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "alice@laptop");
        assert_eq!(k.options, "");
        let with = parse_line(&format!(
            "from=\"10.0.0.1,10.0.0.2\",command=\"echo hi there\" {ED25519}"
        ))
        .expect("key with options");
        assert_eq!(with.fingerprint, k.fingerprint);
        assert_eq!(
            with.options,
            "from=\"10.0.0.1,10.0.0.2\",command=\"echo hi there\""
        );
        for junk in [
            "",
            "# ssh-ed25519 AAAA",
            "ssh-ed25519 not-base64!",
            "root:$6$hash:19000:0:99999:7:::",
            // A blob of another type under this name.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIC5Sk4fD/kD2wmeRxx8U2JDJSxpfjDbc95BhLIlJQgmd x",
        ] {
            assert_eq!(parse_line(junk), None, "{junk}");
        }
    }

    #[test]
    fn the_fingerprint_is_the_one_ssh_keygen_prints() {
        assert_eq!(parse_line(ED25519).expect("key").fingerprint, ED25519_FP);
    }

    #[test]
    fn hostile_files_are_refused_not_followed_or_waited_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("authorized_keys");
        std::fs::write(&keys, format!("{ED25519}\n\n# note\n")).expect("write");
        assert_eq!(read_keys(&keys).expect("read").expect("some").len(), 1);
        assert!(read_keys(&dir.path().join("none")).expect("read").is_none());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
        assert!(matches!(read_keys(&link), Err(KeyFileError::NotAFile)));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(matches!(read_keys(&fifo), Err(KeyFileError::NotAFile)));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("big");
        assert!(matches!(read_keys(&big), Err(KeyFileError::TooLarge)));
    }

    #[test]
    fn sshd_config_patterns_with_includes_and_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot(dir.path().into());
        std::fs::create_dir_all(dir.path().join("etc/ssh/sshd_config.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\nAuthorizedKeysFile .ssh/ignored\nMatch User x\n  AuthorizedKeysFile /nowhere\n",
        )
        .expect("config");
        std::fs::write(
            dir.path().join("etc/ssh/sshd_config.d/10-keys.conf"),
            "authorizedkeysfile=/etc/ssh/keys/%u  %h/.ssh/authorized_keys %%odd\n",
        )
        .expect("include");
        let p = patterns(&root);
        assert_eq!(
            p,
            [
                ".ssh/authorized_keys",
                ".ssh/authorized_keys2",
                "/etc/ssh/keys/%u",
                "%h/.ssh/authorized_keys",
                "%%odd"
            ]
        );
        let users = crate::host::accounts::parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nevil:x:1001:1001::/home/../etc:/bin/sh\n",
        );
        let files = key_files(&users, &p);
        let has = |u: &str, f: &str| files.contains(&(u.to_owned(), PathBuf::from(f)));
        assert!(has("root", "/root/.ssh/authorized_keys"));
        assert!(has("root", "/root/.ssh/authorized_keys2"));
        assert!(has("root", "/etc/ssh/keys/root"));
        assert!(has("root", "/root/%odd"));
        assert!(has("nobody", "/etc/ssh/keys/nobody"));
        assert!(
            !files
                .iter()
                .any(|(u, _)| u == "nobody" && !has(u, "/etc/ssh/keys/nobody")),
            "a home of / gets only absolute paths: {files:?}"
        );
        assert!(
            !files
                .iter()
                .any(|(_, f)| f.to_string_lossy().contains("..")),
            "{files:?}"
        );
        // No config at all: the defaults.
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            patterns(&HostRoot(empty.path().into())),
            [".ssh/authorized_keys", ".ssh/authorized_keys2"]
        );
    }
}
