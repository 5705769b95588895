//! The fault spec: what `--faults` says, parsed into a [`FaultPlan`].
//!
//! ```text
//! spec    = rule *("," rule)
//! rule    = kind [":" service [":" Operation]] "=" value
//!         | "outage=" service ":" Operation "@" duration "+" duration
//!         | "kill" [":" function] "=" share
//!         | "seed=" integer
//! kind    = throttle | kms | conflict | 5xx | latency | drop
//! value   = share                      ; throttle, kms, conflict, 5xx, drop
//!         | "contention"               ; conflict only: conflict when another transaction on the item is in flight
//!         | duration ["@" share]       ; latency: added delay, to every request or to a share
//! share   = number "%" | fraction      ; 5% or 0.05
//! duration= number ("ms" | "s")
//! service = kinesis | dynamodb | sns | sqs   (lower case, as in IAM actions)
//! function= a function's label (`inventory`) or logical id (`InventoryFunction`)
//! ```
//!
//! Example: `throttle=5%,conflict=5%,5xx:sns=2%,latency=20ms@10%,drop=1%,outage=sns:PublishBatch@20s+30s,seed=7`.

use std::fmt;
use std::time::Duration;

/// A kind of fault the proxy can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The service's throttling error: Kinesis and DynamoDB `ProvisionedThroughputExceededException`
    /// (DynamoDB also `ThrottlingException`), SNS `Throttling`, SQS `RequestThrottled`.
    Throttle,
    /// Kinesis `KMSThrottlingException` (the stream's KMS key is over its rate).
    Kms,
    /// DynamoDB `TransactionCanceledException` with a `TransactionConflict` reason, on
    /// `TransactWriteItems` only.
    Conflict,
    /// A server error: `InternalError` (500) or `ServiceUnavailable` (503) and each service's own
    /// spelling of them.
    ServerError,
    /// Added latency before the request is forwarded.
    Latency,
    /// The connection is closed with no answer: before the request reaches the emulator, or
    /// (every other time) after it was applied, so the caller cannot tell which.
    Drop,
    /// One operation answering `ServiceUnavailable` for a window of time.
    Outage,
    /// A function's process killed at a random moment of an invocation (the runner does this,
    /// not the proxy): Lambda's `Runtime.ExitError`, as when an execution environment dies.
    Kill,
}

impl FaultKind {
    /// The name used in specs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::Kms => "kms",
            FaultKind::Conflict => "conflict",
            FaultKind::ServerError => "5xx",
            FaultKind::Latency => "latency",
            FaultKind::Drop => "drop",
            FaultKind::Outage => "outage",
            FaultKind::Kill => "kill",
        }
    }

    fn parse(name: &str) -> Option<FaultKind> {
        Some(match name {
            "throttle" => FaultKind::Throttle,
            "kms" => FaultKind::Kms,
            "conflict" => FaultKind::Conflict,
            "5xx" => FaultKind::ServerError,
            "latency" => FaultKind::Latency,
            "drop" => FaultKind::Drop,
            _ => return None,
        })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The services the proxy recognises (their SigV4 signing names).
pub const SERVICES: &[&str] = &["kinesis", "dynamodb", "sns", "sqs"];

/// Which requests a rule applies to: every request, one service's, or one operation's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// `kinesis`, `dynamodb`, `sns`, `sqs`; `None` = every service.
    pub service: Option<String>,
    /// An operation name as AWS spells it (`PublishBatch`); `None` = every operation.
    pub operation: Option<String>,
}

impl Scope {
    /// Whether a request to `service`'s `operation` is in scope.
    pub fn matches(&self, service: &str, operation: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == operation)
    }
}

/// How often a rule fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// This share of the requests in scope (0..=1).
    Share(f64),
    /// `conflict=contention`: whenever another `TransactWriteItems` touching one of the same
    /// items is in flight, as DynamoDB decides.
    Contention,
}

/// One `kind[:service[:Operation]]=value` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What to inject.
    pub kind: FaultKind,
    /// Where.
    pub scope: Scope,
    /// How often.
    pub trigger: Trigger,
    /// For `latency`: the delay added.
    pub delay: Duration,
}

/// One operation failing for a window: `outage=sns:PublishBatch@20s+30s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// When the outage starts, counted from the proxy's start.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

/// `kill[:function]=share`: the runner kills the function's process at a random moment during
/// this share of its invocations.
#[derive(Clone, Debug, PartialEq)]
pub struct KillRule {
    /// A function's label or logical id; `None` = every function.
    pub function: Option<String>,
    /// Share of invocations (0..=1).
    pub share: f64,
}

impl KillRule {
    /// Whether the rule applies to the function with this label and logical id.
    pub fn matches(&self, label: &str, logical_id: &str) -> bool {
        self.function
            .as_deref()
            .is_none_or(|f| f == label || f == logical_id)
    }
}

/// A parsed `--faults` spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// The share-based rules, in spec order (the first that fires answers a request).
    pub rules: Vec<Rule>,
    /// Outage windows.
    pub outages: Vec<Outage>,
    /// Processes to kill mid-invocation.
    pub kills: Vec<KillRule>,
    /// Seed of the decisions. Default 0: the same spec injects the same faults into the same
    /// sequence of requests of each operation.
    pub seed: u64,
}

/// A spec that does not parse; names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fault spec part `{part}`: {reason}")]
pub struct SpecError {
    /// The comma-separated part that failed.
    pub part: String,
    /// Why.
    pub reason: String,
}

impl std::str::FromStr for FaultPlan {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        FaultPlan::parse(spec)
    }
}

impl FaultPlan {
    /// Parse a spec (see the module docs for the grammar).
    pub fn parse(spec: &str) -> Result<FaultPlan, SpecError> {
        let mut plan = FaultPlan::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fail = |reason: String| SpecError {
                part: part.to_string(),
                reason,
            };
            let (left, value) = part
                .split_once('=')
                .ok_or_else(|| fail("expected `kind=value`".into()))?;
            let (left, value) = (left.trim(), value.trim());
            match left {
                "seed" => {
                    plan.seed = value
                        .parse()
                        .map_err(|_| fail(format!("seed `{value}` is not an integer")))?
                }
                "outage" => plan.outages.push(outage(value).map_err(fail)?),
                _ if left == "kill" || left.starts_with("kill:") => {
                    plan.kills.push(kill(left, value).map_err(fail)?)
                }
                _ => plan.rules.push(rule(left, value).map_err(fail)?),
            }
        }
        Ok(plan)
    }

    /// Whether the plan injects nothing.
    pub fn is_empty(&self) -> bool {
        !self.needs_proxy() && self.kills.is_empty()
    }

    /// Whether any part answers requests (and so needs the proxy in front of the emulator).
    pub fn needs_proxy(&self) -> bool {
        !self.rules.is_empty() || !self.outages.is_empty()
    }
}

fn rule(left: &str, value: &str) -> Result<Rule, String> {
    let mut names = left.split(':');
    let kind_name = names.next().unwrap_or_default();
    let kind = FaultKind::parse(kind_name).ok_or_else(|| {
        format!("unknown fault `{kind_name}`; one of throttle, kms, conflict, 5xx, latency, drop, outage, kill, seed")
    })?;
    let scope = Scope {
        service: names.next().map(service).transpose()?,
        operation: names.next().map(operation).transpose()?,
    };
    if let Some(extra) = names.next() {
        return Err(format!("`{extra}`: a scope is service[:Operation]"));
    }
    let needs = |service: &str| -> Result<(), String> {
        match scope.service.as_deref() {
            Some(s) if s != service => Err(format!("{kind} exists only on {service}, not on {s}")),
            _ => Ok(()),
        }
    };
    match kind {
        FaultKind::Conflict => needs("dynamodb")?,
        FaultKind::Kms => needs("kinesis")?,
        _ => {}
    }
    let (trigger, delay) = match kind {
        FaultKind::Conflict if value == "contention" => (Trigger::Contention, Duration::ZERO),
        FaultKind::Latency => match value.split_once('@') {
            Some((delay, rate)) => (Trigger::Share(share(rate)?), duration(delay)?),
            None => (Trigger::Share(1.0), duration(value)?),
        },
        _ => (Trigger::Share(share(value)?), Duration::ZERO),
    };
    Ok(Rule {
        kind,
        scope,
        trigger,
        delay,
    })
}

fn kill(left: &str, value: &str) -> Result<KillRule, String> {
    let function = match left.split_once(':') {
        None => None,
        Some((_, name))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Some(name.to_string())
        }
        Some((_, name)) => {
            return Err(format!(
                "`{name}` is not a function label or logical id (inventory, InventoryFunction)"
            ))
        }
    };
    Ok(KillRule {
        function,
        share: share(value)?,
    })
}

fn outage(value: &str) -> Result<Outage, String> {
    let (target, window) = value.split_once('@').ok_or(
        "expected `outage=service:Operation@start+duration`, e.g. sns:PublishBatch@20s+30s",
    )?;
    let (svc, op) = target
        .split_once(':')
        .ok_or("an outage names service:Operation, e.g. sns:PublishBatch")?;
    let (start, length) = window
        .split_once('+')
        .ok_or("the window is start+duration, e.g. 20s+30s")?;
    Ok(Outage {
        service: service(svc)?,
        operation: operation(op)?,
        start: duration(start)?,
        duration: duration(length)?,
    })
}

fn service(name: &str) -> Result<String, String> {
    if SERVICES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "unknown service `{name}`; one of {}",
            SERVICES.join(", ")
        ))
    }
}

fn operation(name: &str) -> Result<String, String> {
    if name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(name.to_string())
    } else {
        Err(format!(
            "operation `{name}` is not an AWS operation name (PublishBatch, TransactWriteItems, …)"
        ))
    }
}

fn share(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("`{text}` is not a share (5% or 0.05)"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{text}` is not between 0% and 100%"))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(format!("duration `{text}` needs a unit: ms or s"));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (250ms, 20s)"))?;
    if value.is_finite() && (0.0..86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value * unit))
    } else {
        Err(format!("duration `{text}` is out of range (0 to 24 h)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let plan = FaultPlan::parse(
            "throttle=5%,conflict=5%,5xx:sns=2%,latency=20ms@10%,drop=0.01,outage=sns:PublishBatch@20s+30s,seed=7",
        )
        .unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(plan.rules.len(), 5);
        assert_eq!(plan.rules[0].kind, FaultKind::Throttle);
        assert_eq!(plan.rules[0].trigger, Trigger::Share(0.05));
        assert_eq!(plan.rules[2].scope.service.as_deref(), Some("sns"));
        assert_eq!(plan.rules[3].delay, Duration::from_millis(20));
        assert_eq!(plan.rules[3].trigger, Trigger::Share(0.1));
        assert_eq!(plan.rules[4].trigger, Trigger::Share(0.01));
        assert_eq!(
            plan.outages,
            [Outage {
                service: "sns".into(),
                operation: "PublishBatch".into(),
                start: Duration::from_secs(20),
                duration: Duration::from_secs(30),
            }]
        );
        let scoped = FaultPlan::parse("throttle:dynamodb:TransactWriteItems=10%").unwrap();
        assert!(scoped.rules[0]
            .scope
            .matches("dynamodb", "TransactWriteItems"));
        assert!(!scoped.rules[0].scope.matches("dynamodb", "PutItem"));
        assert_eq!(
            FaultPlan::parse("conflict=contention").unwrap().rules[0].trigger,
            Trigger::Contention
        );
        assert!(FaultPlan::parse("").unwrap().is_empty());
        let kills = FaultPlan::parse("kill=3%,kill:inventory=10%").unwrap();
        assert_eq!(
            kills.kills,
            [
                KillRule {
                    function: None,
                    share: 0.03
                },
                KillRule {
                    function: Some("inventory".into()),
                    share: 0.1
                }
            ]
        );
        assert!(!kills.is_empty() && !kills.needs_proxy());
        assert!(kills.kills[1].matches("inventory", "InventoryFunction"));
        assert!(!kills.kills[1].matches("payment", "PaymentFunction"));
    }

    #[test]
    fn a_bad_part_is_named() {
        for (spec, part, says) in [
            (
                "throttle=5%,trottle=5%",
                "trottle=5%",
                "unknown fault `trottle`",
            ),
            ("throttle=150%", "throttle=150%", "between 0% and 100%"),
            ("5xx=lots", "5xx=lots", "not a share"),
            ("latency=20@10%", "latency=20@10%", "needs a unit"),
            ("throttle:s3=1%", "throttle:s3=1%", "unknown service `s3`"),
            ("conflict:sns=1%", "conflict:sns=1%", "only on dynamodb"),
            (
                "outage=sns:PublishBatch",
                "outage=sns:PublishBatch",
                "start+duration",
            ),
            (
                "outage=sns:publish@1s+2s",
                "outage=sns:publish@1s+2s",
                "operation `publish`",
            ),
            ("drop", "drop", "kind=value"),
            ("seed=x", "seed=x", "not an integer"),
            ("kill:a b=1%", "kill:a b=1%", "not a function label"),
            ("kill=2", "kill=2", "between 0% and 100%"),
        ] {
            let err = FaultPlan::parse(spec).unwrap_err();
            assert_eq!(err.part, part, "{spec}");
            assert!(err.reason.contains(says), "{spec}: {err}");
            assert!(err.to_string().contains(part));
        }
    }
}
