//! The local pipeline end to end: order traffic into the producer at a steady rate, every hop run
//! by the local runner against the emulator; then, from the functions' own output,
//! - throughput and per-transaction latency (producer's write to the stream → the transaction's
//!   last effect, follow-ups included), from the log lines `herald trace` reads;
//! - AWS requests per submitted event for every function, from their EMF documents (an SDK
//!   interceptor counts each request), plus the SQS requests of the event source mappings;
//! - what those requests cost per million events under a small price model, next to a naive
//!   baseline (one `PutRecord` and one `Publish` per event, two idempotency writes per delivery);
//! - the emulator's own speed (sequential DynamoDB writes), so herald's overhead can be told from
//!   moto's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::endpoint::Endpoint;
use crate::example;
use crate::load::{self, quantile, LoadOptions, LoadSummary};

/// One run.
#[derive(Clone, Debug)]
pub struct PipelineRun {
    /// `happy path` / `10 % duplicates`.
    pub label: String,
    /// What was sent.
    pub load: LoadSummary,
    /// From the first send until every function was idle.
    pub settled: Duration,
    /// Per transaction: first write to the stream → last effect applied.
    pub latencies: Vec<Duration>,
    /// Submitted events per second over the span of all hops.
    pub throughput: f64,
    /// Summed EMF metrics per function.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// SQS requests of the event source mappings: (receives with messages, delete batches).
    pub poller: (usize, usize),
}

/// Run the pipeline once: `events` events at `rate` per second, `duplicates` of them retries.
pub async fn run(
    root: &Path,
    endpoint: &Endpoint,
    release: bool,
    label: &str,
    rate: f64,
    events: usize,
    duplicates: f64,
) -> Result<PipelineRun> {
    let stack_name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let log_dir = root.join(".herald/logs").join(&stack_name);
    let mut options = crate::UpOptions::new(root.to_path_buf());
    options.stack.name = stack_name;
    options.release = release;
    options.quiet_build = true;
    options.runner.log_dir = Some(log_dir.clone());
    let port = crate::moto::free_port()?;
    options.runner.url_port = Some(port);
    options.stack.function_url_base = format!("http://127.0.0.1:{port}");
    let pipeline = crate::up(endpoint, options).await?;
    pipeline.warm().await?;
    let stack = pipeline.stack().clone();
    let url = stack.function_url("producer")?;
    let catalog = example::catalog(&root.join("infra/seed"))?;
    let started = Instant::now();
    let summary = load::run(
        &url,
        &catalog,
        &LoadOptions {
            rate,
            duration: Duration::from_secs_f64(events as f64 / rate),
            duplicates,
            ..LoadOptions::default()
        },
        |_| {},
    )
    .await?;
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(600))
        .await?;
    let settled = started.elapsed();
    let metrics = pipeline.metrics();
    let poller = pipeline.poller_requests();
    pipeline.stop().await;

    let traces = crate::trace::all(&log_dir)?;
    let mut latencies = Vec::new();
    let (mut first, mut last) = (None, None);
    for trace in &traces {
        // Producer accept (the first write to the stream) → the last effect applied. A client
        // retry's duplicate-skipped hops come whenever the client retried: not pipeline latency.
        let hops = || trace.events.iter().flat_map(|e| e.hops.iter());
        let start = hops()
            .filter(|h| h.kind == "stream" || h.kind == "store")
            .map(|h| h.time)
            .min();
        let end = hops().filter(|h| h.kind == "applied").map(|h| h.time).max();
        if let (Some(start), Some(end)) = (start, end) {
            latencies.push((end - start).to_std().unwrap_or_default());
            first = first.min(Some(start)).or(Some(start));
            last = last.max(Some(end));
        }
    }
    let span = match (first, last) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    Ok(PipelineRun {
        label: label.to_string(),
        throughput: summary.sent as f64 / span.as_secs_f64().max(1e-9),
        load: summary,
        settled,
        latencies,
        metrics,
        poller,
    })
}

/// The emulator's own speed, sequentially: `writes` `PutItem`s into an empty table, then as
/// many two-item `TransactWriteItems` into a table already holding `filled` items (what an
/// idempotency table holds after a run).
pub async fn emulator_speed(
    endpoint: &Endpoint,
    writes: usize,
    filled: usize,
) -> Result<EmulatorSpeed> {
    let client = aws_sdk_dynamodb::Client::new(&endpoint.sdk_config().await);
    let table = format!(
        "bench-writes-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    let payload = "x".repeat(400);
    let mut latencies = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        let at = Instant::now();
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("payload", AttributeValue::S(payload.clone()))
            .send()
            .await?;
        latencies.push(at.elapsed());
    }
    let puts_per_second = writes as f64 / started.elapsed().as_secs_f64();
    let put_p50 = quantile(&latencies, 0.5);
    for i in writes..filled.max(writes) {
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("payload", AttributeValue::S(payload.clone()))
            .send()
            .await?;
    }
    let put = |key: String| -> Result<aws_sdk_dynamodb::types::TransactWriteItem> {
        Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
            .put(
                aws_sdk_dynamodb::types::Put::builder()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(key))
                    .item("payload", AttributeValue::S(payload.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()?,
            )
            .build())
    };
    let mut latencies = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        let at = Instant::now();
        client
            .transact_write_items()
            .transact_items(put(format!("tx-{i}-a"))?)
            .transact_items(put(format!("tx-{i}-b"))?)
            .send()
            .await?;
        latencies.push(at.elapsed());
    }
    let transactions_per_second = writes as f64 / started.elapsed().as_secs_f64();
    let _ = client.delete_table().table_name(&table).send().await;
    Ok(EmulatorSpeed {
        puts_per_second,
        put_p50,
        transactions_per_second,
        transaction_p50: quantile(&latencies, 0.5),
        filled: filled.max(writes),
    })
}

/// What the emulator does on its own.
#[derive(Clone, Debug)]
pub struct EmulatorSpeed {
    /// Sequential `PutItem`s per second.
    pub puts_per_second: f64,
    /// Their median latency.
    pub put_p50: Duration,
    /// Sequential two-item `TransactWriteItems` per second, into a filled table.
    pub transactions_per_second: f64,
    /// Their median latency.
    pub transaction_p50: Duration,
    /// Items in the table during the transactions.
    pub filled: usize,
}

/// List prices (us-east-1, on-demand / standard, as published in 2025) the cost model uses.
pub mod prices {
    /// Kinesis Data Streams: per PUT payload unit (25 KB; a ~600 B event is one).
    pub const KINESIS_PUT_UNIT: f64 = 0.014 / 1e6;
    /// SNS standard topic: per request (each 64 KB chunk of a publish, so a `PublishBatch` of 10
    /// small events is one). Deliveries to SQS are free.
    pub const SNS_REQUEST: f64 = 0.50 / 1e6;
    /// SQS standard queue: per request (Lambda's pollers bill `ReceiveMessage` and
    /// `DeleteMessageBatch`).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// DynamoDB on-demand: per write request unit (1 KB; a transaction's item costs 2).
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand: per read request unit (4 KB, strongly consistent).
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// Lambda: per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
}

/// Billable units per submitted event, by service.
#[derive(Clone, Debug, Default)]
pub struct Units {
    /// Kinesis `PutRecords` / `PutRecord` requests.
    pub kinesis_requests: f64,
    /// Kinesis PUT payload units.
    pub kinesis_put_units: f64,
    /// SNS billed requests.
    pub sns_requests: f64,
    /// SQS requests (pollers and dead letters).
    pub sqs_requests: f64,
    /// DynamoDB requests.
    pub dynamodb_requests: f64,
    /// DynamoDB write units.
    pub dynamodb_wru: f64,
    /// DynamoDB read units.
    pub dynamodb_rru: f64,
    /// Lambda invocations.
    pub lambda_invocations: f64,
}

impl Units {
    /// Dollars per million submitted events (Lambda duration excluded: measured against the
    /// emulator, it says more about moto than about herald).
    pub fn dollars_per_million(&self) -> f64 {
        1e6 * (self.kinesis_put_units * prices::KINESIS_PUT_UNIT
            + self.sns_requests * prices::SNS_REQUEST
            + self.sqs_requests * prices::SQS_REQUEST
            + self.dynamodb_wru * prices::DYNAMODB_WRU
            + self.dynamodb_rru * prices::DYNAMODB_RRU
            + self.lambda_invocations * prices::LAMBDA_REQUEST)
    }
}

fn sum(run: &PipelineRun, key: &str) -> f64 {
    run.metrics
        .values()
        .map(|m| m.get(key).copied().unwrap_or(0.0))
        .sum()
}

fn of(run: &PipelineRun, function: &str, key: &str) -> f64 {
    run.metrics
        .get(function)
        .and_then(|m| m.get(key))
        .copied()
        .unwrap_or(0.0)
}

/// herald's units per submitted event in `run`.
pub fn herald_units(run: &PipelineRun) -> Units {
    let events = run.load.sent.max(1) as f64;
    let transact_items = sum(run, "aws:DynamoDB.TransactWriteItems#items");
    let writes = sum(run, "aws:DynamoDB.PutItem")
        + sum(run, "aws:DynamoDB.UpdateItem")
        + sum(run, "aws:DynamoDB.DeleteItem");
    let reads = sum(run, "aws:DynamoDB.GetItem") + sum(run, "aws:DynamoDB.Query");
    let dynamodb_requests: f64 = run
        .metrics
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:DynamoDB.") && !k.contains('#'))
        .map(|(_, v)| v)
        .sum();
    let sqs_sent: f64 = run
        .metrics
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:SQS."))
        .map(|(_, v)| v)
        .sum();
    Units {
        kinesis_requests: sum(run, "aws:Kinesis.PutRecords") / events,
        kinesis_put_units: of(run, "router", "EventsIn") / events,
        sns_requests: sum(run, "aws:SNS.PublishBatch") / events,
        sqs_requests: (run.poller.0 + run.poller.1) as f64 / events + sqs_sent / events,
        dynamodb_requests: dynamodb_requests / events,
        dynamodb_wru: (writes + 2.0 * transact_items) / events,
        dynamodb_rru: reads / events,
        lambda_invocations: sum(run, "Invocations") / events,
    }
}

/// The naive baseline for the same traffic: one `PutRecord` per record, one `Publish` per routed
/// event, and idempotency as two writes per delivery (claim, then complete) beside the effect
/// instead of inside its transaction. Everything else as herald does it.
pub fn naive_units(run: &PipelineRun) -> Units {
    let events = run.load.sent.max(1) as f64;
    let mut units = herald_units(run);
    let transactions = sum(run, "aws:DynamoDB.TransactWriteItems");
    let transact_items = sum(run, "aws:DynamoDB.TransactWriteItems#items");
    units.kinesis_requests = units.kinesis_put_units;
    units.sns_requests = of(run, "router", "EventsOut") / events;
    // A transaction of n items (record + n-1 effect writes) at 2 units each becomes claim +
    // n-1 effect writes + complete at 1 unit each, in n+1 requests.
    units.dynamodb_wru += (-2.0 * transact_items + transact_items + transactions) / events;
    units.dynamodb_requests += (transact_items + transactions - transactions) / events;
    units
}

/// Reads one kind of unit.
type UnitOf = fn(&Units) -> f64;

/// The tables for a happy-path run and a run with duplicates, plus the emulator's speed.
pub fn render(runs: &[PipelineRun], emulator: &EmulatorSpeed) -> String {
    let mut out = String::new();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let _ = writeln!(
        out,
        "end to end (local runner + moto): producer's write to the stream → a transaction's last effect\n"
    );
    let _ = writeln!(
        out,
        "| run | events sent | asked rate | throughput | p50 | p99 | max | settled |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}/s | {:.1} events/s | {} | {} | {} | {:.1} s |",
            run.label,
            run.load.sent,
            run.load.rate(),
            run.throughput,
            ms(quantile(&run.latencies, 0.5)),
            ms(quantile(&run.latencies, 0.99)),
            ms(quantile(&run.latencies, 1.0)),
            run.settled.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "\nthe emulator alone (moto, one request at a time): {:.0} sequential PutItem/s (p50 {:.1} ms); {:.0} two-item TransactWriteItems/s into a table of {} items (p50 {:.1} ms)\n",
        emulator.puts_per_second,
        emulator.put_p50.as_secs_f64() * 1000.0,
        emulator.transactions_per_second,
        emulator.filled,
        emulator.transaction_p50.as_secs_f64() * 1000.0
    );

    let _ = writeln!(
        out,
        "AWS requests per submitted event, by function (EMF `awsRequests`; pollers = Lambda's SQS event source mappings)\n"
    );
    let mut header = String::from("| function |");
    let mut rule = String::from("|---|");
    for run in runs {
        header.push_str(&format!(" {} |", run.label));
        rule.push_str("---:|");
    }
    header.push_str(" operations (first run) |");
    rule.push_str("---|");
    let _ = writeln!(out, "{header}\n{rule}");
    let functions: Vec<String> = runs
        .first()
        .map(|r| r.metrics.keys().cloned().collect())
        .unwrap_or_default();
    for function in &functions {
        let mut row = format!("| {function} |");
        for run in runs {
            let events = run.load.sent.max(1) as f64;
            row.push_str(&format!(
                " {:.3} |",
                of(run, function, "AwsRequests") / events
            ));
        }
        let operations: Vec<String> = runs[0].metrics[function]
            .iter()
            .filter(|(k, _)| k.starts_with("aws:") && !k.contains('#'))
            .map(|(k, v)| format!("{} {:.3}", &k[4..], v / runs[0].load.sent.max(1) as f64))
            .collect();
        row.push_str(&format!(" {} |", operations.join(", ")));
        let _ = writeln!(out, "{row}");
    }
    let mut row = String::from("| SQS pollers |");
    for run in runs {
        let events = run.load.sent.max(1) as f64;
        row.push_str(&format!(
            " {:.3} |",
            (run.poller.0 + run.poller.1) as f64 / events
        ));
    }
    row.push_str(" ReceiveMessage (with messages) + DeleteMessageBatch |");
    let _ = writeln!(out, "{row}");

    let _ = writeln!(
        out,
        "\ncost model per million submitted events (prices in `bench::pipeline::prices`; Lambda duration excluded)\n"
    );
    // The cost model reads the runs at a sustainable rate (the first two).
    let priced = &runs[..runs.len().min(2)];
    let mut header = String::from("| units per event |");
    let mut rule = String::from("|---|");
    for run in priced {
        header.push_str(&format!(" herald, {} |", run.label));
        rule.push_str("---:|");
    }
    for run in priced {
        header.push_str(&format!(" naive, {} |", run.label));
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let all: Vec<Units> = priced
        .iter()
        .map(herald_units)
        .chain(priced.iter().map(naive_units))
        .collect();
    let lines: [(&str, UnitOf); 8] = [
        ("Kinesis put requests", |u| u.kinesis_requests),
        ("Kinesis PUT payload units", |u| u.kinesis_put_units),
        ("SNS billed requests", |u| u.sns_requests),
        ("SQS requests", |u| u.sqs_requests),
        ("DynamoDB requests", |u| u.dynamodb_requests),
        ("DynamoDB write units", |u| u.dynamodb_wru),
        ("DynamoDB read units", |u| u.dynamodb_rru),
        ("Lambda invocations", |u| u.lambda_invocations),
    ];
    for (name, get) in lines {
        let mut row = format!("| {name} |");
        for units in &all {
            row.push_str(&format!(" {:.3} |", get(units)));
        }
        let _ = writeln!(out, "{row}");
    }
    let mut row = String::from("| **$ per million events** |");
    for units in &all {
        row.push_str(&format!(" **{:.2}** |", units.dollars_per_million()));
    }
    let _ = writeln!(out, "{row}");
    out
}
