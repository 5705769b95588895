//! Retention across the pipeline: idempotency records outlive every dead letter (a redrive on a
//! dead letter's last day is still deduplicated), and the template enforces it.

use std::time::Duration;

use herald::aws::limits::SQS_MAX_RETENTION_SECONDS;
use herald::idempotency::DEFAULT_RECORD_TTL;
use herald_local::template::{resolve, Names};
use herald_local::Template;
use serde_json::Value;

mod common;

/// SQS's default `MessageRetentionPeriod` (4 days), for queues that do not set one.
const SQS_DEFAULT_RETENTION_SECONDS: u64 = 4 * 24 * 3600;
/// Time a redrive itself takes (send back, redeliveries) on top of the queue's retention.
const REDRIVE_MARGIN_SECONDS: u64 = 24 * 3600;

fn number(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// Every queue's retention, every function's TTL variable, the parameter's default and
/// `MinValue`: the smallest TTL the template lets anyone deploy outlives every queue.
fn assert_idempotency_outlives_every_queue(template: &Template) {
    let spec = &template.parameter_specs["IdempotencyTtlSeconds"];
    let min_ttl = number(&spec["MinValue"]);
    let default_ttl = number(&spec["Default"]);
    assert!(default_ttl >= min_ttl);
    let mut queues = 0;
    for (id, queue) in template.of_kind("AWS::SQS::Queue") {
        let retention = queue
            .properties
            .get("MessageRetentionPeriod")
            .map(number)
            .unwrap_or(SQS_DEFAULT_RETENTION_SECONDS);
        assert!(
            retention + REDRIVE_MARGIN_SECONDS <= min_ttl,
            "{id} keeps messages {retention} s; IdempotencyTtlSeconds may be as low as {min_ttl} s"
        );
        queues += 1;
    }
    assert!(queues > 0);
    // Whatever a queue's retention, SQS keeps nothing longer than 14 days.
    assert!(SQS_MAX_RETENTION_SECONDS + REDRIVE_MARGIN_SECONDS <= min_ttl);
    // Every function that keeps idempotency records takes its TTL from that one parameter
    // (directly, or through the bus's contract a building block reads it from).
    let mut functions = 0;
    for (id, function) in template.of_kind("AWS::Serverless::Function") {
        let env = &function.properties["Environment"]["Variables"];
        if env.get("IDEMPOTENCY_TABLE").is_some() {
            let ttl = env
                .get("IDEMPOTENCY_TTL_SECONDS")
                .map(|v| resolve(v, &OnlyTheTtl).unwrap());
            assert_eq!(
                ttl,
                Some(Value::String(TTL.into())),
                "{id} keeps idempotency records without IDEMPOTENCY_TTL_SECONDS from the parameter"
            );
            functions += 1;
        }
    }
    assert!(functions > 0);
}

/// What the parameter `IdempotencyTtlSeconds` resolves to in [`OnlyTheTtl`].
const TTL: &str = "the IdempotencyTtlSeconds parameter";

/// Names in which only the TTL parameter is the TTL: every other reference is something else.
struct OnlyTheTtl;

impl Names for OnlyTheTtl {
    fn reference(&self, id: &str) -> Option<Value> {
        Some(Value::String(match id {
            "IdempotencyTtlSeconds" => TTL.into(),
            other => format!("ref {other}"),
        }))
    }
    fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
        Some(Value::String(format!("{id}.{attribute}")))
    }
}

#[test]
fn idempotency_records_outlive_every_dead_letter_queue_in_the_templates() {
    for path in ["template.yaml", "infra/blocks/bus.yaml"] {
        let template = Template::load(&common::root().join(path)).unwrap();
        assert_idempotency_outlives_every_queue(&template);
    }
}

/// The building blocks: the bus holds the TTL parameter and passes it in its contract (item 6);
/// every subscriber and an event-sourced service's publisher take it from there, and keep no
/// queue longer than the bus's smallest TTL allows.
#[test]
fn the_blocks_take_the_ttl_from_the_bus_and_keep_queues_within_it() {
    let root = common::root().join("infra/blocks");
    let bus = Template::load(&root.join("bus.yaml")).unwrap();
    let min_ttl = number(&bus.parameter_specs["IdempotencyTtlSeconds"]["MinValue"]);
    let contract = &bus.outputs["Contract"]["Value"]["Fn::Join"][1];
    assert_eq!(
        contract[6],
        serde_json::json!({"Ref": "IdempotencyTtlSeconds"})
    );
    // The subscriber's queue and DLQ; the service's publisher dead-letter and failure queues.
    for (block, expected_queues) in [("subscriber.yaml", 2), ("service.yaml", 2)] {
        let template = Template::load(&root.join(block)).unwrap();
        let mut queues = 0;
        for (id, queue) in template.of_kind("AWS::SQS::Queue") {
            let retention = number(&queue.properties["MessageRetentionPeriod"]);
            assert!(
                retention + REDRIVE_MARGIN_SECONDS <= min_ttl,
                "{block} {id}: {retention} s"
            );
            queues += 1;
        }
        assert_eq!(queues, expected_queues, "{block}");
        let keeping_records: Vec<_> = template
            .of_kind("AWS::Serverless::Function")
            .filter(|(_, f)| {
                f.properties["Environment"]["Variables"]
                    .get("IDEMPOTENCY_TABLE")
                    .is_some()
            })
            .collect();
        assert!(!keeping_records.is_empty(), "{block}");
        for (id, function) in keeping_records {
            assert_eq!(
                function.properties["Environment"]["Variables"]["IDEMPOTENCY_TTL_SECONDS"],
                serde_json::json!({"Fn::Select": [6, {"Ref": "Bus"}]}),
                "{block} {id}"
            );
        }
    }
}

#[test]
fn the_library_default_ttl_outlives_every_queue_too() {
    assert!(
        DEFAULT_RECORD_TTL
            >= Duration::from_secs(SQS_MAX_RETENTION_SECONDS + REDRIVE_MARGIN_SECONDS)
    );
    let config = herald::idempotency::IdempotencyConfig::new("t", "p");
    assert_eq!(config.record_ttl, DEFAULT_RECORD_TTL);
}

#[test]
fn the_local_runner_refuses_a_ttl_shorter_than_the_dead_letters_as_cloudformation_would() {
    let template = Template::load(&common::root().join("template.yaml")).unwrap();
    let err = template
        .check_parameter("IdempotencyTtlSeconds", "604800")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("IdempotencyTtlSeconds") && err.contains("MinValue"),
        "{err}"
    );
    template
        .check_parameter("IdempotencyTtlSeconds", "2592000")
        .unwrap();
    assert!(template.check_parameter("NoSuchParameter", "1").is_err());
    assert!(template.check_parameter("LogLevel", "LOUD").is_err());
    assert!(template.check_parameter("LogLevel", "DEBUG").is_ok());
    assert!(template.check_parameter("LogRetentionDays", "14").is_ok());
    assert!(template.check_parameter("LogRetentionDays", "15").is_err());
}

/// `sam deploy` passes samconfig.toml's overrides to CloudFormation, which refuses one outside
/// its parameter's bounds: every override there must pass the template's own declaration (a
/// 7-day idempotency TTL once sat there, below the 15-day MinValue).
#[test]
fn every_override_in_samconfig_is_one_cloudformation_accepts() {
    let template = Template::load(&common::root().join("template.yaml")).unwrap();
    let samconfig = std::fs::read_to_string(common::root().join("samconfig.toml")).unwrap();
    let overrides: Vec<&str> = samconfig
        .lines()
        .filter_map(|l| l.trim().strip_prefix("parameter_overrides"))
        .flat_map(|l| {
            l.trim_start_matches([' ', '='])
                .trim_matches('"')
                .split_whitespace()
        })
        .collect();
    assert!(
        !overrides.is_empty(),
        "samconfig.toml has parameter_overrides"
    );
    for pair in &overrides {
        let (name, value) = pair.split_once('=').expect("Name=value");
        template
            .check_parameter(name, value.trim_matches('"'))
            .unwrap_or_else(|e| panic!("samconfig.toml: {e}"));
    }
}

/// Firehose refuses a buffer interval under 60 s with dynamic partitioning (the archive
/// partitions by type), so a deploy with `ArchiveBufferSeconds=0` failed on AWS while the local
/// runner played it (issue 24, item 10). The parameter keeps Firehose's floor, and the local
/// runner refuses a template that goes below it, by name.
#[tokio::test]
async fn the_archive_buffer_keeps_firehoses_floor_for_dynamic_partitioning() {
    let template = Template::load(&common::root().join("template.yaml")).unwrap();
    for value in ["0", "1", "59"] {
        let err = template
            .check_parameter("ArchiveBufferSeconds", value)
            .unwrap_err();
        assert!(err.to_string().contains("MinValue 60"), "{err}");
    }
    template
        .check_parameter("ArchiveBufferSeconds", "60")
        .unwrap();
    // A template that writes a shorter interval itself is refused when provisioned, by name.
    let text = std::fs::read_to_string(common::root().join("template.yaml"))
        .unwrap()
        .replace(
            "IntervalInSeconds: !Ref ArchiveBufferSeconds",
            "IntervalInSeconds: 10",
        );
    let dir = std::env::temp_dir().join(common::unique("buffer-floor"));
    std::fs::create_dir_all(dir.join("infra/blocks")).unwrap();
    std::fs::write(dir.join("template.yaml"), text).unwrap();
    // The building blocks it is written on, where its applications' `Location`s say.
    for block in std::fs::read_dir(common::root().join("infra/blocks")).unwrap() {
        let block = block.unwrap().path();
        std::fs::copy(
            &block,
            dir.join("infra/blocks").join(block.file_name().unwrap()),
        )
        .unwrap();
    }
    let template = Template::load(&dir.join("template.yaml")).unwrap();
    let options = herald_local::StackOptions {
        name: common::unique("floor"),
        ..Default::default()
    };
    let endpoint = common::endpoint().await;
    let err = herald_local::provision(&template, &options, &common::aws().await, &endpoint.url)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("at least 60 with dynamic partitioning"),
        "{err:#}"
    );
}
