//! Names inside an evidence bundle: the agent makes them ([`artifact_name`]),
//! the collector refuses a bundle holding any other ([`check_entry`]). A bundle
//! is an archive from a host that may be compromised, opened later on a
//! responder's workstation: no name may climb out of the directory it is
//! unpacked in, point elsewhere, or rewrite the terminal that lists it.

/// `name` as a safe relative path: components `""`, `.` and `..` become `_`,
/// and so does every control, bidi or zero-width character.
pub fn artifact_name(name: &str) -> String {
    let parts: Vec<String> = name
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            if c == "." || c == ".." {
                "_".to_owned()
            } else {
                c.chars()
                    .map(|ch| {
                        if crate::hello::is_unsafe_char(ch) || ch == '\\' {
                            '_'
                        } else {
                            ch
                        }
                    })
                    .collect()
            }
        })
        .collect();
    if parts.is_empty() {
        "_".to_owned()
    } else {
        parts.join("/")
    }
}

/// Checks one archive entry's name: `manifest.json`, or `artifacts/` followed by
/// a relative path with no empty, `.` or `..` component and no control, bidi or
/// zero-width character.
pub fn check_entry(name: &[u8]) -> Result<&str, String> {
    let shown = || crate::hello::inert_debug(&String::from_utf8_lossy(name));
    let text = std::str::from_utf8(name).map_err(|_| format!("{}: name is not UTF-8", shown()))?;
    if text == "manifest.json" {
        return Ok(text);
    }
    let Some(rest) = text.strip_prefix("artifacts/") else {
        return Err(format!(
            "{}: only manifest.json and artifacts/… may be in a bundle",
            shown()
        ));
    };
    let bad_component = rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..");
    if bad_component
        || text
            .chars()
            .any(|c| crate::hello::is_unsafe_char(c) || c == '\\')
    {
        return Err(format!("{}: not a safe relative name", shown()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_and_the_agent_never_makes_one() {
        for bad in [
            "../../escape.txt",
            "/etc/passwd",
            "artifacts/../../x",
            "artifacts//x",
            "artifacts/./x",
            "artifacts/a\x1b[2Jb",
            "artifacts/evil\u{202e}txt",
            "artifacts/",
            "other/file",
        ] {
            assert!(check_entry(bad.as_bytes()).is_err(), "{bad:?} accepted");
            let made = format!("artifacts/{}", artifact_name(bad));
            assert!(check_entry(made.as_bytes()).is_ok(), "{bad:?} → {made:?}");
        }
        assert!(check_entry(b"artifacts/\xff").is_err());
        assert_eq!(check_entry(b"manifest.json"), Ok("manifest.json"));
        assert_eq!(
            check_entry(b"artifacts/files/etc/passwd"),
            Ok("artifacts/files/etc/passwd")
        );
        assert_eq!(artifact_name("files/etc/passwd"), "files/etc/passwd");
        assert_eq!(artifact_name("files/../../x"), "files/_/_/x");
    }
}
