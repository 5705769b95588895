//! What operators see: every function's log lines are JSON in Lambda's shape with the function,
//! the request id and — on lines about an event — the event's ids; every invocation writes a
//! valid CloudWatch EMF document; the log level follows `AWS_LAMBDA_LOG_LEVEL`; and `herald
//! trace` rebuilds one order's journey from those lines.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_local::moto::free_port;
use serde_json::Value;
use shop_cli::demo::workload::{self, Workload};

fn lines(dir: &std::path::Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let function = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{function}: not JSON ({e}): {l}"))
            })
            .collect();
        out.insert(function, parsed);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_request_and_event_ids_emf_is_valid_and_trace_follows_an_order() {
    let port = free_port().unwrap();
    let log_dir = common::root()
        .join(".herald/test-logs")
        .join(common::unique("obs"));
    let dir = log_dir.clone();
    let pipeline = common::pipeline("obs", |o| {
        o.runner.url_port = Some(port);
        o.runner.log_dir = Some(dir);
    })
    .await;
    let stack = pipeline.stack().clone();
    let catalog = workload::catalog(&common::root().join("infra/seed")).unwrap();
    let traffic = Workload {
        orders: 12,
        duplicate_ratio: 0.25,
        declined_every: 4,
        system_events: 1,
        malformed: false,
        seed: rand::random(),
        per_request: 5,
        data_events: 0,
    }
    .generate(&catalog);
    let endpoints = workload::Endpoints::of(&stack).unwrap();
    workload::send(&endpoints, &traffic).await.unwrap();
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(120))
        .await
        .unwrap();
    pipeline.stop().await;

    let all = lines(&log_dir);
    for function in [
        "producer",
        "router",
        "inventory",
        "payment",
        "email",
        "analytics",
        "ops",
    ] {
        let lines = all
            .get(function)
            .unwrap_or_else(|| panic!("{function} logged nothing"));
        let (emf, logs): (Vec<&Value>, Vec<&Value>) =
            lines.iter().partition(|l| l.get("_aws").is_some());
        assert!(!logs.is_empty() && !emf.is_empty(), "{function}");
        for line in &logs {
            for field in ["timestamp", "level", "message", "function", "requestId"] {
                assert!(
                    line[field].as_str().is_some_and(|v| !v.is_empty()),
                    "{function}: `{field}` missing in {line}"
                );
            }
            if line.get("eventId").is_some() {
                assert!(line["correlationId"].is_string(), "{function}: {line}");
                assert!(line["eventType"].is_string(), "{function}: {line}");
            }
        }
        // Every line about one event names it.
        for message in ["processed", "written to stream"] {
            for line in logs.iter().filter(|l| l["message"] == message) {
                assert!(line["eventId"].is_string(), "{function}: {line}");
            }
        }
        // EMF: the directive declares what the document carries.
        for doc in &emf {
            let aws = &doc["_aws"];
            assert!(
                aws["Timestamp"].as_i64().unwrap() > 1_700_000_000_000,
                "{doc}"
            );
            let directive = &aws["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "herald");
            assert_eq!(directive["Dimensions"], serde_json::json!([["function"]]));
            assert_eq!(doc["function"], function);
            let declared = directive["Metrics"].as_array().unwrap();
            for metric in declared {
                let name = metric["Name"].as_str().unwrap();
                assert!(
                    doc[name].is_number(),
                    "{function}: {name} has no value in {doc}"
                );
                assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()));
            }
            for name in ["ProcessingTime", "AwsRequests"] {
                assert!(
                    declared.iter().any(|m| m["Name"] == name),
                    "{function}: {name}"
                );
            }
        }
        assert_eq!(
            emf.iter().filter(|d| d["ColdStart"] == 1.0).count(),
            emf.iter().filter(|d| d["ColdStart"].is_number()).count(),
        );
    }
    // Batch functions count what they took in; the router's requests are its PublishBatch calls.
    let metrics = pipeline_metrics(&all);
    // The producer took the scheduler's event; the orders came through the order service, which
    // answered a retried order from its store: no duplicate reached inventory.
    assert_eq!(metrics["producer"]["EventsIn"], 1.0);
    assert!(metrics["router"]["AwsRequests"] > 0.0);
    assert_eq!(
        metrics["inventory"]["EventsOut"],
        traffic.orders.len() as f64
    );
    assert_eq!(
        metrics["inventory"]
            .get("Duplicates")
            .copied()
            .unwrap_or(0.0),
        0.0
    );

    // herald trace: an order through the order service's store, the publisher, the stream, the
    // topic, its subscribers and the follow-up its payment emitted.
    let order_id = traffic.orders[0]["id"].as_str().unwrap();
    let trace = herald_ops::trace::from_files(&log_dir, order_id).unwrap();
    let first = &trace.events[0];
    assert_eq!(first.id, order_id);
    let hops: Vec<(&str, &str)> = first
        .hops
        .iter()
        .map(|h| (h.function.as_str(), h.kind.as_str()))
        .collect();
    for expected in [
        ("orders", "store"),
        ("publisher", "stream"),
        ("router", "topic"),
        ("inventory", "applied"),
        ("payment", "applied"),
        ("analytics", "applied"),
    ] {
        assert!(hops.contains(&expected), "{expected:?} in {hops:?}");
    }
    let follow_up = trace
        .events
        .iter()
        .find(|e| e.causation_id == order_id)
        .expect("the payment's follow-up is in the trace");
    assert!(follow_up.hops.iter().any(|h| h.function == "analytics"));
    let tree = herald_ops::trace::render_tree(&trace);
    assert!(tree.contains(order_id) && tree.contains("└─ "), "{tree}");
    let mermaid = herald_ops::trace::render_mermaid(&trace);
    assert!(mermaid.contains("orders->>store"), "{mermaid}");
    assert!(mermaid.contains("publisher->>stream"), "{mermaid}");
    let _ = std::fs::remove_dir_all(&log_dir);
}

fn pipeline_metrics(all: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (function, lines) in all {
        for doc in lines.iter().filter(|l| l.get("_aws").is_some()) {
            for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
            {
                let name = metric["Name"].as_str().unwrap();
                *out.entry(function.clone())
                    .or_default()
                    .entry(name.into())
                    .or_default() += doc[name].as_f64().unwrap();
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_parameter_silences_info_but_not_metrics() {
    let log_dir = common::root()
        .join(".herald/test-logs")
        .join(common::unique("warn"));
    let dir = log_dir.clone();
    let pipeline = common::pipeline("warn", |o| {
        o.runner.mappings = false;
        o.runner.log_dir = Some(dir);
        o.stack.parameters.insert("LogLevel".into(), "WARN".into());
    })
    .await;
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("events/router/kinesis.json")).unwrap(),
    )
    .unwrap();
    // Two envelopes published, one poison record dead-lettered (a WARN line).
    pipeline.invoke("router", &event).await.unwrap();
    pipeline.stop().await;
    let router = &lines(&log_dir)["router"];
    let logs: Vec<&Value> = router.iter().filter(|l| l.get("_aws").is_none()).collect();
    assert!(logs.iter().all(|l| l["level"] != "INFO"), "{logs:?}");
    assert!(logs.iter().any(|l| l["level"] == "WARN"), "{logs:?}");
    assert!(logs.iter().all(|l| l["requestId"].is_string()), "{logs:?}");
    assert_eq!(router.iter().filter(|l| l.get("_aws").is_some()).count(), 1);
    let _ = std::fs::remove_dir_all(&log_dir);
}
