//! The pipeline benchmark's tables: end-to-end throughput and latency, the emulator's speed, AWS
//! requests per event by function, and the cost model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::cost::{
    floor_units, herald_units, naive_units, of, powertools_units, write_units_per_table, Units,
};
use super::{EmulatorSpeed, PipelineRun};
use crate::load::quantile;

/// Reads one kind of unit.
type UnitOf = fn(&Units) -> f64;

/// A design's units for a run.
type Design = fn(&PipelineRun) -> Units;

/// The tables for a happy-path run and a run with duplicates, plus the emulator's speed.
pub fn render(runs: &[PipelineRun], emulator: &EmulatorSpeed) -> String {
    let mut out = String::new();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let _ = writeln!(
        out,
        "end to end (local runner + moto): an order's write to the event store → a transaction's last effect\n"
    );
    let _ = writeln!(
        out,
        "| run | events sent | asked rate | drained (completions/s) | p50 | p99 | max | settled |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}/s | {:.1}/s | {} | {} | {} | {:.1} s |",
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
    write_units_by_table(&mut out, runs);

    let _ = writeln!(
        out,
        "\ncost model per million submitted events (prices in `bench::pipeline::prices`; Lambda duration excluded)\n"
    );
    // The cost model reads the runs at a sustainable rate (the first two).
    let priced = &runs[..runs.len().min(2)];
    let designs: [(&str, Design); 4] = [
        ("herald", herald_units),
        ("Powertools' design", powertools_units),
        ("naive", naive_units),
        ("floor", floor_units),
    ];
    let mut header = String::from("| units per event |");
    let mut rule = String::from("|---|");
    let mut all: Vec<Units> = Vec::new();
    for (design, units) in designs {
        for run in priced {
            header.push_str(&format!(" {design}, {} |", run.label));
            rule.push_str("---:|");
            all.push(units(run));
        }
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let lines: [(&str, UnitOf); 10] = [
        ("Kinesis put requests", |u| u.kinesis_requests),
        ("Kinesis PUT payload units", |u| u.kinesis_put_units),
        ("SNS billed requests", |u| u.sns_requests),
        ("SQS requests", |u| u.sqs_requests),
        ("DynamoDB requests", |u| u.dynamodb_requests),
        ("DynamoDB write units", |u| u.dynamodb_wru),
        ("DynamoDB read units", |u| u.dynamodb_rru),
        ("Lambda invocations", |u| u.lambda_invocations),
        ("Archive records (Firehose, 5 KB billed each)", |u| {
            u.archive_records
        }),
        ("Archive $ per million (in the total)", |u| {
            1e6 * u.archive_dollars()
        }),
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

/// DynamoDB write units per submitted event on each table (every function's writes summed),
/// as the SDK interceptor sized them: what each table's write quota must carry.
fn write_units_by_table(out: &mut String, runs: &[PipelineRun]) {
    let tables: Vec<BTreeMap<String, f64>> = runs.iter().map(write_units_per_table).collect();
    let names: BTreeSet<&String> = tables.iter().flat_map(|t| t.keys()).collect();
    if names.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nDynamoDB write units per submitted event, by table (one per started KB, two inside a transaction)\n"
    );
    let mut header = String::from("| table |");
    let mut rule = String::from("|---|");
    for run in runs {
        header.push_str(&format!(" {} |", run.label));
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for name in names {
        let mut row = format!("| {name} |");
        for table in &tables {
            row.push_str(&format!(
                " {:.2} |",
                table.get(name).copied().unwrap_or(0.0)
            ));
        }
        let _ = writeln!(out, "{row}");
    }
}
