//! What the agent's unit tests share.

/// Skips the running test because this machine lacks `why` (root, a
/// program): says so where `cargo test` shows it (past its output capture).
/// Under CI (`CI` set), which has everything, a skip would hide a broken
/// machine: it fails the test instead.
pub(crate) fn skip(why: &str) {
    use std::io::Write;
    #[allow(
        clippy::disallowed_methods,
        reason = "the test runner's environment, not configuration"
    )]
    let ci = std::env::var_os("CI").is_some();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(!ci, "{test}: {why} — under CI nothing may be skipped");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
