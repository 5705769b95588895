//! [`FaultProxy`]: an HTTP proxy in front of the emulator that forwards every request and answers
//! a chosen share of them the way AWS does when it hurts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::answer::{self, AwsFault, Protocol};
use super::spec::{FaultKind, FaultPlan, Trigger, SERVICES};
use super::spread::Tally;
use crate::endpoint::Endpoint;

/// A running fault proxy. Dropping it stops it.
pub struct FaultProxy {
    url: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.url)
            .field("upstream", &self.state.upstream.url)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    plan: FaultPlan,
    /// Where each service's requests go.
    upstream: Endpoint,
    client: Client<HttpConnector, Full<Bytes>>,
    started: Instant,
    /// Requests seen per (service, operation): the sequence number each decision is drawn from.
    sequence: Mutex<HashMap<(String, String), u64>>,
    report: Mutex<FaultReport>,
    /// Items (table + key) of the `TransactWriteItems` in flight, for `conflict=contention`.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Requests counted per (rule, service), for the share-based rules.
    tallies: Mutex<HashMap<(usize, String), Tally>>,
    /// Operations down until ended ([`FaultProxy::begin_outage`]).
    outages: Mutex<BTreeSet<(String, String)>>,
}

/// What the proxy did: requests seen and faults injected, per service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    /// Requests seen per service (`other` for anything that is not Kinesis, DynamoDB, SNS, SQS).
    pub requests: BTreeMap<String, u64>,
    /// Requests seen per operation, as `service:Operation` (`dynamodb:TransactWriteItems`).
    pub operations: BTreeMap<String, u64>,
    /// Faults injected per (kind, service).
    pub injected: BTreeMap<(FaultKind, String), u64>,
    /// Function processes killed mid-invocation, per function label (`kill=…`; filled in by
    /// the runner, which does the killing).
    pub killed: BTreeMap<String, u64>,
    /// Invocations per function label while kill rules applied (what `kill=…` shares count).
    pub invocations: BTreeMap<String, u64>,
}

impl FaultReport {
    /// Faults of `kind` injected into `service`'s requests.
    pub fn count(&self, kind: FaultKind, service: &str) -> u64 {
        self.injected
            .get(&(kind, service.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Faults of `kind` injected into any service.
    pub fn total(&self, kind: FaultKind) -> u64 {
        self.injected
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "faults injected:")?;
        for (service, requests) in &self.requests {
            let faults: Vec<String> = self
                .injected
                .iter()
                .filter(|((_, s), _)| s == service)
                .map(|((kind, _), n)| format!("{kind} {n}"))
                .collect();
            let faults = if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(", ")
            };
            writeln!(f, "  {service:<9} {requests:>7} requests: {faults}")?;
        }
        if !self.killed.is_empty() {
            let killed: Vec<String> = self
                .killed
                .iter()
                .map(|(function, n)| format!("{function} {n}"))
                .collect();
            writeln!(
                f,
                "  processes killed mid-invocation: {} of {} invocations ({})",
                self.killed.values().sum::<u64>(),
                self.invocations.values().sum::<u64>(),
                killed.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The service, operation and protocol of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    service: String,
    operation: String,
    protocol: Protocol,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward each request to where `upstream` sends its
    /// service.
    pub async fn start(plan: FaultPlan, upstream: &Endpoint) -> Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| anyhow!("fault proxy: {e}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            plan,
            upstream: upstream.shared(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            started: Instant::now(),
            sequence: Mutex::new(HashMap::new()),
            report: Mutex::new(FaultReport::default()),
            in_flight: Mutex::new(HashMap::new()),
            tallies: Mutex::new(HashMap::new()),
            outages: Mutex::new(BTreeSet::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(FaultProxy { url, state, task })
    }

    /// The URL to point clients at (`AWS_ENDPOINT_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The plan it follows.
    pub fn plan(&self) -> &FaultPlan {
        &self.state.plan
    }

    /// Take `service`'s `operation` (`*`: every operation of the service) down now: it answers
    /// 503 `ServiceUnavailable` until [`FaultProxy::end_outage`]. For a test that must overlap an outage with something else
    /// (a restart, a burst) by construction rather than by timing; a spec's
    /// `outage=…@start+duration` is the timed form.
    pub fn begin_outage(&self, service: &str, operation: &str) -> Result<()> {
        if !SERVICES.contains(&service) {
            return Err(anyhow!(
                "unknown service `{service}`; one of {}",
                SERVICES.join(", ")
            ));
        }
        self.state
            .outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((service.to_string(), operation.to_string()));
        Ok(())
    }

    /// End an outage begun with [`FaultProxy::begin_outage`].
    pub fn end_outage(&self, service: &str, operation: &str) {
        self.state
            .outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(service.to_string(), operation.to_string()));
    }

    /// Requests seen and faults injected so far.
    pub fn report(&self) -> FaultReport {
        self.state
            .report
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { state.handle(request).await }
            });
            // An `Err` from the service closes the connection without an answer: a drop.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A connection closed on purpose (or because the emulator could not be reached).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Dropped(String);

enum Verdict {
    Answer(AwsFault),
    DropBefore,
    DropAfter,
    Forward,
}

impl State {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Dropped(format!("reading the request: {e}")))?
            .to_bytes();
        let Some(target) = identify(&parts.headers, &body) else {
            self.note_request("other");
            return self.forward(parts, body).await;
        };
        self.note_request(&target.service);
        self.note_operation(&target);
        let verdict = self.decide(&target, &body).await;
        let request_id = uuid::Uuid::new_v4().to_string();
        match verdict {
            Verdict::Answer(fault) => Ok(answer::response(
                &target.service,
                target.protocol,
                &fault,
                &request_id,
            )),
            Verdict::DropBefore => Err(Dropped("dropped before forwarding".into())),
            Verdict::DropAfter => {
                let _ = self.forward(parts, body).await;
                Err(Dropped("dropped after the request was applied".into()))
            }
            Verdict::Forward => {
                let contended = self.contended(&target, &body);
                if contended.is_empty() {
                    return self.forward(parts, body).await;
                }
                match self.hold(&contended) {
                    Err(index) => {
                        self.note_fault(FaultKind::Conflict, &target.service);
                        Ok(answer::response(
                            &target.service,
                            target.protocol,
                            &answer::transaction_conflict(transact_items(&body).len(), index),
                            &request_id,
                        ))
                    }
                    Ok(()) => {
                        let result = self.forward(parts, body).await;
                        self.release(&contended);
                        result
                    }
                }
            }
        }
    }

    /// Which rule, if any, answers this request (latency rules add their delay and go on).
    async fn decide(&self, target: &Target, body: &[u8]) -> Verdict {
        if self.in_outage(target) {
            self.note_fault(FaultKind::Outage, &target.service);
            return Verdict::Answer(answer::unavailable_fault());
        }
        let n = self.next_sequence(target);
        // Every rule in scope counts the request (its share is a count, see `spread`); the
        // first that hits answers it, and the others that hit take the next request instead.
        let mut verdict = Verdict::Forward;
        let mut delay = Duration::ZERO;
        for (i, rule) in self.plan.rules.iter().enumerate() {
            let Trigger::Share(share) = rule.trigger else {
                continue;
            };
            let applies = rule.scope.matches(&target.service, &target.operation)
                && match rule.kind {
                    FaultKind::Conflict => target.operation == "TransactWriteItems",
                    FaultKind::Kms => target.service == "kinesis",
                    _ => true,
                };
            if !applies || !self.tally(i, &target.service, |t, key| t.next(share, key)) {
                continue;
            }
            if rule.kind == FaultKind::Latency {
                self.note_fault(rule.kind, &target.service);
                delay += rule.delay;
                continue;
            }
            if !matches!(verdict, Verdict::Forward) {
                self.tally(i, &target.service, |t, _| t.owe());
                continue;
            }
            self.note_fault(rule.kind, &target.service);
            // Which of a kind's answers (and which side of a drop) varies per request.
            let variant = draw(self.plan.seed, target, n, i as u64) >> 40;
            verdict = match rule.kind {
                FaultKind::Throttle => Verdict::Answer(answer::throttle(&target.service, variant)),
                FaultKind::Kms => Verdict::Answer(answer::kms_throttle()),
                FaultKind::ServerError => {
                    Verdict::Answer(answer::server_error(&target.service, variant))
                }
                FaultKind::Conflict => {
                    let items = transact_items(body).len();
                    let index = (variant % items.max(1) as u64) as usize;
                    Verdict::Answer(answer::transaction_conflict(items, index))
                }
                FaultKind::Drop if variant.is_multiple_of(2) => Verdict::DropBefore,
                FaultKind::Drop => Verdict::DropAfter,
                FaultKind::Latency | FaultKind::Outage | FaultKind::Kill => Verdict::Forward,
            };
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        verdict
    }

    /// Whether the request's operation is down: a timed outage of the plan, or one begun with
    /// [`FaultProxy::begin_outage`] and not yet ended.
    fn in_outage(&self, target: &Target) -> bool {
        let elapsed = self.started.elapsed();
        let timed = self.plan.outages.iter().any(|o| {
            o.service == target.service
                && o.operation == target.operation
                && elapsed >= o.start
                && elapsed < o.start + o.duration
        });
        let begun = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        timed
            || begun.contains(&(target.service.clone(), target.operation.clone()))
            || begun.contains(&(target.service.clone(), "*".to_string()))
    }

    /// Rule `rule`'s count of the requests in its scope on `service`.
    fn tally<T>(&self, rule: usize, service: &str, f: impl FnOnce(&mut Tally, u64) -> T) -> T {
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let key = draw(
            self.plan.seed,
            &Target {
                service: service.to_string(),
                operation: String::new(),
                protocol: Protocol::Json,
            },
            0,
            rule as u64,
        );
        f(tallies.entry((rule, service.to_string())).or_default(), key)
    }

    /// For `conflict=contention`: the item keys of a `TransactWriteItems` in scope (none when
    /// no contention rule applies).
    fn contended(&self, target: &Target, body: &[u8]) -> Vec<String> {
        let tracked = target.operation == "TransactWriteItems"
            && self.plan.rules.iter().any(|r| {
                r.trigger == Trigger::Contention
                    && r.scope.matches(&target.service, &target.operation)
            });
        if !tracked {
            return Vec::new();
        }
        transact_items(body)
    }

    /// Mark the items in flight, or `Err(index)` of the first one another transaction holds.
    fn hold(&self, keys: &[String]) -> Result<(), usize> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = keys
            .iter()
            .position(|k| !k.is_empty() && in_flight.contains_key(k))
        {
            return Err(index);
        }
        for key in keys.iter().filter(|k| !k.is_empty()) {
            *in_flight.entry(key.clone()).or_default() += 1;
        }
        Ok(())
    }

    fn release(&self, keys: &[String]) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys.iter().filter(|k| !k.is_empty()) {
            if let Some(n) = in_flight.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(key);
                }
            }
        }
    }

    fn next_sequence(&self, target: &Target) -> u64 {
        let mut sequence = self.sequence.lock().unwrap_or_else(|e| e.into_inner());
        let n = sequence
            .entry((target.service.clone(), target.operation.clone()))
            .or_default();
        *n += 1;
        *n
    }

    fn note_request(&self, service: &str) {
        if let Ok(mut report) = self.report.lock() {
            *report.requests.entry(service.to_string()).or_default() += 1;
        }
    }

    fn note_operation(&self, target: &Target) {
        if let Ok(mut report) = self.report.lock() {
            *report
                .operations
                .entry(format!("{}:{}", target.service, target.operation))
                .or_default() += 1;
        }
    }

    fn note_fault(&self, kind: FaultKind, service: &str) {
        if let Ok(mut report) = self.report.lock() {
            *report
                .injected
                .entry((kind, service.to_string()))
                .or_default() += 1;
        }
    }

    async fn forward(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let upstream = match endpoint_variable(&parts.headers) {
            Some(variable) => self.upstream.url_for(&variable),
            None => &self.upstream.url,
        };
        let mut builder = Request::builder()
            .method(parts.method)
            .uri(format!("{}{path}", upstream.trim_end_matches('/')));
        for (name, value) in &parts.headers {
            if name != http::header::HOST {
                builder = builder.header(name, value);
            }
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Dropped(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Dropped(format!("upstream: {e}")))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Dropped(format!("upstream body: {e}")))?
            .to_bytes();
        let mut builder = Response::builder().status(parts.status);
        for (name, value) in &parts.headers {
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONTENT_LENGTH {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(Full::new(body))
            .map_err(|e| Dropped(e.to_string()))
    }
}

/// The `AWS_ENDPOINT_URL_<SERVICE>` variable that configures a request's service: from its SigV4
/// scope (DynamoDB Streams signs as `dynamodb`; its target tells it apart).
fn endpoint_variable(headers: &HeaderMap) -> Option<String> {
    let scope = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split(['/', ',']).nth(3))?;
    let streams = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("DynamoDBStreams"));
    let service = if scope == "dynamodb" && streams {
        "DynamoDB Streams"
    } else {
        scope
    };
    Some(herald::aws::ServiceEndpoints::variable(service))
}

/// The service and operation of a request: `X-Amz-Target` for the JSON protocols, `Action=` in
/// the form body (and the SigV4 scope for the service) for the query protocol. `None` for what
/// is not Kinesis, DynamoDB, SNS or SQS (moto's own API, STS, CloudFormation): never faulted.
fn identify(headers: &HeaderMap, body: &[u8]) -> Option<Target> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = target.split_once('.')?;
        let service = if prefix.starts_with("Kinesis_") {
            "kinesis"
        } else if prefix.starts_with("DynamoDB") {
            // DynamoDB Streams signs as `dynamodb` and its IAM actions are `dynamodb:*` too.
            "dynamodb"
        } else if prefix == "AmazonSQS" {
            "sqs"
        } else {
            return None;
        };
        return Some(Target {
            service: service.into(),
            operation: operation.into(),
            protocol: Protocol::Json,
        });
    }
    let scope_service = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split(['/', ',']).nth(3))
        .map(str::to_string)?;
    if !SERVICES.contains(&scope_service.as_str()) {
        return None;
    }
    let action = std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))?;
    Some(Target {
        service: scope_service,
        operation: action.to_string(),
        protocol: Protocol::Query,
    })
}

/// One key per item of a `TransactWriteItems` body: table and key of each `Update`, `Delete` and
/// `ConditionCheck`; empty for a `Put` (its key attributes are not known without the table's
/// schema; the pipeline's hot items are updates).
fn transact_items(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let Some(items) = value.get("TransactItems").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            ["Update", "Delete", "ConditionCheck"]
                .iter()
                .find_map(|op| item.get(*op))
                .map(|write| {
                    format!(
                        "{}/{}",
                        write
                            .get("TableName")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        write.get("Key").map(Value::to_string).unwrap_or_default()
                    )
                })
                .unwrap_or_default()
        })
        .collect()
}

/// A deterministic 64-bit draw for request `n` of `target`'s operation and rule `rule`.
fn draw(seed: u64, target: &Target, n: u64, rule: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for byte in target
        .service
        .bytes()
        .chain([b':'])
        .chain(target.operation.bytes())
    {
        h = splitmix(h ^ u64::from(byte));
    }
    splitmix(splitmix(h ^ n) ^ rule.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A draw as a number in `[0, 1)`.
pub(super) fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

impl FaultProxy {
    /// Time since the proxy started (outage windows are counted from it).
    pub fn uptime(&self) -> Duration {
        self.state.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(service: &str, operation: &str) -> Target {
        Target {
            service: service.into(),
            operation: operation.into(),
            protocol: Protocol::Json,
        }
    }

    #[test]
    fn requests_are_identified_by_target_header_or_action() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            "DynamoDB_20120810.TransactWriteItems".parse().unwrap(),
        );
        assert_eq!(
            identify(&headers, b"{}"),
            Some(target("dynamodb", "TransactWriteItems"))
        );
        headers.insert("x-amz-target", "AmazonSQS.ReceiveMessage".parse().unwrap());
        assert_eq!(
            identify(&headers, b"{}"),
            Some(target("sqs", "ReceiveMessage"))
        );
        let mut query = HeaderMap::new();
        query.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=x"
                .parse()
                .unwrap(),
        );
        let found = identify(&query, b"Action=PublishBatch&Version=2010-03-31").unwrap();
        assert_eq!(
            (found.service.as_str(), found.operation.as_str()),
            ("sns", "PublishBatch")
        );
        assert_eq!(found.protocol, Protocol::Query);
        assert_eq!(identify(&HeaderMap::new(), b""), None, "moto's own API");
    }

    #[test]
    fn draws_are_deterministic_and_spread() {
        let t = target("sns", "Publish");
        assert_eq!(draw(7, &t, 1, 0), draw(7, &t, 1, 0));
        assert_ne!(draw(7, &t, 1, 0), draw(8, &t, 1, 0));
        let hits = (0..10_000)
            .filter(|n| unit(draw(7, &t, *n, 0)) < 0.05)
            .count();
        assert!((350..650).contains(&hits), "{hits} of 10000 at 5%");
    }

    #[test]
    fn transaction_items_are_keyed_by_table_and_key() {
        let body = br#"{"TransactItems":[{"Put":{"TableName":"idem","Item":{"pk":{"S":"a"}}}},{"Update":{"TableName":"stock","Key":{"sku":{"S":"hot"}}}}]}"#;
        assert_eq!(transact_items(body), ["", r#"stock/{"sku":{"S":"hot"}}"#]);
    }
}
