//! The `herald` command as scripts use it (issue 25, conventions): `--output json` on the read
//! commands, parsed here field by field; exit codes (0 done, 1 failed, 2 done with something
//! refused) as `herald --help` documents them; and a clear error outside a project.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use herald_local::moto::free_port;
use herald_ops::inspect::put_raw;
use serde_json::{json, Value};

fn herald(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin_dir().join("herald"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the herald binary runs")
}

/// Its stdout as the one JSON document `--output json` promises.
fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "not one JSON document ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_help_documents_the_exit_codes() {
    let out = herald(&common::root(), &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for line in ["Exit codes:", "0  done", "1  failed", "2  done, but"] {
        assert!(help.contains(line), "{line} in {help}");
    }
    assert!(help.contains("--output"), "{help}");
}

/// `herald env --explain` is the environment contract a newcomer writes a template from: per
/// kind of function, what it reads, required or with its default — anywhere, project or not.
#[test]
fn env_explain_lists_what_each_kind_of_function_reads() {
    let nowhere = std::env::temp_dir().join(common::unique("explain"));
    std::fs::create_dir_all(&nowhere).unwrap();
    let out = herald(&nowhere, &["env", "--explain", "--output", "json"]);
    assert!(out.status.success(), "{out:?}");
    let contract = json_of(&out);
    let role = |name: &str| -> Vec<(String, bool)> {
        contract["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == name)
            .unwrap_or_else(|| panic!("no {name} in {contract}"))["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["required"] == true,
                )
            })
            .collect()
    };
    let router = role("router");
    assert!(router.contains(&("TOPIC_ARN".into(), true)), "{router:?}");
    assert!(
        router.contains(&("DEAD_LETTER_QUEUE_URL".into(), true)),
        "{router:?}"
    );
    assert!(
        router.contains(&("RECORD_MAX_AGE_SECONDS".into(), false)),
        "{router:?}"
    );
    // A keyed subscriber's IDEMPOTENCY_TABLE is optional (its dead-letter ledger), a
    // transactional one's required.
    let keyed = role("subscriber (keyed)");
    assert!(
        keyed.contains(&("IDEMPOTENCY_TABLE".into(), false)),
        "{keyed:?}"
    );
    let transactional = role("subscriber (transactional, claimed)");
    assert!(transactional.contains(&("IDEMPOTENCY_TABLE".into(), true)));
    assert_eq!(role("producer"), [("STREAM_NAME".to_string(), true)]);
    let text = herald(&nowhere, &["env", "--explain"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("TOPIC_ARN") && text.contains("required"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&nowhere);
}

#[test]
fn outside_a_project_it_says_so_and_fails() {
    let nowhere = std::env::temp_dir().join(common::unique("no-project"));
    std::fs::create_dir_all(&nowhere).unwrap();
    let out = herald(&nowhere, &["dlq", "list", "--stack", "prod"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no herald project here") && err.contains("template.yaml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&nowhere);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_send_and_trace_answer_in_json_with_their_exit_codes() {
    let port = free_port().unwrap();
    let root = common::root();
    let name = common::unique("cli");
    let logs = root.join(".herald/logs").join(&name);
    let dir = logs.clone();
    let pipeline = common::pipeline("cli", |o| {
        o.stack.name = name.clone();
        o.runner.url_port = Some(port);
        o.runner.log_dir = Some(dir);
    })
    .await;
    let stack = pipeline.stack().clone();
    // What `herald local up` records, so the command finds the stack by name.
    stack
        .save(&herald_ops::state_file(&root, &stack.name))
        .unwrap();
    let aws = common::aws().await;

    // send: accepted events, exit 0, the producer's report as JSON.
    let good = herald(
        &root,
        &[
            "send",
            "events/producer/direct-invoke.json",
            "--stack",
            &name,
            "--output",
            "json",
        ],
    );
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let report = json_of(&good);
    assert_eq!(report["accepted"], 2, "{report}");
    let sample_id = report["results"][0]["id"].as_str().unwrap().to_string();

    // send with one event refused: done, but refused — exit 2, the report still on stdout.
    let mixed = std::env::temp_dir().join(format!("{name}-mixed.json"));
    std::fs::write(
        &mixed,
        json!([
            {"type": "job_failed", "source": "herald/scheduler", "kind": "system",
             "data": {"job": "export", "error": "timed out", "attempt": 1}},
            {"type": "payment_succeeded", "source": "herald/payment", "subject": "o-1", "data": {}}
        ])
        .to_string(),
    )
    .unwrap();
    let refused = herald(
        &root,
        &[
            "send",
            mixed.to_str().unwrap(),
            "--stack",
            &name,
            "--output",
            "json",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let report = json_of(&refused);
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["results"][1]["error"]["field"], "type", "{report}");
    let _ = std::fs::remove_file(&mixed);

    // A poison record: the router dead-letters it; `dlq list` and `dlq show` say so in JSON.
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &[b"{ not an event".to_vec()],
    )
    .await
    .unwrap();
    pipeline
        .wait_idle(Duration::from_millis(1000), Duration::from_secs(180))
        .await
        .unwrap();
    let list = herald(
        &root,
        &["dlq", "list", "--stack", &name, "--output", "json"],
    );
    assert_eq!(list.status.code(), Some(0), "{list:?}");
    let list = json_of(&list);
    assert_eq!(list["stack"], name.as_str());
    let queues = list["queues"].as_array().unwrap();
    let router = queues
        .iter()
        .find(|q| q["queue"] == "BusRouterDeadLetterQueue")
        .unwrap_or_else(|| panic!("the router's DLQ in {list}"));
    assert_eq!(router["messages"], 1, "{router}");
    assert!(router["oldestSeconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        router["source"],
        json!({"kind": "stream", "logicalId": "BusEventStream"})
    );
    assert!(router["url"].as_str().unwrap().starts_with("http"));
    for queue in queues {
        for field in ["queue", "url", "messages", "oldestSeconds", "source"] {
            assert!(queue.get(field).is_some(), "{field} in {queue}");
        }
    }
    let show = herald(
        &root,
        &[
            "dlq", "show", "router", "--stack", &name, "--output", "json",
        ],
    );
    assert_eq!(show.status.code(), Some(0), "{show:?}");
    let show = json_of(&show);
    assert_eq!(show["queue"], "BusRouterDeadLetterQueue");
    let letter = &show["messages"][0];
    assert_eq!(letter["stage"], "router", "{letter}");
    assert!(
        letter["body"].as_str().unwrap().contains("not an event"),
        "{letter}"
    );
    assert!(!letter["reason"].as_str().unwrap().is_empty());
    assert!(letter["receives"].as_u64().is_some() && letter["messageId"].is_string());

    // doctor on the local stack: the letter is its one problem (exit 2); what the runner plays
    // instead of AWS is skipped, saying so; the tables have what the template asks for.
    let doctor = herald(&root, &["doctor", "--stack", &name, "--output", "json"]);
    assert_eq!(doctor.status.code(), Some(2), "{doctor:?}");
    let doctor: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(
        (doctor["deployed"].as_bool(), doctor["healthy"].as_bool()),
        (Some(false), Some(false))
    );
    let findings = doctor["findings"].as_array().unwrap();
    let problems: Vec<&Value> = findings
        .iter()
        .filter(|f| f["status"] == "problem")
        .collect();
    assert_eq!(problems.len(), 1, "{doctor}");
    assert_eq!(
        (&problems[0]["check"], &problems[0]["resource"]),
        (&json!("deadLetters"), &json!("BusRouterDeadLetterQueue"))
    );
    assert_eq!(
        problems[0]["fix"],
        format!("herald dlq show BusRouterDeadLetterQueue --stack {name}").as_str()
    );
    for check in ["mapping", "iteratorAge", "alarm", "archive"] {
        assert!(
            findings
                .iter()
                .any(|f| f["check"] == check && f["status"] == "skipped"),
            "{check} skipped locally: {doctor}"
        );
    }
    for check in ["ttl", "pointInTimeRecovery"] {
        assert!(
            findings
                .iter()
                .any(|f| f["check"] == check && f["status"] == "ok"),
            "{check}: {doctor}"
        );
    }

    // trace: the accepted sample's journey, as JSON, from the functions' CloudWatch Logs
    // groups (every line logged so far sent there).
    pipeline.flush_logs().await;
    let trace = herald(
        &root,
        &["trace", &sample_id, "--stack", &name, "--output", "json"],
    );
    assert_eq!(trace.status.code(), Some(0), "{trace:?}");
    let trace = json_of(&trace);
    assert_eq!(trace["events"][0]["id"], sample_id.as_str(), "{trace}");
    let hops = trace["events"][0]["hops"].as_array().unwrap();
    assert!(
        hops.iter()
            .any(|h| h["function"] == "producer" && h["kind"] == "stream"),
        "{trace}"
    );
    assert!(hops
        .iter()
        .all(|h| h["time"].is_string() && h["detail"].is_string()));

    // A stack nobody started: failed, exit 1, with what to do.
    let missing = herald(&root, &["dlq", "list", "--stack", "no-such-stack"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("herald local up"));

    pipeline.stop().await;
    let _ = std::fs::remove_file(herald_ops::state_file(&root, &name));
    let _ = std::fs::remove_dir_all(&logs);
}
