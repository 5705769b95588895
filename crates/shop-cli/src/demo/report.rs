//! What the demo reads back after a run — stock, payments, emails, analytics, incidents,
//! idempotency records, dead letters — and the summary it prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use herald_local::Stack;
use herald_ops::inspect::{peek, scan, DeadLetterView};

use super::workload::{Sent, Traffic};

/// The state of the example's stores after a run.
#[derive(Clone, Debug, Default)]
pub struct Effects {
    /// sku → (available, reserved).
    pub stock: BTreeMap<String, (i64, i64)>,
    /// Payments by status (`succeeded`, `declined`), and how many per order.
    pub payments: BTreeMap<String, usize>,
    /// Payments per order id.
    pub payments_per_order: BTreeMap<String, usize>,
    /// Emails in the outbox per order id.
    pub emails_per_order: BTreeMap<String, usize>,
    /// Analytics metric → (count, amount).
    pub analytics: BTreeMap<String, (i64, i64)>,
    /// Incidents opened.
    pub incidents: usize,
    /// Inventory outcome per event (`reserved`, `reservation_failed`, `released`, ...), from its
    /// idempotency records (an order's reservation item keeps its `order_placed`'s).
    pub inventory_outcomes: BTreeMap<String, String>,
    /// Idempotency records per subscriber.
    pub records: BTreeMap<String, usize>,
    /// Dead letters per queue logical id.
    pub dead_letters: BTreeMap<String, Vec<DeadLetterView>>,
}

/// Read the example's stores.
pub async fn effects(stack: &Stack, aws: &aws_config::SdkConfig) -> Result<Effects> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut effects = Effects::default();
    for item in scan(&dynamodb, stack.reference("StockTable")?).await? {
        effects.stock.insert(
            item["sku"].as_str().unwrap_or_default().to_string(),
            (
                item["available"].as_i64().unwrap_or(0),
                item["reserved"].as_i64().unwrap_or(0),
            ),
        );
    }
    // An order's reservation keeps its order_placed's idempotency record; two tables share the
    // orders by id.
    for table in ["ReservationsTable", "ReservationsTable2"] {
        for item in scan(&dynamodb, stack.reference(table)?).await? {
            if let Some(key) = item["heraldRecord"].as_str() {
                *effects.records.entry("inventory".into()).or_default() += 1;
                effects
                    .inventory_outcomes
                    .insert(key.to_string(), outcome(&item["heraldResult"]));
            }
        }
    }
    for item in scan(&dynamodb, stack.reference("PaymentsTable")?).await? {
        *effects
            .payments
            .entry(item["status"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        *effects
            .payments_per_order
            .entry(item["orderId"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    for item in scan(&dynamodb, stack.reference("OutboxTable")?).await? {
        *effects
            .emails_per_order
            .entry(item["orderId"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    for item in scan(&dynamodb, stack.reference("AnalyticsTable")?).await? {
        effects.analytics.insert(
            item["metric"].as_str().unwrap_or_default().to_string(),
            (
                item["count"].as_i64().unwrap_or(0),
                item["amount"].as_i64().unwrap_or(0),
            ),
        );
    }
    effects.incidents = scan(&dynamodb, stack.reference("IncidentsTable")?)
        .await?
        .len();
    // The bus spreads the records over its three tables by key.
    for table in [
        "BusIdempotencyTable",
        "BusIdempotencyTable2",
        "BusIdempotencyTable3",
    ] {
        for item in scan(&dynamodb, stack.reference(table)?).await? {
            let key = item["pk"].as_str().unwrap_or_default();
            let subscriber = key.split('#').next().unwrap_or_default().to_string();
            *effects.records.entry(subscriber.clone()).or_default() += 1;
            if subscriber == "inventory" {
                effects
                    .inventory_outcomes
                    .insert(key.to_string(), outcome(&item["result"]));
            }
        }
    }
    for (id, queue) in stack.of_kind("AWS::SQS::Queue") {
        if id.ends_with("DeadLetterQueue") || id.ends_with("FailureQueue") {
            let letters = peek(&sqs, &queue.reference).await?;
            if !letters.is_empty() {
                effects.dead_letters.insert(id.to_string(), letters);
            }
        }
    }
    Ok(effects)
}

/// The `effect` of a stored handler result (JSON text).
fn outcome(result: &Value) -> String {
    let result: Value = result
        .as_str()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    result["effect"].as_str().unwrap_or_default().to_string()
}

/// A readable summary of a run.
pub fn render(
    traffic: &Traffic,
    sent: &Sent,
    effects: &Effects,
    tallies: &BTreeMap<String, BTreeMap<String, i64>>,
) -> String {
    let mut out = String::new();
    let t = |f: &str, k: &str| tallies.get(f).and_then(|m| m.get(k)).copied().unwrap_or(0);
    let _ = writeln!(out, "sent        {} orders placed with the order service ({} of them again: client retries); {} system events, {} data events (metric samples) and {} invalid submissions to the producer in {} HTTP requests; {} raw records straight onto the stream",
        traffic.order_posts.len(), traffic.duplicates, traffic.system_events, traffic.data_events, traffic.invalid.len(), traffic.requests.len(), traffic.raw_records.len());
    let _ = writeln!(
        out,
        "answered    accepted {}, rejected {} (each with the attribute named)",
        sent.accepted,
        sent.rejected.len()
    );
    for (id, field, message) in &sent.rejected {
        let _ = writeln!(
            out,
            "              - {:<12} `{field}`: {}",
            id.as_deref().unwrap_or("(no id)"),
            truncate(message, 90)
        );
    }
    let _ = writeln!(
        out,
        "router      published {}, dead-lettered {} poison records, reported {} for retry",
        t("router", "published"),
        t("router", "dead_lettered"),
        t("router", "failed")
    );
    for name in ["inventory", "payment", "email", "analytics", "ops"] {
        let _ = writeln!(out, "{name:<11} applied {:>4}, duplicates skipped {:>3}, ignored {:>3}, dead-lettered {}, retried {}",
            t(name, "applied"), t(name, "duplicates"), t(name, "ignored"), t(name, "dead_lettered"), t(name, "failed"));
    }
    let reserved = effects
        .inventory_outcomes
        .values()
        .filter(|o| *o == "reserved")
        .count();
    let failed = effects
        .inventory_outcomes
        .values()
        .filter(|o| *o == "reservation_failed")
        .count();
    let _ = writeln!(out, "\neffects     stock reserved for {reserved} orders, {failed} refused (stock_reservation_failed)");
    for (sku, (available, reserved)) in &effects.stock {
        let _ = writeln!(
            out,
            "              {sku:<14} available {available:>4}  reserved {reserved:>4}"
        );
    }
    let _ = writeln!(
        out,
        "            payments: {} succeeded, {} declined; {} confirmation emails in the outbox",
        effects.payments.get("succeeded").unwrap_or(&0),
        effects.payments.get("declined").unwrap_or(&0),
        effects.emails_per_order.values().sum::<usize>()
    );
    let counts: Vec<String> = effects
        .analytics
        .iter()
        .map(|(m, (c, a))| {
            if *a > 0 {
                format!("{m}={c} ({a})")
            } else {
                format!("{m}={c}")
            }
        })
        .collect();
    let _ = writeln!(out, "            analytics: {}", counts.join(", "));
    let samples = effects
        .analytics
        .get("type#metric_sampled")
        .map(|(c, _)| *c)
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "            data events: {samples} of {} metric samples counted by analytics; no business subscriber saw one (their filter policies name types)",
        traffic.data_events
    );
    let _ = writeln!(
        out,
        "            incidents opened by ops: {}",
        effects.incidents
    );
    let doubled = effects
        .payments_per_order
        .values()
        .filter(|n| **n > 1)
        .count()
        + effects
            .emails_per_order
            .values()
            .filter(|n| **n > 1)
            .count();
    let _ = writeln!(out, "            duplicated effects: {doubled}");
    if effects.dead_letters.is_empty() {
        let _ = writeln!(out, "\ndead letters: none");
    } else {
        let _ = writeln!(out, "\ndead letters");
        for (queue, letters) in &effects.dead_letters {
            let _ = writeln!(out, "  {queue} ({})", letters.len());
            for letter in letters {
                let _ = writeln!(
                    out,
                    "    - {}: {}",
                    truncate(&letter.body, 40),
                    truncate(&letter.reason, 100)
                );
            }
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    }
}
