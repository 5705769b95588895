//! Replay: the stack's stream re-read from a point in time and sent through its router function:
//! a deployed stack's own (Lambda `Invoke`), or a local one's run as a Lambda process, with what
//! it reported from its metrics.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde_json::Value;

use herald_local::endpoint::Endpoint;
use herald_local::logs::Logs;
use herald_local::runtime::FunctionPool;
use herald_local::stack::{FunctionSpec, MappingSpec, Stack, StreamMapping, StreamSource};
use herald_local::stream::{lambda_event, EventSource, Position, Stream, ToTip};

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records read from the stream (and sent through the router).
    pub read: usize,
    /// Invocations of the router.
    pub batches: usize,
    /// What the router says it did with them, from its EMF metrics; none when it wrote none.
    pub routed: Option<Routed>,
}

/// What the router reported doing with the replayed records (its `EventsOut` and
/// `DeadLettered` metrics, summed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Records published.
    pub published: usize,
    /// Records dead-lettered as poison.
    pub dead_lettered: usize,
}

/// The function a replay sends the stream through, and its mapping: the function that reads the
/// stack's Kinesis stream (when several do, the one whose binary is `router`).
pub fn replay_function(stack: &Stack) -> Result<(&FunctionSpec, &StreamMapping)> {
    let readers: Vec<&StreamMapping> = stack
        .mappings
        .iter()
        .filter_map(|m| match m {
            MappingSpec::Stream(k) if k.source == StreamSource::Kinesis => Some(k),
            _ => None,
        })
        .collect();
    let function = |mapping: &StreamMapping| stack.function(&mapping.function);
    let mapping = match readers[..] {
        [] => bail!("no function of the stack reads a Kinesis stream"),
        [one] => one,
        _ => *readers
            .iter()
            .find(|m| function(m).is_ok_and(|f| f.label() == "router"))
            .ok_or_else(|| {
                let ids: Vec<&str> = readers.iter().map(|m| m.function.as_str()).collect();
                anyhow!(
                    "several functions read a Kinesis stream ({}); herald cannot tell which routes",
                    ids.join(", ")
                )
            })?,
    };
    Ok((function(mapping)?, mapping))
}

/// Re-read the stream from `from` and send every record through the stack's router function
/// again (safe: subscribers are idempotent), in the batches Lambda would give it: a deployed
/// stack's router through Lambda's `Invoke`; a local stack's run as a Lambda process from
/// `bin_dir`, with its stack environment, stopped at the end. `progress(records so far)` is
/// called per batch.
pub async fn replay(
    aws: &SdkConfig,
    stack: &Stack,
    bin_dir: Option<&Path>,
    from: DateTime<Utc>,
    progress: impl Fn(usize),
) -> Result<Replayed> {
    let router = Router::start(aws, stack, bin_dir)?;
    let sent = send_stream(aws, stack, &router, from, progress).await;
    let routed = router.stop().await;
    let mut replayed = sent?;
    replayed.routed = routed;
    Ok(replayed)
}

/// The stack's router function for a replay: the deployed one, invoked through Lambda; or, for a
/// local stack, run once as a local Lambda process, quiet (what it did is read from its metrics,
/// failures come back as errors), talking to the endpoint the records are read from.
pub(super) struct Router<'a> {
    pub(super) function: &'a FunctionSpec,
    pub(super) mapping: &'a StreamMapping,
    runs: Runs,
}

enum Runs {
    Deployed(aws_sdk_lambda::Client),
    Process {
        pool: Box<FunctionPool>,
        logs: Arc<Logs>,
    },
}

impl<'a> Router<'a> {
    pub(super) fn start(aws: &SdkConfig, stack: &'a Stack, bin_dir: Option<&Path>) -> Result<Self> {
        let (function, mapping) = replay_function(stack)?;
        if stack.deployment.is_some() {
            return Ok(Router {
                function,
                mapping,
                runs: Runs::Deployed(aws_sdk_lambda::Client::new(aws)),
            });
        }
        let Some(bin_dir) = bin_dir else {
            bail!("a local stack's router runs from its binary: no binary directory given");
        };
        let binary = bin_dir.join(&function.binary);
        if !binary.exists() {
            bail!(
                "{} is not built (expected {}); build with `cargo build --bins`",
                function.binary,
                binary.display()
            );
        }
        let endpoint = aws.endpoint_url().unwrap_or(&stack.endpoint);
        let logs = Arc::new(Logs::new(false, None));
        let pool = FunctionPool::new(
            function.clone(),
            binary,
            Endpoint::external(endpoint)
                .with_services(herald_local::endpoint::services_of(aws))
                .child_env(),
            1,
            logs.clone(),
            Arc::new(AtomicUsize::new(0)),
        );
        Ok(Router {
            function,
            mapping,
            runs: Runs::Process {
                pool: Box::new(pool),
                logs,
            },
        })
    }

    /// One batch through the router; its response.
    pub(super) async fn invoke(&self, event: &Value) -> Result<Value> {
        let label = self.function.label();
        match &self.runs {
            Runs::Process { pool, .. } => pool
                .invoke(event)
                .await
                .map_err(|err| anyhow!("{label}: {err}")),
            Runs::Deployed(lambda) => {
                let answer = lambda
                    .invoke()
                    .function_name(&self.function.name)
                    .payload(aws_smithy_types::Blob::new(serde_json::to_vec(event)?))
                    .send()
                    .await
                    .map_err(|err| {
                        anyhow!(
                            "invoking {}: {}",
                            self.function.name,
                            herald::aws::error_text(&err)
                        )
                    })?;
                let payload = answer
                    .payload()
                    .map(|p| p.as_ref().to_vec())
                    .unwrap_or_default();
                if let Some(kind) = answer.function_error() {
                    bail!(
                        "{} failed ({kind}): {}",
                        self.function.name,
                        String::from_utf8_lossy(&payload)
                    );
                }
                Ok(serde_json::from_slice(&payload).unwrap_or(Value::Null))
            }
        }
    }

    /// Stop it and read what it reported: a local process's metrics (stopping also reads what it
    /// wrote last); none for a deployed router (its metrics are in CloudWatch).
    pub(super) async fn stop(self) -> Option<Routed> {
        let Runs::Process { pool, logs } = self.runs else {
            return None;
        };
        pool.stop().await;
        logs.metrics().get(self.function.label()).map(|metrics| {
            let count = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as usize;
            Routed {
                published: count("EventsOut"),
                dead_lettered: count("DeadLettered"),
            }
        })
    }
}

/// How many of a batch of `records` the router's response reports failed (Lambda's contract: an
/// absent or null list means the whole batch went through; anything else not a list, all of it).
pub(super) fn failed_records(response: &Value, records: usize) -> usize {
    match &response["batchItemFailures"] {
        Value::Null => 0,
        Value::Array(failures) => failures.len(),
        _ => records,
    }
}

/// Every record of the router's stream from `from`, to the router in batches of its mapping's size.
async fn send_stream(
    aws: &SdkConfig,
    stack: &Stack,
    router: &Router<'_>,
    from: DateTime<Utc>,
    progress: impl Fn(usize),
) -> Result<Replayed> {
    let mapping = router.mapping;
    let stream = Stream::Kinesis {
        client: aws_sdk_kinesis::Client::new(aws),
        name: mapping.stream_name.clone(),
    };
    let source = EventSource::of(stack, mapping);
    let start = Position::AtMillis(from.timestamp_millis());
    let mut replayed = Replayed::default();
    for shard in stream.shards().await?.shards {
        let mut reader = ToTip::open(&stream, &shard.id, &start).await?;
        while let Some(records) = reader.next(mapping.batch_size as i32).await? {
            let event = lambda_event(source, &records);
            let response = router.invoke(&event).await.map_err(|err| {
                anyhow!(
                    "failed on a batch of {} records: {err:#}; run it again",
                    records.len()
                )
            })?;
            let failed = failed_records(&response, records.len());
            if failed > 0 {
                bail!(
                    "the router could not publish part of the replay ({failed} records); run it again"
                );
            }
            replayed.read += records.len();
            replayed.batches += 1;
            progress(replayed.read);
        }
    }
    Ok(replayed)
}
