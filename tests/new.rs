//! A pipeline of your own, outside this repository (issue 26): `herald new` scaffolds it into a
//! temporary directory, `herald add subscriber` adds a second subscriber, `herald local up` starts
//! it (installing its own emulator when it has none, as on a newcomer's machine: moto, or
//! LocalStack beside moto when `HERALD_EMULATOR=localstack`) and events go in
//! through the producer — a duplicate and a malformed one among them. Each effect happens exactly
//! once in both subscribers, the duplicate is skipped, the malformed event is rejected naming its
//! field. The event-sourced starting point (`herald new --event-sourced`) runs the same way:
//! commands over HTTP, a movement sent twice applied once, refusals naming their field, and
//! each appended event published to the subscriber once. Nothing of this repository is read but
//! the herald crates (the scaffold's dependency). Each project's own CI script passes as
//! scaffolded (fmt, clippy, its unit tests, its schema check).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_local::http::request;
use herald_local::moto::free_port;
use serde_json::json;

/// `herald local up`, stopped when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        // Ctrl-C first: the runner stops its functions and its emulator.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn herald(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(common::bin_dir().join("herald"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the herald binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herald {args:?}: {text}");
    text
}

/// Wait for `what` to hold, reading `log` (the runner's output) for the failure message.
async fn wait_for(what: &str, log: &Path, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; the runner said:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The project's own CI script (`.ci/run`: fmt, clippy, its unit tests, `herald schema check`)
/// passes as scaffolded.
fn project_ci_passes(dir: &Path) {
    let path = format!(
        "{}:{}",
        common::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(".ci/run")
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", common::root().join("target/herald-new"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}/.ci/run failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One scaffolded project at a time: each builds and starts an emulator and its functions.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `herald local up` in `dir` (its output in `base`), once it says everything is running: the
/// process and what it printed.
async fn local_up(base: &Path, dir: &Path) -> (Up, String) {
    // Started as a newcomer would: no emulator of ours in the environment (herald finds or
    // installs its own); the project's build in a target directory kept between runs.
    let log = base.join("up.log");
    let (url_port, moto_port, console_port) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let mut command = Command::new(common::bin_dir().join("herald"));
    command
        .args(["local", "up", "--url-port", &url_port.to_string()])
        .args(["--moto-port", &moto_port.to_string()])
        .args(["--console-port", &console_port.to_string()])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", common::root().join("target/herald-new"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(base.join("up.err")).unwrap());
    for (variable, _) in std::env::vars() {
        if variable.starts_with("AWS_ENDPOINT_URL") {
            command.env_remove(variable);
        }
    }
    let mut up = Up(command.spawn().unwrap());
    let output = || std::fs::read_to_string(&log).unwrap_or_default();
    // Building the project and installing the emulator take minutes on a new machine; a runner
    // that gave up says why at once.
    wait_for(
        "the pipeline is up",
        &log,
        Duration::from_secs(1200),
        || {
            if let Ok(Some(status)) = up.0.try_wait() {
                panic!(
                    "herald local up exited ({status}):\n{}{}",
                    output(),
                    std::fs::read_to_string(base.join("up.err")).unwrap_or_default()
                );
            }
            output().contains("Ctrl-C stops everything")
        },
    )
    .await;
    let text = output();
    assert!(
        text.contains(&format!("project     {}", dir.display())),
        "{text}"
    );
    // The emulator the switch names (`scripts/test --emulator localstack` passes it on).
    let localstack = std::env::var("HERALD_EMULATOR").as_deref() == Ok("localstack");
    assert_eq!(text.contains("LocalStack beside it"), localstack, "{text}");
    (up, text)
}

/// The URL the runner printed for `function`.
fn url_of(text: &str, function: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("url         ")?
                .strip_suffix(&format!(" → {function}"))
        })
        .unwrap_or_else(|| panic!("no {function} URL in:\n{text}"))
        .to_string()
}

/// The endpoint the runner printed for `service` (`AWS_ENDPOINT_URL_<SERVICE>`).
fn endpoint(text: &str, service: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("export AWS_ENDPOINT_URL_{service}="))
        })
        .unwrap_or_else(|| panic!("no {service} endpoint in:\n{text}"))
        .to_string()
}

/// `(eventId, applied)` of every item in the stack's table `id`.
async fn applied(dir: &Path, text: &str, id: &str) -> Vec<(String, String)> {
    let aws = herald_local::Endpoint::external(endpoint(text, "DYNAMODB"))
        .sdk_config()
        .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let stack = herald_ops::running_stack(dir, "herald").unwrap();
    let table = stack.reference(id).unwrap();
    let items = dynamodb.scan().table_name(table).send().await.unwrap();
    let mut applied: Vec<(String, String)> = items
        .items()
        .iter()
        .map(|item| {
            let s = |k: &str| match &item[k] {
                aws_sdk_dynamodb::types::AttributeValue::S(v)
                | aws_sdk_dynamodb::types::AttributeValue::N(v) => v.clone(),
                other => panic!("{other:?}"),
            };
            (s("eventId"), s("applied"))
        })
        .collect();
    applied.sort();
    applied
}

/// Wait until `subscriber`'s log (as Lambda writes it, JSON) holds every line part in `parts`.
async fn wait_for_log(dir: &Path, up_log: &Path, subscriber: &str, parts: &[String]) {
    let file = dir.join(format!(".herald/logs/herald/{subscriber}.log"));
    wait_for(
        &format!("{subscriber} logged {parts:?}"),
        up_log,
        Duration::from_secs(120),
        || {
            let lines = std::fs::read_to_string(&file).unwrap_or_default();
            parts.iter().all(|part| lines.contains(part.as_str()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_outside_the_repository_runs_with_each_effect_once() {
    let base = std::env::temp_dir().join(common::unique("herald-new"));
    std::fs::create_dir_all(&base).unwrap();
    assert!(!base.starts_with(common::root()), "outside the repository");
    herald(&base, &["new", "demo"]);
    let dir = base.join("demo");
    herald(
        &dir,
        &["add", "subscriber", "audit", "--types", "note_added"],
    );

    let _one = ONE_AT_A_TIME.lock().await;
    project_ci_passes(&dir);
    let (up, text) = local_up(&base, &dir).await;
    let log = base.join("up.log");
    let producer = url_of(&text, "producer");
    let note = |id: &str, subject: Option<&str>| {
        let mut event =
            json!({"id": id, "type": "note_added", "source": "demo/notes", "data": {"text": id}});
        if let Some(subject) = subject {
            event["subject"] = json!(subject);
        }
        event
    };
    let body = json!({"events": [
        note("e1", Some("n-1")),
        note("e1", Some("n-1")),
        note("e2", Some("n-2")),
        note("e3", None),
    ]});
    let (status, report) = request(
        "POST",
        &producer,
        Some(body.to_string().into_bytes()),
        &[("content-type", "application/json")],
    )
    .await
    .unwrap();
    assert_eq!(status, 207, "{report}");
    assert_eq!(report["results"][3]["status"], "rejected", "{report}");
    assert_eq!(
        report["results"][3]["error"]["field"], "subject",
        "{report}"
    );

    // Each subscriber applies e1 and e2 once and skips e1's second delivery.
    for subscriber in ["tally", "audit"] {
        let parts = [r#""delivery":"duplicate""#.to_string()]
            .into_iter()
            .chain(["e1", "e2"].map(|id| format!(r#""eventId":"{id}""#)))
            .collect::<Vec<_>>();
        wait_for_log(&dir, &log, subscriber, &parts).await;
    }
    let once = |id: &str| (id.to_string(), "1".to_string());
    for id in ["TallyTable", "AuditTable"] {
        assert_eq!(
            applied(&dir, &text, id).await,
            [once("e1"), once("e2")],
            "{id}"
        );
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_sourced_service_applies_each_movement_once() {
    let base = std::env::temp_dir().join(common::unique("herald-new-es"));
    std::fs::create_dir_all(&base).unwrap();
    herald(&base, &["new", "bank", "--event-sourced"]);
    let dir = base.join("bank");
    let _one = ONE_AT_A_TIME.lock().await;
    project_ci_passes(&dir);
    let (up, text) = local_up(&base, &dir).await;
    let log = base.join("up.log");
    let accounts = url_of(&text, "accounts");

    let post = |path: &str, body: serde_json::Value| {
        let url = format!("{}{path}", accounts.trim_end_matches('/'));
        async move {
            request(
                "POST",
                &url,
                Some(body.to_string().into_bytes()),
                &[("content-type", "application/json")],
            )
            .await
            .unwrap()
        }
    };
    let deposits = "/accounts/a-1/deposits";
    let withdrawals = "/accounts/a-1/withdrawals";
    let (status, answer) = post(deposits, json!({"movement": "m-1", "amount": 100})).await;
    assert_eq!((status, &answer["version"]), (201, &json!(1)), "{answer}");
    // The same movement again (a client's retry): its first outcome, nothing appended.
    let (status, answer) = post(deposits, json!({"movement": "m-1", "amount": 100})).await;
    assert_eq!(
        (status, &answer["replayed"]),
        (200, &json!(true)),
        "{answer}"
    );
    // Refused on the account's state, and on a bad field: each names the field.
    let (status, answer) = post(withdrawals, json!({"movement": "m-2", "amount": 500})).await;
    assert_eq!(
        (status, &answer["error"]["field"]),
        (409, &json!("amount")),
        "{answer}"
    );
    let (status, answer) = post(deposits, json!({"movement": "m-3", "amount": 0})).await;
    assert_eq!(
        (status, &answer["error"]["field"]),
        (400, &json!("amount")),
        "{answer}"
    );
    let (status, answer) = post(withdrawals, json!({"movement": "m-4", "amount": 30})).await;
    assert_eq!((status, &answer["version"]), (201, &json!(2)), "{answer}");

    // Published from the event store through the bus: the subscriber counts each appended
    // event once, and nothing else.
    let ids = ["a-1.m-1", "a-1.m-4"];
    let parts = ids.map(|id| format!(r#""eventId":"{id}""#));
    wait_for_log(&dir, &log, "tally", &parts).await;
    let once = |id: &str| (id.to_string(), "1".to_string());
    assert_eq!(
        applied(&dir, &text, "TallyTable").await,
        ids.map(once),
        "TallyTable"
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&base);
}
