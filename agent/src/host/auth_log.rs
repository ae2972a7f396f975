//! Authentication records: the lines sshd, sudo, su, pam_unix and pam_faillock
//! write to `/var/log/auth.log` (Debian, Ubuntu) or `/var/log/secure` (RHEL
//! family), in the classic syslog and the RFC 3339 timestamp formats; and the
//! binary `utmp` and `lastlog` records.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// What one auth log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    /// A successful login.
    Accepted {
        /// Account.
        user: String,
        /// Source address ("" for local).
        source: String,
        /// password, publickey, keyboard-interactive/pam, su, …
        method: String,
        /// sshd or su.
        service: &'static str,
    },
    /// A failed attempt.
    Failed {
        /// Account ("" if unknown).
        user: String,
        /// Source address ("" for local).
        source: String,
        /// Whether the account does not exist.
        invalid_user: bool,
        /// sshd, su, sudo or pam.
        service: &'static str,
    },
    /// A sudo command, run or refused.
    Sudo {
        /// Who ran sudo.
        user: String,
        /// As whom.
        run_as: String,
        /// The command.
        command: String,
        /// `allowed`, `not_in_sudoers`, `wrong_password` or `denied`.
        outcome: &'static str,
    },
    /// pam_faillock locked an account.
    Lockout {
        /// Account.
        user: String,
        /// PAM service.
        service: String,
    },
}

/// The program tag and message of a syslog line, whatever its timestamp
/// format: `Nov 25 10:00:01 host prog[pid]: msg` or
/// `2026-11-25T10:00:01.123+09:00 host prog[pid]: msg`.
pub fn split_syslog(line: &str) -> Option<(&str, &str)> {
    let mut rest = line;
    // Skip the timestamp (1 token in RFC 3339, 3 in the classic format), then the host.
    let skip = if rest
        .get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
    {
        2
    } else {
        4
    };
    for _ in 0..skip {
        rest = rest.trim_start();
        let end = rest.find(' ')?;
        rest = &rest[end..];
    }
    let rest = rest.trim_start();
    let colon = rest.find(": ")?;
    let tag = &rest[..colon];
    let program = tag.split('[').next().unwrap_or(tag);
    Some((program, &rest[colon + 2..]))
}

fn word_after<'a>(msg: &'a str, marker: &str) -> Option<&'a str> {
    let i = msg.find(marker)? + marker.len();
    msg[i..].split_whitespace().next()
}

fn valid_source(s: &str) -> String {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_else(|_| {
            // Hostnames (UseDNS yes) are kept as written, within reason.
            s.chars().take(255).collect()
        })
}

/// Parses one auth log line; `None` for lines that say nothing we use.
pub fn parse_auth_line(line: &str) -> Option<AuthEvent> {
    let (program, msg) = split_syslog(line)?;
    if msg.starts_with("pam_faillock(") {
        return parse_faillock(msg);
    }
    match program {
        "sshd" | "sshd-session" => parse_sshd(msg),
        "sudo" => parse_sudo(msg),
        "su" => parse_su(msg),
        _ => None,
    }
}

fn parse_sshd(msg: &str) -> Option<AuthEvent> {
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        // Accepted METHOD for USER from ADDR port N ssh2[: KEY]
        let method = rest.split_whitespace().next()?.to_owned();
        let user = word_after(rest, " for ")?.to_owned();
        let source = valid_source(word_after(rest, " from ")?);
        return Some(AuthEvent::Accepted {
            user,
            source,
            method,
            service: "sshd",
        });
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        // Failed METHOD for [invalid user ]USER from ADDR port N ssh2
        let invalid_user = rest.contains(" for invalid user ");
        let user = if invalid_user {
            word_after(rest, " for invalid user ")?
        } else {
            word_after(rest, " for ")?
        };
        return Some(AuthEvent::Failed {
            user: user.to_owned(),
            source: valid_source(word_after(rest, " from ")?),
            invalid_user,
            service: "sshd",
        });
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        // Invalid user NAME from ADDR port N  (NAME may be empty: "Invalid user  from …")
        let (user, tail) = rest.split_once(" from ")?;
        return Some(AuthEvent::Failed {
            user: user.trim().to_owned(),
            source: valid_source(tail.split_whitespace().next()?),
            invalid_user: true,
            service: "sshd",
        });
    }
    None
}

fn parse_sudo(msg: &str) -> Option<AuthEvent> {
    // "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id"
    // "   bob : user NOT in sudoers ; TTY=… ; USER=root ; COMMAND=…"
    // "   alice : 3 incorrect password attempts ; TTY=… ; COMMAND=…"
    let (user, rest) = msg.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return None;
    }
    let field = |name: &str| {
        rest.split(" ; ")
            .find_map(|f| f.trim().strip_prefix(name))
            .map(str::to_owned)
    };
    let command = field("COMMAND=")?;
    let outcome = if rest.contains("NOT in sudoers") {
        "not_in_sudoers"
    } else if rest.contains("incorrect password attempt") {
        "wrong_password"
    } else if rest.contains("command not allowed") {
        "denied"
    } else {
        "allowed"
    };
    Some(AuthEvent::Sudo {
        user: user.to_owned(),
        run_as: field("USER=").unwrap_or_else(|| "root".into()),
        command,
        outcome,
    })
}

fn parse_su(msg: &str) -> Option<AuthEvent> {
    // Debian: "(to root) alice on pts/0", "Successful su for root by alice",
    // "FAILED su for root by alice"; RHEL logs failures through pam_unix.
    if let Some(rest) = msg.strip_prefix("(to ") {
        let (target, tail) = rest.split_once(") ")?;
        let by = tail.split_whitespace().next()?;
        return Some(AuthEvent::Accepted {
            user: target.to_owned(),
            source: String::new(),
            method: format!("su by {by}"),
            service: "su",
        });
    }
    if let Some(rest) = msg.strip_prefix("FAILED su for ") {
        let target = rest.split_whitespace().next()?;
        return Some(AuthEvent::Failed {
            user: target.to_owned(),
            source: String::new(),
            invalid_user: false,
            service: "su",
        });
    }
    if msg.starts_with("pam_unix(su") && msg.contains("authentication failure") {
        return Some(AuthEvent::Failed {
            user: word_after(msg, " user=").unwrap_or_default().to_owned(),
            source: String::new(),
            invalid_user: false,
            service: "su",
        });
    }
    None
}

fn parse_faillock(msg: &str) -> Option<AuthEvent> {
    // pam_faillock(sshd:auth): Consecutive login failures for user root account temporarily locked
    let service = msg
        .strip_prefix("pam_faillock(")?
        .split([':', ')'])
        .next()?
        .to_owned();
    if !msg.contains("locked") {
        return None;
    }
    Some(AuthEvent::Lockout {
        user: word_after(msg, " for user ")?.to_owned(),
        service,
    })
}

/// Size of one `struct utmp` record on Linux (glibc, x86-64 and aarch64).
pub const UTMP_RECORD: usize = 384;
const USER_PROCESS: i16 = 7;

/// A live login session from utmp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Account.
    pub user: String,
    /// Terminal line.
    pub line: String,
    /// Remote host ("" for a local session).
    pub host: String,
    /// Process id of the session leader.
    pub pid: i32,
    /// When it began, Unix seconds.
    pub since: i64,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Live user sessions of a utmp file.
pub fn parse_utmp(bytes: &[u8]) -> Vec<Session> {
    bytes
        .chunks_exact(UTMP_RECORD)
        .filter_map(|r| {
            let kind = i16::from_ne_bytes([r[0], r[1]]);
            if kind != USER_PROCESS {
                return None;
            }
            Some(Session {
                pid: i32::from_ne_bytes(r[4..8].try_into().ok()?),
                line: c_string(&r[8..40]),
                user: c_string(&r[44..76]),
                host: c_string(&r[76..332]),
                since: i64::from(i32::from_ne_bytes(r[340..344].try_into().ok()?)),
            })
        })
        .collect()
}

/// Builds one utmp record (for tests and fixtures).
pub fn utmp_record(user: &str, line: &str, host: &str, pid: i32) -> Vec<u8> {
    let mut r = vec![0u8; UTMP_RECORD];
    r[0..2].copy_from_slice(&USER_PROCESS.to_ne_bytes());
    r[4..8].copy_from_slice(&pid.to_ne_bytes());
    let put = |r: &mut Vec<u8>, at: usize, max: usize, s: &str| {
        let b = s.as_bytes();
        let n = b.len().min(max);
        r[at..at + n].copy_from_slice(&b[..n]);
    };
    put(&mut r, 8, 32, line);
    put(&mut r, 44, 32, user);
    put(&mut r, 76, 256, host);
    r
}

/// Size of one `struct lastlog` record.
pub const LASTLOG_RECORD: usize = 292;

/// Last login time (Unix seconds) per uid from a lastlog file; uids never
/// logged in are absent.
pub fn parse_lastlog(bytes: &[u8]) -> BTreeMap<u32, i64> {
    bytes
        .chunks_exact(LASTLOG_RECORD)
        .enumerate()
        .filter_map(|(uid, r)| {
            let t = u32::from_ne_bytes(r[0..4].try_into().ok()?);
            let uid = u32::try_from(uid).ok()?;
            (t != 0).then_some((uid, i64::from(t)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(user: &str, source: &str, method: &str) -> Option<AuthEvent> {
        Some(AuthEvent::Accepted {
            user: user.into(),
            source: source.into(),
            method: method.into(),
            service: "sshd",
        })
    }

    fn failed(user: &str, source: &str, invalid: bool) -> Option<AuthEvent> {
        Some(AuthEvent::Failed {
            user: user.into(),
            source: source.into(),
            invalid_user: invalid,
            service: "sshd",
        })
    }

    #[test]
    fn sshd_lines_as_debian_ubuntu_and_rhel_write_them() {
        let cases = [
            (
                "Nov 25 10:00:01 web-01 sshd[1234]: Accepted password for alice from 10.0.0.5 port 50022 ssh2",
                accepted("alice", "10.0.0.5", "password"),
            ),
            (
                "2026-11-25T10:00:01.123456+09:00 web-01 sshd[1234]: Accepted publickey for alice from 2001:db8::7 port 50022 ssh2: ED25519 SHA256:abc",
                accepted("alice", "2001:db8::7", "publickey"),
            ),
            (
                "Nov  5 09:00:00 rhel9 sshd[88]: Accepted keyboard-interactive/pam for bob from ::ffff:192.0.2.9 port 2222 ssh2",
                accepted("bob", "192.0.2.9", "keyboard-interactive/pam"),
            ),
            (
                "Nov 25 10:00:02 web-01 sshd[1235]: Failed password for root from 203.0.113.9 port 4242 ssh2",
                failed("root", "203.0.113.9", false),
            ),
            (
                "Nov 25 10:00:03 web-01 sshd[1236]: Failed password for invalid user admin from 203.0.113.9 port 4243 ssh2",
                failed("admin", "203.0.113.9", true),
            ),
            (
                "Nov 25 10:00:04 web-01 sshd[1237]: Invalid user oracle from 2001:db8::66 port 5555",
                failed("oracle", "2001:db8::66", true),
            ),
            (
                "Nov 25 10:00:04 web-01 sshd[1237]: Invalid user  from 198.51.100.1 port 5555",
                failed("", "198.51.100.1", true),
            ),
            (
                "Nov 25 10:00:05 web-01 sshd[1238]: Connection closed by authenticating user root 203.0.113.9 port 4244 [preauth]",
                None,
            ),
            (
                "Nov 25 10:00:05 web-01 sshd[1238]: Disconnected from invalid user admin 203.0.113.9 port 4245 [preauth]",
                None,
            ),
            (
                "Nov 25 10:00:06 web-01 sshd-session[99]: Failed publickey for git from 10.1.1.1 port 1 ssh2: RSA SHA256:x",
                failed("git", "10.1.1.1", false),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_auth_line(line), want, "{line}");
        }
    }

    #[test]
    fn sudo_su_and_faillock() {
        assert_eq!(
            parse_auth_line(
                "Nov 25 10:01:00 web-01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id -u"
            ),
            Some(AuthEvent::Sudo {
                user: "alice".into(),
                run_as: "root".into(),
                command: "/usr/bin/id -u".into(),
                outcome: "allowed"
            })
        );
        assert!(matches!(
            parse_auth_line(
                "Nov 25 10:01:01 web-01 sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/sh"
            ),
            Some(AuthEvent::Sudo {
                outcome: "not_in_sudoers",
                ..
            })
        ));
        assert!(matches!(
            parse_auth_line(
                "2026-11-25T10:01:02+00:00 rhel sudo[77]:   carol : 3 incorrect password attempts ; TTY=pts/2 ; PWD=/root ; USER=root ; COMMAND=/bin/bash"
            ),
            Some(AuthEvent::Sudo {
                outcome: "wrong_password",
                ..
            })
        ));
        assert!(matches!(
            parse_auth_line("Nov 25 10:02:00 web-01 su[500]: (to root) alice on pts/0"),
            Some(AuthEvent::Accepted { service: "su", .. })
        ));
        assert!(matches!(
            parse_auth_line("Nov 25 10:02:01 web-01 su[501]: FAILED su for root by alice"),
            Some(AuthEvent::Failed { service: "su", .. })
        ));
        assert!(matches!(
            parse_auth_line(
                "Nov 25 10:02:02 rhel su[502]: pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 tty=pts/0 ruser=alice rhost=  user=root"
            ),
            Some(AuthEvent::Failed { service: "su", .. })
        ));
        assert_eq!(
            parse_auth_line(
                "Nov 25 10:03:00 web-01 sshd[600]: pam_faillock(sshd:auth): Consecutive login failures for user root account temporarily locked"
            ),
            Some(AuthEvent::Lockout {
                user: "root".into(),
                service: "sshd".into()
            })
        );
        assert_eq!(parse_auth_line("garbage"), None);
        assert_eq!(parse_auth_line(""), None);
        assert_eq!(
            parse_auth_line("Nov 25 10:03:00 web-01 cron[1]: (root) CMD (true)"),
            None
        );
    }

    #[test]
    fn utmp_and_lastlog_records() {
        let mut bytes = utmp_record("alice", "pts/0", "10.0.0.5", 100);
        bytes.extend(utmp_record("alice", "pts/1", "203.0.113.9", 101));
        bytes.extend(vec![0u8; UTMP_RECORD]); // an empty slot
        let s = parse_utmp(&bytes);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].host, "203.0.113.9");
        assert_eq!(s[0].line, "pts/0");
        let mut lastlog = vec![0u8; LASTLOG_RECORD * 3];
        lastlog[LASTLOG_RECORD * 2..LASTLOG_RECORD * 2 + 4]
            .copy_from_slice(&1_700_000_000u32.to_ne_bytes());
        assert_eq!(
            parse_lastlog(&lastlog),
            BTreeMap::from([(2, 1_700_000_000)])
        );
    }
}
