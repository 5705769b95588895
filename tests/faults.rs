//! The fault proxy against the emulator over real HTTP: an injected fault reaches the AWS SDK in
//! AWS's own shape, so the SDK classifies it as it would on AWS (throttling and 5xx retried,
//! `TransactionCanceledException` and `KMSThrottlingException` not), and herald's own handling
//! (the transactional idempotency loop) sees what it would see on DynamoDB.

mod common;

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TransactWriteItem, Update,
};
use herald::idempotency::{Decision, DynamoDbStore, Idempotency, IdempotencyConfig};
use herald_local::faults::{FaultKind, FaultPlan, FaultProxy};

/// A proxy with `spec` in front of the test endpoint, and SDK settings through it whose retries
/// do not sleep long: `attempts` in all.
async fn through(spec: &str, attempts: u32) -> (FaultProxy, SdkConfig) {
    let endpoint = common::endpoint().await;
    let proxy = FaultProxy::start(FaultPlan::parse(spec).unwrap(), endpoint)
        .await
        .unwrap();
    let aws = endpoint
        .through(proxy.url())
        .sdk_config()
        .await
        .into_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .build();
    (proxy, aws)
}

async fn counter_table(name: &str) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&common::aws().await);
    dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn add_one(table: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(table)
                .key("pk", AttributeValue::S("counter".into()))
                .update_expression("ADD #n :one")
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn throttling_is_answered_as_aws_does_and_the_sdk_retries_it() {
    let table = common::unique("throttled");
    counter_table(&table).await;
    // Every PutItem throttled: the SDK sees DynamoDB's error, retries it 3 times, gives up.
    let (proxy, aws) = through("throttle:dynamodb:PutItem=100%", 3).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let err = dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .unwrap_err();
    let code = err.code().unwrap_or_default().to_string();
    assert!(
        [
            "ProvisionedThroughputExceededException",
            "ThrottlingException"
        ]
        .contains(&code.as_str()),
        "{code}"
    );
    assert_eq!(
        proxy.report().count(FaultKind::Throttle, "dynamodb"),
        3,
        "retried by the SDK"
    );

    // Half of them throttled: the SDK's retries get every write through.
    let (proxy, aws) = through("throttle:dynamodb:PutItem=50%,seed=3", 10).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    for i in 0..20 {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .send()
            .await
            .unwrap();
    }
    let report = proxy.report();
    assert!(
        report.count(FaultKind::Throttle, "dynamodb") > 0,
        "{report}"
    );
    assert_eq!(
        report.requests["dynamodb"],
        20 + report.count(FaultKind::Throttle, "dynamodb"),
        "one extra request per throttle"
    );
}

#[tokio::test]
async fn each_service_gets_its_own_error_shape() {
    let aws_direct = common::aws().await;
    let stream = common::unique("faulty");
    let kinesis = aws_sdk_kinesis::Client::new(&aws_direct);
    common::create_stream(&kinesis, &stream, 1).await;
    let topic = aws_sdk_sns::Client::new(&aws_direct)
        .create_topic()
        .name(common::unique("faulty"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = aws_sdk_sqs::Client::new(&aws_direct)
        .create_queue()
        .queue_name(common::unique("faulty"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    // Kinesis: throttling is retried by the SDK; KMS throttling is not (on AWS neither).
    let (proxy, aws) = through(
        "throttle:kinesis:PutRecord=100%,kms:kinesis:DescribeStreamSummary=100%",
        3,
    )
    .await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let err = kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(aws_sdk_kinesis::primitives::Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()));
    let err = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("KMSThrottlingException"));
    assert!(herald::aws::is_throttling_code("KMSThrottlingException"));
    let report = proxy.report();
    assert_eq!(report.count(FaultKind::Throttle, "kinesis"), 3);
    assert_eq!(
        report.count(FaultKind::Kms, "kinesis"),
        1,
        "not retried by the SDK"
    );

    // SNS speaks the query protocol: an XML <ErrorResponse>. 5xx and throttling are retried.
    let (proxy, aws) = through("5xx:sns=100%", 2).await;
    let err = aws_sdk_sns::Client::new(&aws)
        .publish()
        .topic_arn(&topic)
        .message("m")
        .send()
        .await
        .unwrap_err();
    let code = err.code().unwrap_or_default().to_string();
    assert!(
        ["InternalError", "ServiceUnavailable"].contains(&code.as_str()),
        "{code}"
    );
    assert_eq!(proxy.report().count(FaultKind::ServerError, "sns"), 2);
    let (proxy, aws) = through("throttle:sns=100%", 2).await;
    let err = aws_sdk_sns::Client::new(&aws)
        .publish()
        .topic_arn(&topic)
        .message("m")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(proxy.report().count(FaultKind::Throttle, "sns"), 2);

    // SQS (JSON protocol): RequestThrottled, retried.
    let (proxy, aws) = through("throttle:sqs:SendMessage=100%", 2).await;
    let err = aws_sdk_sqs::Client::new(&aws)
        .send_message()
        .queue_url(&queue)
        .message_body("m")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("RequestThrottled"));
    assert_eq!(proxy.report().count(FaultKind::Throttle, "sqs"), 2);

    // Dropped connections: the SDK retries them and the message gets through.
    let (proxy, aws) = through("drop:sqs:SendMessage=50%,seed=5", 10).await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    for i in 0..10 {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    assert!(proxy.report().count(FaultKind::Drop, "sqs") > 0);
}

#[tokio::test]
async fn a_conflict_is_a_cancelled_transaction_and_herald_retries_it_to_the_effect() {
    let table = common::unique("hot");
    counter_table(&table).await;
    let (proxy, aws) = through("conflict=100%", 3).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let err = dynamodb
        .transact_write_items()
        .transact_items(add_one(&table))
        .transact_items(add_one(&format!("{table}-other")))
        .send()
        .await
        .unwrap_err();
    let cancelled = err
        .as_service_error()
        .and_then(|e| match e {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        })
        .expect("TransactionCanceledException");
    let reasons: Vec<&str> = cancelled
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .collect();
    assert_eq!(reasons.len(), 2, "one reason per item: {reasons:?}");
    assert_eq!(
        reasons
            .iter()
            .filter(|c| **c == "TransactionConflict")
            .count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        proxy.report().count(FaultKind::Conflict, "dynamodb"),
        1,
        "not retried by the SDK: contention is the caller's to handle"
    );

    // Half of the transactions conflict: herald's transactional loop backs off and commits
    // every effect exactly once.
    let (proxy, aws) = through("conflict=50%,seed=9", 3).await;
    let idempotency_table = common::unique("idem");
    counter_table(&idempotency_table).await;
    let idempotency = Idempotency::with_store(
        DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&aws), &idempotency_table),
        IdempotencyConfig::new(&idempotency_table, "counter"),
    );
    for i in 0..20 {
        let event = herald::envelope::Envelope::builder("thing_counted", "herald/tests")
            .id(format!("evt-{i}"))
            .subject("counter")
            .data(serde_json::json!({"i": i}))
            .build()
            .unwrap();
        let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
        idempotency
            .run_transactional_until(&event, Some(deadline), |_| {
                Ok::<_, String>(Decision {
                    deltas: Vec::new(),
                    writes: vec![add_one(&table)],
                    result: (),
                })
            })
            .await
            .unwrap();
    }
    assert!(proxy.report().count(FaultKind::Conflict, "dynamodb") > 0);
    let n = common::number_attribute(
        &aws_sdk_dynamodb::Client::new(&common::aws().await),
        &table,
        ("pk", "counter"),
        "n",
    )
    .await;
    assert_eq!(n, 20, "every event counted once");
}

#[tokio::test]
async fn an_outage_fails_one_operation_for_its_window_then_recovers() {
    let topic = aws_sdk_sns::Client::new(&common::aws().await)
        .create_topic()
        .name(common::unique("outage"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let (proxy, aws) = through("outage=sns:Publish@0s+3s", 1).await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let publish = || sns.publish().topic_arn(&topic).message("m").send();
    let err = publish().await.unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"));
    // Other operations are unaffected.
    sns.get_topic_attributes()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    // After the window, publishing works again.
    let started = Instant::now();
    loop {
        match publish().await {
            Ok(_) => break,
            Err(err) => {
                assert_eq!(err.code(), Some("ServiceUnavailable"));
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "never recovered"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(proxy.uptime() >= Duration::from_secs(3));
    assert!(proxy.report().count(FaultKind::Outage, "sns") >= 1);
}
