//! One order's life, shown hop by hop: a command to the order service, the events in the store,
//! their records on the stream, the `orders_view` read model behind the query function, and a
//! retried command that changes nothing. `shop demo` prints it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use herald::event_sourcing::event_store::DynamoDbEventStore;
use herald::{Envelope, EventStore};
use herald_local::http::{get_json, request};
use herald_local::Stack;
use serde_json::Value;
use shop::events::{Customer, LineItem, OrderPlaced};

/// What [`run`] did.
pub struct Lifecycle {
    /// The report, a line per hop.
    pub report: String,
    /// The `order_placed` event's id (`herald trace` it).
    pub placed_event_id: String,
}

/// Run the lifecycle of one new order on a running local stack.
pub async fn run(stack: &Stack, aws: &aws_config::SdkConfig, order_id: &str) -> Result<Lifecycle> {
    let commands = url(stack, "orders")?;
    let queries = url(stack, "query")?;
    let store = DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.reference("OrderServiceEventStoreTable")?,
    )
    .with_upcasters(shop::upcasters());
    let mut out = String::from("order lifecycle (event sourcing + CQRS)\n");
    let order = OrderPlaced {
        order_id: order_id.to_string(),
        customer: Customer {
            id: "c-demo".into(),
            email: "demo@example.com".into(),
        },
        items: vec![
            LineItem {
                sku: "SKU-CABLE".into(),
                quantity: 2,
                unit_price: 1299,
            },
            LineItem {
                sku: "SKU-MOUSE".into(),
                quantity: 1,
                unit_price: 850,
            },
        ],
        total: 2 * 1299 + 850,
        currency: "EUR".into(),
        payment_token: "tok_visa".into(),
    };

    let started = Instant::now();
    let (status, placed) = request(
        "POST",
        &format!("{commands}/orders"),
        Some(serde_json::to_vec(&order)?),
        &[],
    )
    .await?;
    if status != 201 {
        bail!("POST /orders answered {status}: {placed}");
    }
    let correlation = placed["events"][0]["correlationId"]
        .as_str()
        .unwrap_or_default();
    let placed_event_id = placed["events"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    writeln!(
        out,
        "  command   POST /orders {order_id} → {status}: order_placed v{} (correlation {correlation})",
        placed["version"]
    )?;
    show_store(&mut out, &store, order_id).await?;
    let view = wait_for(&queries, order_id, 1).await?;
    show_stream(&mut out, stack, aws, order_id).await?;
    writeln!(
        out,
        "  view      GET /orders/{order_id} → {} v{}, total {} {}, visible {:.1?} after the command",
        view["status"].as_str().unwrap_or_default(),
        view["version"],
        view["total"],
        view["currency"].as_str().unwrap_or_default(),
        started.elapsed()
    )?;

    let cancel = br#"{"reason": "found it cheaper"}"#.to_vec();
    let started = Instant::now();
    let (status, cancelled) = request(
        "POST",
        &format!("{commands}/orders/{order_id}/cancel"),
        Some(cancel.clone()),
        &[("x-correlation-id", correlation)],
    )
    .await?;
    if status != 200 {
        bail!("POST /orders/{order_id}/cancel answered {status}: {cancelled}");
    }
    writeln!(
        out,
        "  command   POST /orders/{order_id}/cancel → {status}: order_cancelled v{}",
        cancelled["version"]
    )?;
    let view = wait_for(&queries, order_id, 2).await?;
    let timeline: Vec<String> = view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "v{} {}",
                e["version"],
                e["type"].as_str().unwrap_or_default()
            )
        })
        .collect();
    writeln!(
        out,
        "  view      → {} v{} after {:.1?}; timeline: {}",
        view["status"].as_str().unwrap_or_default(),
        view["version"],
        started.elapsed(),
        timeline.join(", ")
    )?;
    // The listing mirrors the summary right after it: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let (_, listing) = get_json(&format!("{queries}/customers/c-demo/orders")).await?;
        let mirrored = listing["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["orderId"] == order_id && o["version"].as_u64() >= Some(2));
        if mirrored || Instant::now() > deadline {
            break listing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let listed: Vec<String> = listing["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            format!(
                "{} {}",
                o["orderId"].as_str().unwrap_or_default(),
                o["status"].as_str().unwrap_or_default()
            )
        })
        .collect();
    writeln!(
        out,
        "  listing   GET /customers/c-demo/orders → {}",
        listed.join(", ")
    )?;
    let (status, again) = request(
        "POST",
        &format!("{commands}/orders/{order_id}/cancel"),
        Some(cancel),
        &[],
    )
    .await?;
    let events = store.events_after(order_id, 0).await?;
    writeln!(
        out,
        "  retry     the same cancel again → {status}, replayed: {}; the store still holds {} events",
        again["replayed"],
        events.len()
    )?;
    Ok(Lifecycle {
        report: out,
        placed_event_id,
    })
}

fn url(stack: &Stack, function: &str) -> Result<String> {
    Ok(stack
        .function_url(function)?
        .trim_end_matches('/')
        .to_string())
}

async fn show_store(out: &mut String, store: &impl EventStore, order_id: &str) -> Result<()> {
    for (version, event) in store.events_after(order_id, 0).await? {
        writeln!(
            out,
            "  store     {order_id} v{version}: {} {}",
            event.event_type(),
            event.id()
        )?;
    }
    Ok(())
}

/// Where the order's events sit on the stream (a full read: fine for a demo-sized stream).
async fn show_stream(
    out: &mut String,
    stack: &Stack,
    aws: &aws_config::SdkConfig,
    order_id: &str,
) -> Result<()> {
    let kinesis = aws_sdk_kinesis::Client::new(aws);
    let stream = stack.reference("BusEventStream")?;
    let shards = kinesis.list_shards().stream_name(stream).send().await?;
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator;
        // Until the tip: Kinesis may answer empty pages before it (bounded for safety).
        for _ in 0..1000 {
            let Some(it) = iterator else { break };
            let page = kinesis.get_records().shard_iterator(it).send().await?;
            for record in page.records() {
                // The order's events by subject: the order service keys them by customer.
                let Ok(event) = Envelope::parse(record.data.as_ref()) else {
                    continue;
                };
                if event.subject() != Some(order_id) {
                    continue;
                }
                let version = match event.aggregate_version() {
                    Some(v) => format!(" v{v}"),
                    None => " (follow-up)".into(),
                };
                writeln!(
                    out,
                    "  stream    {}{version} → {} #{}",
                    event.event_type(),
                    shard.shard_id,
                    record.sequence_number
                )?;
            }
            if page.records().is_empty() && page.millis_behind_latest.unwrap_or(0) == 0 {
                break;
            }
            iterator = page.next_shard_iterator;
        }
    }
    Ok(())
}

/// Poll the query function until the order is at `version`.
async fn wait_for(queries: &str, order_id: &str, version: u64) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, view) = get_json(&format!("{queries}/orders/{order_id}")).await?;
        if status == 200 && view["version"].as_u64() >= Some(version) {
            return Ok(view);
        }
        if Instant::now() > deadline {
            bail!("order {order_id} did not reach version {version} in orders_view within 60 s (last answer {status}: {view})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
