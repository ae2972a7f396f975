//! Property tests: every parser that reads what the host (or a user on it)
//! wrote — log lines, `/proc` and `/sys` text, utmp records, package
//! databases, kernel event buffers, config files — survives arbitrary input:
//! no panic, bounded output.
//!
//! `cargo test -p bannin-agent fuzz` runs 256 cases each; for millions:
//! `PROPTEST_CASES=1000000 cargo test --release -p bannin-agent fuzz`.

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

/// A log line the way the auth log's writers shape them, with arbitrary text
/// where a user or a peer controls it (user names, addresses, commands).
fn auth_line() -> impl Strategy<Value = String> {
    let prefixes = prop::sample::select(vec![
        "Nov 30 10:00:00 host sshd[123]: ",
        "Feb 29 23:59:59 host sshd[1]: ",
        "2026-11-30T10:00:00.123456+00:00 host sshd[77]: ",
        "<38>1 2026-11-30T10:00:00Z host sshd 77 - - ",
        "Nov 30 10:00:00 host sudo: ",
        "Nov 30 10:00:00 host su[9]: ",
        "Nov 30 10:00:00 host login[9]: ",
        "",
    ]);
    let templates = prop::sample::select(vec![
        "Failed password for {} from {} port {} ssh2",
        "Failed password for invalid user {} from {} port {} ssh2",
        "Accepted publickey for {} from {} port {} ssh2: ED25519 SHA256:{}",
        "Invalid user {} from {} port {}",
        "Connection closed by authenticating user {} {} port {} [preauth]",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={} user={}",
        "pam_unix(sudo:auth): authentication failure; logname={} uid={} euid=0 tty=/dev/pts/0 ruser={} rhost=  user={}",
        "{} : TTY=pts/0 ; PWD={} ; USER=root ; COMMAND={}",
        "{} : {} incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND={}",
        "pam_faillock(sshd:auth): Consecutive login failures for user {} account temporarily locked",
        "FAILED SU (to {}) {} on pts/1",
        "(to {}) {} on pts/{}",
        "Disconnected from user {} {} port {}",
        "{}",
    ]);
    (
        prefixes,
        templates,
        proptest::collection::vec(any::<String>(), 4),
    )
        .prop_map(|(prefix, template, fills)| {
            let mut line = prefix.to_owned();
            let mut fills = fills.into_iter();
            for (i, part) in template.split("{}").enumerate() {
                if i > 0 {
                    line.push_str(&fills.next().unwrap_or_default());
                }
                line.push_str(part);
            }
            line
        })
}

proptest! {
    #[test]
    fn fuzz_auth_log_lines(line in auth_line(), now in any::<i64>()) {
        let _ = crate::host::auth_log::parse_auth_line(&line);
        let _ = crate::host::auth_log::syslog_time(&line, now);
    }

    #[test]
    fn fuzz_auth_log_arbitrary_text(line in any::<String>(), now in any::<i64>()) {
        let _ = crate::host::auth_log::parse_auth_line(&line);
        let _ = crate::host::auth_log::syslog_time(&line, now);
    }

    #[test]
    fn fuzz_utmp_and_lastlog(
        bytes in proptest::collection::vec(any::<u8>(), 0..4000),
        user in any::<String>(),
        tty in any::<String>(),
        host in any::<String>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..16),
    ) {
        let _ = crate::host::auth_log::parse_utmp(&bytes);
        let _ = crate::host::auth_log::parse_lastlog(&bytes);
        // A real record, then damaged.
        let mut record = crate::host::auth_log::utmp_record(&user, &tty, &host, 42);
        let sessions = crate::host::auth_log::parse_utmp(&record);
        prop_assert!(sessions.len() <= 1);
        let len = record.len();
        for (at, b) in flips {
            record[at % len] = b;
        }
        let _ = crate::host::auth_log::parse_utmp(&record);
    }

    #[test]
    fn fuzz_proc_and_sys_text(
        comm in any::<String>(),
        rest in any::<String>(),
        text in any::<String>(),
    ) {
        let stat = format!("4242 ({comm}) S 1 {rest}");
        let _ = crate::host::proc::parse_stat(&stat);
        let _ = crate::host::proc::parse_stat(&text);
        let _ = crate::host::proc::parse_uid(&text);
        let _ = crate::host::proc::parse_uid(&format!("Uid:\t{rest}"));
        let _ = crate::host::net::parse_sockets(&text, "tcp");
        let _ = crate::host::net::parse_sockets(
            &format!("  sl  local_address rem_address   st\n   0: {rest}"),
            "tcp6",
        );
        let _ = crate::host::net::parse_endpoint(&text);
        let _ = crate::sensors::net_listener::parse_table(&text, "udp", (32768, 60999));
        let _ = crate::sensors::net_interface::parse_net_dev(&text);
        let _ = crate::sensors::resources::parse_cpu(&text);
        let _ = crate::sensors::resources::parse_cpu(&format!("cpu {rest}"));
        let _ = crate::sensors::resources::parse_memory(&text);
        let _ = crate::sensors::process::parse_ioc(&text);
    }

    #[test]
    fn fuzz_account_files(text in any::<String>(), fields in proptest::collection::vec(any::<String>(), 7)) {
        let _ = crate::host::accounts::parse_passwd(&text);
        let _ = crate::host::accounts::parse_group(&text);
        let _ = crate::host::accounts::parse_shadow_dates(&text);
        let line = fields.join(":");
        let _ = crate::host::accounts::parse_passwd(&line);
        let _ = crate::host::accounts::parse_group(&line);
        let _ = crate::host::accounts::parse_shadow_dates(&line);
    }

    #[test]
    fn fuzz_package_databases(text in any::<String>(), name in any::<String>(), version in any::<String>(), file in any::<String>()) {
        let _ = crate::host::packages::installed(&text);
        let status = format!(
            "Package: {name}\nStatus: install ok installed\nVersion: {version}\nConffiles:\n {file} 0123456789abcdef0123456789abcdef\n {text}\n\n{text}"
        );
        let _ = crate::host::packages::installed(&status);
        let _ = crate::host::packages::md5sums(&text).count();
        let _ = crate::host::packages::md5sums(&format!("0123456789abcdef0123456789abcdef  {file}\n{text}")).count();
        let scope = crate::host::packages::Scope::default();
        let _ = crate::host::packages::parse_rpm_query(&text, &scope);
        let _ = crate::host::packages::parse_rpm_query(&format!(
            "{name}\t{version}\t8\n\t{text}\t0\t{file}\n"
        ), &scope);
    }

    #[test]
    fn fuzz_kernel_event_buffers(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = crate::sensors::source::proc_events::parse_execs(&bytes);
        let dirs: HashMap<Vec<u8>, PathBuf> = HashMap::new();
        let _ = crate::sensors::source::changes::parse_fanotify(&bytes, &dirs);
    }

    #[test]
    fn fuzz_journal_entries(text in any::<String>(), message in any::<String>(), ident in any::<String>()) {
        let _ = crate::sensors::source::journal::parse_entry(&text);
        let entry = serde_json::json!({
            "MESSAGE": message, "SYSLOG_IDENTIFIER": ident, "_PID": text,
            "__REALTIME_TIMESTAMP": "1764496800000000", "__CURSOR": "s=1",
        });
        let _ = crate::sensors::source::journal::parse_entry(&entry.to_string());
    }

    #[test]
    fn fuzz_agent_config_files(text in any::<String>(), value in any::<String>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, &text).expect("write");
        let _ = crate::config::AgentConfig::load(&path);
        let shaped = format!(
            "[collector]\naddress = {value:?}\n[tls]\nca = {value:?}\ncert = \"c\"\nkey = \"k\"\n[spool]\ndir = {value:?}\nmax_bytes = 1\n[sensors.file_integrity]\npaths = [{value:?}]\n"
        );
        std::fs::write(&path, shaped).expect("write");
        let _ = crate::config::AgentConfig::load(&path);
    }
}
