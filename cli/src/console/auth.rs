//! Who may use the console: a one-time login token printed on the terminal,
//! exchanged for a session cookie; a per-session CSRF token on every change;
//! and a `Host` header check against DNS rebinding.
//!
//! The model is Jupyter's (a token in the printed URL) made one-time, with the
//! session held only in this process: restarting `bannin console` logs every
//! browser out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// The session cookie's name.
pub const COOKIE: &str = "bannin_console";

/// A session idle this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// At most this many live sessions (each login link makes one).
const MAX_SESSIONS: usize = 64;

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Sent back with every form and `fetch` that changes something.
    pub csrf: String,
    last_used: Instant,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` header is not this console's own address.
    #[error(
        "the Host header {0:?} is not this console's address (a page on another site tried to reach it)"
    )]
    WrongHost(String),
    /// No session cookie, or one this console did not issue.
    #[error("not logged in: open the login URL `bannin console` printed")]
    NoSession,
    /// The login token is wrong or was used already.
    #[error("this login link is wrong or was used already; restart `bannin console` for a new one")]
    BadLogin,
    /// A change without the session's CSRF token.
    #[error("the request did not carry this session's CSRF token; reload the page and try again")]
    Csrf,
}

/// The console's sessions and its one-time login token.
#[derive(Debug)]
pub struct Auth {
    login: Mutex<Option<String>>,
    sessions: Mutex<HashMap<String, Session>>,
    hosts: Vec<String>,
}

impl Auth {
    /// A console reachable as `hosts` (`127.0.0.1:8443`, `localhost:8443`…),
    /// with a fresh login token.
    pub fn new(hosts: Vec<String>) -> Self {
        Self {
            login: Mutex::new(Some(secret())),
            sessions: Mutex::new(HashMap::new()),
            hosts,
        }
    }

    /// The login token, until it is used.
    pub fn login_token(&self) -> Option<String> {
        self.login.lock().ok().and_then(|l| l.clone())
    }

    /// A new login token (the old one, used or not, stops working).
    pub fn renew_login(&self) -> String {
        let token = secret();
        if let Ok(mut l) = self.login.lock() {
            *l = Some(token.clone());
        }
        token
    }

    /// Checks the `Host` header (DNS rebinding: a name that resolves to
    /// 127.0.0.1 still sends its own name).
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        let host = host.unwrap_or_default();
        if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err(Refusal::WrongHost(host.to_owned()))
        }
    }

    /// Exchanges the one-time login token for a session id.
    pub fn log_in(&self, token: &str) -> Result<String, Refusal> {
        let mut login = self.login.lock().map_err(|_| Refusal::BadLogin)?;
        match login.as_deref() {
            Some(expected) if same_secret(expected, token) => *login = None,
            _ => return Err(Refusal::BadLogin),
        }
        let id = secret();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                id.clone(),
                Session {
                    csrf: secret(),
                    last_used: Instant::now(),
                },
            );
        }
        Ok(id)
    }

    /// The session of a `Cookie` header, touched.
    pub fn session(&self, cookie_header: Option<&str>) -> Result<Session, Refusal> {
        let id = cookie_header
            .and_then(|h| cookie(h, COOKIE))
            .ok_or(Refusal::NoSession)?;
        let mut sessions = self.sessions.lock().map_err(|_| Refusal::NoSession)?;
        let key = sessions
            .keys()
            .find(|k| same_secret(k, id))
            .cloned()
            .ok_or(Refusal::NoSession)?;
        let session = sessions.get_mut(&key).ok_or(Refusal::NoSession)?;
        if session.last_used.elapsed() >= IDLE {
            sessions.remove(&key);
            return Err(Refusal::NoSession);
        }
        session.last_used = Instant::now();
        Ok(session.clone())
    }

    /// Ends a session (log out).
    pub fn log_out(&self, cookie_header: Option<&str>) {
        if let (Some(id), Ok(mut sessions)) = (
            cookie_header.and_then(|h| cookie(h, COOKIE)),
            self.sessions.lock(),
        ) {
            sessions.retain(|k, _| !same_secret(k, id));
        }
    }
}

/// Checks a change's CSRF token against its session.
pub fn check_csrf(session: &Session, sent: Option<&str>) -> Result<(), Refusal> {
    match sent {
        Some(t) if same_secret(&session.csrf, t) => Ok(()),
        _ => Err(Refusal::Csrf),
    }
}

/// The `Set-Cookie` value for a new session: HttpOnly, SameSite=Strict, the whole site.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(vec!["127.0.0.1:8443".into(), "localhost:8443".into()])
    }

    #[test]
    fn the_login_token_works_once() {
        let a = auth();
        let token = a.login_token().unwrap();
        assert_eq!(a.log_in("wrong"), Err(Refusal::BadLogin));
        let id = a.log_in(&token).unwrap();
        assert_eq!(a.log_in(&token), Err(Refusal::BadLogin), "one time only");
        let header = format!("other=1; {COOKIE}={id}");
        assert!(a.session(Some(&header)).is_ok());
        let renewed = a.renew_login();
        assert_ne!(renewed, token);
        assert!(a.log_in(&renewed).is_ok());
    }

    #[test]
    fn sessions_need_the_exact_cookie_and_end_at_log_out() {
        let a = auth();
        let id = a.log_in(&a.login_token().unwrap()).unwrap();
        assert_eq!(a.session(None).unwrap_err(), Refusal::NoSession);
        assert_eq!(
            a.session(Some(&format!("{COOKIE}={id}x"))).unwrap_err(),
            Refusal::NoSession
        );
        assert_eq!(
            a.session(Some(&format!("x{COOKIE}={id}"))).unwrap_err(),
            Refusal::NoSession
        );
        let header = format!("{COOKIE}={id}");
        a.log_out(Some(&header));
        assert_eq!(a.session(Some(&header)).unwrap_err(), Refusal::NoSession);
    }

    #[test]
    fn csrf_is_the_sessions_own_token() {
        let a = auth();
        let one = a.log_in(&a.login_token().unwrap()).unwrap();
        let two = a.log_in(&a.renew_login()).unwrap();
        let one = a.session(Some(&format!("{COOKIE}={one}"))).unwrap();
        let two = a.session(Some(&format!("{COOKIE}={two}"))).unwrap();
        assert!(check_csrf(&one, Some(&one.csrf)).is_ok());
        assert_eq!(check_csrf(&one, Some(&two.csrf)), Err(Refusal::Csrf));
        assert_eq!(check_csrf(&one, None), Err(Refusal::Csrf));
        assert_eq!(check_csrf(&one, Some("")), Err(Refusal::Csrf));
    }

    #[test]
    fn only_the_consoles_own_host_names_are_accepted() {
        let a = auth();
        assert!(a.check_host(Some("127.0.0.1:8443")).is_ok());
        assert!(a.check_host(Some("LOCALHOST:8443")).is_ok());
        for bad in [
            None,
            Some("evil.example:8443"),
            Some("127.0.0.1:8444"),
            Some("127.0.0.1"),
        ] {
            assert!(a.check_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie("abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    }
}
