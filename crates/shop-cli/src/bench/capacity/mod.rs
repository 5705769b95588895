//! `shop bench capacity`: how far the deployed template goes, and what 10, 100, 1 000 and
//! 10 000 submitted events per second need.
//!
//! One local run measures what a submitted event costs downstream (records, deliveries per
//! subscriber, DynamoDB write units, the busiest items); [`model`] turns it, the template's
//! settings and AWS's published [`limits`] into walls and sizings. The model's request counts
//! are checked against the run's own (the validation table): the model assumes full batches,
//! the local run at a few events per second fills them partly.

pub mod limits;
pub mod model;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use herald_local::{binaries, Endpoint, Template};
use serde_json::Value;

use super::pipeline::{self, herald_units, write_units_per_table, PipelineRun};
use crate::demo::workload::{self, Workload};
use model::{HotItem, Profile, Settings, Sizing, Wall, WallKind};

/// The rates the table sizes for.
pub const RATES: [f64; 4] = [10.0, 100.0, 1_000.0, 10_000.0];

/// The subscribers' function labels (their `EventsIn` are deliveries).
const SUBSCRIBERS: [&str; 6] = [
    "inventory",
    "payment",
    "email",
    "analytics",
    "ops",
    "projector",
];

/// Measure on the local pipeline (`events` at `rate`), then model; the tables.
pub async fn table(events: usize, rate: f64, release: bool) -> Result<String> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    let run = pipeline::run(&root, &endpoint, release, "capacity", rate, events, 0.0).await?;
    let template = Template::load(&root.join("template.yaml"))?;
    // Orders come in one per `POST /orders`, to the order service.
    let settings = settings(&template, 1.0)?;
    let profile = profile(&run, &root)?;
    Ok(render(&profile, &settings, &run))
}

/// The template's settings that bound throughput, at their defaults.
pub fn settings(template: &Template, events_per_request: f64) -> Result<Settings> {
    let parameter = |name: &str| -> Result<f64> {
        template
            .parameters
            .get(name)
            .and_then(number)
            .with_context(|| format!("template parameter {name}"))
    };
    let router = template
        .of_kind("AWS::Lambda::EventSourceMapping")
        .find(|(id, _)| *id == "BusRouterStreamMapping")
        .map(|(_, r)| r.properties.clone())
        .context("the template's BusRouterStreamMapping")?;
    let publisher = template
        .of_kind("AWS::Lambda::EventSourceMapping")
        .find(|(id, _)| *id == "OrderServicePublisherStreamMapping")
        .map(|(_, r)| r.properties.clone())
        .context("the template's OrderServicePublisherStreamMapping")?;
    Ok(Settings {
        shards: parameter("StreamShards")?,
        parallelization: router
            .get("ParallelizationFactor")
            .and_then(number)
            .unwrap_or(1.0),
        router_batch: router.get("BatchSize").and_then(number).unwrap_or(100.0),
        publisher_batch: publisher.get("BatchSize").and_then(number).unwrap_or(100.0),
        subscriber_batch: parameter("SubscriberBatchSize")?,
        subscriber_concurrency: parameter("SubscriberConcurrency")?,
        public_concurrency: parameter("PublicConcurrency")?,
        api_rate_limit: parameter("ApiRateLimit")?,
        events_per_request,
        stream_consumers: stream_consumers(template) as f64,
    })
}

/// Mappings and delivery streams that read the event stream (each reads every byte written).
fn stream_consumers(template: &Template) -> usize {
    let reads_stream = |v: &Value, key: &str| {
        v.get(key)
            .is_some_and(|s| s.to_string().contains("BusEventStream"))
    };
    let mappings = template
        .of_kind("AWS::Lambda::EventSourceMapping")
        .filter(|(_, r)| reads_stream(&r.properties, "EventSourceArn"))
        .count();
    let deliveries = template
        .of_kind("AWS::KinesisFirehose::DeliveryStream")
        .filter(|(_, r)| reads_stream(&r.properties, "KinesisStreamSourceConfiguration"))
        .count();
    mappings + deliveries
}

fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// What a submitted event cost in `run`.
pub fn profile(run: &PipelineRun, root: &Path) -> Result<Profile> {
    let events = run.load.sent.max(1) as f64;
    let metric = |function: &str, key: &str| {
        run.metrics
            .get(function)
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(0.0)
    };
    let deliveries: BTreeMap<String, f64> = SUBSCRIBERS
        .iter()
        .map(|s| (s.to_string(), metric(s, "EventsIn") / events))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let units = herald_units(run);
    // The traffic the load sent, for the busiest items: every order counts once into
    // `type#order_placed`, and reserves on the stock item of each SKU it lists.
    let catalog = workload::catalog(&root.join("infra/seed"))?;
    let orders = Workload {
        orders: 2000,
        malformed: false,
        system_events: 0,
        duplicate_ratio: 0.0,
        data_events: 0,
        ..Workload::default()
    }
    .generate(&catalog)
    .orders;
    let mut per_sku: BTreeMap<String, f64> = BTreeMap::new();
    for order in &orders {
        for item in order["data"]["items"].as_array().into_iter().flatten() {
            *per_sku
                .entry(item["sku"].as_str().unwrap_or_default().to_string())
                .or_default() += 1.0 / orders.len() as f64;
        }
    }
    let order_share = run.load.orders as f64 / events;
    let delivered = |subscriber: &str| deliveries.get(subscriber).copied().unwrap_or(0.0);
    // Analytics counts every order into one item; each message takes one transaction item (its
    // record), the counters being summed.
    let mut hot_items = vec![HotItem {
        name: "analytics counter type#order_placed".into(),
        subscriber: "analytics".into(),
        share: order_share / delivered("analytics").max(1e-9),
        items_per_message: 1.0,
    }];
    // Inventory reserves on the SKU's stock item; each order takes its reservation item (which
    // keeps its record) in the transaction.
    if let Some((sku, share)) = per_sku.iter().max_by(|a, b| a.1.total_cmp(b.1)) {
        hot_items.push(HotItem {
            name: format!("stock item {sku} (in {:.0} % of orders)", share * 100.0),
            subscriber: "inventory".into(),
            share: order_share * share / delivered("inventory").max(1e-9),
            items_per_message: 1.0,
        });
    }
    // Analytics sums its batches' increments per counter: its table is modelled counter by
    // counter, each with the share of analytics' messages the run counted into it.
    let analytics = delivered("analytics").max(1e-9);
    let counters: Vec<HotItem> = run
        .counters
        .iter()
        .map(|(metric, count)| HotItem {
            name: format!("analytics counter {metric}"),
            subscriber: "analytics".into(),
            share: count / events / analytics,
            items_per_message: 1.0,
        })
        .collect();
    let mut counter_tables = BTreeMap::new();
    if !counters.is_empty() {
        counter_tables.insert("AnalyticsTable".to_string(), counters);
    }
    Ok(Profile {
        records: units.kinesis_put_units,
        record_bytes: record_bytes(&orders),
        deliveries,
        dynamodb_wcu: units.dynamodb_wru,
        table_wru: write_units_per_table(run),
        hot_items,
        counter_tables,
        dollars_per_million: units.dollars_per_million(),
        order_requests: run
            .metrics
            .get("orders")
            .map(|m| {
                // Request counts are `aws:<Service>.<Operation>`; `#` marks a derived figure
                // (write units).
                m.iter()
                    .filter(|(key, _)| key.starts_with("aws:") && !key.contains('#'))
                    .map(|(_, n)| n)
                    .sum::<f64>()
            })
            .unwrap_or(0.0)
            / run.load.orders.max(1) as f64,
    })
}

/// Average size of an order as herald writes it (the envelope's own attributes added).
fn record_bytes(orders: &[Value]) -> f64 {
    let data: usize = orders
        .iter()
        .map(|o| serde_json::to_vec(o).map(|v| v.len()).unwrap_or(0))
        .sum();
    // specversion, time, datacontenttype, kind, correlation and causation ids, aggregateversion.
    data as f64 / orders.len().max(1) as f64 + 260.0
}

/// The tables.
pub fn render(profile: &Profile, settings: &Settings, run: &PipelineRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## 7. Capacity: what 10 to 10 000 submitted events per second need\n"
    );
    let _ = writeln!(
        out,
        "Measured per submitted event on the local pipeline ({} events at {:.0}/s): {:.2} records \
         ({:.0} B each), {:.2} SQS deliveries, {:.1} DynamoDB write units (the most on one table: \
         {}), ${:.2} per million in requests. AWS limits and latencies as in \
         `crates/shop-cli/src/bench/capacity/limits.rs`.\n",
        run.load.sent,
        run.load.rate(),
        profile.records,
        profile.record_bytes,
        profile.deliveries.values().sum::<f64>(),
        profile.dynamodb_wcu,
        profile
            .table_wru
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(table, wru)| format!("{wru:.1} on {table}"))
            .unwrap_or_else(|| "none measured".into()),
        profile.dollars_per_million
    );
    let _ = writeln!(out, "Walls with the template's defaults, lowest first:\n");
    let _ = writeln!(out, "| wall | full at (events/s) | moved by |");
    let _ = writeln!(out, "|---|---:|---|");
    for wall in model::walls(profile, settings) {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} |",
            wall.name,
            wall.max_rate,
            mover(&wall)
        );
    }
    let _ = writeln!(
        out,
        "\nSized for each rate (settings grown to run at ≤ {:.0} % of their limits):\n",
        model::TARGET_UTILISATION * 100.0
    );
    let _ = writeln!(
        out,
        "| events/s | shards | subscriber concurrency | public concurrency | Lambda concurrency | busiest table WRU/s | busiest item WCU/s | first wall | $ per month |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for rate in RATES {
        let sizing = model::size(profile, settings, rate);
        let _ = writeln!(out, "{}", row(&sizing));
    }
    let _ = writeln!(
        out,
        "\nThe model against the local run (per submitted event; the model assumes full batches, \
         the local run at {:.0} events/s fills them partly):\n",
        run.load.rate()
    );
    let units = herald_units(run);
    let _ = writeln!(out, "| per event | model, full batches | local run |");
    let _ = writeln!(out, "|---|---:|---:|");
    let deliveries: f64 = profile.deliveries.values().sum();
    for (what, model, measured) in [
        (
            // The publisher's request per batch of the store's stream, and one per batch of the
            // subscribers that emit follow-ups (payment for every order; inventory when it
            // refuses, counted as always: an upper bound).
            "Kinesis PutRecords",
            1.0 / settings.publisher_batch
                + ["payment", "inventory"]
                    .iter()
                    .filter_map(|s| profile.deliveries.get(*s))
                    .sum::<f64>()
                    / settings.subscriber_batch,
            units.kinesis_requests,
        ),
        (
            "SNS PublishBatch",
            profile.records / limits::SNS_BATCH_ENTRIES,
            units.sns_requests,
        ),
        (
            "SQS ReceiveMessage + DeleteMessageBatch",
            2.0 * deliveries / settings.subscriber_batch,
            (run.poller.0 + run.poller.1) as f64 / run.load.sent.max(1) as f64,
        ),
    ] {
        let _ = writeln!(out, "| {what} | {model:.3} | {measured:.3} |");
    }
    // The counter tables are modelled the same way: one write per counter per full batch.
    for table in profile.counter_tables.keys() {
        let model = profile
            .table_wru_at(settings.subscriber_batch)
            .get(table)
            .copied()
            .unwrap_or(0.0);
        let measured = profile.table_wru.get(table).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "| {table} write units (counters summed per batch) | {model:.3} | {measured:.3} |"
        );
    }
    out
}

fn mover(wall: &Wall) -> String {
    match wall.kind {
        WallKind::Setting(parameter) => format!("template: `{parameter}`"),
        WallKind::Quota => "AWS quota (Service Quotas)".into(),
        WallKind::Hard => "AWS hard limit".into(),
        WallKind::Design => "design: one item every event writes".into(),
    }
}

fn row(sizing: &Sizing) -> String {
    let wall = match (&sizing.blocked_by, &sizing.next_wall) {
        (Some(wall), _) => format!(
            "**{} at {:.0}/s** ({}){}",
            wall.name,
            wall.max_rate,
            mover(wall),
            if sizing.also_below.is_empty() {
                String::new()
            } else {
                format!("; also below: {}", sizing.also_below.join("; "))
            }
        ),
        (None, Some(wall)) => format!("none; next: {} at {:.0}/s", wall.name, wall.max_rate),
        (None, None) => "none".into(),
    };
    format!(
        "| {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.0} |",
        sizing.rate,
        sizing.settings.shards,
        sizing.settings.subscriber_concurrency,
        sizing.settings.public_concurrency,
        sizing.concurrency,
        sizing
            .busiest_table
            .as_ref()
            .map(|(table, wru)| format!("{wru:.0} ({table})"))
            .unwrap_or_default(),
        sizing
            .hottest
            .as_ref()
            .map(|(_, wcu)| format!("{wcu:.0}"))
            .unwrap_or_default(),
        wall,
        sizing.dollars_per_month
    )
}
