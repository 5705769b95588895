//! The workspace's crates have no circles between the modules at their roots, and herald's front
//! is small: at most eight public modules.
//!
//! The graph is read from the source: an edge A → B for every path `crate::B…` (or a name the
//! root re-exports from B) in the code of module A, comments and `#[cfg(test)]` modules left out
//! (a test may use any module; doc links do not make a dependency). A module's children belong to
//! it: only edges between the root's modules count, and those must form no circle.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_PUBLIC_MODULES: usize = 8;

/// Every crate of the workspace's `crates/`: its `src/` and its root file.
const CRATES: &[(&str, &str)] = &[
    ("herald", "lib.rs"),
    ("herald-local", "lib.rs"),
    ("herald-ops", "lib.rs"),
    ("herald-cli", "main.rs"),
    ("shop", "lib.rs"),
    ("shop-cli", "lib.rs"),
];

struct Crate {
    src: PathBuf,
    root: &'static str,
}

impl Crate {
    fn named(name: &str) -> Crate {
        let (_, root) = CRATES.iter().find(|(n, _)| *n == name).expect("a crate");
        Crate {
            src: common::root().join("crates").join(name).join("src"),
            root,
        }
    }

    fn root_file(&self) -> String {
        std::fs::read_to_string(self.src.join(self.root)).expect("the crate's root file")
    }
}

/// The root's modules: (name, public).
fn root_modules(krate: &Crate) -> Vec<(String, bool)> {
    krate
        .root_file()
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (public, rest) = match line.strip_prefix("pub mod ") {
                Some(rest) => (true, rest),
                None => (
                    false,
                    line.strip_prefix("pub(crate) mod ")
                        .or_else(|| line.strip_prefix("mod "))?,
                ),
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            Some((name, public))
        })
        .collect()
}

/// Names the root re-exports, with the root module each comes from (`Herald` → `app`).
fn root_reexports(krate: &Crate) -> BTreeMap<String, String> {
    let lib = krate.root_file();
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = path.split("::").next().unwrap_or_default().to_string();
        let tail = path.rsplit("::").next().unwrap_or_default();
        let list = path
            .find('{')
            .map(|i| &path[i + 1..path.rfind('}').unwrap_or(path.len())])
            .unwrap_or(tail);
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            names.insert(name.to_string(), module.clone());
        }
    }
    names
}

/// The code of a file without comments and without its `#[cfg(test)]` modules.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut kept = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]" {
            // A test module: skip to its closing brace at the same indentation (or to the end of
            // the line for `mod tests;`).
            let Some(next) = lines.next() else { break };
            if next.trim_end().ends_with(';') {
                continue;
            }
            let indent = &next[..next.len() - next.trim_start().len()];
            let close = format!("{indent}}}");
            for inner in lines.by_ref() {
                if inner.trim_end() == close {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        kept.push(line.split(" // ").next().unwrap_or(line));
    }
    kept.join("\n")
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(path);
        }
    }
}

/// The root module a file belongs to (`producer/kinesis.rs` → `producer`), none for the root
/// files.
fn owner(krate: &Crate, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(&krate.src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    (!["lib.rs", "main.rs"].contains(&first)).then(|| first.trim_end_matches(".rs").to_string())
}

/// The first segment of every `crate::…` path in `code`, grouped imports included.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `$crate::`, `herald_crate::`...
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(ident(item));
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

/// Edges between the root's modules.
fn graph(krate: &Crate) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = root_modules(krate).into_iter().map(|(m, _)| m).collect();
    let reexports = root_reexports(krate);
    let mut files = Vec::new();
    rust_files(&krate.src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = owner(krate, &file) else {
            continue;
        };
        for first in crate_paths(&code(&file)) {
            let to = if modules.contains(&first) {
                Some(first)
            } else {
                reexports.get(&first).cloned()
            };
            if let Some(to) = to.filter(|to| *to != from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A circle in `edges`, as the path that closes it, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn heralds_root_has_at_most_eight_public_modules() {
    let public: Vec<String> = root_modules(&Crate::named("herald"))
        .into_iter()
        .filter(|(_, public)| *public)
        .map(|(m, _)| m)
        .collect();
    // The reader of this list must be able to count: an empty list means it read nothing.
    assert!(public.contains(&"envelope".to_string()), "{public:?}");
    assert!(
        public.len() <= MAX_PUBLIC_MODULES,
        "{} public modules at herald's root (at most {MAX_PUBLIC_MODULES}): {public:?}",
        public.len()
    );
}

#[test]
fn no_crate_has_a_circle_between_its_root_modules() {
    let edges = graph(&Crate::named("herald"));
    // The graph must see what is there: the producer uses the envelope and AWS, the wiring
    // (app) uses every role, and nothing below it uses the wiring.
    for (from, to) in [
        ("producer", "envelope"),
        ("producer", "aws"),
        ("app", "subscriber"),
        ("envelope", "aws"),
    ] {
        assert!(
            edges.get(from).is_some_and(|e| e.contains(to)),
            "expected {from} → {to} in {edges:#?}"
        );
    }
    for (name, _) in CRATES {
        let edges = graph(&Crate::named(name));
        assert!(
            edges.len() > 2,
            "{name}: the graph read nothing: {edges:#?}"
        );
        if let Some(found) = circle(&edges) {
            panic!(
                "{name}'s modules go in a circle: {}\n{edges:#?}",
                found.join(" → ")
            );
        }
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut edges = graph(&Crate::named("herald"));
    edges
        .entry("aws".into())
        .or_default()
        .insert("producer".into());
    let found = circle(&edges).expect("aws → producer → aws is a circle");
    assert_eq!(found.first(), found.last());
}
