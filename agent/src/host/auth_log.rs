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
    /// A failed or refused attempt.
    Failed {
        /// Account ("" if unknown).
        user: String,
        /// Source address or hostname ("" for local or not on the line).
        source: String,
        /// Whether the account does not exist.
        invalid_user: bool,
        /// sshd, su, sudo or pam.
        service: &'static str,
        /// Whether this line counts as an attempt. sshd writes several lines for
        /// one refused login (PAM's, "Failed …", then "Connection closed by
        /// authenticating user …"): the one that states the attempt counts, the
        /// ones that accompany it are read (user, source) but not counted twice.
        counted: bool,
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

/// The program tag and message of a syslog line, whatever its format: classic
/// (`Nov 25 10:00:01 host prog[pid]: msg`, with or without the host field, with or
/// without a `<PRI>`), RFC 3339 timestamps (`2026-11-25T10:00:01.123+09:00 host
/// prog[pid]: msg`), and RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`,
/// structured data with brackets and quotes inside values).
pub fn split_syslog(line: &str) -> Option<(&str, &str)> {
    parse_syslog(line).map(|s| (s.program, s.msg))
}

/// A syslog line's program, process id and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// The program (the tag before `[pid]`).
    pub program: &'a str,
    /// The process that wrote it, when the line says.
    pub pid: Option<u32>,
    /// The message.
    pub msg: &'a str,
}

/// As [`split_syslog`], with the writer's process id.
pub fn parse_syslog(line: &str) -> Option<Syslog<'_>> {
    let line = line.trim_start();
    if let Some(rest) = line.strip_prefix('<') {
        let (pri, after) = rest.split_once('>')?;
        if !pri.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if let Some(v1) = after.strip_prefix("1 ") {
            return split_rfc5424(v1);
        }
        return split_classic(after);
    }
    split_classic(line)
}

/// When a syslog line says it was written, in Unix milliseconds: an RFC 3339
/// stamp (RFC 5424, rsyslog's high-precision format, the journal as the agent
/// renders it), or the BSD `Mmm dd hh:mm:ss`, which has neither year nor zone:
/// it is read as UTC in the year that puts it nearest before `now_ms`. Rules
/// that use it only measure the distance between two lines of one log, which
/// the missing zone does not change.
pub fn syslog_time(line: &str, now_ms: i64) -> Option<i64> {
    let mut line = line.trim_start();
    if let Some(rest) = line.strip_prefix('<') {
        let (_, after) = rest.split_once('>')?;
        line = after.strip_prefix("1 ").unwrap_or(after);
    }
    let mut tokens = line.split_whitespace();
    let first = tokens.next()?;
    if first
        .get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
    {
        let t = time::OffsetDateTime::parse(first, &time::format_description::well_known::Rfc3339)
            .ok()?;
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let month = match first {
        "Jan" => time::Month::January,
        "Feb" => time::Month::February,
        "Mar" => time::Month::March,
        "Apr" => time::Month::April,
        "May" => time::Month::May,
        "Jun" => time::Month::June,
        "Jul" => time::Month::July,
        "Aug" => time::Month::August,
        "Sep" => time::Month::September,
        "Oct" => time::Month::October,
        "Nov" => time::Month::November,
        "Dec" => time::Month::December,
        _ => return None,
    };
    let day: u8 = tokens.next()?.parse().ok()?;
    let mut hms = tokens.next()?.split(':').map(|x| x.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let clock = time::Time::from_hms(h, m, sec).ok()?;
    let now = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000).ok()?;
    let at = |year: i32| -> Option<i64> {
        let date = time::Date::from_calendar_date(year, month, day).ok()?;
        let t = time::PrimitiveDateTime::new(date, clock).assume_utc();
        Some(t.unix_timestamp() * 1000)
    };
    // A line from "the future" (more than a day ahead) is from last year.
    match at(now.year()) {
        Some(t) if t <= now_ms + 86_400_000 => Some(t),
        _ => at(now.year() - 1),
    }
}

/// `TIMESTAMP HOST APP PROCID MSGID SD MSG` (after `<PRI>1 `).
fn split_rfc5424(line: &str) -> Option<Syslog<'_>> {
    let mut fields = line.splitn(6, ' ');
    let (_time, _host, app, procid, _msgid) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let rest = fields.next().unwrap_or_default();
    let msg = skip_structured_data(rest)?;
    Some(Syslog {
        program: app,
        pid: procid.parse().ok(),
        msg: msg.trim_start_matches('\u{feff}'),
    })
}

/// The message after RFC 5424 structured data: `-`, or `[id k="v" …]…` where a
/// value may hold `\]`, `\"` and brackets inside its quotes.
fn skip_structured_data(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix('-') {
        return Some(rest.strip_prefix(' ').unwrap_or(rest));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while bytes.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match *bytes.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    let rest = s.get(i..)?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

/// Classic syslog: a timestamp (three tokens, or one RFC 3339 token), an optional
/// host, then `prog[pid]: msg`.
fn split_classic(line: &str) -> Option<Syslog<'_>> {
    let mut rest = line;
    let stamp_tokens = if rest
        .get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
    {
        1
    } else {
        3
    };
    for _ in 0..stamp_tokens {
        rest = rest.trim_start();
        rest = &rest[rest.find(' ')?..];
    }
    let rest = rest.trim_start();
    // The host field is absent when the next token is already the tag.
    let first = rest.split(' ').next()?;
    let rest = if first.ends_with(':') {
        rest
    } else {
        rest[first.len()..].trim_start()
    };
    let colon = rest
        .find(": ")
        .or_else(|| rest.ends_with(':').then(|| rest.len() - 1))?;
    let tag = &rest[..colon];
    let (program, pid) = match tag.split_once('[') {
        Some((program, pid)) => (program, pid.trim_end_matches(']').parse().ok()),
        None => (tag, None),
    };
    let msg = rest.get(colon + 2..).unwrap_or_default();
    Some(Syslog { program, pid, msg })
}

/// The message after a message-ID tag some syslog daemons put first
/// (`[ID 800047 auth.info] Failed password …`, Solaris and illumos style).
fn without_message_id(msg: &str) -> &str {
    match msg
        .strip_prefix("[ID ")
        .and_then(|rest| rest.split_once("] "))
    {
        Some((id, after))
            if id
                .split(' ')
                .next()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            after
        }
        _ => msg,
    }
}

/// The process that wrote an auth log line, when the line says (sshd writes
/// every line of one connection's attempts from one process).
pub fn auth_line_pid(line: &str) -> Option<u32> {
    parse_syslog(line)?.pid
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
    let msg = without_message_id(msg);
    if msg.starts_with("pam_faillock(") {
        return parse_faillock(msg);
    }
    match program {
        "sshd" | "sshd-session" | "sshd-auth" => parse_sshd(msg),
        "sudo" => parse_sudo(msg),
        "su" => parse_su(msg),
        _ => None,
    }
}

/// Where an sshd message names its peer: the address (or hostname) after `from `
/// or the last `ADDR port N` pair, never the port or a trailing colon.
fn source_of(text: &str) -> Option<String> {
    let clean = |s: &str| {
        let s = s
            .trim_end_matches([':', ',', ')', ']'])
            .trim_start_matches('(');
        (!s.is_empty()).then(|| valid_source(s))
    };
    if let Some((_, after)) = text.rsplit_once(" from ") {
        return clean(after.split_whitespace().next()?);
    }
    // "… user NAME ADDR port N …": the word before " port ".
    let (before, _) = text.rsplit_once(" port ")?;
    clean(before.rsplit(' ').next()?)
}

/// The account in "for [invalid user |illegal user ]NAME from ADDR …", whatever
/// spaces the name holds (sshd logs what the client sent).
fn user_for(text: &str) -> Option<(String, bool)> {
    let (_, after_for) = text.split_once(" for ")?;
    let (name, _) = after_for.rsplit_once(" from ")?;
    for prefix in ["invalid user ", "illegal user "] {
        if let Some(n) = name.strip_prefix(prefix) {
            return Some((n.to_owned(), true));
        }
    }
    Some((name.to_owned(), false))
}

/// An attempt sshd states (counted).
fn failed(user: String, source: String, invalid_user: bool) -> Option<AuthEvent> {
    Some(AuthEvent::Failed {
        user,
        source,
        invalid_user,
        service: "sshd",
        counted: true,
    })
}

/// A line that accompanies an attempt already stated (read, not counted again).
fn accompanying(user: String, source: String, invalid_user: bool) -> Option<AuthEvent> {
    Some(AuthEvent::Failed {
        user,
        source,
        invalid_user,
        service: "sshd",
        counted: false,
    })
}

fn parse_sshd(msg: &str) -> Option<AuthEvent> {
    // Any message may end with " [preauth]" (logged from the privsep child before
    // authentication completes).
    let msg = msg.trim_end().trim_end_matches(" [preauth]").trim_end();
    // sshd logs some of these through error() (7.x on): "error: maximum …",
    // "error: PAM: …".
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        // auth.c auth_log(): "Accepted METHOD for USER from ADDR port N ssh2[: KEY]"
        let method = rest.split_whitespace().next()?.to_owned();
        let (user, _) = user_for(rest)?;
        return Some(AuthEvent::Accepted {
            user,
            source: source_of(rest)?,
            method,
            service: "sshd",
        });
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        // auth.c auth_log(): "Failed METHOD for [invalid user ]USER from ADDR port N ssh2"
        let (user, invalid) = user_for(rest)?;
        return failed(user, source_of(rest)?, invalid);
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        // auth.c getpwnamallow(): "Invalid user %.100s from %.100s port %d"
        // (older: no port; the name may be empty or hold spaces)
        let (user, tail) = rest.rsplit_once(" from ")?;
        return failed(
            user.trim().to_owned(),
            source_of(&format!(" from {tail}"))?,
            true,
        );
    }
    if let Some(rest) = msg.strip_prefix("User ")
        && rest.contains(" not allowed because ")
    {
        // auth.c allowed_user(): "User %.100s from %.100s not allowed because %s"
        let (head, _) = rest.split_once(" not allowed because ")?;
        let (user, from) = head.rsplit_once(" from ")?;
        return failed(user.to_owned(), valid_source(from), false);
    }
    if let Some(rest) = msg.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        // auth.c auth_root_allowed(): "ROOT LOGIN REFUSED FROM %.200s port %d"
        return failed("root".into(), source_of(&format!(" from {rest}"))?, false);
    }
    if let Some(rest) = msg.strip_prefix("maximum authentication attempts exceeded for ") {
        // auth.c auth_maxtries_exceeded(): "maximum authentication attempts exceeded
        // for %s%.100s from %.200s port %d ssh2" ("invalid user " prefix)
        let (user, invalid) = user_for(&format!(" for {rest}"))?;
        return accompanying(user, source_of(rest)?, invalid);
    }
    for (prefix, invalid) in [
        // packet.c sshpkt_vfatal() / ssh_packet_disconnect(): "Disconnecting %s %s
        // port %d: %s" where %s is "invalid user NAME ADDR" or
        // "authenticating user NAME ADDR"; and sshd's "Connection closed by …"
        ("Disconnecting invalid user ", true),
        ("Disconnecting authenticating user ", false),
        ("Connection closed by invalid user ", true),
        ("Connection closed by authenticating user ", false),
        ("Connection reset by invalid user ", true),
        ("Connection reset by authenticating user ", false),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // "NAME ADDR port N[: reason]" — the name may be empty.
            let (head, _) = rest.rsplit_once(" port ")?;
            let (user, addr) = head.rsplit_once(' ').unwrap_or(("", head));
            return accompanying(user.to_owned(), valid_source(addr), invalid);
        }
    }
    if let Some(rest) = msg.strip_prefix("Disconnecting: Too many authentication failures") {
        // Older sshd (packet_disconnect): "Disconnecting: Too many authentication
        // failures for USER" — no address on the line.
        let user = rest.trim().strip_prefix("for ").unwrap_or_default();
        return accompanying(user.trim().to_owned(), String::new(), false);
    }
    if let Some(rest) = msg.strip_prefix("Received disconnect from ")
        && rest.contains("Auth fail")
    {
        // packet.c: "Received disconnect from %s port %d:%u: %.400s" — the client
        // gave up: "Auth fail" (no account on the line).
        return accompanying(String::new(), source_of(&format!(" from {rest}"))?, false);
    }
    if let Some(rest) = msg.strip_prefix("PAM: Authentication failure for ") {
        // auth-pam.c sshpam_auth_passwd()/do_pam_account: "PAM: %s for %s%.100s from %.100s"
        let (user, invalid) = user_for(&format!(" for {rest}"))?;
        return accompanying(user, source_of(rest)?, invalid);
    }
    if msg.starts_with("pam_unix(sshd:auth): authentication failure;") {
        // sshd then writes "Failed password …" for the same attempt.
        return parse_pam_unix_failure(msg, "sshd", false);
    }
    if let Some(rest) = msg.strip_prefix("refused connect from ") {
        // tcp_wrappers (libwrap refuse()): "refused connect from %s" — "HOST (ADDR)"
        // or "ADDR"; no account.
        let addr = match rest.split_once(" (") {
            Some((_, a)) => a.trim_end_matches(')'),
            None => rest.split_whitespace().next()?,
        };
        return failed(String::new(), valid_source(addr), false);
    }
    None
}

/// Linux-PAM pam_unix, `pam_unix_auth.c` via `_unix_verify_password()` /
/// `_log_err`: "authentication failure; logname=%s uid=%d euid=%d tty=%s
/// ruser=%s rhost=%s[  user=%s]" (no `user=` for an unknown account).
fn parse_pam_unix_failure(msg: &str, service: &'static str, counted: bool) -> Option<AuthEvent> {
    let field = |name: &str| {
        msg.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let user = field("user=");
    let rhost = field("rhost=");
    Some(AuthEvent::Failed {
        invalid_user: user.is_empty(),
        user,
        source: if rhost.is_empty() {
            String::new()
        } else {
            valid_source(&rhost)
        },
        service,
        counted,
    })
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
            counted: true,
        });
    }
    if msg.starts_with("pam_unix(su") && msg.contains("authentication failure") {
        return Some(AuthEvent::Failed {
            user: word_after(msg, " user=").unwrap_or_default().to_owned(),
            source: String::new(),
            invalid_user: false,
            service: "su",
            counted: true,
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
mod time_tests {
    use super::syslog_time;

    /// 2026-11-30T12:00:00Z.
    const NOW: i64 = 1_796_040_000_000;

    #[test]
    fn every_timestamp_form_is_read() {
        assert_eq!(
            syslog_time("2026-11-30T11:59:30.250+00:00 h sshd[1]: x", NOW),
            Some(NOW - 29_750)
        );
        assert_eq!(
            syslog_time("<38>1 2026-11-30T20:59:00+09:00 h sshd 1 - - x", NOW),
            Some(NOW - 60_000)
        );
        assert_eq!(
            syslog_time("Nov 30 11:58:00 h sshd[1]: x", NOW),
            Some(NOW - 120_000)
        );
        assert_eq!(
            syslog_time("Nov  3 11:58:00 sshd[1]: x", NOW).map(|t| t < NOW),
            Some(true)
        );
        // December's lines read in January of the next year are last year's.
        let jan = NOW + 40 * 86_400_000;
        assert!(syslog_time("Dec 31 23:59:59 h sshd[1]: x", jan).is_some_and(|t| t < jan));
        assert!(syslog_time("Dec 31 23:59:59 h sshd[1]: x", NOW).is_some_and(|t| t < NOW));
        assert_eq!(syslog_time("garbage", NOW), None);
        assert_eq!(syslog_time("Nov 31 25:00:00 h x: y", NOW), None);
    }
}

/// One failed attempt, as counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Account ("" if unknown).
    pub user: String,
    /// Source address or hostname.
    pub source: String,
    /// Whether the account does not exist.
    pub invalid_user: bool,
    /// sshd, su, sudo or pam.
    pub service: &'static str,
    /// When the log wrote it (Unix ms).
    pub at: i64,
}

/// Pairs the lines sshd writes for one refused attempt. Which lines a setup
/// writes varies: with PAM-only or keyboard-interactive authentication there
/// may be no `Failed …` line at all, only PAM's `authentication failure`, a
/// `maximum authentication attempts exceeded` or a `Connection closed by
/// authenticating user`. Lines are paired by the sshd process that wrote
/// them and the source they name: a line that states the attempt counts at
/// once; a line that only accompanies one counts when no stating line of that
/// process and source has come by the end of the next read — so every source
/// a failure names is counted, once.
#[derive(Debug, Default)]
pub struct Pairing {
    /// (process, source) of attempts stated recently, oldest first.
    stated: std::collections::VecDeque<(u32, String)>,
    /// Accompanying lines not yet paired, with the reads they have waited.
    waiting: BTreeMap<(u32, String), (Attempt, u8)>,
}

/// Processes whose stated attempts are remembered, and unpaired lines kept.
const MAX_PAIRED: usize = 4096;

impl Pairing {
    /// Takes one failed line (`counted`: it states the attempt); returns the
    /// attempt if it counts now.
    pub fn take(&mut self, pid: Option<u32>, attempt: Attempt, counted: bool) -> Option<Attempt> {
        let key = (pid.unwrap_or(0), attempt.source.clone());
        if counted {
            self.waiting.remove(&key);
            if !self.stated.contains(&key) {
                if self.stated.len() >= MAX_PAIRED {
                    self.stated.pop_front();
                }
                self.stated.push_back(key);
            }
            return Some(attempt);
        }
        // A line with no source cannot name one; one whose attempt was stated
        // accompanies it.
        if attempt.source.is_empty() || self.stated.contains(&key) {
            return None;
        }
        if self.waiting.len() < MAX_PAIRED || self.waiting.contains_key(&key) {
            let entry = self.waiting.entry(key).or_insert((attempt.clone(), 0));
            if entry.0.user.is_empty() {
                entry.0.user = attempt.user;
                entry.0.invalid_user = attempt.invalid_user;
            }
        }
        None
    }

    /// The end of one read: the accompanying lines that waited a whole read
    /// for their attempt to be stated count now.
    pub fn end_of_read(&mut self) -> Vec<Attempt> {
        let mut due = Vec::new();
        self.waiting.retain(|_, (attempt, waited)| {
            if *waited >= 1 {
                due.push(attempt.clone());
                false
            } else {
                *waited += 1;
                true
            }
        });
        due
    }
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
            counted: true,
        })
    }

    /// A line read but not counted again (it accompanies a stated attempt).
    fn also(user: &str, source: &str, invalid: bool) -> Option<AuthEvent> {
        Some(AuthEvent::Failed {
            user: user.into(),
            source: source.into(),
            invalid_user: invalid,
            service: "sshd",
            counted: false,
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
                also("root", "203.0.113.9", false),
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

    /// Every message OpenSSH (6.x to 9.x; `sshd` and `sshd-session`) and Linux-PAM
    /// write when a login fails or is refused. Each fixture is the source's format
    /// string filled in; the comment names the file and function.
    #[test]
    fn every_sshd_and_pam_refusal_names_the_account_and_the_source() {
        let h = "Nov 25 10:00:00 web-01 sshd[4242]: ";
        let cases: Vec<(String, Option<AuthEvent>)> = vec![
            // auth.c auth_log(): "%s %s%s%s for %s%.100s from %.200s port %d ssh2%s%s"
            (
                format!("{h}Failed none for invalid user scan from 192.0.2.1 port 1 ssh2"),
                failed("scan", "192.0.2.1", true),
            ),
            (
                format!("{h}Failed hostbased for bob from 192.0.2.1 port 1 ssh2"),
                failed("bob", "192.0.2.1", false),
            ),
            (
                format!("{h}Failed unknown for root from 192.0.2.1 port 1 ssh2"),
                failed("root", "192.0.2.1", false),
            ),
            (
                format!(
                    "{h}Failed keyboard-interactive/pam for invalid user a b from 2001:db8::1 port 2 ssh2"
                ),
                failed("a b", "2001:db8::1", true),
            ),
            (
                format!("{h}Failed password for root from ::ffff:198.51.100.7 port 3 ssh2"),
                failed("root", "198.51.100.7", false),
            ),
            (
                format!("{h}Failed password for root from attacker.example.net port 4 ssh2"),
                failed("root", "attacker.example.net", false),
            ),
            // auth.c getpwnamallow(): "Invalid user %.100s from %.100s port %d"
            (
                format!("{h}Invalid user admin from 203.0.113.5 port 22"),
                failed("admin", "203.0.113.5", true),
            ),
            // older (6.x): no port
            (
                format!("{h}Invalid user admin from 203.0.113.5"),
                failed("admin", "203.0.113.5", true),
            ),
            (
                format!("{h}Invalid user john smith from 203.0.113.5 port 22"),
                failed("john smith", "203.0.113.5", true),
            ),
            // auth.c allowed_user(): "User %.100s from %.100s not allowed because %s"
            (
                format!(
                    "{h}User carol from 192.0.2.8 not allowed because not listed in AllowUsers"
                ),
                failed("carol", "192.0.2.8", false),
            ),
            (
                format!("{h}User dave from 192.0.2.8 not allowed because listed in DenyUsers"),
                failed("dave", "192.0.2.8", false),
            ),
            (
                format!(
                    "{h}User erin from 192.0.2.8 not allowed because none of user's groups are listed in AllowGroups"
                ),
                failed("erin", "192.0.2.8", false),
            ),
            (
                format!(
                    "{h}User frank from 192.0.2.8 not allowed because a group is listed in DenyGroups"
                ),
                failed("frank", "192.0.2.8", false),
            ),
            (
                format!(
                    "{h}User games from 192.0.2.8 not allowed because shell /usr/sbin/nologin does not exist"
                ),
                failed("games", "192.0.2.8", false),
            ),
            (
                format!("{h}User ops from 192.0.2.8 not allowed because account is locked"),
                failed("ops", "192.0.2.8", false),
            ),
            // auth.c auth_root_allowed(): "ROOT LOGIN REFUSED FROM %.200s port %d"
            (
                format!("{h}ROOT LOGIN REFUSED FROM 192.0.2.9 port 5"),
                failed("root", "192.0.2.9", false),
            ),
            // auth.c auth_maxtries_exceeded(): "maximum authentication attempts exceeded for %s%.100s from %.200s port %d ssh2"
            (
                format!(
                    "{h}error: maximum authentication attempts exceeded for root from 192.0.2.10 port 6 ssh2 [preauth]"
                ),
                also("root", "192.0.2.10", false),
            ),
            (
                format!(
                    "{h}maximum authentication attempts exceeded for invalid user x from 192.0.2.10 port 6 ssh2 [preauth]"
                ),
                also("x", "192.0.2.10", true),
            ),
            // packet.c sshpkt_vfatal(): "Disconnecting %s: %s" with %s "invalid user NAME ADDR port N" / "authenticating user NAME ADDR port N"
            (
                format!(
                    "{h}Disconnecting authenticating user root 192.0.2.11 port 7: Too many authentication failures [preauth]"
                ),
                also("root", "192.0.2.11", false),
            ),
            (
                format!(
                    "{h}Disconnecting invalid user guest 192.0.2.11 port 7: Too many authentication failures [preauth]"
                ),
                also("guest", "192.0.2.11", true),
            ),
            // older packet_disconnect(): "Disconnecting: Too many authentication failures for %.100s"
            (
                format!("{h}Disconnecting: Too many authentication failures for root [preauth]"),
                also("root", "", false),
            ),
            // sshd.c / packet.c: "Connection closed by %s" with the same user descriptions
            (
                format!("{h}Connection closed by invalid user  192.0.2.12 port 8 [preauth]"),
                also("", "192.0.2.12", true),
            ),
            (
                format!(
                    "{h}Connection closed by authenticating user root 2001:db8::2 port 8 [preauth]"
                ),
                also("root", "2001:db8::2", false),
            ),
            // packet.c ssh_packet_read_poll_seqnr(): "Received disconnect from %s port %d:%u: %.400s"
            (
                format!("{h}Received disconnect from 192.0.2.13 port 9:11: Auth fail [preauth]"),
                also("", "192.0.2.13", false),
            ),
            (
                format!("{h}Received disconnect from 192.0.2.13 port 9:11: disconnected by user"),
                None,
            ),
            // auth-pam.c sshpam_auth_passwd(): "PAM: %s for %s%.100s from %.100s"
            (
                format!("{h}error: PAM: Authentication failure for root from 192.0.2.14"),
                also("root", "192.0.2.14", false),
            ),
            (
                format!(
                    "{h}error: PAM: Authentication failure for illegal user zz from 192.0.2.14"
                ),
                also("zz", "192.0.2.14", true),
            ),
            // Linux-PAM modules/pam_unix/support.c _unix_verify_password(): "authentication failure; logname=%s uid=%d euid=%d tty=%s ruser=%s rhost=%s  user=%s"
            (
                format!(
                    "{h}pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.15  user=root"
                ),
                also("root", "192.0.2.15", false),
            ),
            (
                format!(
                    "{h}pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.15"
                ),
                also("", "192.0.2.15", true),
            ),
            // tcp_wrappers refuse(): "refused connect from %s" (eval_client: "host (addr)")
            (
                format!("{h}refused connect from scanner.example (192.0.2.16)"),
                failed("", "192.0.2.16", false),
            ),
            (
                format!("{h}refused connect from 192.0.2.17"),
                failed("", "192.0.2.17", false),
            ),
        ];
        for (line, want) in &cases {
            assert_eq!(&parse_auth_line(line), want, "{line}");
        }
    }

    #[test]
    fn every_line_format_carries_the_same_message() {
        let msg = "Failed password for root from 192.0.2.1 port 22 ssh2";
        for line in [
            format!("Nov 25 10:00:00 web-01 sshd[1]: {msg}"),
            // No host field (some journald exports, busybox syslogd).
            format!("Nov 25 10:00:00 sshd[1]: {msg}"),
            format!("Nov  5 10:00:00 web-01 sshd-session[1]: {msg} [preauth]"),
            format!("2026-11-25T10:00:00.123456+09:00 web-01 sshd[1]: {msg}"),
            format!("<38>Nov 25 10:00:00 web-01 sshd[1]: {msg}"),
            // RFC 5424, without and with structured data (brackets and quotes inside).
            format!("<38>1 2026-11-25T10:00:00.1Z web-01 sshd 1234 - - {msg}"),
            format!(
                "<38>1 2026-11-25T10:00:00Z web-01 sshd 1234 ID47 [meta a=\"x]y\" b=\"q\\\"r\"][origin ip=\"10.0.0.1\"] {msg}"
            ),
            format!("<38>1 2026-11-25T10:00:00Z web-01 sshd 1234 - - \u{feff}{msg}"),
        ] {
            assert_eq!(
                parse_auth_line(&line),
                failed("root", "192.0.2.1", false),
                "{line}"
            );
        }
        assert_eq!(split_syslog("garbage"), None);
        assert_eq!(split_syslog("<x>1 bad"), None);
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

    /// Where sshd writes no "Failed …" line (PAM-only, keyboard-interactive),
    /// the lines that accompany an attempt name its source, once per sshd
    /// process and source; where it does, the attempt counts once however
    /// many lines accompany it. Message-ID-tagged lines are read.
    #[test]
    fn every_source_a_failure_names_counts_once() {
        let log = [
            // PAM only: two lines of process 100, source A.
            "Dec  7 10:00:01 h sshd[100]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.1  user=root",
            "Dec  7 10:00:03 h sshd[100]: Connection closed by authenticating user root 198.51.100.1 port 40000 [preauth]",
            // Alone: process 200, source B.
            "Dec  7 10:00:04 h sshd[200]: error: maximum authentication attempts exceeded for admin from 198.51.100.2 port 40001 ssh2 [preauth]",
            // Alone: process 300, source C (the client gave up).
            "Dec  7 10:00:05 h sshd[300]: Received disconnect from 198.51.100.3 port 40002:11: Auth fail [preauth]",
            // Stated, with lines around it: process 400, source D, once.
            "Dec  7 10:00:06 h sshd[400]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.4  user=bob",
            "Dec  7 10:00:06 h sshd[400]: Failed password for bob from 198.51.100.4 port 40003 ssh2",
            "Dec  7 10:00:07 h sshd[400]: Connection closed by authenticating user bob 198.51.100.4 port 40003 [preauth]",
            // A message-ID tag (Solaris-style syslog): process 500, source E.
            "Dec  7 10:00:08 h sshd[500]: [ID 800047 auth.info] Failed password for carol from 198.51.100.5 port 40004 ssh2",
        ];
        let mut pairing = Pairing::default();
        let mut counted = Vec::new();
        let read = |lines: &[&str], pairing: &mut Pairing| {
            let mut out = Vec::new();
            for line in lines {
                if let Some(AuthEvent::Failed {
                    user,
                    source,
                    invalid_user,
                    service,
                    counted,
                }) = parse_auth_line(line)
                {
                    let attempt = Attempt {
                        user,
                        source,
                        invalid_user,
                        service,
                        at: 0,
                    };
                    out.extend(pairing.take(auth_line_pid(line), attempt, counted));
                }
            }
            out.extend(pairing.end_of_read());
            out
        };
        counted.extend(read(&log, &mut pairing));
        // Nothing more is written: the unpaired lines count at the end of the next read.
        counted.extend(read(&[], &mut pairing));
        counted.extend(read(&[], &mut pairing));
        let mut sources: Vec<(String, String)> = counted
            .iter()
            .map(|a| (a.source.clone(), a.user.clone()))
            .collect();
        sources.sort();
        assert_eq!(
            sources,
            [
                ("198.51.100.1".to_owned(), "root".to_owned()),
                ("198.51.100.2".to_owned(), "admin".to_owned()),
                ("198.51.100.3".to_owned(), String::new()),
                ("198.51.100.4".to_owned(), "bob".to_owned()),
                ("198.51.100.5".to_owned(), "carol".to_owned()),
            ]
        );
        assert_eq!(auth_line_pid(log[0]), Some(100));
    }
}
