//! The agent's configuration file (TOML). See `deploy/agent.example.toml` for
//! every key with its default. Relative paths are relative to the file.
//!
//! - [`raw`]: the file as serde reads it, with defaults;
//! - [`validate`]: each section checked, every problem reported at once;
//! - [`types`]: the validated configuration the agent runs with.

mod raw;
mod types;
mod validate;

use std::path::{Path, PathBuf};

use bannin_proto::config::{ConfigErrors, load_toml};

use raw::Raw;
pub use types::*;

impl AgentConfig {
    /// Loads and validates `path`, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let (raw, mut errors): (Raw, _) = load_toml(path)?;
        if let Some(problem) = config_permission_problem(path) {
            errors.push(problem);
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut config = Self::validate(raw, &base, errors, false)?;
        config.config_path = std::fs::canonicalize(path).ok();
        Ok(config)
    }

    /// Loads the sensors' settings for `bannin-agent check`, which runs without
    /// a collector: `[collector]`, `[tls]` and `[spool]` may be absent, and with
    /// no file every default applies.
    pub fn load_standalone(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let (raw, errors, base): (Raw, _, _) = match path {
            Some(p) => {
                let (raw, errors) = load_toml(p)?;
                (raw, errors, p.parent().unwrap_or(Path::new(".")).to_owned())
            }
            None => {
                let (raw, errors) = bannin_proto::config::parse_toml(
                    "",
                    ConfigErrors::new(Path::new("(defaults)")),
                )?;
                (raw, errors, PathBuf::from("."))
            }
        };
        let mut config = Self::validate(raw, &base, errors, true)?;
        config.config_path = path.and_then(|p| std::fs::canonicalize(p).ok());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_has_only_known_keys_of_the_right_types() {
        let text = include_str!("../../../deploy/agent.example.toml");
        let (raw, errors): (Raw, _) = bannin_proto::config::parse_toml(
            text,
            ConfigErrors::new(Path::new("agent.example.toml")),
        )
        .expect("parses");
        assert!(errors.problems.is_empty(), "{errors}");
        assert_eq!(raw.sensors.process.interval_secs, 2);
        assert!(raw.sensors.file_integrity.enabled);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "host_id = \"bad/id\"\nmystery = 1\n[collector]\naddress = \"nocolon\"\n\
             [link]\nheartbeat_secs = 0\n[sensors.net_listener]\nseverity = \"loud\"\nspeed = 3\n\
             [sensors.net_connection]\nmax_peers = 1\n[labels]\nSite = \"x\"\n",
        )
        .expect("write");
        let err = AgentConfig::load(&path).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "mystery",
            "sensors.net_listener.speed",
            "host_id",
            "collector.address",
            "[tls]",
            "[spool]",
            "heartbeat_secs",
            "severity",
            "max_peers",
            "label key \"Site\"",
            // Written 0644.
            "must not be readable by other users",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.problems.len(), 11, "{text}");
    }

    #[test]
    fn a_relative_root_is_relative_to_the_config_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "root = \"fixture\"\n[collector]\naddress = \"127.0.0.1:7443\"\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("mode");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.root, dir.path().join("fixture"));
        std::fs::write(&path, "root = \"/srv/image\"\n").expect("write");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.root, Path::new("/srv/image"));
    }

    #[test]
    fn several_collectors_are_tried_in_order_and_one_form_is_required() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        let write = |collector: &str| {
            std::fs::write(&path, format!("[collector]\n{collector}\n")).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("mode");
        };
        write("addresses = [\"a.example:7443\", \"b.example:7443\"]");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.link.addresses, ["a.example:7443", "b.example:7443"]);
        write("address = \"a.example:7443\"");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.link.addresses, ["a.example:7443"]);
        for (bad, says) in [
            (
                "address = \"a:1\"\naddresses = [\"b:1\"]",
                "address or addresses, not both",
            ),
            ("addresses = []", "address (or addresses"),
            (
                "addresses = [\"a:1\", \"nocolon\"]",
                "collector.addresses[1]",
            ),
        ] {
            write(bad);
            let err = AgentConfig::load_standalone(Some(&path)).expect_err(bad);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }
}
