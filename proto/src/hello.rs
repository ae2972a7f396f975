//! What an agent may say about itself in its Hello, checked on both sides: the
//! agent sends only what passes ([`host_name`] makes a host name that passes),
//! the collector refuses a stream whose Hello does not, with the reason. A peer
//! is not trusted to describe itself in text a terminal or a report would
//! interpret.

use crate::v1;

/// Longest host name (RFC 1123's 253).
pub const MAX_HOSTNAME: usize = 253;
/// Longest OS, kernel and version string.
pub const MAX_TEXT: usize = 256;
/// Most addresses a host reports.
pub const MAX_ADDRESSES: usize = 128;
/// Most sensors in a Hello, and the longest health detail.
pub const MAX_SENSORS: usize = 64;
/// Longest sensor health detail.
pub const MAX_DETAIL: usize = 2048;

/// Why a Hello is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The host name is too long or not letters, digits, `.`, `-`, `_`.
    #[error(
        "hostname {0:?}: use at most {MAX_HOSTNAME} letters, digits, '.', '-' or '_' (the agent maps others to '_')"
    )]
    Hostname(String),
    /// A text field is too long or holds control characters.
    #[error("{0}: at most {MAX_TEXT} characters with no control characters")]
    Text(&'static str),
    /// An address is not an IP address (optionally with `/PREFIX`), or there are too many.
    #[error(
        "addresses: at most {MAX_ADDRESSES} IP addresses, each ADDR or ADDR/PREFIX ({0:?} is not one)"
    )]
    Address(String),
    /// Too many sensors, or a sensor's name or detail is unfit.
    #[error(
        "sensor health: at most {MAX_SENSORS} sensors, names as label keys, details of at most {MAX_DETAIL} characters without control characters"
    )]
    Sensors,
    /// A label.
    #[error(transparent)]
    Label(#[from] crate::labels::LabelError),
}

/// Empty is allowed: an agent that could not read its host name says so by
/// sending none.
fn hostname_ok(name: &str) -> bool {
    name.len() <= MAX_HOSTNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A control character, or one that reorders or hides text (bidi overrides,
/// zero-width characters): what a terminal or a viewer would act on.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// `text` with every [`is_unsafe_char`] shown as an escape, in quotes: how an
/// error message quotes what a peer sent.
pub fn inert_debug(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars().take(200) {
        if is_unsafe_char(c) || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn text_ok(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(is_unsafe_char)
}

/// This host's name as the agent reports it: `raw` with every byte outside
/// letters, digits, `.`, `-`, `_` mapped to `_`, at most [`MAX_HOSTNAME`]
/// long; `unnamed` if nothing is left.
pub fn host_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_HOSTNAME)
        .collect();
    if name.is_empty() {
        "unnamed".into()
    } else {
        name
    }
}

/// `ADDR` or `ADDR/PREFIX` (a host's address on its network).
fn address_ok(text: &str) -> bool {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

/// Checks everything a Hello says about the host.
pub fn check(hello: &v1::Hello) -> Result<(), HelloError> {
    if !hostname_ok(&hello.hostname) {
        return Err(HelloError::Hostname(
            hello.hostname.chars().take(80).collect(),
        ));
    }
    for (name, value) in [
        ("os", &hello.os),
        ("kernel", &hello.kernel),
        ("agent_version", &hello.agent_version),
    ] {
        if !text_ok(value, MAX_TEXT) {
            return Err(HelloError::Text(name));
        }
    }
    if hello.addresses.len() > MAX_ADDRESSES {
        return Err(HelloError::Address(format!(
            "{} addresses",
            hello.addresses.len()
        )));
    }
    if let Some(bad) = hello.addresses.iter().find(|a| !address_ok(a)) {
        return Err(HelloError::Address(bad.chars().take(80).collect()));
    }
    if hello.sensors.len() > MAX_SENSORS
        || hello.sensors.iter().any(|s| {
            crate::labels::check_key(&s.name).is_err()
                || !text_ok(&s.state, 32)
                || !text_ok(&s.detail, MAX_DETAIL)
        })
    {
        return Err(HelloError::Sensors);
    }
    crate::labels::check(&hello.labels)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> v1::Hello {
        v1::Hello {
            host_id: "h-1".into(),
            hostname: "web-07.example.org".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.1.0".into(),
            addresses: vec!["10.0.0.7".into(), "fe80::1".into()],
            agent_version: "0.1.0".into(),
            sensors: vec![v1::SensorHealth {
                name: "file_integrity".into(),
                state: "degraded".into(),
                detail: "3 directories could not be read".into(),
            }],
            ..v1::Hello::default()
        }
    }

    #[test]
    fn an_ordinary_hello_passes_and_hostile_ones_are_refused_with_the_field() {
        assert_eq!(check(&hello()), Ok(()));
        let refused = |f: &dyn Fn(&mut v1::Hello)| {
            let mut h = hello();
            f(&mut h);
            check(&h).expect_err("refused").to_string()
        };
        assert!(refused(&|h| h.hostname = "evil\x1b[2Jhost".into()).contains("hostname"));
        let mut unnamed = hello();
        unnamed.hostname = String::new();
        unnamed.addresses = vec!["10.0.0.7/24".into(), "fe80::1/64".into()];
        assert_eq!(check(&unnamed), Ok(()));
        assert!(refused(&|h| h.addresses.push("10.0.0.1/33".into())).contains("addresses"));
        assert!(refused(&|h| h.hostname = "a".repeat(254)).contains("hostname"));
        assert!(refused(&|h| h.os = "Debian\u{202e}".into()).starts_with("os"));
        assert!(refused(&|h| h.kernel = "k".repeat(300)).starts_with("kernel"));
        assert!(refused(&|h| h.addresses.push("10.0.0.1; rm".into())).contains("addresses"));
        assert!(refused(&|h| h.sensors[0].detail = "\x1b]0;pwned\x07".into()).contains("sensor"));
        assert!(
            refused(&|h| {
                h.labels.insert("Site".into(), "x".into());
            })
            .contains("label key")
        );
    }

    #[test]
    fn any_system_hostname_becomes_one_that_passes() {
        for raw in ["web-07", "évil\u{1b}[31m", "", "a b/c", &"x".repeat(400)] {
            let mut h = hello();
            h.hostname = host_name(raw);
            assert_eq!(check(&h), Ok(()), "{raw:?} → {:?}", h.hostname);
        }
        assert_eq!(host_name("web-07"), "web-07");
        assert_eq!(host_name("a b"), "a_b");
    }
}
