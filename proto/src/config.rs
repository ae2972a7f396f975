//! Loading TOML configuration the same way on every side: unknown keys are
//! errors, and every problem is reported at once.
//!
//! This lives in the contract crate because it is the only crate agent and
//! collector share; it holds no policy, only the loading discipline.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Exit code of a binary refusing its configuration (`EX_CONFIG` is 78, but
/// Bannin follows linkerd and sysexits' `EX_USAGE`, 64, as the issue asks).
pub const EXIT_CONFIG: i32 = 64;

/// Every problem found in one configuration file.
#[derive(Debug)]
pub struct ConfigErrors {
    /// The file.
    pub path: PathBuf,
    /// Each problem, one line each.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem{}:",
            self.path.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// Collects problems for `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            problems: Vec::new(),
        }
    }

    /// Adds a problem.
    pub fn push(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// `Err(self)` if there are problems.
    pub fn into_result(self) -> Result<(), Self> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// Reads `path` as TOML into `T`.
///
/// An unreadable file or a syntax or type error is `Err`. Otherwise the value is
/// returned with a [`ConfigErrors`] already holding every unknown key, so the
/// caller can add its own validation problems and report them all at once.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, ConfigErrors), ConfigErrors> {
    let mut errors = ConfigErrors::new(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("cannot read the file: {e}"));
            return Err(errors);
        }
    };
    parse_toml(&text, errors)
}

/// Parses TOML text; `errors` names the source. See [`load_toml`].
pub fn parse_toml<T: DeserializeOwned>(
    text: &str,
    mut errors: ConfigErrors,
) -> Result<(T, ConfigErrors), ConfigErrors> {
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::parse(text);
    let parsed = match deserializer {
        Ok(d) => serde_ignored::deserialize(d, |path| unknown.push(path.to_string())),
        Err(e) => {
            errors.push(e.to_string().trim().to_owned());
            return Err(errors);
        }
    };
    for key in &unknown {
        errors.push(format!("unknown key `{key}`"));
    }
    match parsed {
        Ok(value) => Ok((value, errors)),
        Err(e) => {
            errors.push(e.to_string().trim().to_owned());
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let text = "name = \"x\"\ncolour = 1\n[inner]\nport = 1\nflavour = 2\n";
        let (_, err) =
            parse_toml::<Sample>(text, ConfigErrors::new(Path::new("t.toml"))).expect("parses");
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("colour"));
        assert!(err.to_string().contains("inner.flavour"));
    }

    #[test]
    fn type_errors_are_reported() {
        let text = "name = 5\n";
        let err = parse_toml::<Sample>(text, ConfigErrors::new(Path::new("t.toml")))
            .expect_err("bad type");
        assert_eq!(err.problems.len(), 1, "{err}");
    }
}
