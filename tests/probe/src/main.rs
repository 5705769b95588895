//! probe: a scripted Lambda for testing the local runner's event source mappings.
//!
//! Every record's data (Kinesis) or body (SQS) is JSON telling the probe what to do with it:
//! `{"n": 7, "key": "a", "fail": true, "fail_times": 2, "error": true, "sleep_ms": 3000,
//! "crash": true, "once": true, "drop_state": true}`. On a tumbling window (`TumblingWindowInSeconds`)
//! the state is the list of the `n`s processed so far in the window. The probe records every invocation in `PROBE_TABLE` (item
//! `inv#<uuid>`: record ids, `n`s, keys, memory size, process id, receive counts). Records are
//! processed with `herald::subscriber::partial_response` (Kinesis: in order, stopping at the first failure, or per
//! partition key with `PROBE_MODE=per-partition-key`; SQS: per message and FIFO group); each
//! processed record adds one to `deliveries#<n>` (every time), and applies its effect
//! `effect#<n>` once through `herald::idempotency` (transactional mode).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use base64::Engine;
use herald::idempotency::{Decision, Idempotency, IdempotencyConfig};
use herald::subscriber::partial_response::{fifo_group, process_kinesis, process_sqs, KinesisMode};
use herald::Envelope;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
struct Script {
    #[serde(default)]
    n: u64,
    #[serde(default)]
    key: String,
    /// Fail this record, always.
    #[serde(default)]
    fail: bool,
    /// Fail it on its first `fail_times` deliveries.
    #[serde(default)]
    fail_times: u64,
    /// Fail the whole invocation (a function error) while this record is in the batch.
    #[serde(default)]
    error: bool,
    /// Sleep this long when reaching this record.
    #[serde(default)]
    sleep_ms: u64,
    /// Exit the process when reaching this record.
    #[serde(default)]
    crash: bool,
    /// Sleep or crash only on the first delivery.
    #[serde(default)]
    once: bool,
    /// On a tumbling window: answer the first delivery of this record without a state.
    #[serde(default)]
    drop_state: bool,
}

struct Probe {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    idempotency: Idempotency,
}

impl Probe {
    /// Add one to a counter item and return its new value.
    async fn bump(&self, pk: String) -> Result<u64, String> {
        let out = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .update_expression("ADD #c :one")
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| herald::aws::error_text(&e))?;
        Ok(out
            .attributes
            .and_then(|a| {
                a.get("count")
                    .and_then(|c| c.as_n().ok())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0))
    }

    /// One record, as its script says.
    async fn record(&self, id: &str, script: &Script) -> Result<(), String> {
        let first = !script.once || self.bump(format!("once#{id}")).await? == 1;
        if script.crash && first {
            std::process::exit(3);
        }
        if script.sleep_ms > 0 && first {
            tokio::time::sleep(Duration::from_millis(script.sleep_ms)).await;
        }
        let attempts = if script.fail_times > 0 {
            self.bump(format!("attempts#{id}")).await?
        } else {
            0
        };
        if script.fail || (attempts > 0 && attempts <= script.fail_times) {
            return Err(format!("record {} is scripted to fail", script.n));
        }
        self.bump(format!("deliveries#{}", script.n)).await?;
        let event = Envelope::builder("probed", "herald/probe")
            .id(script.n.to_string())
            .subject("probe")
            .build()
            .map_err(|e| e.to_string())?;
        let effect = TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(format!("effect#{}", script.n)))
                    .update_expression("ADD #c :one")
                    .expression_attribute_names("#c", "count")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .build();
        self.idempotency
            .run_transactional(&event, |_| {
                Ok::<_, String>(Decision {
                    deltas: Vec::new(),
                    writes: vec![effect.clone()],
                    result: (),
                })
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        let records = event.payload["Records"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kinesis = records
            .first()
            .map(|r| r["eventSource"] == "aws:kinesis")
            .unwrap_or(false);
        let mut scripts: HashMap<String, Script> = HashMap::new();
        let mut ids = Vec::new();
        for record in &records {
            let (id, body) = if kinesis {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(record["kinesis"]["data"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                (
                    record["kinesis"]["sequenceNumber"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    data,
                )
            } else {
                (
                    record["messageId"].as_str().unwrap_or_default().to_string(),
                    record["body"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                )
            };
            ids.push(id.clone());
            scripts.insert(id, serde_json::from_slice(&body).unwrap_or_default());
        }
        let s = AttributeValue::S;
        let list = |values: Vec<AttributeValue>| AttributeValue::L(values);
        // On a tumbling window: which window, whether final, and the state passed in.
        let window = |key: &str| s(event.payload[key].to_string());
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("inv#{}", uuid::Uuid::new_v4())))
            .item("window", window("window"))
            .item("final", window("isFinalInvokeForWindow"))
            .item("early", window("isWindowTerminatedEarly"))
            .item("state", window("state"))
            .item("kind", s(if kinesis { "kinesis" } else { "sqs" }.into()))
            .item(
                "at",
                AttributeValue::N(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)?
                        .as_micros()
                        .to_string(),
                ),
            )
            .item("ids", list(ids.iter().map(|id| s(id.clone())).collect()))
            .item(
                "ns",
                list(
                    ids.iter()
                        .map(|id| AttributeValue::N(scripts[id].n.to_string()))
                        .collect(),
                ),
            )
            .item(
                "keys",
                list(ids.iter().map(|id| s(scripts[id].key.clone())).collect()),
            )
            .item(
                "memory",
                AttributeValue::N(event.context.env_config.memory.to_string()),
            )
            .item("pid", AttributeValue::N(std::process::id().to_string()))
            .item(
                "receives",
                list(
                    records
                        .iter()
                        .map(|r| {
                            s(r["attributes"]["ApproximateReceiveCount"]
                                .as_str()
                                .unwrap_or("")
                                .to_string())
                        })
                        .collect(),
                ),
            )
            .send()
            .await?;
        if scripts.values().any(|p| p.error) {
            return Err("a record asked for a function error".into());
        }
        if event.payload.get("window").is_some() {
            return self.window(&event.payload, &ids, &scripts).await;
        }
        let response = if kinesis {
            let event: KinesisEvent = serde_json::from_value(event.payload)?;
            let mode = match std::env::var("PROBE_MODE").as_deref() {
                Ok("per-partition-key") => KinesisMode::PerPartitionKey,
                _ => KinesisMode::StopAtFirstFailure,
            };
            let report = process_kinesis(&event, mode, async |r| {
                let id = &r.kinesis.sequence_number;
                self.record(id, &scripts[id]).await
            })
            .await;
            serde_json::to_value(report.response)?
        } else {
            let event: SqsEvent = serde_json::from_value(event.payload)?;
            let report = process_sqs(
                &event,
                |_, m| fifo_group(m),
                async |_, m| {
                    let id = m.message_id.clone().unwrap_or_default();
                    self.record(&id, &scripts[&id]).await
                },
            )
            .await;
            serde_json::to_value(report.response)?
        };
        Ok(response)
    }
}

impl Probe {
    /// A tumbling-window invocation, as Lambda's contract asks: the records' `n`s are appended
    /// to the state's `ns` in order; at the first failure that record and every later one are
    /// reported, and the state holds only the records before it. The final invocation records
    /// the window's state as `final#<window start>#<uuid>`.
    async fn window(
        &self,
        payload: &Value,
        ids: &[String],
        scripts: &HashMap<String, Script>,
    ) -> Result<Value, Error> {
        if payload["isFinalInvokeForWindow"] == true {
            self.dynamodb
                .put_item()
                .table_name(&self.table)
                .item(
                    "pk",
                    AttributeValue::S(format!(
                        "final#{}#{}",
                        payload["window"]["start"].as_str().unwrap_or_default(),
                        uuid::Uuid::new_v4()
                    )),
                )
                .item("state", AttributeValue::S(payload["state"].to_string()))
                .item(
                    "early",
                    AttributeValue::S(payload["isWindowTerminatedEarly"].to_string()),
                )
                .send()
                .await?;
            return Ok(serde_json::json!({ "state": {} }));
        }
        let mut ns: Vec<Value> = payload["state"]["ns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut failures = Vec::new();
        for id in ids {
            let script = &scripts[id];
            if !failures.is_empty() {
                failures.push(serde_json::json!({ "itemIdentifier": id }));
                continue;
            }
            if script.drop_state && self.bump(format!("dropped#{id}")).await? == 1 {
                return Ok(serde_json::json!({ "batchItemFailures": [] }));
            }
            match self.record(id, script).await {
                Ok(()) => ns.push(Value::from(script.n)),
                Err(_) => failures.push(serde_json::json!({ "itemIdentifier": id })),
            }
        }
        Ok(serde_json::json!({ "state": { "ns": ns }, "batchItemFailures": failures }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::aws::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = herald::aws::env("PROBE_TABLE")?;
    let probe = Probe {
        idempotency: Idempotency::new(dynamodb.clone(), IdempotencyConfig::new(&table, "probe")),
        dynamodb,
        table,
    };
    let probe = &probe;
    lambda_runtime::run(service_fn(
        move |event| async move { probe.handle(event).await },
    ))
    .await
}
