//! The e-commerce example's traffic and its report: what `herald demo` sends and shows, and what
//! the end-to-end test sends and checks.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use herald::dead_letter::attr as dl;
use herald::orders::{sources, types};

use crate::seed::from_item;
use crate::stack::Stack;

/// A product in `infra/seed/StockTable.json`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// SKU.
    pub sku: String,
    /// Price in minor units.
    pub unit_price: u64,
    /// Units in stock at the start.
    pub available: u64,
}

/// Read the catalog the stock table is seeded with.
pub fn catalog(seed_dir: &Path) -> Result<Vec<Product>> {
    let file = seed_dir.join("StockTable.json");
    serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("{} lists products", file.display()))
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Distinct orders.
    pub orders: usize,
    /// Share of orders sent a second time (same event id: a client retry).
    pub duplicate_ratio: f64,
    /// Every n-th order pays with a card that is declined.
    pub declined_every: usize,
    /// `job_failed` system events.
    pub system_events: usize,
    /// Include submissions the producer must reject, and raw records a misbehaving writer puts
    /// straight onto the stream (they must end in the router's DLQ).
    pub malformed: bool,
    /// Random seed (ids and choices are reproducible per seed).
    pub seed: u64,
    /// Events per HTTP request to the producer.
    pub per_request: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            orders: 60,
            duplicate_ratio: 0.15,
            declined_every: 10,
            system_events: 3,
            malformed: true,
            seed: 7,
            per_request: 25,
        }
    }
}

/// The generated traffic.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Producer requests (each a JSON array of submissions), in sending order.
    pub requests: Vec<Vec<Value>>,
    /// Distinct valid orders.
    pub orders: Vec<Value>,
    /// Submissions that repeat an earlier event.
    pub duplicates: usize,
    /// Submissions the producer must reject, with the attribute it must name.
    pub invalid: Vec<(Value, &'static str)>,
    /// Distinct system events.
    pub system_events: usize,
    /// Orders paid with a declined card.
    pub declined: usize,
    /// Raw records to put straight onto the stream.
    pub raw_records: Vec<Vec<u8>>,
}

impl Workload {
    /// Generate traffic over `catalog`.
    pub fn generate(&self, catalog: &[Product]) -> Traffic {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut traffic = Traffic::default();
        let mut stream: Vec<Value> = Vec::new();
        for i in 0..self.orders {
            let order_id = format!("order-{:x}-{i:04}", self.seed);
            let lines = rng.random_range(1..=3.min(catalog.len()));
            let mut picked = HashSet::new();
            let mut items = Vec::new();
            while items.len() < lines {
                let product = &catalog[rng.random_range(0..catalog.len())];
                if picked.insert(product.sku.clone()) {
                    items.push(json!({"sku": product.sku, "quantity": rng.random_range(1..=3), "unitPrice": product.unit_price}));
                }
            }
            let total: u64 = items
                .iter()
                .map(|i| i["quantity"].as_u64().unwrap_or(0) * i["unitPrice"].as_u64().unwrap_or(0))
                .sum();
            let declined =
                self.declined_every > 0 && i % self.declined_every == self.declined_every - 1;
            traffic.declined += usize::from(declined);
            let customer = rng.random_range(1..=40);
            let event = json!({
                "id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}/{order_id}", self.seed).as_bytes()).to_string(),
                "type": types::ORDER_PLACED,
                "source": sources::ORDERS,
                "subject": order_id,
                "schemaversion": 2,
                "data": {
                    "orderId": order_id,
                    "customer": {"id": format!("customer-{customer}"), "email": format!("customer{customer}@example.com")},
                    "items": items,
                    "total": total,
                    "currency": "EUR",
                    "paymentToken": if declined { "tok_declined" } else { "tok_visa" },
                }
            });
            traffic.orders.push(event.clone());
            stream.push(event);
        }
        for i in 0..self.system_events {
            stream.push(json!({
                "type": types::JOB_FAILED,
                "source": "herald/scheduler",
                "kind": "system",
                "id": format!("job-failed-{:x}-{i}", self.seed),
                "data": {"job": format!("nightly-export-{i}"), "error": "upstream timed out", "attempt": 3}
            }));
        }
        traffic.system_events = self.system_events;
        // Client retries: the same events again, later in the stream.
        let duplicates = ((self.orders as f64) * self.duplicate_ratio).round() as usize;
        for _ in 0..duplicates {
            let original = traffic.orders[rng.random_range(0..traffic.orders.len())].clone();
            let at = rng.random_range(stream.len() / 2..=stream.len());
            stream.insert(at, original);
        }
        traffic.duplicates = duplicates;
        if self.malformed {
            let order = traffic.orders.first().cloned().unwrap_or(json!({}));
            let mut without_source = order.clone();
            without_source.as_object_mut().map(|o| o.remove("source"));
            let mut bad_type = order.clone();
            bad_type["type"] = json!("order placed!");
            bad_type["id"] = json!("bad-type");
            let mut bad_kind = order.clone();
            bad_kind["kind"] = json!("gossip");
            bad_kind["id"] = json!("bad-kind");
            let mut oversize = order.clone();
            oversize["id"] = json!("oversize");
            oversize["data"]["note"] = json!("x".repeat(300 * 1024));
            let mut no_subject = order;
            no_subject.as_object_mut().map(|o| o.remove("subject"));
            no_subject["id"] = json!("no-subject");
            traffic.invalid = vec![
                (without_source, "source"),
                (bad_type, "type"),
                (bad_kind, "kind"),
                (oversize, "event"),
                (no_subject, "subject"),
            ];
            for (i, (event, _)) in traffic.invalid.iter().enumerate() {
                let at = (i * 7 + 3).min(stream.len());
                stream.insert(at, event.clone());
            }
            traffic.raw_records = vec![
                b"this is not JSON".to_vec(),
                br#"{"hello": "world"}"#.to_vec(),
                br#"{"specversion":"1.0","id":42,"source":"herald/rogue","type":"order_placed","subject":"o","time":"2026-01-01T00:00:00Z","kind":"business","schemaversion":1,"correlationid":"c"}"#.to_vec(),
                vec![0xff, 0xfe, 0x00, 0x01],
            ];
        }
        traffic.requests = stream
            .chunks(self.per_request.max(1))
            .map(<[Value]>::to_vec)
            .collect();
        traffic
    }
}

/// POST JSON and read a JSON answer.
pub async fn post_json(url: &str, body: &Value) -> Result<(u16, Value)> {
    post(url, body.to_string().into_bytes()).await
}

/// POST bytes as `application/json` and read the answer (JSON when it is, else a string).
pub async fn post(url: &str, body: Vec<u8>) -> Result<(u16, Value)> {
    request("POST", url, Some(body), &[]).await
}

/// GET and read a JSON answer.
pub async fn get_json(url: &str) -> Result<(u16, Value)> {
    request("GET", url, None, &[]).await
}

/// One HTTP request; the answer as JSON when it is, else as a string.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<(u16, Value)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// What the producer answered over a run.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Submissions sent.
    pub submitted: usize,
    /// Accepted by the producer.
    pub accepted: usize,
    /// Rejected, with the attribute named.
    pub rejected: Vec<(Option<String>, String, String)>,
    /// HTTP statuses seen.
    pub statuses: BTreeMap<u16, usize>,
}

/// Send every request of `traffic` to the producer's Function URL.
pub async fn send(url: &str, traffic: &Traffic) -> Result<Sent> {
    let mut sent = Sent::default();
    for request in &traffic.requests {
        let (status, report) = post_json(url, &Value::Array(request.clone())).await?;
        *sent.statuses.entry(status).or_default() += 1;
        sent.submitted += request.len();
        sent.accepted += report["accepted"]
            .as_u64()
            .ok_or_else(|| anyhow!("producer answered {status}: {report}"))?
            as usize;
        for result in report["results"].as_array().into_iter().flatten() {
            if result["status"] == "rejected" {
                sent.rejected.push((
                    result["id"].as_str().map(str::to_string),
                    result["error"]["field"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    result["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
            }
        }
    }
    Ok(sent)
}

/// Put raw records straight onto the stream (a writer that skips the producer).
pub async fn put_raw(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Vec<u8>],
) -> Result<()> {
    for (i, data) in records.iter().enumerate() {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(format!("rogue-{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(data.clone()))
            .send()
            .await?;
    }
    Ok(())
}

/// One dead letter as read back.
#[derive(Clone, Debug)]
pub struct DeadLetterView {
    /// The message body.
    pub body: String,
    /// `herald.reason`, or `(moved by the redrive policy)` when the queue moved it.
    pub reason: String,
    /// `herald.stage`.
    pub stage: String,
}

/// Read every message of a queue without deleting it (visibility timeout 0).
pub async fn peek(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<DeadLetterView>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for _ in 0..50 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let mut new = 0;
        for m in received {
            if !seen.insert(m.message_id.clone().unwrap_or_default()) {
                continue;
            }
            new += 1;
            let attr = |name: &str| {
                m.message_attributes
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .and_then(|v| v.string_value.clone())
            };
            out.push(DeadLetterView {
                body: m.body.clone().unwrap_or_default(),
                reason: attr(dl::REASON).unwrap_or_else(|| "(moved by the redrive policy)".into()),
                stage: attr(dl::STAGE).unwrap_or_default(),
            });
        }
        if new == 0 {
            break;
        }
    }
    Ok(out)
}

/// Every item of a table as plain JSON.
pub async fn scan(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let out = dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(out.items.unwrap_or_default().iter().map(from_item));
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

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
    /// idempotency records.
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
        let sku = item["sku"].as_str().unwrap_or_default().to_string();
        if sku.starts_with("order#") {
            // An order's reservation item, not stock.
            continue;
        }
        effects.stock.insert(
            sku,
            (
                item["available"].as_i64().unwrap_or(0),
                item["reserved"].as_i64().unwrap_or(0),
            ),
        );
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
    for item in scan(&dynamodb, stack.reference("IdempotencyTable")?).await? {
        let key = item["pk"].as_str().unwrap_or_default();
        let subscriber = key.split('#').next().unwrap_or_default().to_string();
        *effects.records.entry(subscriber.clone()).or_default() += 1;
        if subscriber == "inventory" {
            let result: Value = item["result"]
                .as_str()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(Value::Null);
            effects.inventory_outcomes.insert(
                key.to_string(),
                result["effect"].as_str().unwrap_or_default().to_string(),
            );
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

/// A readable summary of a run.
pub fn render(
    traffic: &Traffic,
    sent: &Sent,
    effects: &Effects,
    tallies: &BTreeMap<String, BTreeMap<String, i64>>,
) -> String {
    let mut out = String::new();
    let t = |f: &str, k: &str| tallies.get(f).and_then(|m| m.get(k)).copied().unwrap_or(0);
    let _ = writeln!(out, "sent        {} submissions in {} HTTP requests: {} orders, {} repeated (client retries), {} system events, {} invalid; {} raw records straight onto the stream",
        sent.submitted, traffic.requests.len(), traffic.orders.len(), traffic.duplicates, traffic.system_events, traffic.invalid.len(), traffic.raw_records.len());
    let _ = writeln!(
        out,
        "producer    accepted {}, rejected {} (each with the attribute named)",
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
