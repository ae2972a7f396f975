//! Host labels: short key/value pairs saying where a host is and what it is for
//! (`site = "Osaka, JP"`, `zone = "PCI"`, `role = "web"`, `owner = "shop"`).
//!
//! Agents report them from their config; operators set more on the collector.
//! Both sides check them with [`check`], so a label that one side accepts the
//! other accepts too.

use std::collections::BTreeMap;

/// Most labels a host carries.
pub const MAX_LABELS: usize = 32;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 63;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 256;

/// Label keys the scoping brief reads for a host's location.
pub const LOCATION_KEYS: &[&str] = &["site", "zone", "location", "city", "country", "region"];

/// Why a label is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Too many labels.
    #[error("{0} labels: at most {MAX_LABELS}")]
    TooMany(usize),
    /// The key is not `[a-z0-9][a-z0-9_.-]*`, or too long.
    #[error(
        "label key {0:?}: use 1 to {MAX_KEY_BYTES} lower-case letters, digits, '_', '.' or '-', starting with a letter or digit"
    )]
    Key(String),
    /// The value is too long or holds control characters.
    #[error(
        "label {0}: the value must be at most {MAX_VALUE_BYTES} bytes with no control characters"
    )]
    Value(String),
}

/// Checks one key.
pub fn check_key(key: &str) -> Result<(), LabelError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabelError::Key(key.to_owned()))
    }
}

/// Checks a set of labels.
pub fn check<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), LabelError> {
    let mut n = 0;
    for (key, value) in labels {
        n += 1;
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_control) {
            return Err(LabelError::Value(key.clone()));
        }
    }
    if n > MAX_LABELS {
        return Err(LabelError::TooMany(n));
    }
    Ok(())
}

/// `key=value` as typed on a command line.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))?;
    check_key(key).map_err(|e| e.to_string())?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The host's location as the labels tell it ("site=Osaka, JP; zone=PCI"), or "".
pub fn location(labels: &BTreeMap<String, String>) -> String {
    LOCATION_KEYS
        .iter()
        .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn good_labels_pass() {
        assert_eq!(
            check(&map(&[("site", "Osaka, JP"), ("zone", "PCI")])),
            Ok(())
        );
    }

    #[test]
    fn bad_keys_values_and_counts_are_refused() {
        for key in ["", "Site", "-x", "a b", "é", &"k".repeat(64)] {
            assert!(check(&map(&[(key, "v")])).is_err(), "{key:?}");
        }
        assert!(matches!(
            check(&map(&[("site", "a\nb")])),
            Err(LabelError::Value(_))
        ));
        let long = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(check(&map(&[("site", &long)])).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(check(&many), Err(LabelError::TooMany(MAX_LABELS + 1)));
    }

    #[test]
    fn assignments_and_location() {
        assert_eq!(
            parse_assignment("site=Osaka, JP"),
            Ok(("site".into(), "Osaka, JP".into()))
        );
        assert!(parse_assignment("site").is_err());
        assert_eq!(
            location(&map(&[("role", "web"), ("zone", "PCI"), ("site", "Osaka")])),
            "site=Osaka; zone=PCI"
        );
    }
}
