//! The repository's maps checked against the code: ARCHITECTURE.md's code map
//! names every source file (and only files that exist), and the collector's
//! modules import one another without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, as paths relative to the repository with `/`.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(repo()).expect("under the repository");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The code map's rows: the backticked paths of the first cell, and the row.
fn code_map() -> Vec<(Vec<String>, String)> {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("## Code map").expect("a code map");
    let section = &text[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let first = line.split('|').nth(1).unwrap_or_default();
            let paths = first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (paths, line.to_owned())
        })
        .collect()
}

/// Whether `row` names `name` as a word (not inside a longer name).
fn names(row: &str, name: &str) -> bool {
    row.match_indices(name).any(|(i, _)| {
        let before = row[..i].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn code_map_names_every_module() {
    let rows = code_map();
    assert!(rows.len() > 20, "the code map has {} rows", rows.len());
    let mut files = Vec::new();
    for krate in ["proto", "agent", "collector", "cli", "tests"] {
        rust_files(&repo().join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 100, "{} source files", files.len());
    let covered = |file: &str| {
        rows.iter().any(|(paths, row)| {
            paths.iter().any(|p| {
                if p == file {
                    return true;
                }
                let Some(rest) = p
                    .ends_with('/')
                    .then(|| file.strip_prefix(p.as_str()))
                    .flatten()
                else {
                    return false;
                };
                // A directory's row covers its own mod.rs and names each
                // file or subdirectory under it.
                match rest.split_once('/') {
                    None if rest == "mod.rs" => true,
                    None => names(row, rest),
                    Some((dir, _)) => names(row, &format!("{dir}/")),
                }
            })
        })
    };
    let missing: Vec<&String> = files.iter().filter(|f| !covered(f)).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name these files: {missing:#?}"
    );
    // And it names nothing that is not there.
    let gone: Vec<&String> = rows
        .iter()
        .flat_map(|(paths, _)| paths)
        .filter(|p| !repo().join(p).exists())
        .collect();
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md's code map names paths that do not exist: {gone:#?}"
    );
}

/// The top-level modules of `crate::` each file of `text` refers to.
fn references(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    // Unit tests may reach anywhere; comments name modules without using them.
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let after = &code[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the names at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && !c.is_whitespace() => {
                        found.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(after));
        }
    }
    found.retain(|m| modules.contains(m));
    found
}

#[test]
fn collector_modules_import_without_cycles() {
    let src = repo().join("collector/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top = |file: &str| -> String {
        let rel = file.strip_prefix("collector/src/").expect("under src");
        let first = rel.split('/').next().unwrap_or_default();
        first.trim_end_matches(".rs").to_owned()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    assert!(modules.len() > 20, "{modules:?}");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = top(file);
        if !modules.contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(repo().join(file)).expect("source");
        let mut refs = references(&text, &modules);
        refs.remove(&module);
        graph.entry(module).or_default().extend(refs);
    }
    // Depth-first search; a back edge closes a cycle, reported as its path.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_owned());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(m.to_owned()) {
            return;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "the collector's modules import in cycles: {cycles:#?}"
    );
    // The check sees real edges (it would pass vacuously on none).
    assert!(graph["journal"].contains("op") && graph["op"].contains("ingest"));
}

/// Outside the journal's two implementations, cluster mode is named only by
/// configuration (`config.rs`), the composition root (`lib.rs`, `main.rs`)
/// and the status RPC (`operator_api/cluster.rs`): handlers, the store and
/// everything else go through `journal::Journal`.
#[test]
fn only_the_journal_configuration_and_status_name_cluster_mode() {
    let mut files = Vec::new();
    rust_files(&repo().join("collector/src"), &mut files);
    let allowed = [
        "collector/src/config.rs",
        "collector/src/journal.rs",
        "collector/src/lib.rs",
        "collector/src/main.rs",
        "collector/src/operator_api/cluster.rs",
    ];
    let mut naming = Vec::new();
    for file in &files {
        if file.starts_with("collector/src/cluster/") || allowed.contains(&file.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(repo().join(file)).expect("source");
        let text = text
            .find("#[cfg(test)]\nmod tests")
            .map_or(text.as_str(), |i| &text[..i]);
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        if code.contains("crate::cluster") || code.contains("Arc<Cluster>") {
            naming.push(file.clone());
        }
    }
    assert!(
        naming.is_empty(),
        "these files name cluster mode instead of asking the journal: {naming:#?}"
    );
    // The check reads real code: the journal does name it.
    let journal =
        std::fs::read_to_string(repo().join("collector/src/journal.rs")).expect("journal");
    assert!(journal.contains("crate::cluster"));
}

/// Commands are typed end to end: outside the one reader of records written
/// by the previous release (`collector/src/store/legacy.rs`), no shipped code
/// compares a command's name as text or spells an argument by its text name.
#[test]
fn no_shipped_code_compares_a_command_verb_as_text() {
    let names = [
        "ping", "isolate", "release", "triage", "snapshot", "relearn",
    ];
    let text_arguments = [
        "\"confirm_local\"",
        "\"allow\"",
        "\"files\"",
        "\"question\"",
    ];
    let mut files = Vec::new();
    for dir in ["collector/src", "agent/src", "cli/src", "proto/src"] {
        rust_files(&repo().join(dir), &mut files);
    }
    let mut offending = Vec::new();
    for file in &files {
        if file == "collector/src/store/legacy.rs" {
            continue;
        }
        let text = std::fs::read_to_string(repo().join(file)).expect("source");
        let text = text
            .find("#[cfg(test)]\nmod tests")
            .map_or(text.as_str(), |i| &text[..i]);
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let compares = names.iter().any(|name| {
                let quoted = format!("\"{name}\"");
                [
                    format!("== {quoted}"),
                    format!("!= {quoted}"),
                    format!("{quoted} =>"),
                    format!("{quoted} |"),
                ]
                .iter()
                .any(|pattern| code.contains(pattern.as_str()))
            });
            let spells = text_arguments.iter().any(|a| {
                code.contains(&format!("insert({a}")) || code.contains(&format!("get({a}"))
            });
            if compares || spells {
                offending.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "commands are compared or built as text: {offending:#?}"
    );
    // The check reads real code: the legacy reader does compare verbs.
    let legacy = std::fs::read_to_string(repo().join("collector/src/store/legacy.rs"))
        .expect("legacy reader");
    assert!(legacy.contains("\"isolate\" =>"));
}
