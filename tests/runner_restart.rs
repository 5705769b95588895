//! The local runner remembers where it was: stream checkpoints survive a restart (mid-run or
//! after settling, by `LocalPipeline::restart` or a new `up` of the same stack), child shards are
//! read after a reshard with each key in order, and a failed `GetShardIterator` or on-failure
//! send is retried instead of leaving records unread or dropping a batch. Against the emulator;
//! the two failures come from a small proxy that fails chosen requests the way AWS does (a 500),
//! which the emulator itself never does.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_local::http::request;
use herald_local::moto::free_port;
use herald_local::{Endpoint, LocalPipeline, UpOptions};
use herald_ops::inspect::{peek, scan};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// A template with the probe function reading `ProbeStream` (`shards` shards) through a mapping
/// with `mapping` as its extra properties.
fn template(shards: u32, mapping: &str) -> PathBuf {
    let mapping: String = mapping.lines().map(|l| format!("      {l}\n")).collect();
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
  Source:
    Type: AWS::Kinesis::Stream
    Properties:
      ShardCount: {shards}
  ProbeFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: probe
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      Timeout: 10
      LoggingConfig:
        LogFormat: JSON
      Environment:
        Variables:
          PROBE_TABLE: !Ref ProbeTable
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref ProbeFunction
      EventSourceArn: !GetAtt Source.Arn
      StartingPosition: TRIM_HORIZON
{mapping}"#
    );
    let dir = std::env::temp_dir().join("herald-restart-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.yaml", common::unique("restart")));
    std::fs::write(&path, text).unwrap();
    path
}

/// Bring `template` up as stack `name` on `endpoint` (the tests' emulator, or a proxy to it).
async fn up(endpoint: &Endpoint, template: &Path, name: &str) -> LocalPipeline {
    let mut options = UpOptions::new(common::root());
    options.template = template.to_path_buf();
    options.stack.name = name.to_string();
    options.build = false;
    options.runner.bin_dir = common::bin_dir();
    options.runner.state_dir = Some(common::state_dir());
    options.runner.concurrency = 1;
    herald_local::up(endpoint, options).await.unwrap()
}

async fn put(pipeline: &LocalPipeline, records: &[Value]) {
    let kinesis = aws_sdk_kinesis::Client::new(&common::aws().await);
    for chunk in records.chunks(100) {
        let mut request = kinesis
            .put_records()
            .stream_name(pipeline.stack().reference("Source").unwrap());
        for record in chunk {
            request = request.records(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(record["key"].as_str().unwrap_or("k"))
                    .data(aws_sdk_kinesis::primitives::Blob::new(record.to_string()))
                    .build()
                    .unwrap(),
            );
        }
        assert_eq!(request.send().await.unwrap().failed_record_count, Some(0));
    }
}

async fn settle(pipeline: &LocalPipeline) {
    pipeline
        .wait_idle(Duration::from_millis(1000), Duration::from_secs(120))
        .await
        .unwrap();
}

/// What the probe recorded: per `n`, deliveries and effects; and the invocations' `n`s and keys
/// in the order they ran.
struct Probe {
    items: Vec<Value>,
}

impl Probe {
    async fn read(pipeline: &LocalPipeline) -> Probe {
        let dynamodb = aws_sdk_dynamodb::Client::new(&common::aws().await);
        let table = pipeline.stack().reference("ProbeTable").unwrap();
        Probe {
            items: scan(&dynamodb, table).await.unwrap(),
        }
    }

    fn count(&self, pk: &str) -> i64 {
        self.items
            .iter()
            .find(|i| i["pk"] == pk)
            .and_then(|i| i["count"].as_i64())
            .unwrap_or(0)
    }

    fn deliveries(&self, n: u64) -> i64 {
        self.count(&format!("deliveries#{n}"))
    }

    fn effect(&self, n: u64) -> i64 {
        self.count(&format!("effect#{n}"))
    }

    /// (`n`, key) of every processed record, invocation by invocation in the order they ran.
    fn processed(&self) -> Vec<(u64, String)> {
        let mut invocations: Vec<&Value> = self
            .items
            .iter()
            .filter(|i| i["pk"].as_str().unwrap().starts_with("inv#"))
            .collect();
        invocations.sort_by_key(|i| i["at"].as_u64().unwrap());
        invocations
            .iter()
            .flat_map(|i| {
                let ns = i["ns"].as_array().unwrap().clone();
                let keys = i["keys"].as_array().unwrap().clone();
                ns.into_iter()
                    .zip(keys)
                    .map(|(n, k)| (n.as_u64().unwrap(), k.as_str().unwrap().to_string()))
            })
            .collect()
    }
}

fn records(n: std::ops::RangeInclusive<u64>, keys: &[&str], sleep_ms: u64) -> Vec<Value> {
    n.map(|n| json!({"n": n, "key": keys[n as usize % keys.len()], "sleep_ms": sleep_ms}))
        .collect()
}

/// Restarted mid-run, the runner resumes after the last batch it finished: the batch in flight
/// may be delivered again (at-least-once), nothing else is, nothing is skipped; restarted again
/// (a new `up` of the same stack, reading the checkpoint file) after settling, it reads nothing
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runner_resumes_after_its_checkpoints_and_skips_nothing() {
    const BATCH: i64 = 5;
    let template = template(1, &format!("BatchSize: {BATCH}"));
    let name = common::unique("resume");
    let endpoint = common::endpoint().await;
    let pipeline = up(endpoint, &template, &name).await;
    // 60 ms a record: a few seconds of work, so the restart comes mid-run.
    put(&pipeline, &records(1..=40, &["a"], 60)).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let table = pipeline
        .stack()
        .reference("ProbeTable")
        .unwrap()
        .to_string();
    while common::number_attribute(&dynamodb, &table, ("pk", "deliveries#12"), "count").await == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pipeline = pipeline.restart().await.unwrap();
    put(&pipeline, &records(41..=50, &["a"], 0)).await;
    settle(&pipeline).await;

    let probe = Probe::read(&pipeline).await;
    let mut again = 0;
    for n in 1..=50 {
        let deliveries = probe.deliveries(n);
        assert!(deliveries >= 1, "record {n} was skipped");
        again += deliveries - 1;
        assert_eq!(probe.effect(n), 1, "record {n}'s effect");
    }
    assert!(
        again <= BATCH,
        "{again} records were processed again after the restart; at most the batch in flight \
         ({BATCH}) may be"
    );

    // Stopped and brought up again as a new `herald local up` of the same stack would be: the
    // checkpoint file says everything is done.
    let before = probe.processed().len();
    pipeline.stop().await;
    let pipeline = up(endpoint, &template, &name).await;
    settle(&pipeline).await;
    let checkpoints =
        std::fs::read_to_string(common::state_dir().join(&name).join("checkpoints.json")).unwrap();
    assert!(checkpoints.contains("\"after\""), "{checkpoints}");
    assert_eq!(
        Probe::read(&pipeline).await.processed().len(),
        before,
        "nothing is read again"
    );
    pipeline.stop().await;
}

/// The shop's publisher reads the event store's DynamoDB stream from TRIM_HORIZON. Restarted, the
/// runner must not republish the whole store (nor route it all again): it resumes after its
/// checkpoints, and what is written after the restart still flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_local_up_does_not_republish_the_event_store() {
    let name = common::unique("republish");
    let up_shop = |port: u16| {
        let name = name.clone();
        common::pipeline("unused", move |o| {
            o.stack.name = name;
            o.runner.url_port = Some(port);
        })
    };
    let place = |pipeline: &LocalPipeline, i: usize| {
        let url = pipeline.stack().function_url("orders").unwrap();
        let order = shop::events::OrderPlaced {
            order_id: format!("o-{i}"),
            customer: shop::events::Customer {
                id: "c-1".into(),
                email: "c-1@example.com".into(),
            },
            items: vec![shop::events::LineItem {
                sku: "SKU-CABLE".into(),
                quantity: 1,
                unit_price: 1299,
            }],
            total: 1299,
            currency: "EUR".into(),
            payment_token: "tok_visa".into(),
        };
        async move {
            let (status, answer) = request(
                "POST",
                &format!("{}/orders", url.trim_end_matches('/')),
                Some(serde_json::to_vec(&order).unwrap()),
                &[],
            )
            .await
            .unwrap();
            assert_eq!(status, 201, "{answer}");
        }
    };
    let invocations = |pipeline: &LocalPipeline, function: &str| {
        pipeline
            .stats()
            .get(function)
            .map(|(invocations, _, _)| *invocations)
            .unwrap_or(0)
    };

    let pipeline = up_shop(free_port().unwrap()).await;
    for i in 0..6 {
        place(&pipeline, i).await;
    }
    settle(&pipeline).await;
    assert!(invocations(&pipeline, "publisher") > 0);
    assert!(invocations(&pipeline, "router") > 0);
    pipeline.stop().await;

    let pipeline = up_shop(free_port().unwrap()).await;
    settle(&pipeline).await;
    assert_eq!(
        (
            invocations(&pipeline, "publisher"),
            invocations(&pipeline, "router")
        ),
        (0, 0),
        "nothing published or routed again after the restart"
    );
    place(&pipeline, 6).await;
    settle(&pipeline).await;
    assert!(invocations(&pipeline, "publisher") > 0, "new events flow");
    let aws = common::aws().await;
    let failures = peek(
        &aws_sdk_sqs::Client::new(&aws),
        pipeline
            .stack()
            .reference("OrderServiceStoreStreamFailureQueue")
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    pipeline.stop().await;
}

/// After a reshard (one shard split in two), records written to the child shards are delivered,
/// and each key's records in the order written: the parent is read to its end first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reshard_the_child_shards_are_read_after_their_parent_in_key_order() {
    let template = template(1, "BatchSize: 10");
    let pipeline = up(
        common::endpoint().await,
        &template,
        &common::unique("reshard"),
    )
    .await;
    let keys = ["a", "b", "c", "d", "e", "f"];
    // Some records still in the parent when it closes, so the children have to wait for it.
    put(&pipeline, &records(1..=30, &keys, 20)).await;
    let kinesis = aws_sdk_kinesis::Client::new(&common::aws().await);
    let stream = pipeline.stack().reference("Source").unwrap();
    kinesis
        .update_shard_count()
        .stream_name(stream)
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    // As on AWS (and LocalStack), the stream is UPDATING until the children exist.
    common::wait_until(
        "the reshard to leave a parent and two children",
        Duration::from_secs(60),
        || async {
            kinesis
                .list_shards()
                .stream_name(stream)
                .send()
                .await
                .is_ok_and(|s| s.shards().len() == 3)
        },
    )
    .await;
    put(&pipeline, &records(31..=80, &keys, 0)).await;
    settle(&pipeline).await;

    let probe = Probe::read(&pipeline).await;
    for n in 1..=80 {
        assert_eq!(probe.deliveries(n), 1, "record {n}");
    }
    let processed = probe.processed();
    for key in keys {
        let ns: Vec<u64> = processed
            .iter()
            .filter(|(_, k)| k == key)
            .map(|(n, _)| *n)
            .collect();
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key {key}: {ns:?}");
    }
    pipeline.stop().await;
}

/// A proxy to the emulator that answers the first `failures` requests for the operation
/// `target` (its `X-Amz-Target`) with a 500 `InternalFailure`, as AWS does when it hurts; how
/// many it failed so far.
async fn failing_proxy(target: &'static str, failures: usize) -> (Endpoint, Arc<AtomicUsize>) {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    // The target's service goes through the proxy, the others straight to the emulator (which
    // may run each service in a process of its own).
    let endpoint = common::endpoint().await;
    let service = if target.starts_with("Kinesis") {
        "Kinesis"
    } else {
        "SQS"
    };
    let variable = herald::aws::ServiceEndpoints::variable(service);
    let upstream = endpoint.url_for(&variable).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (client, upstream, counter) = (client.clone(), upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    let (client, upstream, counter) =
                        (client.clone(), upstream.clone(), counter.clone());
                    async move {
                        let (mut parts, body) = request.into_parts();
                        let body: Bytes = BodyExt::collect(body)
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let hit = parts.headers.get("x-amz-target").map(|v| v.as_bytes())
                            == Some(target.as_bytes());
                        if hit
                            && counter
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    (n < failures).then_some(n + 1)
                                })
                                .is_ok()
                        {
                            let failure = http::Response::builder()
                                .status(500)
                                .header("content-type", "application/x-amz-json-1.1")
                                .body(Full::new(Bytes::from_static(
                                    br#"{"__type":"InternalFailure","message":"injected by the test"}"#,
                                )))
                                .unwrap();
                            return Ok::<_, Infallible>(failure);
                        }
                        let path = parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str())
                            .unwrap_or("/");
                        parts.uri = format!("{upstream}{path}").parse().unwrap();
                        let forwarded = http::Request::from_parts(parts, Full::new(body));
                        let answer = match client.request(forwarded).await {
                            Ok(answer) => {
                                let (parts, body) = answer.into_parts();
                                let body = BodyExt::collect(body)
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                http::Response::from_parts(parts, Full::new(body))
                            }
                            Err(err) => http::Response::builder()
                                .status(502)
                                .body(Full::new(Bytes::from(err.to_string())))
                                .unwrap(),
                        };
                        Ok(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut services = endpoint.services().clone();
    services.insert(variable, url);
    (
        Endpoint::external(endpoint.url.clone()).with_services(services),
        failed,
    )
}

/// A shard whose `GetShardIterator` fails is retried until it is read: it is never counted as
/// caught up with its records unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_get_shard_iterator_is_retried_and_the_shard_is_not_left_unread() {
    // More failures than the SDK's own attempts, so the runner sees some.
    let (proxy, failed) = failing_proxy("Kinesis_20131202.GetShardIterator", 5).await;
    let template = template(1, "BatchSize: 10");
    let name = common::unique("iterator");
    // Records there before the mapping starts reading.
    let aws = common::aws().await;
    let stack = herald_local::provision(
        &herald_local::Template::load(&template).unwrap(),
        &herald_local::StackOptions {
            name: name.clone(),
            ..Default::default()
        },
        &aws,
        &common::endpoint().await.url,
    )
    .await
    .unwrap();
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    for n in 1..=5 {
        kinesis
            .put_record()
            .stream_name(stack.reference("Source").unwrap())
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new(
                json!({ "n": n }).to_string(),
            ))
            .send()
            .await
            .unwrap();
    }
    let pipeline = up(&proxy, &template, &name).await;
    settle(&pipeline).await;
    let probe = Probe::read(&pipeline).await;
    for n in 1..=5 {
        assert_eq!(probe.deliveries(n), 1, "record {n}");
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        5,
        "the failures were injected"
    );
    pipeline.stop().await;
}

/// A failure record that cannot be sent is retried: the batch is neither dropped nor passed
/// before its failure record is in the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_on_failure_send_is_retried_and_the_batch_is_not_dropped() {
    let (proxy, failed) = failing_proxy("AmazonSQS.SendMessage", 5).await;
    let template = template(
        1,
        "BatchSize: 1\nMaximumRetryAttempts: 0\n\
         DestinationConfig:\n  OnFailure:\n    Destination: !GetAtt FailureQueue.Arn",
    );
    let pipeline = up(&proxy, &template, &common::unique("onfailure")).await;
    put(
        &pipeline,
        &[json!({"n": 1, "error": true}), json!({"n": 2})],
    )
    .await;
    settle(&pipeline).await;
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let failures = peek(&sqs, pipeline.stack().reference("FailureQueue").unwrap())
        .await
        .unwrap();
    assert_eq!(failures.len(), 1, "one failure record for record 1");
    let record: Value = serde_json::from_str(&failures[0].body).unwrap();
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(Probe::read(&pipeline).await.deliveries(2), 1);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        5,
        "the failures were injected"
    );
    pipeline.stop().await;
}
