//! The local runner's event source mappings, one setting at a time, with the scripted probe
//! function (`tests/probe`) against the emulator. Each test writes a small template with the
//! setting under test, brings it up as its own stack, and reads back what the probe recorded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use herald_local::LocalPipeline;
use herald_ops::inspect::peek;
use serde_json::{json, Value};

/// The probe's table, stream or queue, and function, plus `mapping` as the mapping's properties.
fn template(source: &str, mapping: &str, function: &str) -> PathBuf {
    let source = match source {
        "kinesis" => "  Source:\n    Type: AWS::Kinesis::Stream\n    Properties:\n      ShardCount: 1\n".to_string(),
        queue => format!(
            "  DeadLetters:\n    Type: AWS::SQS::Queue\n  Source:\n    Type: AWS::SQS::Queue\n    Properties:\n{queue}"
        ),
    };
    let text = format!(
        r#"AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  ProbeTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{ AttributeName: pk, AttributeType: S }}]
      KeySchema: [{{ AttributeName: pk, KeyType: HASH }}]
  FailureQueue:
    Type: AWS::SQS::Queue
{source}  ProbeFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: probe
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      LoggingConfig:
        LogFormat: JSON
{function}      Environment:
        Variables:
          PROBE_TABLE: !Ref ProbeTable
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref ProbeFunction
      EventSourceArn: !GetAtt Source.Arn
{mapping}"#
    );
    let dir = std::env::temp_dir().join("herald-esm-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.yaml", common::unique("esm")));
    std::fs::write(&path, text).unwrap();
    path
}

fn indent(lines: &str) -> String {
    lines.lines().map(|l| format!("      {l}\n")).collect()
}

async fn start(template: PathBuf, concurrency: usize) -> LocalPipeline {
    common::pipeline("esm", |o| {
        o.template = template;
        o.runner.concurrency = concurrency;
    })
    .await
}

/// Provision `template`, put `records` on its stream, wait `pause`, then start the pipeline:
/// for settings about records that were there before the mapping started.
async fn start_after_records(
    template: PathBuf,
    records: &[Value],
    pause: Duration,
) -> LocalPipeline {
    let aws = common::aws().await;
    let name = common::unique("before");
    let options = herald_local::StackOptions {
        name: name.clone(),
        ..Default::default()
    };
    let stack = herald_local::provision(
        &herald_local::Template::load(&template).unwrap(),
        &options,
        &aws,
        &common::endpoint().await.url,
    )
    .await
    .unwrap();
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    for record in records {
        kinesis
            .put_record()
            .stream_name(stack.reference("Source").unwrap())
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new(record.to_string()))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(pause).await;
    common::pipeline("unused", |o| {
        o.template = template;
        o.stack.name = name;
    })
    .await
}

/// One probe invocation, as recorded.
#[derive(Debug, Clone)]
struct Invocation {
    at: u128,
    ns: Vec<u64>,
    keys: Vec<String>,
    memory: u64,
    pid: u64,
    receives: Vec<String>,
    /// On a tumbling window: the window's start, and the `ns` of the state passed in.
    window_start: Option<String>,
    state_in: Vec<u64>,
}

/// A window's final invocation, as recorded: its start and final state's `ns`.
#[derive(Debug, Clone, PartialEq)]
struct Closed {
    start: String,
    ns: Vec<u64>,
    early: bool,
}

struct Probe {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Probe {
    async fn of(pipeline: &LocalPipeline) -> Probe {
        Probe {
            dynamodb: aws_sdk_dynamodb::Client::new(&common::aws().await),
            table: pipeline
                .stack()
                .reference("ProbeTable")
                .unwrap()
                .to_string(),
        }
    }

    async fn invocations(&self) -> Vec<Invocation> {
        let items = herald_ops::inspect::scan(&self.dynamodb, &self.table)
            .await
            .unwrap();
        let mut out: Vec<Invocation> = items
            .iter()
            .filter(|i| i["pk"].as_str().unwrap().starts_with("inv#"))
            .map(|i| {
                let list = |k: &str| i[k].as_array().cloned().unwrap_or_default();
                Invocation {
                    at: i["at"].as_u64().unwrap() as u128,
                    ns: list("ns").iter().map(|n| n.as_u64().unwrap()).collect(),
                    keys: list("keys")
                        .iter()
                        .map(|k| k.as_str().unwrap().to_string())
                        .collect(),
                    memory: i["memory"].as_u64().unwrap(),
                    pid: i["pid"].as_u64().unwrap(),
                    receives: list("receives")
                        .iter()
                        .map(|k| k.as_str().unwrap().to_string())
                        .collect(),
                    window_start: json_attribute(i, "window")["start"]
                        .as_str()
                        .map(str::to_string),
                    state_in: ns_of(&json_attribute(i, "state")),
                }
            })
            .collect();
        out.sort_by_key(|i| i.at);
        out
    }

    /// The windows' final invocations, by window start.
    async fn closed_windows(&self) -> Vec<Closed> {
        let items = herald_ops::inspect::scan(&self.dynamodb, &self.table)
            .await
            .unwrap();
        let mut out: Vec<Closed> = items
            .iter()
            .filter_map(|i| {
                let pk = i["pk"].as_str()?.strip_prefix("final#")?;
                Some(Closed {
                    start: pk.rsplit_once('#')?.0.to_string(),
                    ns: ns_of(&json_attribute(i, "state")),
                    early: json_attribute(i, "early") == true,
                })
            })
            .collect();
        out.sort_by(|a, b| a.start.cmp(&b.start));
        out
    }

    async fn count(&self, pk: &str) -> i64 {
        common::number_attribute(&self.dynamodb, &self.table, ("pk", pk), "count").await
    }

    async fn deliveries(&self, n: u64) -> i64 {
        self.count(&format!("deliveries#{n}")).await
    }

    async fn effect(&self, n: u64) -> i64 {
        self.count(&format!("effect#{n}")).await
    }
}

/// A JSON document the probe stored as a string attribute (null when absent).
fn json_attribute(item: &Value, name: &str) -> Value {
    item[name]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// The `ns` of a probe window's state.
fn ns_of(state: &Value) -> Vec<u64> {
    state["ns"]
        .as_array()
        .map(|ns| ns.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Sleep until just after the next multiple of `length` since the epoch (a window's start).
async fn next_window(length: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let length = length.as_millis();
    let wait = length - now % length + 150;
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

async fn put(pipeline: &LocalPipeline, records: &[Value]) {
    let kinesis = aws_sdk_kinesis::Client::new(&common::aws().await);
    let mut request = kinesis
        .put_records()
        .stream_name(pipeline.stack().reference("Source").unwrap());
    for record in records {
        let key = record["key"].as_str().unwrap_or("k").to_string();
        request = request.records(
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(record.to_string()))
                .build()
                .unwrap(),
        );
    }
    let out = request.send().await.unwrap();
    assert_eq!(out.failed_record_count, Some(0));
}

/// Send `messages` ten at a time in one `SendMessageBatch`, so a running poller sees them
/// together (one by one, it may receive the first before the second is sent).
async fn send(pipeline: &LocalPipeline, messages: &[Value]) {
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    for chunk in messages.chunks(10) {
        let mut batch = sqs
            .send_message_batch()
            .queue_url(pipeline.stack().reference("Source").unwrap());
        for (i, message) in chunk.iter().enumerate() {
            batch = batch.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(message.to_string())
                    .build()
                    .unwrap(),
            );
        }
        let out = batch.send().await.unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }
}

async fn settle(pipeline: &LocalPipeline) {
    pipeline
        .wait_idle(Duration::from_millis(800), Duration::from_secs(120))
        .await
        .unwrap();
}

/// [`settle`], and every tumbling window closed.
async fn settle_windows(pipeline: &LocalPipeline) {
    pipeline
        .wait_windows_closed(Duration::from_millis(800), Duration::from_secs(120))
        .await
        .unwrap();
}

async fn failure_records(pipeline: &LocalPipeline) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    peek(&sqs, pipeline.stack().reference("FailureQueue").unwrap())
        .await
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(&l.body).unwrap())
        .collect()
}

fn records(n: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    n.map(|n| json!({ "n": n })).collect()
}

const DEFAULT_FUNCTION: &str = "      Timeout: 10\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_batch_size_caps_every_invocation() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    put(&pipeline, &records(1..=25)).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    assert!(
        invocations.iter().all(|i| i.ns.len() <= 10),
        "{invocations:?}"
    );
    assert_eq!(invocations.iter().map(|i| i.ns.len()).sum::<usize>(), 25);
    for n in 1..=25 {
        assert_eq!(probe.deliveries(n).await, 1, "record {n}");
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_batching_window_gathers_records_into_one_batch() {
    let pipeline = start(
        template(
            "kinesis",
            &indent(
                "StartingPosition: TRIM_HORIZON\nBatchSize: 100\nMaximumBatchingWindowInSeconds: 2",
            ),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    for n in 1..=5 {
        put(&pipeline, &records(n..=n)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&pipeline).await;
    let invocations = Probe::of(&pipeline).await.invocations().await;
    assert_eq!(invocations.len(), 1, "{invocations:?}");
    assert_eq!(invocations[0].ns, [1, 2, 3, 4, 5]);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_starting_position_latest_skips_what_was_already_there() {
    let path = template(
        "kinesis",
        &indent("StartingPosition: LATEST\nBatchSize: 10"),
        DEFAULT_FUNCTION,
    );
    // Written before the mapping starts.
    let pipeline = start_after_records(path, &records(1..=1), Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&pipeline, &records(2..=3)).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    assert_eq!(
        probe.deliveries(1).await,
        0,
        "written before the mapping started"
    );
    assert_eq!(
        (probe.deliveries(2).await, probe.deliveries(3).await),
        (1, 1)
    );
    pipeline.stop().await;
}

/// The issue's poison test: records before the poison are processed once, the poison goes to the
/// on-failure destination after the retry cap, records after it are processed once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_mid_batch_is_isolated_and_the_rest_processed_once_in_order() {
    let pipeline = start(
        template(
            "kinesis",
            &indent(
                "StartingPosition: TRIM_HORIZON\nBatchSize: 10\nBisectBatchOnFunctionError: true\nMaximumRetryAttempts: 2\n\
                 FunctionResponseTypes: [ReportBatchItemFailures]\nDestinationConfig:\n  OnFailure:\n    Destination: !GetAtt FailureQueue.Arn",
            ),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    let mut batch = records(1..=9);
    batch[4] = json!({"n": 5, "fail": true});
    put(&pipeline, &batch).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    for n in (1..=4).chain(6..=9) {
        assert_eq!(probe.deliveries(n).await, 1, "record {n}");
    }
    assert_eq!(probe.deliveries(5).await, 0);
    // In order: the first time each record was handed over, ordered by invocation.
    let mut first_seen: Vec<u64> = Vec::new();
    for invocation in probe.invocations().await {
        for n in invocation.ns {
            if !first_seen.contains(&n) {
                first_seen.push(n);
            }
        }
    }
    assert_eq!(first_seen, (1..=9).collect::<Vec<_>>());
    let failures = failure_records(&pipeline).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let info = &failures[0]["KinesisBatchInfo"];
    assert_eq!(
        failures[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"]);
    assert!(info["streamArn"].as_str().unwrap().ends_with("-Source"));
    assert!(
        failures[0]["requestContext"]["approximateInvokeCount"]
            .as_u64()
            .unwrap()
            >= 3
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisect_isolates_a_poison_record_in_a_batch_of_100_within_log2_attempts() {
    let pipeline = start(
        template(
            "kinesis",
            &indent(
                "StartingPosition: TRIM_HORIZON\nBatchSize: 100\nMaximumBatchingWindowInSeconds: 1\nBisectBatchOnFunctionError: true\n\
                 MaximumRetryAttempts: 1\nDestinationConfig:\n  OnFailure:\n    Destination: !GetAtt FailureQueue.Arn",
            ),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    let mut batch = records(1..=100);
    batch[36] = json!({"n": 37, "error": true});
    put(&pipeline, &batch).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    let with_poison: Vec<&Invocation> = invocations.iter().filter(|i| i.ns.contains(&37)).collect();
    let until_alone = with_poison
        .iter()
        .position(|i| i.ns.len() == 1)
        .expect("isolated")
        + 1;
    let bound = (100f64.log2() + 1.0).ceil() as usize;
    assert!(
        until_alone <= bound,
        "isolated after {until_alone} attempts; bound {bound}"
    );
    for n in (1..=100).filter(|n| *n != 37) {
        assert_eq!(probe.deliveries(n).await, 1, "record {n}");
    }
    let failures = failure_records(&pipeline).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(failures[0]["responseContext"]["functionError"], "Handled");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_retry_attempts_caps_the_retries_then_moves_on() {
    let pipeline = start(
        template(
            "kinesis",
            &indent(
                "StartingPosition: TRIM_HORIZON\nBatchSize: 1\nMaximumRetryAttempts: 2\n\
                 DestinationConfig:\n  OnFailure:\n    Destination: !GetAtt FailureQueue.Arn",
            ),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    put(
        &pipeline,
        &[json!({"n": 1, "error": true}), json!({"n": 2})],
    )
    .await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    assert_eq!(
        invocations.iter().filter(|i| i.ns == [1]).count(),
        3,
        "1 attempt + 2 retries"
    );
    assert_eq!(probe.deliveries(2).await, 1);
    assert_eq!(failure_records(&pipeline).await.len(), 1);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_maximum_age_go_to_the_destination_unprocessed() {
    let path = template(
        "kinesis",
        &indent(
            "StartingPosition: TRIM_HORIZON\nBatchSize: 10\nMaximumRecordAgeInSeconds: 1\n\
             DestinationConfig:\n  OnFailure:\n    Destination: !GetAtt FailureQueue.Arn",
        ),
        DEFAULT_FUNCTION,
    );
    // Older than the maximum age by the time the mapping starts.
    let pipeline = start_after_records(path, &records(1..=1), Duration::from_millis(2500)).await;
    put(&pipeline, &records(2..=2)).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    assert_eq!(probe.deliveries(1).await, 0);
    assert_eq!(probe.deliveries(2).await, 1);
    let failures = failure_records(&pipeline).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0]["requestContext"]["condition"],
        "RecordAgeExceeded"
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_report_batch_item_failures_a_partial_response_is_ignored() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    put(
        &pipeline,
        &[
            json!({"n": 1}),
            json!({"n": 2, "fail_times": 1}),
            json!({"n": 3}),
        ],
    )
    .await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    // Lambda reads a response it was not told to read as success: nothing is retried.
    assert_eq!(probe.invocations().await.len(), 1);
    assert_eq!(
        (
            probe.deliveries(1).await,
            probe.deliveries(2).await,
            probe.deliveries(3).await
        ),
        (1, 0, 0)
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_report_batch_item_failures_only_the_rest_is_retried() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10\nFunctionResponseTypes: [ReportBatchItemFailures]"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    put(
        &pipeline,
        &[
            json!({"n": 1}),
            json!({"n": 2, "fail_times": 1}),
            json!({"n": 3}),
        ],
    )
    .await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    assert_eq!(invocations.len(), 2);
    assert_eq!(invocations[1].ns, [2, 3], "checkpointed after record 1");
    assert_eq!(
        (
            probe.deliveries(1).await,
            probe.deliveries(2).await,
            probe.deliveries(3).await
        ),
        (1, 1, 1)
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelization_factor_runs_lanes_concurrently_and_keeps_each_key_in_order() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 5\nParallelizationFactor: 3"),
            "      Timeout: 10\n      MemorySize: 128\n",
        ),
        3,
    )
    .await;
    let batch: Vec<Value> = (1..=60)
        .map(|n| json!({"n": n, "key": format!("key-{}", n % 6), "sleep_ms": 30}))
        .collect();
    put(&pipeline, &batch).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for invocation in &invocations {
        for (n, key) in invocation.ns.iter().zip(&invocation.keys) {
            per_key.entry(key.clone()).or_default().push(*n);
        }
    }
    assert_eq!(per_key.len(), 6);
    for (key, ns) in &per_key {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key}: {ns:?}");
    }
    let pids: BTreeSet<u64> = invocations.iter().map(|i| i.pid).collect();
    assert!(
        pids.len() >= 2,
        "lanes ran on concurrent instances: {pids:?}"
    );
    for n in 1..=60 {
        assert_eq!(probe.deliveries(n).await, 1, "record {n}");
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_killed_mid_batch_at_its_timeout_is_retried_and_effects_stay_exactly_once() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10\nMaximumRetryAttempts: 3"),
            "      Timeout: 1\n",
        ),
        1,
    )
    .await;
    let mut batch = records(1..=6);
    batch[3] = json!({"n": 4, "sleep_ms": 3000, "once": true});
    put(&pipeline, &batch).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    assert_eq!(
        invocations.len(),
        2,
        "killed once, retried once: {invocations:?}"
    );
    assert_ne!(
        invocations[0].pid, invocations[1].pid,
        "the retry runs in a fresh process"
    );
    for n in 1..=3 {
        assert_eq!(
            probe.deliveries(n).await,
            2,
            "record {n} ran before the kill and again"
        );
    }
    for n in 1..=6 {
        assert_eq!(probe.effect(n).await, 1, "effect of record {n}");
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_crashes_mid_batch_is_retried() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10\nMaximumRetryAttempts: 3"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    let mut batch = records(1..=4);
    batch[1] = json!({"n": 2, "crash": true, "once": true});
    put(&pipeline, &batch).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    for n in 1..=4 {
        assert_eq!(probe.effect(n).await, 1, "effect of record {n}");
    }
    assert_eq!(probe.deliveries(1).await, 2);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_size_reaches_the_function_context() {
    let pipeline = start(
        template(
            "kinesis",
            &indent("StartingPosition: TRIM_HORIZON\nBatchSize: 10"),
            "      Timeout: 10\n      MemorySize: 256\n",
        ),
        1,
    )
    .await;
    put(&pipeline, &records(1..=1)).await;
    settle(&pipeline).await;
    let invocations = Probe::of(&pipeline).await.invocations().await;
    assert_eq!(invocations[0].memory, 256);
    pipeline.stop().await;
}

fn queue(visibility: u32, max_receive: u32) -> String {
    format!(
        "      VisibilityTimeout: {visibility}\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt DeadLetters.Arn\n        maxReceiveCount: {max_receive}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batch_size_caps_every_invocation() {
    let pipeline = start(
        template(&queue(30, 3), &indent("BatchSize: 4"), DEFAULT_FUNCTION),
        1,
    )
    .await;
    send(&pipeline, &records(1..=10)).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    assert!(
        invocations.iter().all(|i| i.ns.len() <= 4),
        "{invocations:?}"
    );
    for n in 1..=10 {
        assert_eq!(probe.deliveries(n).await, 1);
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batching_window_gathers_messages() {
    let pipeline = start(
        template(
            &queue(30, 3),
            &indent("BatchSize: 10\nMaximumBatchingWindowInSeconds: 2"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    send(&pipeline, &records(1..=6)).await;
    settle(&pipeline).await;
    let invocations = Probe::of(&pipeline).await.invocations().await;
    assert_eq!(invocations.len(), 1, "{invocations:?}");
    assert_eq!(invocations[0].ns.len(), 6);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_returns_after_the_visibility_timeout_and_moves_to_the_dlq_after_max_receives(
) {
    let pipeline = start(
        template(
            &queue(2, 2),
            &indent("BatchSize: 10\nFunctionResponseTypes: [ReportBatchItemFailures]"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    send(&pipeline, &[json!({"n": 1, "fail": true}), json!({"n": 2})]).await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let invocations = probe.invocations().await;
    let of_one: Vec<&Invocation> = invocations.iter().filter(|i| i.ns.contains(&1)).collect();
    assert_eq!(of_one.len(), 2, "{invocations:?}");
    let receives = |i: &Invocation| i.receives[i.ns.iter().position(|n| *n == 1).unwrap()].clone();
    assert_eq!(
        (receives(of_one[0]), receives(of_one[1])),
        ("1".to_string(), "2".to_string())
    );
    // The timeout runs from the receive, which comes before the first invocation by however
    // long the machine takes to start it: the gap between invocations is the timeout less that.
    // A message that came straight back (no visibility timeout) would return within
    // milliseconds; half the timeout tells the two apart on a slow machine too.
    let gap = Duration::from_micros((of_one[1].at - of_one[0].at) as u64);
    assert!(
        gap >= Duration::from_millis(1000),
        "redelivered after {gap:?}: it did not wait out the 2 s visibility timeout"
    );
    assert_eq!(
        probe.deliveries(2).await,
        1,
        "only the failed message came back"
    );
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let dead = peek(&sqs, pipeline.stack().reference("DeadLetters").unwrap())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&dead[0].body).unwrap()["n"],
        1
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_without_report_batch_item_failures_deletes_the_whole_batch_on_success() {
    // Both messages in one invocation by construction: the batch is full at two, and the window
    // waits for the second (SQS may return one message per receive: LocalStack did, as AWS may).
    let pipeline = start(
        template(
            &queue(1, 5),
            &indent("BatchSize: 2\nMaximumBatchingWindowInSeconds: 300"),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    send(
        &pipeline,
        &[json!({"n": 1}), json!({"n": 2, "fail_times": 1})],
    )
    .await;
    settle(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    assert_eq!(
        probe.deliveries(2).await,
        0,
        "the partial response was not read: the message was deleted"
    );
    assert_eq!(probe.invocations().await.len(), 1);
    pipeline.stop().await;
}

const WINDOWED: &str =
    "StartingPosition: TRIM_HORIZON\nFunctionResponseTypes: [ReportBatchItemFailures]";

/// `TumblingWindowInSeconds`: records of one window reach the function over several
/// invocations with the state each one returned, and each window gets one final invocation with
/// its whole state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumbling_window_carries_state_between_invocations_and_closes_each_window_once() {
    let length = Duration::from_secs(2);
    let pipeline = start(
        template(
            "kinesis",
            &indent(&format!(
                "{WINDOWED}\nBatchSize: 2\nTumblingWindowInSeconds: 2"
            )),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    next_window(length).await;
    put(&pipeline, &records(1..=5)).await;
    next_window(length).await;
    put(&pipeline, &records(6..=8)).await;
    settle_windows(&pipeline).await;

    let probe = Probe::of(&pipeline).await;
    let closed = probe.closed_windows().await;
    let finals: Vec<&[u64]> = closed.iter().map(|c| c.ns.as_slice()).collect();
    assert_eq!(
        finals,
        [&[1, 2, 3, 4, 5][..], &[6, 7, 8][..]],
        "one final invocation per window, with every record of it once: {closed:?}"
    );
    assert!(closed.iter().all(|c| !c.early));
    let invocations = probe.invocations().await;
    let batches: Vec<&Invocation> = invocations.iter().filter(|i| !i.ns.is_empty()).collect();
    assert!(batches.iter().all(|i| i.ns.len() <= 2), "{batches:?}");
    for window in &closed {
        // Each invocation was given what the ones before it in its window returned.
        let mut so_far: Vec<u64> = Vec::new();
        for invocation in batches
            .iter()
            .filter(|i| i.window_start.as_deref() == Some(window.start.as_str()))
        {
            assert_eq!(invocation.state_in, so_far, "{invocations:?}");
            so_far.extend(&invocation.ns);
        }
        assert_eq!(so_far, window.ns, "no batch spans two windows");
    }
    for n in 1..=8 {
        assert_eq!(probe.deliveries(n).await, 1, "record {n}");
    }
    pipeline.stop().await;
}

/// A failed record, and a response without a state, are retried from the state the failed
/// invocation was given: the window's final state still has every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_window_batch_counts_each_record_once() {
    let length = Duration::from_secs(3);
    let pipeline = start(
        template(
            "kinesis",
            &indent(&format!(
                "{WINDOWED}\nBatchSize: 10\nTumblingWindowInSeconds: 3"
            )),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    next_window(length).await;
    put(
        &pipeline,
        &[
            json!({"n": 1}),
            json!({"n": 2, "fail_times": 1}),
            json!({"n": 3, "drop_state": true}),
            json!({"n": 4}),
        ],
    )
    .await;
    settle_windows(&pipeline).await;
    let probe = Probe::of(&pipeline).await;
    let closed = probe.closed_windows().await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].ns, [1, 2, 3, 4]);
    let invocations = probe.invocations().await;
    let batches: Vec<&Invocation> = invocations.iter().filter(|i| !i.ns.is_empty()).collect();
    assert_eq!(
        batches.len(),
        3,
        "the failure, the stateless answer, the retry: {batches:?}"
    );
    assert_eq!(
        batches[1].state_in,
        [1],
        "retried from the record that failed"
    );
    assert_eq!(
        batches[2].state_in,
        [1],
        "a response without a state did not count"
    );
    pipeline.stop().await;
}

/// The open window and its state are saved with the checkpoint: a runner restarted mid-window
/// goes on with them, and the window closes once with every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_restarted_mid_window_goes_on_with_its_state() {
    let length = Duration::from_secs(10);
    let pipeline = start(
        template(
            "kinesis",
            &indent(&format!(
                "{WINDOWED}\nBatchSize: 10\nTumblingWindowInSeconds: 10"
            )),
            DEFAULT_FUNCTION,
        ),
        1,
    )
    .await;
    next_window(length).await;
    put(&pipeline, &records(1..=3)).await;
    let probe = Probe::of(&pipeline).await;
    // Restart once the first batch is done: its checkpoint holds the open window.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pipeline
        .checkpoints()
        .snapshot()
        .values()
        .flat_map(|m| m.shards.values())
        .any(|shard| shard.window.is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first batch never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pipeline = pipeline.restart().await.unwrap();
    put(&pipeline, &records(4..=5)).await;
    settle_windows(&pipeline).await;
    let closed = probe.closed_windows().await;
    assert_eq!(
        closed.iter().map(|c| c.ns.clone()).collect::<Vec<_>>(),
        [vec![1, 2, 3, 4, 5]],
        "{closed:?}"
    );
    let invocations = probe.invocations().await;
    let after_restart = invocations
        .iter()
        .find(|i| i.ns.contains(&4))
        .expect("records 4 and 5 ran");
    assert_eq!(after_restart.state_in, [1, 2, 3], "{invocations:?}");
    pipeline.stop().await;
}
