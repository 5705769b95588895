//! [`Herald`]: one function's wiring. Every `functions/*/src/main.rs` is a few lines of it:
//!
//! ```no_run
//! # use herald::{EventCatalog, EventKind, Herald, Upcasters};
//! # fn catalog() -> EventCatalog { EventCatalog::new().with("user_signed_up", EventKind::Business, 1..=1) }
//! #[tokio::main]
//! async fn main() -> Result<(), herald::Error> {
//!     Herald::from_env()
//!         .await?
//!         .catalog(catalog())
//!         .upcasters(Upcasters::new())
//!         .run_producer()
//!         .await
//! }
//! ```
//!
//! The rest of the wiring comes from the environment template.yaml sets: which variables each
//! `run_*` reads is [`crate::aws::environment`]'s contract (`herald env --explain` prints it).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use crate::aws::dead_letter::SqsDeadLetters;
use crate::aws::environment::{self as vars, Environment};
use crate::aws::http::{serve_payload, HttpService};
use crate::aws::lambda::{serve, Error, LambdaEvent};
use crate::aws::metrics::{count, count_batch};
use crate::aws::unique_letters::{DynamoDbLetterLedger, UniqueDeadLetters};
use crate::aws::MissingEnv;
use crate::envelope::upcasting::Upcasters;
use crate::envelope::EventCatalog;
use crate::event_sourcing::event_store::DynamoDbEventStore;
use crate::event_sourcing::projection::{Projection, Projector};
use crate::event_sourcing::publisher::{Publisher, StoreChanges};
use crate::idempotency::{Idempotency, IdempotencyConfig};
use crate::producer::KinesisStream;
use crate::producer::{api, Producer, ProducerConfig, SubmissionPolicy};
use crate::router::SnsBus;
use crate::router::{KinesisBatch, Router, RouterConfig};
use crate::subscriber::window::{WindowEvent, WindowProcessor, WindowedAggregation};
use crate::subscriber::SqsRedelivery;
use crate::subscriber::{
    Claimed, ClaimedHandler, ErasedHandler, Keyed, KeyedHandler, RecordHandler, RetryPolicy,
    SqsSubscriber, SubscriberConfig, Transactional, TransactionalHandler,
};

/// One function's wiring: the AWS configuration, the application's event catalog and
/// upcasters, and a `run_*` method per kind of function.
#[derive(Clone, Debug)]
pub struct Herald {
    aws: SdkConfig,
    catalog: Option<EventCatalog>,
    submissions: Option<SubmissionPolicy>,
    upcasters: Upcasters,
    env: Environment,
}

impl Herald {
    /// Logging in Lambda's format ([`crate::aws::telemetry::init`]) and the AWS configuration from
    /// the variables Lambda sets ([`crate::aws::function_config`]; `AWS_ENDPOINT_URL` for an
    /// emulator). No catalog, no upcasters.
    pub async fn from_env() -> Result<Self, Error> {
        crate::aws::telemetry::init();
        Ok(Herald::with_config(crate::aws::function_config()?))
    }

    /// Wiring on an AWS configuration of your own (no logging set up).
    pub fn with_config(aws: SdkConfig) -> Self {
        Herald {
            aws,
            catalog: None,
            submissions: None,
            upcasters: Upcasters::new(),
            env: Environment::process(),
        }
    }

    /// Read the wiring's variables from `env` instead of the process's environment (a test's
    /// own values, say). Default: the process's.
    pub fn environment(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// The event types the producer accepts and the router routes; without one, any valid
    /// envelope passes.
    pub fn catalog(mut self, catalog: EventCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// What the public producer takes from clients: types, sources, the schemas `data` must
    /// meet; client ids namespaced ([`SubmissionPolicy`]). Without one, the producer takes any
    /// valid envelope the catalog knows, with the id the client chose.
    pub fn submissions(mut self, policy: SubmissionPolicy) -> Self {
        self.submissions = Some(policy);
        self
    }

    /// How old schema versions are read (subscribers, projectors and the event store upcast
    /// before handlers see an event).
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The AWS configuration, for building the application's own clients.
    pub fn aws(&self) -> &SdkConfig {
        &self.aws
    }

    /// The producer on `STREAM_NAME`, checking submissions against the catalog and the
    /// submission policy.
    pub fn producer(&self) -> Result<Producer<KinesisStream>, MissingEnv> {
        Ok(Producer::with_config(
            KinesisStream::new(
                crate::aws::kinesis(&self.aws),
                self.env.required(&vars::STREAM_NAME)?,
            ),
            ProducerConfig {
                catalog: self.catalog.clone(),
                submissions: self.submissions.clone(),
                ..ProducerConfig::default()
            },
        ))
    }

    /// The router: publishing to `topic_arn`, poison to `dead_letter_queue_url`, records checked
    /// against the catalog, records it cannot publish dead-lettered before their mapping's
    /// `RECORD_MAX_AGE_SECONDS` (an unreadable value is an error naming the variable).
    pub fn router(
        &self,
        topic_arn: &str,
        dead_letter_queue_url: &str,
    ) -> Result<Router<SnsBus, AppDeadLetters>, Error> {
        let mut config = RouterConfig {
            catalog: self.catalog.clone(),
            ..RouterConfig::default()
        };
        let age = self
            .env
            .parsed::<i64>(&vars::RECORD_MAX_AGE_SECONDS, "whole seconds or -1")?;
        if let Some(age) = age {
            config.give_up_after = u64::try_from(age)
                .ok()
                .map(|age| crate::router::give_up_after(Duration::from_secs(age)));
        }
        Ok(Router::with_config(
            SnsBus::new(crate::aws::sns(&self.aws), topic_arn),
            self.dead_letters(dead_letter_queue_url)?,
            config,
        ))
    }

    /// The event store in `EVENT_STORE_TABLE`, snapshots every `SNAPSHOT_EVERY` versions, with
    /// the upcasters.
    pub fn event_store(&self) -> Result<DynamoDbEventStore, Error> {
        let mut store = DynamoDbEventStore::new(
            crate::aws::dynamodb(&self.aws),
            self.env.required(&vars::EVENT_STORE_TABLE)?,
        )
        .with_upcasters(self.upcasters.clone());
        let every = self
            .env
            .parsed(&vars::SNAPSHOT_EVERY, "a whole number of versions")?;
        if let Some(every) = every {
            store = store.with_snapshots_every(every);
        }
        Ok(store)
    }

    /// Run the producer function: HTTP (Function URL / API Gateway) and direct invokes.
    pub async fn run_producer(self) -> Result<(), Error> {
        let producer = self.producer()?;
        let producer = &producer;
        serve("producer", move |event: LambdaEvent<Value>| async move {
            Ok::<Value, Error>(api::handle(producer, event.payload).await)
        })
        .await
    }

    /// Run the router function: Kinesis in, SNS (`TOPIC_ARN`) out, poison to
    /// `DEAD_LETTER_QUEUE_URL`.
    pub async fn run_router(self) -> Result<(), Error> {
        let router = self.router(
            &self.env.required(&vars::TOPIC_ARN)?,
            &self.env.required(&vars::DEAD_LETTER_QUEUE_URL)?,
        )?;
        let router = &router;
        serve(
            "router",
            move |event: LambdaEvent<KinesisBatch>| async move {
                let (response, summary) = router.route(&event.payload).await;
                count_batch(
                    event.payload.len(),
                    summary.published,
                    summary.dead_lettered,
                    summary.failed,
                );
                crate::router::log_batch(&event.payload, &summary);
                Ok::<_, Error>(response)
            },
        )
        .await
    }

    /// Run the publisher: the event store's DynamoDB stream in, Kinesis (`STREAM_NAME`) out.
    pub async fn run_publisher(self) -> Result<(), Error> {
        let publisher = self.publisher()?;
        let publisher = &publisher;
        serve(
            "publisher",
            move |event: LambdaEvent<StoreChanges>| async move {
                let (response, summary) = publisher.publish(&event.payload).await;
                count_batch(
                    event.payload.records.len(),
                    summary.published,
                    summary.dead_lettered,
                    summary.failed,
                );
                tracing::info!(
                    records = event.payload.records.len(),
                    published = summary.published,
                    skipped = summary.skipped,
                    dead_lettered = summary.dead_lettered,
                    failed = summary.failed,
                    "batch published"
                );
                Ok::<_, Error>(response)
            },
        )
        .await
    }

    /// The publisher on `STREAM_NAME`, poison to `DEAD_LETTER_QUEUE_URL`.
    fn publisher(&self) -> Result<Publisher<KinesisStream, AppDeadLetters>, Error> {
        Ok(Publisher::new(
            Producer::new(KinesisStream::new(
                crate::aws::kinesis(&self.aws),
                self.env.required(&vars::STREAM_NAME)?,
            )),
            self.dead_letters(&self.env.required(&vars::DEAD_LETTER_QUEUE_URL)?)?,
        ))
    }

    /// Run an HTTP function (commands, queries): Function URL / API Gateway requests and
    /// direct invokes shaped like them.
    pub async fn run_http<S: HttpService>(self, service: S) -> Result<(), Error> {
        let service = &service;
        serve(
            service.name(),
            move |event: LambdaEvent<Value>| async move {
                Ok::<Value, Error>(serve_payload(service, event.payload).await)
            },
        )
        .await
    }

    /// Run a subscriber whose effect commits with its idempotency record.
    pub async fn run_transactional<H: TransactionalHandler>(self, handler: H) -> Result<(), Error> {
        let idempotency = self.idempotency(handler.name())?;
        self.run_subscriber(Transactional::new(handler, idempotency))
            .await
    }

    /// Run a subscriber whose effect runs under a claim.
    pub async fn run_claimed<H: ClaimedHandler>(self, handler: H) -> Result<(), Error> {
        let idempotency = self.idempotency(handler.name())?;
        self.run_subscriber(Claimed::new(handler, idempotency))
            .await
    }

    /// Run a subscriber whose effect is its own idempotency record (keyed by the event).
    pub async fn run_keyed<H: KeyedHandler>(self, handler: H) -> Result<(), Error> {
        self.run_subscriber(Keyed::new(handler)).await
    }

    /// Run a projector: its SQS queue in, the projection's store out. No idempotency records:
    /// a projection is idempotent by construction (only its dead letters' ledger, when the
    /// function has an `IDEMPOTENCY_TABLE`).
    pub async fn run_projector<P: Projection>(self, projection: P) -> Result<(), Error> {
        self.run_subscriber(Projector::new(projection)).await
    }

    /// Run a windowed stream consumer: Kinesis with `TumblingWindowInSeconds` in, the
    /// aggregation's state out to Lambda, its `close` on each window's final invocation.
    pub async fn run_windowed<A: WindowedAggregation>(self, aggregation: A) -> Result<(), Error> {
        let processor = WindowProcessor::new(aggregation).upcasters(self.upcasters.clone());
        let processor = &processor;
        serve(
            processor.aggregation().name(),
            move |event: LambdaEvent<WindowEvent>| async move {
                let (response, summary) = processor.process(&event.payload).await?;
                count_batch(
                    event.payload.records.len(),
                    summary.folded,
                    0,
                    summary.failed,
                );
                count("NotEvents", summary.skipped);
                tracing::info!(
                    window_start = %event.payload.window.start,
                    records = event.payload.records.len(),
                    folded = summary.folded,
                    skipped = summary.skipped,
                    failed = summary.failed,
                    failure = summary.failure.as_deref().unwrap_or(""),
                    closed = summary.closed,
                    "window batch"
                );
                Ok::<_, Error>(response)
            },
        )
        .await
    }

    /// Run any [`RecordHandler`] as an SQS subscriber with herald's dead letters, follow-up
    /// emitter, upcasters and partial batch responses.
    pub async fn run_subscriber<H: RecordHandler>(self, handler: H) -> Result<(), Error> {
        self.serve_subscriber(ErasedHandler::new(handler)).await
    }

    /// [`Herald::run_subscriber`] for any handler: one copy of the subscriber's batch machinery
    /// and runtime in the binary, however many handlers it runs.
    async fn serve_subscriber(self, handler: ErasedHandler<'_>) -> Result<(), Error> {
        let (dead_letters, emitter, config) = self.subscriber_parts()?;
        let subscriber = SqsSubscriber::new(handler, dead_letters, emitter, config)
            .with_redelivery(std::sync::Arc::new(SqsRedelivery::new(crate::aws::sqs(
                &self.aws,
            ))));
        let subscriber = &subscriber;
        serve(
            subscriber.name(),
            move |event: LambdaEvent<SqsEvent>| async move {
                let (response, summary) = subscriber
                    .handle(&event.payload, event.context.deadline())
                    .await;
                count_batch(
                    event.payload.records.len(),
                    summary.applied,
                    summary.dead_lettered,
                    summary.failed,
                );
                count("Duplicates", summary.duplicates);
                // Every message failed because AWS could not serve it: fail the invocation, so
                // Lambda's Errors metric and the function's alarm see the outage (each message
                // is already postponed with its backoff; Lambda returns them all to the queue).
                if summary.outage(event.payload.records.len()) {
                    return Err(Error::from(format!(
                        "all {} messages failed because AWS could not serve them: {}",
                        event.payload.records.len(),
                        summary.unavailable_reason.as_deref().unwrap_or_default()
                    )));
                }
                Ok::<_, Error>(response)
            },
        )
        .await
    }

    /// What every subscriber reads from its environment: its dead letters, its emitter on
    /// `STREAM_NAME` (subscribers that emit nothing get none, nor the IAM right to write to
    /// it), `MAX_RECEIVE_COUNT`, the retry policy and the upcasters.
    fn subscriber_parts(
        &self,
    ) -> Result<(AppDeadLetters, Producer<KinesisStream>, SubscriberConfig), Error> {
        let dead_letters = self.dead_letters(&self.env.required(&vars::DEAD_LETTER_QUEUE_URL)?)?;
        let stream = self.env.optional(&vars::STREAM_NAME).unwrap_or_default();
        let emitter = Producer::new(KinesisStream::new(crate::aws::kinesis(&self.aws), stream));
        let max_receive_count = self
            .env
            .parsed(&vars::MAX_RECEIVE_COUNT, "a whole number")?;
        let defaults = RetryPolicy::default();
        let seconds = |variable, default: Duration| -> Result<Duration, Error> {
            let seconds = self.env.parsed(variable, "whole seconds")?;
            Ok(seconds.map_or(default, Duration::from_secs))
        };
        let config = SubscriberConfig {
            max_receive_count,
            upcasters: self.upcasters.clone(),
            retry: RetryPolicy {
                base: seconds(&vars::RETRY_BASE_SECONDS, defaults.base)?,
                cap: seconds(&vars::RETRY_CAP_SECONDS, defaults.cap)?,
                budget: seconds(&vars::RETRY_BUDGET_SECONDS, defaults.budget)?,
            },
        };
        Ok((dead_letters, emitter, config))
    }

    /// Dead letters to `queue_url`, each record's once when the function has an
    /// `IDEMPOTENCY_TABLE` to keep the ledger in (see [`crate::aws::unique_letters`]).
    fn dead_letters(&self, queue_url: &str) -> Result<AppDeadLetters, Error> {
        let ledger = match self.env.optional(&vars::IDEMPOTENCY_TABLE) {
            Some(table) => Some(DynamoDbLetterLedger::new(
                crate::aws::dynamodb(&self.aws),
                table,
                self.record_ttl()?,
            )),
            None => None,
        };
        Ok(UniqueDeadLetters::new(
            SqsDeadLetters::new(crate::aws::sqs(&self.aws), queue_url),
            ledger,
        ))
    }

    /// Idempotency records in `IDEMPOTENCY_TABLE` under the subscriber's name.
    fn idempotency(&self, name: &str) -> Result<Idempotency, Error> {
        let mut config = IdempotencyConfig::new(self.env.required(&vars::IDEMPOTENCY_TABLE)?, name);
        config.record_ttl = self.record_ttl()?;
        config.cache_capacity = 1024;
        Ok(Idempotency::new(crate::aws::dynamodb(&self.aws), config))
    }

    /// `IDEMPOTENCY_TTL_SECONDS`, or [`DEFAULT_RECORD_TTL`](crate::idempotency::DEFAULT_RECORD_TTL).
    fn record_ttl(&self) -> Result<Duration, Error> {
        let ttl = self
            .env
            .parsed(&vars::IDEMPOTENCY_TTL_SECONDS, "whole seconds")?;
        Ok(ttl.map_or(crate::idempotency::DEFAULT_RECORD_TTL, Duration::from_secs))
    }
}

/// The dead letters every function sends: to its SQS queue, once per record.
pub type AppDeadLetters = UniqueDeadLetters<SqsDeadLetters, Option<DynamoDbLetterLedger>>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::aws::environment::{Role, ALL};

    /// A function of `role` wired from an environment holding `present` (example values).
    fn wire(role: Role, present: &BTreeSet<&'static str>) -> (Result<(), Error>, Environment) {
        let values: Vec<(&'static str, &'static str)> = ALL
            .iter()
            .filter(|v| present.contains(v.name))
            .map(|v| (v.name, v.example))
            .collect();
        let env = Environment::from_fn(move |name| {
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        });
        let aws = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let herald = Herald::with_config(aws).environment(env.clone());
        // What each `run_*` builds before it serves.
        let built: Result<(), Error> = match role {
            Role::Producer => herald.producer().map(drop).map_err(Error::from),
            Role::Router => herald
                .env
                .required(&vars::TOPIC_ARN)
                .map_err(Error::from)
                .and_then(|topic| {
                    let queue = herald.env.required(&vars::DEAD_LETTER_QUEUE_URL)?;
                    herald.router(&topic, &queue).map(drop)
                }),
            Role::Publisher => herald.publisher().map(drop),
            Role::Subscriber => herald
                .idempotency("wired")
                .and_then(|_| herald.subscriber_parts().map(drop)),
            Role::KeyedSubscriber | Role::Projector => herald.subscriber_parts().map(drop),
            Role::Windowed | Role::Http => Ok(()),
            Role::EventStore => herald.event_store().map(drop),
        };
        (built, env)
    }

    #[test]
    fn every_role_reads_exactly_the_variables_it_declares() {
        for role in Role::ALL {
            let declared: BTreeSet<&'static str> = role
                .requirements()
                .iter()
                .map(|r| r.variable.name)
                .collect();
            let (built, env) = wire(role, &declared);
            assert!(built.is_ok(), "{role:?}: {:?}", built.err());
            assert_eq!(
                env.read(),
                declared,
                "{role:?} reads other variables than it declares"
            );
            for requirement in role.requirements().iter().filter(|r| r.required) {
                let mut without = declared.clone();
                without.remove(requirement.variable.name);
                let (built, _) = wire(role, &without);
                let err = built
                    .expect_err("a required variable is missing")
                    .to_string();
                assert!(
                    err.contains(requirement.variable.name),
                    "{role:?} without {}: {err}",
                    requirement.variable.name
                );
            }
        }
    }

    #[test]
    fn an_unreadable_value_names_the_variable_and_what_was_expected() {
        let env = Environment::from_fn(|name| (name == "MAX_RECEIVE_COUNT").then(|| "five".into()));
        let err = env
            .parsed::<u32>(&vars::MAX_RECEIVE_COUNT, "a whole number")
            .unwrap_err();
        assert_eq!(
            err,
            "MAX_RECEIVE_COUNT is \"five\"; expected a whole number"
        );
    }

    /// Nothing in herald reads a variable by name outside the contract (the AWS ones Lambda
    /// sets aside), so the contract is the whole list.
    #[test]
    fn no_variable_is_read_around_the_contract() {
        let lambda_sets = [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_ENDPOINT_URL",
            "AWS_LAMBDA_LOG_LEVEL",
            "AWS_LAMBDA_LOG_FORMAT",
            "AWS_LAMBDA_FUNCTION_NAME",
            "RUST_LOG",
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut found = BTreeSet::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for pattern in ["env(\"", "var(\"", ".env(\""] {
                    for (at, _) in text.match_indices(pattern) {
                        let rest = &text[at + pattern.len()..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                            .collect();
                        if !name.is_empty() && rest[name.len()..].starts_with('"') {
                            found.insert((name, path.display().to_string()));
                        }
                    }
                }
            }
        }
        // The scan sees the reads it should (aws.rs reads the region by name).
        assert!(
            found.iter().any(|(name, _)| name == "AWS_REGION"),
            "{found:?}"
        );
        let stray: Vec<_> = found
            .into_iter()
            .filter(|(name, _)| !lambda_sets.contains(&name.as_str()))
            .filter(|(name, _)| ALL.iter().all(|v| v.name != name))
            .collect();
        assert!(stray.is_empty(), "read outside environment.rs: {stray:?}");
    }
}
