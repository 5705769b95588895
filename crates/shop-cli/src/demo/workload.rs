//! The demo's traffic: orders over the shop's catalog (`infra/seed/StockTable.json`), client
//! retries, system events, and submissions and raw records the pipeline must refuse; and what the
//! producer answered when it was sent. `shop load` and the benchmarks generate theirs here too.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use herald_local::http::post_json;
use shop::events::{sources, types};

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
    /// `metric_sampled` data events from the shop's devices (sent in requests of up to 100:
    /// high volume, small events).
    pub data_events: usize,
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
            data_events: 40,
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
    /// Distinct data events (metric samples).
    pub data_events: usize,
}

impl Workload {
    /// Generate traffic over `catalog`.
    pub fn generate(&self, catalog: &[Product]) -> Traffic {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut traffic = Traffic::default();
        let mut stream: Vec<Value> = Vec::new();
        // Every customer places at most three orders, as real shoppers would: demo traffic never
        // trips the fraud detector's limits (5 orders or 5 000.00 per window by default).
        let customers = 40.max(self.orders.div_ceil(3));
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
            let customer = i % customers + 1;
            let event = json!({
                "id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}/{order_id}", self.seed).as_bytes()).to_string(),
                "type": types::ORDER_PLACED,
                "source": sources::ORDERS,
                "subject": order_id,
                // A customer's orders on one shard, as the order service keys them.
                "partitionkey": format!("customer-{customer}"),
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
        // Data events: devices report in larger batches than the storefront sends orders.
        let samples: Vec<Value> = (0..self.data_events)
            .map(|i| {
                let device = format!("shelf-sensor-{}", i % 4 + 1);
                json!({
                    "id": format!("sample-{:x}-{i}", self.seed),
                    "type": types::METRIC_SAMPLED,
                    "source": sources::DEVICES,
                    "kind": "data",
                    "subject": device,
                    "data": {
                        "deviceId": device,
                        "metric": "temperature",
                        "value": 18.0 + (i % 7) as f64 * 0.5,
                        "unit": "celsius"
                    }
                })
            })
            .collect();
        traffic
            .requests
            .extend(samples.chunks(100).map(<[Value]>::to_vec));
        traffic.data_events = self.data_events;
        traffic
    }
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
    /// Requests sent again because no answer came (connection refused or reset, a 5xx without
    /// a report: the function crashed, the runner restarted), and events sent again because
    /// the producer answered them `retryable`.
    pub resent_requests: usize,
    /// See [`Sent::resent_requests`].
    pub resent_events: usize,
}

impl Sent {
    /// Add what another run of sends answered (traffic sent in parts).
    pub fn add(&mut self, other: Sent) {
        self.submitted += other.submitted;
        self.accepted += other.accepted;
        self.rejected.extend(other.rejected);
        self.resent_requests += other.resent_requests;
        self.resent_events += other.resent_events;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }
}

/// How often a client sends one event before it gives up (on the last answer).
pub const CLIENT_ATTEMPTS: u32 = 12;

/// Send every request of `traffic` to the producer's Function URL, as a careful client does: a
/// request without an answer is sent again, and so is every event answered `retryable`, with
/// the same ids (the pipeline writes an event once however often it is accepted), with backoff,
/// up to [`CLIENT_ATTEMPTS`] times.
pub async fn send(url: &str, traffic: &Traffic) -> Result<Sent> {
    let mut sent = Sent::default();
    for request in &traffic.requests {
        sent.submitted += request.len();
        send_one(url, request.clone(), &mut sent).await?;
    }
    Ok(sent)
}

async fn send_one(url: &str, mut events: Vec<Value>, sent: &mut Sent) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= CLIENT_ATTEMPTS;
        let backoff = std::time::Duration::from_millis(100 * 2u64.pow(attempt.min(5)));
        let (status, report) = match post_json(url, &Value::Array(events.clone())).await {
            Ok(answer) => answer,
            Err(_) if !last => {
                sent.resent_requests += 1;
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        *sent.statuses.entry(status).or_default() += 1;
        let Some(results) = report["results"].as_array() else {
            if status >= 500 && !last {
                sent.resent_requests += 1;
                tokio::time::sleep(backoff).await;
                continue;
            }
            return Err(anyhow!("producer answered {status}: {report}"));
        };
        let mut again = Vec::new();
        for (event, result) in events.iter().zip(results) {
            match result["status"].as_str() {
                Some("accepted") => sent.accepted += 1,
                _ if result["error"]["retryable"] == true && !last => again.push(event.clone()),
                _ => sent.rejected.push((
                    result["id"].as_str().map(str::to_string),
                    result["error"]["field"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    result["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )),
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        sent.resent_events += again.len();
        events = again;
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> Vec<Product> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        catalog(&root.join("infra/seed")).unwrap()
    }

    #[test]
    fn the_demo_traffic_is_reproducible_per_seed() {
        let workload = Workload::default();
        let traffic = workload.generate(&products());
        assert_eq!(traffic.orders.len(), 60);
        assert_eq!(traffic.duplicates, 9);
        assert_eq!(traffic.declined, 6);
        assert_eq!(traffic.invalid.len(), 5);
        assert_eq!(traffic.raw_records.len(), 4);
        let submitted: usize = traffic.requests.iter().map(Vec::len).sum();
        assert_eq!(submitted, 60 + 9 + 3 + 5 + 40);
        assert_eq!(traffic.data_events, 40);
        assert_eq!(
            traffic.requests.len(),
            4 + 1,
            "the 40 samples in one request"
        );
        let again = workload.generate(&products());
        assert_eq!(again.requests, traffic.requests);
    }

    #[test]
    fn every_order_is_a_valid_submission_of_the_shop() {
        let traffic = Workload {
            malformed: false,
            ..Workload::default()
        }
        .generate(&products());
        let catalog = shop::catalog();
        for order in &traffic.orders {
            let event = herald::Envelope::parse_submission(order).unwrap();
            assert!(catalog.get(event.event_type()).is_some());
        }
    }
}
