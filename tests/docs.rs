//! The documentation is true and whole. Its numbers are the template's: a count written in
//! prose drifts as the template grows (the README said 44 alarms while the template had 51;
//! issue 24, item 10), so each count it states about the template is read back from the template
//! here. The README stays a front door (at most 300 lines, issue 28), and every relative link in
//! it, `docs/` and BENCHMARKS.md leads to a file that exists and, with an anchor, to a heading in it.

mod common;

use std::path::{Path, PathBuf};

use herald_local::Template;

/// The Markdown documents: the README, everything under `docs/`, BENCHMARKS.md.
fn documents() -> Vec<PathBuf> {
    let root = common::root();
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The README and `docs/`, as one text: where a count is written does not matter.
fn readme() -> String {
    documents()
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn template() -> Template {
    Template::load(&common::root().join("template.yaml")).unwrap()
}

/// The number written right after `marker` in the README.
fn stated(readme: &str, marker: &str) -> usize {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("the README no longer says `{marker}`"))
        + marker.len();
    let digits: String = readme[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{marker}` in the README"))
}

#[test]
fn the_readme_counts_the_alarms_and_functions_the_template_has() {
    let readme = readme();
    let template = template();
    let alarms = template.of_kind("AWS::CloudWatch::Alarm").count();
    assert_eq!(
        stated(&readme, "**Alarms** ("),
        alarms,
        "docs/operations.md \"Alarms (N\" against template.yaml"
    );
    let functions = template.of_kind("AWS::Serverless::Function").count();
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    ];
    assert!(
        readme.contains(&format!("the shop's {} Lambda functions", words[functions])),
        "the README's layout names {functions} functions"
    );
}

#[test]
fn the_readme_is_short_and_every_link_of_the_documentation_leads_somewhere() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "the README has {lines} lines; move detail into docs/"
    );
    let mut broken = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let path = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", document.display()));
            } else if !anchor.is_empty() && !anchors(&path).iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{}: {target} (no such heading)",
                    document.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of the Markdown links `[text](target)` outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces
/// as hyphens).
fn anchors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let title = heading.trim_start_matches('#').trim();
        out.push(
            title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect(),
        );
    }
    out
}
