//! [`Herald`]: one function's wiring. Every `functions/*/src/main.rs` is a few lines of it:
//!
//! ```no_run
//! # use herald::{EventCatalog, EventKind, Herald, Upcasters};
//! # fn catalog() -> EventCatalog { EventCatalog::new().with("user_signed_up", EventKind::Business, 1..=1) }
//! #[tokio::main]
//! async fn main() -> Result<(), herald::lambda::Error> {
//!     Herald::from_env()
//!         .await?
//!         .catalog(catalog())
//!         .upcasters(Upcasters::new())
//!         .run_producer()
//!         .await
//! }
//! ```
//!
//! The rest of the wiring comes from the environment template.yaml sets:
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `STREAM_NAME` | producer, publisher, subscribers that emit | the Kinesis stream events are written to |
//! | `TOPIC_ARN` | router | the SNS topic events fan out through |
//! | `DEAD_LETTER_QUEUE_URL` | router, publisher, subscribers | where poison goes, with its reason |
//! | `RECORD_MAX_AGE_SECONDS` | router | its mapping's `MaximumRecordAgeInSeconds`: records it still cannot publish are dead-lettered whole a margin before (default 3600; -1: never) |
//! | `IDEMPOTENCY_TABLE` | subscribers, router, publisher, projectors | idempotency records; the ledger that sends each record's dead letter once |
//! | `MAX_RECEIVE_COUNT` | subscribers | the queue's `maxReceiveCount` (last-receive dead-lettering) |
//! | `RETRY_BASE_SECONDS`, `RETRY_CAP_SECONDS`, `RETRY_BUDGET_SECONDS` | subscribers | a failed message's backoff and the retry budget ([`crate::subscriber::RetryPolicy`]; defaults 10, 900, 86 400) |
//! | `IDEMPOTENCY_TTL_SECONDS` | every function with `IDEMPOTENCY_TABLE` | how long COMPLETED records and ledger entries are kept (default 15 days, longer than any DLQ keeps a message) |
//! | `EVENT_STORE_TABLE` | command services | the event store |
//! | `SNAPSHOT_EVERY` | command services | snapshot aggregates every N versions (default: none) |

use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use crate::adapters::{KinesisStream, SnsBus, SqsDeadLetters, SqsRedelivery};
use crate::aws::{env, MissingEnv};
use crate::catalog::EventCatalog;
use crate::event_store::DynamoDbEventStore;
use crate::http::{serve_payload, HttpService};
use crate::idempotency::{Idempotency, IdempotencyConfig};
use crate::lambda::{serve, Error, LambdaEvent};
use crate::metrics::{count, count_batch};
use crate::producer::{api, Producer, ProducerConfig, SubmissionPolicy};
use crate::projection::{Projection, Projector};
use crate::publisher::{Publisher, StoreChanges};
use crate::router::{KinesisBatch, Router, RouterConfig};
use crate::schema::Upcasters;
use crate::subscriber::{
    Claimed, ClaimedHandler, ErasedHandler, Keyed, KeyedHandler, RecordHandler, RetryPolicy,
    SqsSubscriber, SubscriberConfig, Transactional, TransactionalHandler,
};
use crate::unique_letters::{DynamoDbLetterLedger, UniqueDeadLetters};
use crate::window::{WindowEvent, WindowProcessor, WindowedAggregation};

/// One function's wiring: the AWS configuration, the application's event catalog and
/// upcasters, and a `run_*` method per kind of function.
#[derive(Clone, Debug)]
pub struct Herald {
    aws: SdkConfig,
    catalog: Option<EventCatalog>,
    submissions: Option<SubmissionPolicy>,
    upcasters: Upcasters,
}

impl Herald {
    /// Logging in Lambda's format ([`crate::telemetry::init`]) and the AWS configuration from
    /// the variables Lambda sets ([`crate::aws::function_config`]; `AWS_ENDPOINT_URL` for an
    /// emulator). No catalog, no upcasters.
    pub async fn from_env() -> Result<Self, Error> {
        crate::telemetry::init();
        Ok(Herald::with_config(crate::aws::function_config()?))
    }

    /// Wiring on an AWS configuration of your own (no logging set up).
    pub fn with_config(aws: SdkConfig) -> Self {
        Herald {
            aws,
            catalog: None,
            submissions: None,
            upcasters: Upcasters::new(),
        }
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
            KinesisStream::new(crate::aws::kinesis(&self.aws), env("STREAM_NAME")?),
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
        if let Ok(age) = env("RECORD_MAX_AGE_SECONDS") {
            let age: i64 = age.parse().map_err(|_| {
                format!("RECORD_MAX_AGE_SECONDS is \"{age}\"; expected whole seconds or -1")
            })?;
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
        let mut store =
            DynamoDbEventStore::new(crate::aws::dynamodb(&self.aws), env("EVENT_STORE_TABLE")?)
                .with_upcasters(self.upcasters.clone());
        if let Ok(every) = env("SNAPSHOT_EVERY") {
            store = store.with_snapshots_every(every.parse().map_err(|_| {
                format!("SNAPSHOT_EVERY is \"{every}\"; expected a whole number of versions")
            })?);
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
        let router = self.router(&env("TOPIC_ARN")?, &env("DEAD_LETTER_QUEUE_URL")?)?;
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
        let publisher = Publisher::new(
            Producer::new(KinesisStream::new(
                crate::aws::kinesis(&self.aws),
                env("STREAM_NAME")?,
            )),
            self.dead_letters(&env("DEAD_LETTER_QUEUE_URL")?)?,
        );
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
        // Subscribers that emit nothing get no STREAM_NAME (nor the IAM right to write to it).
        let stream = std::env::var("STREAM_NAME").unwrap_or_default();
        let subscriber = SqsSubscriber::new(
            handler,
            self.dead_letters(&env("DEAD_LETTER_QUEUE_URL")?)?,
            Producer::new(KinesisStream::new(crate::aws::kinesis(&self.aws), stream)),
            self.subscriber_config()?,
        )
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

    /// `MAX_RECEIVE_COUNT` and the upcasters into the subscriber settings.
    fn subscriber_config(&self) -> Result<SubscriberConfig, Error> {
        let max_receive_count =
            match env("MAX_RECEIVE_COUNT") {
                Ok(n) => Some(n.parse().map_err(|_| {
                    format!("MAX_RECEIVE_COUNT is \"{n}\"; expected a whole number")
                })?),
                Err(_) => None,
            };
        let defaults = RetryPolicy::default();
        let seconds = |name: &str, default: Duration| -> Result<Duration, Error> {
            match env(name) {
                Ok(n) => Ok(Duration::from_secs(n.parse().map_err(|_| {
                    format!("{name} is \"{n}\"; expected whole seconds")
                })?)),
                Err(_) => Ok(default),
            }
        };
        Ok(SubscriberConfig {
            max_receive_count,
            upcasters: self.upcasters.clone(),
            retry: RetryPolicy {
                base: seconds("RETRY_BASE_SECONDS", defaults.base)?,
                cap: seconds("RETRY_CAP_SECONDS", defaults.cap)?,
                budget: seconds("RETRY_BUDGET_SECONDS", defaults.budget)?,
            },
        })
    }

    /// Dead letters to `queue_url`, each record's once when the function has an
    /// `IDEMPOTENCY_TABLE` to keep the ledger in (see [`crate::unique_letters`]).
    fn dead_letters(&self, queue_url: &str) -> Result<AppDeadLetters, Error> {
        let ledger = match std::env::var("IDEMPOTENCY_TABLE") {
            Ok(table) if !table.is_empty() => Some(DynamoDbLetterLedger::new(
                crate::aws::dynamodb(&self.aws),
                table,
                record_ttl()?,
            )),
            _ => None,
        };
        Ok(UniqueDeadLetters::new(
            SqsDeadLetters::new(crate::aws::sqs(&self.aws), queue_url),
            ledger,
        ))
    }

    /// Idempotency records in `IDEMPOTENCY_TABLE` under the subscriber's name.
    fn idempotency(&self, name: &str) -> Result<Idempotency, Error> {
        let mut config = IdempotencyConfig::new(env("IDEMPOTENCY_TABLE")?, name);
        config.record_ttl = record_ttl()?;
        config.cache_capacity = 1024;
        Ok(Idempotency::new(crate::aws::dynamodb(&self.aws), config))
    }
}

/// The dead letters every function sends: to its SQS queue, once per record.
pub type AppDeadLetters = UniqueDeadLetters<SqsDeadLetters, Option<DynamoDbLetterLedger>>;

/// `IDEMPOTENCY_TTL_SECONDS`, or [`DEFAULT_RECORD_TTL`](crate::idempotency::DEFAULT_RECORD_TTL).
fn record_ttl() -> Result<Duration, Error> {
    match env("IDEMPOTENCY_TTL_SECONDS") {
        Ok(ttl) => Ok(Duration::from_secs(ttl.parse().map_err(|_| {
            format!("IDEMPOTENCY_TTL_SECONDS is \"{ttl}\"; expected whole seconds")
        })?)),
        Err(_) => Ok(crate::idempotency::DEFAULT_RECORD_TTL),
    }
}
