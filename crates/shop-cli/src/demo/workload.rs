//! The demo's traffic: orders placed with the order service over the shop's catalog
//! (`infra/seed/StockTable.json`), client retries, system and data events for the producer, and
//! submissions and raw records the pipeline must refuse; and what the services answered when it
//! was sent. `shop load` and the benchmarks generate theirs here too.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use herald::producer::KinesisStream;
use herald::producer::Producer;
use herald::Envelope;
use herald_local::http::post_json;
use herald_local::Stack;
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
    /// Share of orders placed a second time (the same `POST /orders`: a client retry).
    pub duplicate_ratio: f64,
    /// Every n-th order pays with a card that is declined.
    pub declined_every: usize,
    /// `job_failed` system events.
    pub system_events: usize,
    /// Include submissions the producer must reject (a client's own `order_placed` among them),
    /// and raw records a misbehaving writer puts straight onto the stream (they must end in the
    /// router's DLQ).
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
    /// `POST /orders` bodies for the order service, in sending order (retries included).
    pub order_posts: Vec<Value>,
    /// Producer requests (each a JSON array of submissions), in sending order.
    pub requests: Vec<Vec<Value>>,
    /// Distinct valid orders: the `order_placed` events the order service announces for them.
    pub orders: Vec<Value>,
    /// Orders placed a second time.
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
                // What the order service announces: its id, its source, the customer's shard.
                "id": shop::order::order_event_id(types::ORDER_PLACED, &order_id),
                "type": types::ORDER_PLACED,
                "source": sources::ORDERS,
                "subject": order_id,
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
            traffic.order_posts.push(event["data"].clone());
            traffic.orders.push(event);
        }
        for i in 0..self.system_events {
            stream.push(job_failed(self.seed, i));
        }
        traffic.system_events = self.system_events;
        // Client retries: the same orders placed again, later.
        let duplicates = ((self.orders as f64) * self.duplicate_ratio).round() as usize;
        for _ in 0..duplicates {
            let original =
                traffic.orders[rng.random_range(0..traffic.orders.len())]["data"].clone();
            let posts = traffic.order_posts.len();
            let at = rng.random_range(posts / 2..=posts);
            traffic.order_posts.insert(at, original);
        }
        traffic.duplicates = duplicates;
        if self.malformed {
            let job = job_failed(self.seed, usize::MAX);
            let mut without_source = job.clone();
            without_source.as_object_mut().map(|o| o.remove("source"));
            without_source["id"] = json!("no-source");
            let mut bad_type = job.clone();
            bad_type["type"] = json!("job failed!");
            bad_type["id"] = json!("bad-type");
            let mut bad_kind = job.clone();
            bad_kind["kind"] = json!("gossip");
            bad_kind["id"] = json!("bad-kind");
            let mut oversize = job;
            oversize["id"] = json!("oversize");
            oversize["data"]["note"] = json!("x".repeat(300 * 1024));
            // A client announcing an order itself: only the order service does.
            let mut client_order = traffic.orders.first().cloned().unwrap_or(json!({}));
            client_order["id"] = json!("client-order");
            traffic.invalid = vec![
                (without_source, "source"),
                (bad_type, "type"),
                (bad_kind, "kind"),
                (oversize, "event"),
                (client_order, "type"),
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

/// A failed nightly job, as the scheduler reports it.
fn job_failed(seed: u64, i: usize) -> Value {
    json!({
        "type": types::JOB_FAILED,
        "source": shop::SCHEDULER_SOURCE,
        "kind": "system",
        "id": format!("job-failed-{seed:x}-{i}"),
        "data": {"job": format!("nightly-export-{i}"), "error": "upstream timed out", "attempt": 3}
    })
}

impl Traffic {
    /// The orders as the order service announces them (what its publisher writes to the stream).
    pub fn order_events(&self) -> Result<Vec<Envelope>> {
        self.orders
            .iter()
            .map(|order| {
                Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
                    .id(order["id"].as_str().unwrap_or_default())
                    .subject(order["subject"].as_str().unwrap_or_default())
                    .partition_key(order["partitionkey"].as_str().unwrap_or_default())
                    .schema_version(2)
                    .data(order["data"].clone())
                    .build()
                    .map_err(|err| anyhow!("order {}: {err}", order["id"]))
            })
            .collect()
    }

    /// Put the orders straight onto the event stream, as the order service's publisher does,
    /// for a run that must not depend on the order service (an outage of the store it writes).
    pub async fn announce_orders(&self, aws: &aws_config::SdkConfig, stream: &str) -> Result<()> {
        let producer = Producer::new(KinesisStream::new(
            aws_sdk_kinesis::Client::new(aws),
            stream,
        ));
        let events = self.order_events()?;
        for (event, result) in events.iter().zip(producer.publish(&events).await) {
            result.map_err(|err| anyhow!("announcing {}: {err}", event.id()))?;
        }
        Ok(())
    }
}

/// Where a client sends: the producer's and the order service's Function URLs.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The producer's Function URL.
    pub producer: String,
    /// The order service's Function URL (`POST {orders}/orders`).
    pub orders: String,
}

impl Endpoints {
    /// The Function URLs of `stack`.
    pub fn of(stack: &Stack) -> Result<Self> {
        Ok(Endpoints {
            producer: stack.function_url("producer")?,
            orders: stack.function_url("orders")?,
        })
    }
}

/// What the order service and the producer answered over a run.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Orders placed and submissions sent.
    pub submitted: usize,
    /// Orders the order service took (`201`, or `200` for a repeated order) and submissions the
    /// producer accepted.
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

/// Place every order of `traffic` with the order service, then send every producer request, as a
/// careful client does: a request without an answer (or a 5xx) is sent again, and so is every
/// event answered `retryable`, unchanged (an order is placed once however often it is posted, an
/// event written once however often it is accepted), with backoff, up to [`CLIENT_ATTEMPTS`]
/// times.
pub async fn send(to: &Endpoints, traffic: &Traffic) -> Result<Sent> {
    let mut sent = Sent::default();
    let orders = format!("{}/orders", to.orders.trim_end_matches('/'));
    for order in &traffic.order_posts {
        sent.submitted += 1;
        place(&orders, order, &mut sent).await?;
    }
    for request in &traffic.requests {
        sent.submitted += request.len();
        send_one(&to.producer, request.clone(), &mut sent).await?;
    }
    Ok(sent)
}

async fn place(url: &str, order: &Value, sent: &mut Sent) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= CLIENT_ATTEMPTS;
        let backoff = std::time::Duration::from_millis(100 * 2u64.pow(attempt.min(5)));
        match post_json(url, order).await {
            Ok((status, report)) => {
                *sent.statuses.entry(status).or_default() += 1;
                match status {
                    // Placed, or placed before (the same order again: the store kept the first).
                    200 | 201 => {
                        sent.accepted += 1;
                        return Ok(());
                    }
                    // The store throttled or was down, or the function died answering.
                    429 | 500.. if !last => {}
                    _ => {
                        sent.rejected.push((
                            order["orderId"].as_str().map(str::to_string),
                            report["error"]["field"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            report["error"]["message"]
                                .as_str()
                                .map_or_else(|| report.to_string(), str::to_string),
                        ));
                        return Ok(());
                    }
                }
            }
            Err(_) if !last => {}
            Err(err) => return Err(err),
        }
        sent.resent_requests += 1;
        tokio::time::sleep(backoff).await;
    }
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
        assert_eq!(traffic.order_posts.len(), 60 + 9);
        assert_eq!(traffic.declined, 6);
        assert_eq!(traffic.invalid.len(), 5);
        assert_eq!(traffic.raw_records.len(), 4);
        let submitted: usize = traffic.requests.iter().map(Vec::len).sum();
        assert_eq!(submitted, 3 + 5 + 40);
        assert_eq!(traffic.data_events, 40);
        assert_eq!(
            traffic.requests.len(),
            1 + 1,
            "the 40 samples in one request"
        );
        let again = workload.generate(&products());
        assert_eq!(again.requests, traffic.requests);
        assert_eq!(again.order_posts, traffic.order_posts);
    }

    #[test]
    fn every_order_is_one_the_order_service_takes_and_announces() {
        let traffic = Workload {
            malformed: false,
            ..Workload::default()
        }
        .generate(&products());
        let events = traffic.order_events().unwrap();
        for (order, event) in traffic.orders.iter().zip(&events) {
            let placed: shop::events::OrderPlaced =
                serde_json::from_value(order["data"].clone()).unwrap();
            placed.validate().unwrap();
            shop::order::validate_order_id(&placed.order_id).unwrap();
            assert_eq!(
                event.id(),
                shop::order::order_event_id(types::ORDER_PLACED, &placed.order_id)
            );
            assert!(event.partition_key().starts_with("customer-"));
        }
        // Clients submit what they own; the producer's policy admits every valid submission.
        let policy = shop::submissions();
        for request in &traffic.requests {
            for submission in request {
                let event = Envelope::parse_submission(submission).unwrap();
                policy.admit(&event).unwrap();
            }
        }
    }

    #[test]
    fn the_invalid_submissions_are_refused_naming_their_attribute() {
        let traffic = Workload::default().generate(&products());
        let policy = shop::submissions();
        for (submission, field) in &traffic.invalid {
            let refused = Envelope::parse_submission(submission)
                .and_then(|event| policy.admit(&event).map(|()| event));
            match refused {
                Err(err) => assert_eq!(err.field(), *field, "{submission}"),
                // Too big for a record: the producer measures it, not the policy.
                Ok(_) => assert_eq!(*field, "event"),
            }
        }
    }
}
