//! `herald new NAME` and `herald add subscriber NAME --types a,b`: a pipeline of your own, outside
//! this repository, on herald's building blocks.
//!
//! The project: one cargo binary for every function, the catalog in `src/events.rs`, a subscriber,
//! `template.yaml` on the blocks (copied into `infra/blocks/`), a schema and a sample, a README
//! and a CI script. Its `Cargo.lock` is herald's own, so it builds with the versions herald was
//! tested with.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const CARGO_TOML: &str = include_str!("../scaffold/Cargo.toml.tmpl");
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");
/// herald's own manifest: its build profiles go into the new project (see [`profiles`]).
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
const MAIN_RS: &str = include_str!("../scaffold/main.rs.tmpl");
const EVENTS_RS: &str = include_str!("../scaffold/events.rs.tmpl");
const SUBSCRIBER_RS: &str = include_str!("../scaffold/subscriber.rs.tmpl");
const TEMPLATE: &str = include_str!("../scaffold/template.yaml.tmpl");
const SUBSCRIBER_YAML: &str = include_str!("../scaffold/subscriber.yaml.tmpl");
const SCHEMA: &str = include_str!("../scaffold/schema.json.tmpl");
const REQUEST: &str = include_str!("../scaffold/request.json.tmpl");
const SAMPLES: &str = include_str!("../scaffold/samples.yaml.tmpl");
const README: &str = include_str!("../scaffold/README.md.tmpl");
const CI: &str = include_str!("../scaffold/ci.tmpl");
const GITIGNORE: &str = include_str!("../scaffold/gitignore.tmpl");
/// The event-sourced starting point (`herald new NAME --event-sourced`).
mod event_sourced {
    pub const ACCOUNT_RS: &str = include_str!("../scaffold/event-sourced/account.rs.tmpl");
    pub const SERVICE_RS: &str = include_str!("../scaffold/event-sourced/service.rs.tmpl");
    pub const EVENTS_RS: &str = include_str!("../scaffold/event-sourced/events.rs.tmpl");
    pub const MAIN_RS: &str = include_str!("../scaffold/event-sourced/main.rs.tmpl");
    pub const TEMPLATE: &str = include_str!("../scaffold/event-sourced/template.yaml.tmpl");
    pub const README: &str = include_str!("../scaffold/event-sourced/README.md.tmpl");
    pub const SAMPLES: &str = include_str!("../scaffold/event-sourced/samples.yaml.tmpl");
    pub const SAMPLE: &str = include_str!("../scaffold/event-sourced/sample.json.tmpl");
    pub const DEPOSIT: &str = include_str!("../scaffold/event-sourced/deposit.json.tmpl");
    pub const DEPOSITED: &str = include_str!("../scaffold/event-sourced/deposited.schema.json");
    pub const WITHDRAWN: &str = include_str!("../scaffold/event-sourced/withdrawn.schema.json");
}
const BLOCKS: [(&str, &str); 4] = [
    ("bus.yaml", include_str!("../../../infra/blocks/bus.yaml")),
    (
        "producer.yaml",
        include_str!("../../../infra/blocks/producer.yaml"),
    ),
    (
        "subscriber.yaml",
        include_str!("../../../infra/blocks/subscriber.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../../infra/blocks/service.yaml"),
    ),
];

/// What a new project starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Starter {
    /// A producer taking events over HTTP, the router, and a subscriber counting them.
    Pipeline,
    /// An event-sourced accounts service (commands over HTTP, an event store, its publisher),
    /// the router, and a subscriber counting the accounts' events.
    EventSourced,
}

/// Where the markers `herald add` inserts at sit.
const MODULES_MARKER: &str = "// herald add subscriber: modules\n";
const FUNCTIONS_MARKER: &str = "        // herald add subscriber: functions\n";
const RESOURCES_MARKER: &str = "  # herald add subscriber: resources\n";

/// How the new project depends on herald.
#[derive(Clone, Debug)]
pub enum HeraldSource {
    /// A local checkout's `crates/herald`.
    Path(PathBuf),
    /// A git repository holding herald's workspace.
    Git(String),
    /// A registry version.
    Version(String),
}

impl HeraldSource {
    /// The source this herald was built from, when it is still there; else the version.
    pub fn this_build() -> HeraldSource {
        let herald = Path::new(env!("CARGO_MANIFEST_DIR")).join("../herald");
        match herald.canonicalize() {
            Ok(path) if path.join("Cargo.toml").exists() => HeraldSource::Path(path),
            _ => HeraldSource::Version(env!("CARGO_PKG_VERSION").into()),
        }
    }

    fn dependency(&self) -> String {
        match self {
            HeraldSource::Path(path) => format!("{{ path = {:?} }}", path.display().to_string()),
            HeraldSource::Git(url) => format!("{{ git = {url:?} }}"),
            HeraldSource::Version(version) => format!("{version:?}"),
        }
    }

    /// The same with the in-memory ports (`test-util`), for `[dev-dependencies]`.
    fn test_dependency(&self) -> String {
        let features = r#"features = ["test-util"]"#;
        match self {
            HeraldSource::Version(version) => format!("{{ version = {version:?}, {features} }}"),
            other => other
                .dependency()
                .replacen(" }", &format!(", {features} }}"), 1),
        }
    }
}

/// Scaffold the project `name` in `dir` (which must not exist or be empty).
pub fn new(name: &str, dir: &Path, herald: &HeraldSource, starter: Starter) -> Result<()> {
    check_name("project", name, '-')?;
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let subscriber = "tally";
    let types: Vec<String> = match starter {
        Starter::Pipeline => vec!["note_added".into()],
        Starter::EventSourced => vec!["deposited".into(), "withdrawn".into()],
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{herald}}", &herald.dependency())
            .replace("{{herald_test}}", &herald.test_dependency())
            .replace("{{subscriber}}", subscriber)
            .replace("{{Subscriber}}", &camel(subscriber))
            .replace("{{types_rust}}", &rust_list(&types))
            .replace("{{types_json}}", &json_list(&types))
    };
    let subscriber_yaml = fill(SUBSCRIBER_YAML);
    let mut files: Vec<(String, String)> = vec![
        (
            "Cargo.toml".into(),
            fill(CARGO_TOML) + &profiles(WORKSPACE_MANIFEST, CARGO_LOCK),
        ),
        ("Cargo.lock".into(), CARGO_LOCK.into()),
        (format!("src/{subscriber}.rs"), fill(SUBSCRIBER_RS)),
        (".ci/run".into(), CI.into()),
        (".gitignore".into(), GITIGNORE.into()),
    ];
    let (main, events, template, readme) = match starter {
        Starter::Pipeline => {
            files.extend([
                ("events/schemas/note_added/v1.json".into(), SCHEMA.into()),
                ("events/producer/request.json".into(), fill(REQUEST)),
                ("events/samples.yaml".into(), SAMPLES.into()),
            ]);
            (MAIN_RS, EVENTS_RS, TEMPLATE, README)
        }
        Starter::EventSourced => {
            use event_sourced as es;
            files.extend([
                ("src/account.rs".into(), fill(es::ACCOUNT_RS)),
                ("src/service.rs".into(), fill(es::SERVICE_RS)),
                (
                    "events/schemas/deposited/v1.json".into(),
                    es::DEPOSITED.into(),
                ),
                (
                    "events/schemas/withdrawn/v1.json".into(),
                    es::WITHDRAWN.into(),
                ),
                ("events/samples/accounts.json".into(), fill(es::SAMPLE)),
                ("events/accounts/deposit.json".into(), es::DEPOSIT.into()),
                ("events/samples.yaml".into(), es::SAMPLES.into()),
            ]);
            (es::MAIN_RS, es::EVENTS_RS, es::TEMPLATE, es::README)
        }
    };
    files.extend([
        ("src/main.rs".into(), fill(main)),
        ("src/events.rs".into(), fill(events)),
        (
            "template.yaml".into(),
            fill(template).replace("{{subscriber_yaml}}", &subscriber_yaml),
        ),
        ("README.md".into(), fill(readme)),
    ]);
    for (file, text) in files.iter().map(|(f, t)| (f.clone(), t.clone())).chain(
        BLOCKS
            .iter()
            .map(|(f, t)| (format!("infra/blocks/{f}"), t.to_string())),
    ) {
        write(&dir.join(file), &text)?;
    }
    make_executable(&dir.join(".ci/run"))?;
    let sources: Vec<PathBuf> = files
        .iter()
        .filter(|(file, _)| file.ends_with(".rs"))
        .map(|(file, _)| dir.join(file))
        .collect();
    rustfmt(&sources);
    Ok(())
}

/// Format what was written as `cargo fmt` would (names of any length change line widths), so
/// the project's CI (`cargo fmt --check`) passes from the start. Best effort: without rustfmt the
/// code still compiles.
fn rustfmt(files: &[PathBuf]) {
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(files)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Add the subscriber `name` taking `types` to the project at `root`: its code, its
/// registration in `src/main.rs`, its block, table and policy in `template.yaml`.
pub fn add_subscriber(root: &Path, name: &str, types: &[String]) -> Result<()> {
    check_name("subscriber", name, '_')?;
    if types.is_empty() {
        bail!("--types: name at least one event type the subscriber takes");
    }
    for event_type in types {
        check_name("event type", event_type, '_')?;
    }
    let code = root.join(format!("src/{name}.rs"));
    if code.exists() {
        bail!(
            "{} exists: the project has a subscriber {name}",
            code.display()
        );
    }
    let package = package_name(root)?;
    let fill = |text: &str| {
        text.replace("{{subscriber}}", name)
            .replace("{{Subscriber}}", &camel(name))
            .replace("{{types_rust}}", &rust_list(types))
            .replace("{{types_json}}", &json_list(types))
            .replace("{{name}}", &package)
    };
    let main = root.join("src/main.rs");
    let main_text = read(&main)?;
    let template = root.join("template.yaml");
    let template_text = read(&template)?;
    for (file, text, marker) in [
        (&main, &main_text, MODULES_MARKER),
        (&main, &main_text, FUNCTIONS_MARKER),
        (&template, &template_text, RESOURCES_MARKER),
    ] {
        if !text.contains(marker) {
            bail!(
                "{} has no line `{}`: herald add inserts after it",
                file.display(),
                marker.trim()
            );
        }
    }
    let main_text = main_text
        .replacen(MODULES_MARKER, &format!("{MODULES_MARKER}mod {name};\n"), 1)
        .replacen(
            FUNCTIONS_MARKER,
            &format!(
                "{FUNCTIONS_MARKER}        \"{name}\" => herald.run_claimed({name}::{}::from_env(&aws)?).await,\n",
                camel(name)
            ),
            1,
        );
    let template_text = template_text.replacen(
        RESOURCES_MARKER,
        &format!("{RESOURCES_MARKER}{}", fill(SUBSCRIBER_YAML)),
        1,
    );
    let sample = root.join(format!("events/{name}/sqs.json"));
    let sample_text = serde_json::to_string_pretty(&sqs_sample(root, &package, &types[0]))?;
    write(&code, &fill(SUBSCRIBER_RS))?;
    write(&main, &main_text)?;
    write(&template, &template_text)?;
    write(&sample, &(sample_text + "\n"))?;
    rustfmt(&[code, main]);
    Ok(())
}

/// herald's `[profile.*]` sections, for the new project's manifest: the release profile is the
/// one BENCHMARKS.md measured (size, cold start), and with the same dev profile a debug build
/// compiles the registry crates exactly as herald's workspace does, so the two can share a target
/// directory (`CARGO_TARGET_DIR`) and reuse each other's builds. Sections for herald's own
/// workspace members (the shop) are left out: they name no package of the new project.
fn profiles(manifest: &str, lock: &str) -> String {
    let members = workspace_members(lock);
    let mut out = String::from(
        "\n# herald's build profiles (copied by `herald new`): the release profile is the one herald's\n\
         # BENCHMARKS.md measures; the dev profile matches herald's workspace, so both can share one\n\
         # target directory (CARGO_TARGET_DIR) and reuse each other's builds.\n",
    );
    let mut keep = false;
    for line in manifest.lines() {
        if let Some(header) = line.strip_prefix('[') {
            keep = header.starts_with("profile.")
                && !header
                    .split_once(".package.")
                    .map(|(_, package)| {
                        members
                            .contains(&package.trim_end_matches(']').trim_matches('"').to_string())
                    })
                    .unwrap_or(false);
            if keep && !out.ends_with("\n\n") {
                out.push('\n');
            }
        }
        // A comment above a section belongs to it: left out with the section before it, and
        // trailing comments of a kept section are not worth keeping apart from it.
        if keep && !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Packages in a `Cargo.lock` with no `source`: the workspace's own.
fn workspace_members(lock: &str) -> Vec<String> {
    lock.split("[[package]]")
        .filter(|package| !package.contains("\nsource = "))
        .filter_map(|package| {
            package
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .map(|name| name.trim_matches('"').to_string())
        })
        .collect()
}

/// An SQS event as the subscriber's queue delivers it (`herald invoke NAME events/NAME/sqs.json`):
/// one message whose body is an event of `event_type` as the router publishes it — one of the
/// project's declared samples when it has one of that type, else an event with empty data.
fn sqs_sample(root: &Path, package: &str, event_type: &str) -> serde_json::Value {
    use serde_json::{json, Value};
    let declared = herald_local::schemas::sample_events(&root.join("events"))
        .unwrap_or_default()
        .into_iter()
        .map(|(_, event)| event)
        .find(|event| event["type"] == event_type);
    let mut event = declared.unwrap_or_else(|| {
        json!({
            "id": format!("{event_type}-sample-1"),
            "type": event_type,
            "source": format!("{package}/samples"),
            "subject": "sample-1",
            "data": {},
        })
    });
    let id = event["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{event_type}-sample-1"));
    let defaults = [
        ("specversion", json!("1.0")),
        ("id", json!(id)),
        ("time", json!("2026-01-01T00:00:00.000Z")),
        ("datacontenttype", json!("application/json")),
        ("kind", json!("business")),
        ("schemaversion", json!(1)),
        ("correlationid", json!(id)),
    ];
    if let Value::Object(fields) = &mut event {
        for (field, value) in defaults {
            fields.entry(field).or_insert(value);
        }
    }
    let attribute = |value: &Value| {
        json!({
            "stringValue": match value { Value::String(s) => s.clone(), other => other.to_string() },
            "stringListValues": [], "binaryListValues": [], "dataType": "String",
        })
    };
    json!({
        "Records": [{
            "messageId": "00000000-0000-4000-8000-000000000001",
            "receiptHandle": "sample",
            "body": event.to_string(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1767225600000",
                "SenderId": "AIDASAMPLE",
                "ApproximateFirstReceiveTimestamp": "1767225600010",
            },
            "messageAttributes": {
                "type": attribute(&event["type"]),
                "kind": attribute(&event["kind"]),
                "source": attribute(&event["source"]),
                "schemaversion": attribute(&event["schemaversion"]),
                "correlationid": attribute(&event["correlationid"]),
            },
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{package}-queue"),
            "awsRegion": "us-east-1",
        }]
    })
}

/// The `name` of the project's package.
fn package_name(root: &Path) -> Result<String> {
    let manifest = read(&root.join("Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|line| {
            let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .context("Cargo.toml names no package")
}

/// Lowercase letters, digits and `separator`, starting with a letter (a cargo package, a Rust
/// module, an SNS filter value and a CloudFormation id all take it).
fn check_name(what: &str, name: &str, separator: char) -> Result<()> {
    let ok = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == separator);
    if !ok {
        bail!(
            "{what} name `{name}`: use lowercase letters, digits and `{separator}`, starting with a letter, at most 40 characters"
        );
    }
    Ok(())
}

/// `note_taker` → `NoteTaker` (a Rust type, a CloudFormation logical id).
fn camel(name: &str) -> String {
    name.split(['_', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rust_list(types: &[String]) -> String {
    types
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_list(types: &[String]) -> String {
    types
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of its own for one test's project, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("herald-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn names_are_checked_and_camel_cased() {
        assert_eq!(camel("note_taker"), "NoteTaker");
        assert_eq!(camel("iot"), "Iot");
        assert!(check_name("project", "iot-pipeline", '-').is_ok());
        let err = check_name("subscriber", "Alerts", '_')
            .unwrap_err()
            .to_string();
        assert!(err.contains("subscriber name `Alerts`"), "{err}");
        assert!(check_name("event type", "reading-recorded", '_').is_err());
    }

    #[test]
    fn the_event_sourced_starter_takes_a_subscriber_too() {
        let scratch = Scratch::new("new-es");
        let dir = &scratch.0;
        let herald = HeraldSource::Path("/opt/herald/crates/herald".into());
        new("bank", dir, &herald, Starter::EventSourced).unwrap();
        add_subscriber(dir, "audit", &["withdrawn".into()]).unwrap();
        let main = read(&dir.join("src/main.rs")).unwrap();
        for line in [
            "mod account;",
            "\"accounts\" =>",
            "\"publisher\" =>",
            "\"audit\" =>",
        ] {
            assert!(main.contains(line), "{line} missing:\n{main}");
        }
        let template = read(&dir.join("template.yaml")).unwrap();
        assert!(
            template.contains("Location: infra/blocks/service.yaml")
                && template.contains(r#"'{"type": ["deposited", "withdrawn"]}'"#),
            "{template}"
        );
        assert!(dir.join("infra/blocks/service.yaml").exists());
        let manifest = read(&dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(
                r#"herald = { path = "/opt/herald/crates/herald", features = ["test-util"] }"#
            ),
            "{manifest}"
        );
    }

    #[test]
    fn the_new_project_builds_with_heralds_profiles() {
        let profiles = profiles(WORKSPACE_MANIFEST, CARGO_LOCK);
        for section in [
            "[profile.dev]",
            "[profile.dev.package.\"*\"]",
            "[profile.release]",
            "[profile.release.package.aws-sdk-dynamodb]",
        ] {
            assert!(profiles.contains(section), "{section} missing:\n{profiles}");
        }
        assert!(!profiles.contains("package.shop]"), "{profiles}");
        assert!(workspace_members(CARGO_LOCK).contains(&"herald".to_string()));
        // Each section once (cargo refuses a repeated table); tests/new.rs builds the manifest.
        for line in profiles.lines().filter(|l| l.starts_with('[')) {
            assert_eq!(profiles.matches(&format!("{line}\n")).count(), 1, "{line}");
        }
    }

    #[test]
    fn a_new_project_takes_a_subscriber_added_later() {
        let scratch = Scratch::new("new");
        let dir = &scratch.0;
        new(
            "demo",
            dir,
            &HeraldSource::Version("0.1.0".into()),
            Starter::Pipeline,
        )
        .unwrap();
        add_subscriber(dir, "audit", &["note_added".into(), "note_removed".into()]).unwrap();
        let main = read(&dir.join("src/main.rs")).unwrap();
        assert!(
            main.contains("mod audit;")
                && main.contains("\"audit\" => herald.run_claimed(audit::Audit::from_env(&aws)?)"),
            "{main}"
        );
        let template = read(&dir.join("template.yaml")).unwrap();
        assert!(
            template.contains("  Audit:\n")
                && template.contains(r#"'{"type": ["note_added", "note_removed"]}'"#),
            "{template}"
        );
        assert!(read(&dir.join("src/audit.rs"))
            .unwrap()
            .contains("\"note_added\", \"note_removed\""));
        // Its sample: the project's declared note_added sample, as the queue delivers it.
        let sample: serde_json::Value =
            serde_json::from_str(&read(&dir.join("events/audit/sqs.json")).unwrap()).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(sample["Records"][0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["type"], "note_added", "{body}");
        assert_eq!(body["data"]["text"], "hello", "{body}");
        assert_eq!(body["specversion"], "1.0", "{body}");
        assert_eq!(
            sample["Records"][0]["messageAttributes"]["type"]["stringValue"],
            "note_added"
        );
        let again = add_subscriber(dir, "audit", &["note_added".into()]).unwrap_err();
        assert!(
            again.to_string().contains("has a subscriber audit"),
            "{again}"
        );
        assert!(new(
            "demo",
            dir,
            &HeraldSource::Version("0.1.0".into()),
            Starter::Pipeline
        )
        .is_err());
    }
}
