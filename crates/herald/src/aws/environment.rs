//! The environment contract: which variables each kind of function reads, what they mean and
//! their defaults.
//!
//! [`crate::Herald`] reads its wiring through this module only, so the list it gives
//! ([`Role::requirements`], printed by `herald env --explain`) is the list the code reads: a test
//! builds every role from an environment holding exactly its declared variables and checks that
//! it reads those and no others, and that leaving out a required one fails, naming it.
//!
//! Lambda sets the AWS variables itself (`AWS_REGION`, the credentials, `AWS_LAMBDA_*`); the
//! template sets the ones below.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// One environment variable herald reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Variable {
    /// Its name.
    pub name: &'static str,
    /// What it holds.
    pub meaning: &'static str,
    /// Its default when it is optional and unset (`None`: required, or no default).
    pub default: Option<&'static str>,
    /// An example value (used by `herald env --explain` and the contract's own test).
    pub example: &'static str,
}

/// The Kinesis stream events are written to.
pub const STREAM_NAME: Variable = Variable {
    name: "STREAM_NAME",
    meaning: "the Kinesis stream events are written to (a subscriber without it emits nothing)",
    default: None,
    example: "herald-events",
};
/// The SNS topic the router publishes to.
pub const TOPIC_ARN: Variable = Variable {
    name: "TOPIC_ARN",
    meaning: "the SNS topic events fan out through",
    default: None,
    example: "arn:aws:sns:us-east-1:123456789012:herald-events",
};
/// The function's dead-letter queue.
pub const DEAD_LETTER_QUEUE_URL: Variable = Variable {
    name: "DEAD_LETTER_QUEUE_URL",
    meaning: "where poison goes, with its reason",
    default: None,
    example: "https://sqs.us-east-1.amazonaws.com/123456789012/herald-dlq",
};
/// The router's mapping's `MaximumRecordAgeInSeconds`.
pub const RECORD_MAX_AGE_SECONDS: Variable = Variable {
    name: "RECORD_MAX_AGE_SECONDS",
    meaning: "the mapping's MaximumRecordAgeInSeconds: records the router still cannot publish are dead-lettered whole a margin before (-1: never)",
    default: Some("3600"),
    example: "3600",
};
/// The idempotency table (also the ledger that sends each record's dead letter once).
pub const IDEMPOTENCY_TABLE: Variable = Variable {
    name: "IDEMPOTENCY_TABLE",
    meaning: "idempotency records, and the ledger that sends each record's dead letter once (without it, a redelivered poison record is dead-lettered again); several tables separated by commas share the records by key",
    default: None,
    example: "herald-idempotency",
};
/// How long idempotency records and ledger entries are kept.
pub const IDEMPOTENCY_TTL_SECONDS: Variable = Variable {
    name: "IDEMPOTENCY_TTL_SECONDS",
    meaning: "how long COMPLETED records and ledger entries are kept (longer than any queue keeps a message)",
    default: Some("1296000"),
    example: "1296000",
};
/// The subscriber queue's `maxReceiveCount`.
pub const MAX_RECEIVE_COUNT: Variable = Variable {
    name: "MAX_RECEIVE_COUNT",
    meaning: "the queue's maxReceiveCount: a message on its last receive is dead-lettered by herald, with its reason",
    default: None,
    example: "5",
};
/// A failed message's first backoff.
pub const RETRY_BASE_SECONDS: Variable = Variable {
    name: "RETRY_BASE_SECONDS",
    meaning: "a failed message's first backoff",
    default: Some("10"),
    example: "10",
};
/// A failed message's longest backoff.
pub const RETRY_CAP_SECONDS: Variable = Variable {
    name: "RETRY_CAP_SECONDS",
    meaning: "a failed message's longest backoff",
    default: Some("900"),
    example: "900",
};
/// How long a message is retried before it is dead-lettered.
pub const RETRY_BUDGET_SECONDS: Variable = Variable {
    name: "RETRY_BUDGET_SECONDS",
    meaning: "how long a failing message is retried before it is dead-lettered",
    default: Some("86400"),
    example: "86400",
};
/// The event store's table.
pub const EVENT_STORE_TABLE: Variable = Variable {
    name: "EVENT_STORE_TABLE",
    meaning: "the event store",
    default: None,
    example: "herald-event-store",
};
/// Snapshot aggregates every N versions.
pub const SNAPSHOT_EVERY: Variable = Variable {
    name: "SNAPSHOT_EVERY",
    meaning: "snapshot aggregates every N versions",
    default: Some("none"),
    example: "100",
};
/// The CloudWatch namespace of herald's metrics.
pub const HERALD_METRICS_NAMESPACE: Variable = Variable {
    name: "HERALD_METRICS_NAMESPACE",
    meaning: "the CloudWatch namespace of herald's metrics (embedded metric format)",
    default: Some("herald"),
    example: "herald",
};

/// Every variable herald reads (Lambda's own aside).
pub const ALL: &[Variable] = &[
    STREAM_NAME,
    TOPIC_ARN,
    DEAD_LETTER_QUEUE_URL,
    RECORD_MAX_AGE_SECONDS,
    IDEMPOTENCY_TABLE,
    IDEMPOTENCY_TTL_SECONDS,
    MAX_RECEIVE_COUNT,
    RETRY_BASE_SECONDS,
    RETRY_CAP_SECONDS,
    RETRY_BUDGET_SECONDS,
    EVENT_STORE_TABLE,
    SNAPSHOT_EVERY,
    HERALD_METRICS_NAMESPACE,
];

/// What a function is, as far as its environment goes: one per `Herald::run_*`, plus the event
/// store a function opens with [`crate::Herald::event_store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// [`crate::Herald::run_producer`].
    Producer,
    /// [`crate::Herald::run_router`].
    Router,
    /// [`crate::Herald::run_publisher`].
    Publisher,
    /// [`crate::Herald::run_transactional`] and [`crate::Herald::run_claimed`].
    Subscriber,
    /// [`crate::Herald::run_keyed`].
    KeyedSubscriber,
    /// [`crate::Herald::run_projector`].
    Projector,
    /// [`crate::Herald::run_windowed`].
    Windowed,
    /// [`crate::Herald::run_http`].
    Http,
    /// [`crate::Herald::event_store`], on top of the function's own role.
    EventStore,
}

/// One variable a role reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The variable.
    pub variable: Variable,
    /// Whether the function fails to start without it.
    pub required: bool,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 9] = [
        Role::Producer,
        Role::Router,
        Role::Publisher,
        Role::Subscriber,
        Role::KeyedSubscriber,
        Role::Projector,
        Role::Windowed,
        Role::Http,
        Role::EventStore,
    ];

    /// Its name, as `herald env --explain` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Router => "router",
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber (transactional, claimed)",
            Role::KeyedSubscriber => "subscriber (keyed)",
            Role::Projector => "projector",
            Role::Windowed => "windowed aggregation",
            Role::Http => "http service",
            Role::EventStore => "event store (with any role)",
        }
    }

    /// The variables the role reads (metrics' namespace aside: every function reads it).
    pub fn requirements(self) -> Vec<Requirement> {
        let required = |variable| Requirement {
            variable,
            required: true,
        };
        let optional = |variable| Requirement {
            variable,
            required: false,
        };
        // Dead letters sent once per record when the function has a ledger table.
        let ledger = [
            optional(IDEMPOTENCY_TABLE),
            optional(IDEMPOTENCY_TTL_SECONDS),
        ];
        let subscriber = [
            required(DEAD_LETTER_QUEUE_URL),
            optional(STREAM_NAME),
            optional(MAX_RECEIVE_COUNT),
            optional(RETRY_BASE_SECONDS),
            optional(RETRY_CAP_SECONDS),
            optional(RETRY_BUDGET_SECONDS),
        ];
        match self {
            Role::Producer => vec![required(STREAM_NAME)],
            Role::Router => [
                required(TOPIC_ARN),
                required(DEAD_LETTER_QUEUE_URL),
                optional(RECORD_MAX_AGE_SECONDS),
            ]
            .into_iter()
            .chain(ledger)
            .collect(),
            Role::Publisher => [required(STREAM_NAME), required(DEAD_LETTER_QUEUE_URL)]
                .into_iter()
                .chain(ledger)
                .collect(),
            Role::Subscriber => [
                required(IDEMPOTENCY_TABLE),
                optional(IDEMPOTENCY_TTL_SECONDS),
            ]
            .into_iter()
            .chain(subscriber)
            .collect(),
            Role::KeyedSubscriber | Role::Projector => {
                ledger.into_iter().chain(subscriber).collect()
            }
            Role::Windowed | Role::Http => Vec::new(),
            Role::EventStore => vec![required(EVENT_STORE_TABLE), optional(SNAPSHOT_EVERY)],
        }
    }
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where [`crate::Herald`] reads its variables: the process's environment, or a lookup of your
/// own (a test's). Empty values count as unset. Remembers which variables were read.
#[derive(Clone)]
pub struct Environment {
    lookup: Arc<Lookup>,
    read: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("read", &self.read())
            .finish_non_exhaustive()
    }
}

impl Default for Environment {
    fn default() -> Self {
        Environment::process()
    }
}

impl Environment {
    /// The process's environment.
    pub fn process() -> Environment {
        Environment::from_fn(|name| std::env::var(name).ok())
    }

    /// Variables from `lookup`.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Environment {
            lookup: Arc::new(lookup),
            read: Arc::default(),
        }
    }

    /// The variable's value, or an error naming it.
    pub fn required(&self, variable: &Variable) -> Result<String, MissingEnv> {
        self.optional(variable)
            .ok_or_else(|| MissingEnv(variable.name.to_string()))
    }

    /// The variable's value, if set.
    pub fn optional(&self, variable: &Variable) -> Option<String> {
        if let Ok(mut read) = self.read.lock() {
            read.insert(variable.name);
        }
        (self.lookup)(variable.name).filter(|value| !value.is_empty())
    }

    /// The variable parsed, its default when unset; an unreadable value is an error naming the
    /// variable, the value and what was `expected`.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        variable: &Variable,
        expected: &str,
    ) -> Result<Option<T>, String> {
        match self.optional(variable) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| format!("{} is \"{value}\"; expected {expected}", variable.name)),
        }
    }

    /// The names read so far.
    pub fn read(&self) -> BTreeSet<&'static str> {
        self.read.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A required environment variable, or an error that names it.
pub fn env(name: &str) -> Result<String, MissingEnv> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MissingEnv(name.to_string()))
}

/// An environment variable the function needs is not set (template.yaml sets them all).
#[derive(Debug, thiserror::Error)]
#[error(
    "environment variable {0} is not set (template.yaml sets it for every function that needs it)"
)]
pub struct MissingEnv(pub String);
