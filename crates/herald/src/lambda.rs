//! Entry points: each function's `main` builds its handler and calls one of these, which read the
//! rest of the wiring from the environment template.yaml sets and run the Lambda runtime.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `STREAM_NAME` | producer, inventory, payment | the Kinesis stream events are written to |
//! | `TOPIC_ARN` | router | the SNS topic events fan out through |
//! | `DEAD_LETTER_QUEUE_URL` | router, subscribers | where poison goes, with its reason |
//! | `IDEMPOTENCY_TABLE` | subscribers | idempotency records |
//! | `MAX_RECEIVE_COUNT` | subscribers | the queue's `maxReceiveCount` (last-receive dead-lettering) |
//! | `IDEMPOTENCY_TTL_SECONDS` | subscribers | how long COMPLETED records are kept (default 24 h) |
//! | `EVENT_STORE_TABLE` | orders | the event store |
//! | `SNAPSHOT_EVERY` | orders | snapshot the aggregate every N versions (default: none) |
//! | `ORDERS_VIEW_TABLE` | projector, query | the `orders_view` read model |

use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

use crate::adapters::{KinesisStream, SnsBus, SqsDeadLetters};
use crate::aws::env;
use crate::catalog::EventCatalog;
use crate::event_store::EventStore;
use crate::idempotency::{Idempotency, IdempotencyConfig};
use crate::metrics::count;
use crate::order_service::{self, OrderService};
use crate::producer::{api, Producer, ProducerConfig};
use crate::projection::{self, OrdersProjection, Projector};
use crate::publisher::{Publisher, StoreChanges};
use crate::router::{KinesisBatch, Router, RouterConfig};
use crate::subscriber::{
    Claimed, ClaimedHandler, RecordHandler, SqsSubscriber, SubscriberConfig, Transactional,
    TransactionalHandler,
};

/// Run `handler` on the Lambda runtime with herald's layers: the runtime's request span
/// (`requestId` on every log line) around [`crate::metrics::MetricsLayer`] (one EMF document per
/// invocation).
macro_rules! serve {
    ($function:expr, $handler:expr) => {
        lambda_runtime::Runtime::new(lambda_runtime::tower::Layer::layer(
            &crate::metrics::MetricsLayer::new($function),
            $handler,
        ))
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
    };
}

/// The producer on `STREAM_NAME`, accepting the events of herald's catalog.
pub fn producer_from_env(aws: &SdkConfig) -> Result<Producer<KinesisStream>, Error> {
    Ok(Producer::with_config(
        KinesisStream::new(crate::aws::kinesis(aws), env("STREAM_NAME")?),
        ProducerConfig {
            catalog: Some(EventCatalog::herald()),
            ..ProducerConfig::default()
        },
    ))
}

/// Run the producer function: HTTP (Function URL / API Gateway) and direct invokes.
pub async fn run_producer(aws: &SdkConfig) -> Result<(), Error> {
    let producer = producer_from_env(aws)?;
    let producer = &producer;
    // Handler futures are boxed: the SDK's nested futures are otherwise too deep for rustc's layout query.
    serve!(
        "producer",
        service_fn(move |event: LambdaEvent<Value>| {
            Box::pin(async move { Ok::<Value, Error>(api::handle(producer, event.payload).await) })
        })
    )
}

/// herald's router: publishing to `topic_arn`, poison to `dead_letter_queue_url`, records
/// checked against herald's event catalog. (`herald replay` builds the same one.)
pub fn router(
    aws: &SdkConfig,
    topic_arn: &str,
    dead_letter_queue_url: &str,
) -> Router<SnsBus, SqsDeadLetters> {
    Router::with_config(
        SnsBus::new(crate::aws::sns(aws), topic_arn),
        SqsDeadLetters::new(crate::aws::sqs(aws), dead_letter_queue_url),
        RouterConfig {
            catalog: Some(EventCatalog::herald()),
            ..RouterConfig::default()
        },
    )
}

/// Run the router function: Kinesis in, SNS out, poison to `DEAD_LETTER_QUEUE_URL`.
pub async fn run_router(aws: &SdkConfig) -> Result<(), Error> {
    let router = router(aws, &env("TOPIC_ARN")?, &env("DEAD_LETTER_QUEUE_URL")?);
    let router = &router;
    serve!(
        "router",
        service_fn(move |event: LambdaEvent<KinesisBatch>| {
            Box::pin(async move {
                let (response, summary) = router.route(&event.payload).await;
                count("EventsIn", event.payload.records.len());
                count("EventsOut", summary.published);
                count("DeadLettered", summary.dead_lettered);
                count("EventsFailed", summary.failed);
                let records = &event.payload.records;
                let shard = records
                    .first()
                    .and_then(|r| r.event_id.as_deref())
                    .and_then(|id| id.split(':').next())
                    .unwrap_or_default();
                tracing::info!(
                    records = records.len(),
                    published = summary.published,
                    dead_lettered = summary.dead_lettered,
                    failed = summary.failed,
                    shardId = shard,
                    firstSequence = records
                        .first()
                        .map(|r| r.kinesis.sequence_number.as_str())
                        .unwrap_or_default(),
                    lastSequence = records
                        .last()
                        .map(|r| r.kinesis.sequence_number.as_str())
                        .unwrap_or_default(),
                    "batch routed"
                );
                Ok::<_, Error>(response)
            })
        })
    )
}

/// Run the order service: commands over HTTP, events appended to `EVENT_STORE_TABLE`.
pub async fn run_order_service(aws: &SdkConfig) -> Result<(), Error> {
    let mut store = EventStore::new(crate::aws::dynamodb(aws), env("EVENT_STORE_TABLE")?);
    if let Ok(every) = env("SNAPSHOT_EVERY") {
        store = store.with_snapshots_every(every.parse().map_err(|_| {
            format!("SNAPSHOT_EVERY is \"{every}\"; expected a whole number of versions")
        })?);
    }
    let service = OrderService::new(store);
    let service = &service;
    serve!(
        "orders",
        service_fn(move |event: LambdaEvent<Value>| {
            Box::pin(async move {
                Ok::<Value, Error>(order_service::handle(service, event.payload).await)
            })
        })
    )
}

/// Run the publisher: the event store's DynamoDB stream in, Kinesis (`STREAM_NAME`) out.
pub async fn run_publisher(aws: &SdkConfig) -> Result<(), Error> {
    let publisher = Publisher::new(
        Producer::new(KinesisStream::new(
            crate::aws::kinesis(aws),
            env("STREAM_NAME")?,
        )),
        SqsDeadLetters::new(crate::aws::sqs(aws), env("DEAD_LETTER_QUEUE_URL")?),
    );
    let publisher = &publisher;
    serve!(
        "publisher",
        service_fn(move |event: LambdaEvent<StoreChanges>| {
            Box::pin(async move {
                let (response, summary) = publisher.publish(&event.payload).await;
                count("EventsIn", event.payload.records.len());
                count("EventsOut", summary.published);
                count("DeadLettered", summary.dead_lettered);
                count("EventsFailed", summary.failed);
                tracing::info!(
                    records = event.payload.records.len(),
                    published = summary.published,
                    skipped = summary.skipped,
                    dead_lettered = summary.dead_lettered,
                    failed = summary.failed,
                    "batch published"
                );
                Ok::<_, Error>(response)
            })
        })
    )
}

/// Run the `orders_view` projector: its SQS queue in, `ORDERS_VIEW_TABLE` out.
pub async fn run_projector(aws: &SdkConfig) -> Result<(), Error> {
    let projection = OrdersProjection::new(crate::aws::dynamodb(aws), env("ORDERS_VIEW_TABLE")?);
    serve_sqs(SqsSubscriber::new(
        Projector::new(projection),
        SqsDeadLetters::new(crate::aws::sqs(aws), env("DEAD_LETTER_QUEUE_URL")?),
        // The projector emits nothing.
        Producer::new(KinesisStream::new(crate::aws::kinesis(aws), "")),
        subscriber_config_from_env()?,
    ))
    .await
}

/// Run the query function: `orders_view` over HTTP.
pub async fn run_query(aws: &SdkConfig) -> Result<(), Error> {
    let projection = OrdersProjection::new(crate::aws::dynamodb(aws), env("ORDERS_VIEW_TABLE")?);
    let projection = &projection;
    serve!(
        "query",
        service_fn(move |event: LambdaEvent<Value>| {
            Box::pin(async move {
                Ok::<Value, Error>(projection::handle_query(projection, event.payload).await)
            })
        })
    )
}

/// Run a subscriber whose effect commits with its idempotency record.
pub async fn run_transactional<H: TransactionalHandler>(
    aws: &SdkConfig,
    handler: H,
) -> Result<(), Error> {
    let wiring = Wiring::from_env(aws, handler.name())?;
    let idempotency = wiring.idempotency.clone();
    serve_sqs(wiring.subscriber(Transactional::new(handler, idempotency))).await
}

/// Run a subscriber whose effect runs under a claim.
pub async fn run_claimed<H: ClaimedHandler>(aws: &SdkConfig, handler: H) -> Result<(), Error> {
    let wiring = Wiring::from_env(aws, handler.name())?;
    let idempotency = wiring.idempotency.clone();
    serve_sqs(wiring.subscriber(Claimed::new(handler, idempotency))).await
}

async fn serve_sqs<H: RecordHandler>(
    subscriber: SqsSubscriber<H, SqsDeadLetters, KinesisStream>,
) -> Result<(), Error> {
    let subscriber = &subscriber;
    serve!(
        subscriber.name(),
        service_fn(move |event: LambdaEvent<SqsEvent>| {
            Box::pin(async move {
                let (response, summary) = subscriber
                    .handle(&event.payload, event.context.deadline())
                    .await;
                count("EventsIn", event.payload.records.len());
                count("EventsOut", summary.applied);
                count("Duplicates", summary.duplicates);
                count("DeadLettered", summary.dead_lettered);
                count("EventsFailed", summary.failed);
                Ok::<_, Error>(response)
            })
        })
    )
}

/// `MAX_RECEIVE_COUNT` into the subscriber settings.
fn subscriber_config_from_env() -> Result<SubscriberConfig, Error> {
    let max_receive_count = match env("MAX_RECEIVE_COUNT") {
        Ok(n) => Some(
            n.parse()
                .map_err(|_| format!("MAX_RECEIVE_COUNT is \"{n}\"; expected a whole number"))?,
        ),
        Err(_) => None,
    };
    Ok(SubscriberConfig {
        max_receive_count,
        ..SubscriberConfig::default()
    })
}

/// What every subscriber shares: idempotency, dead letters, the emitter.
struct Wiring {
    idempotency: Idempotency,
    dead_letters: SqsDeadLetters,
    emitter: Producer<KinesisStream>,
    config: SubscriberConfig,
}

impl Wiring {
    fn from_env(aws: &SdkConfig, name: &str) -> Result<Self, Error> {
        let mut config = IdempotencyConfig::new(env("IDEMPOTENCY_TABLE")?, name);
        if let Ok(ttl) = env("IDEMPOTENCY_TTL_SECONDS") {
            config.record_ttl = Duration::from_secs(ttl.parse().map_err(|_| {
                format!("IDEMPOTENCY_TTL_SECONDS is \"{ttl}\"; expected whole seconds")
            })?);
        }
        config.cache_capacity = 1024;
        // Subscribers that emit nothing get no STREAM_NAME (nor the IAM right to write to it).
        let stream = std::env::var("STREAM_NAME").unwrap_or_default();
        Ok(Wiring {
            idempotency: Idempotency::new(crate::aws::dynamodb(aws), config),
            dead_letters: SqsDeadLetters::new(crate::aws::sqs(aws), env("DEAD_LETTER_QUEUE_URL")?),
            emitter: Producer::new(KinesisStream::new(crate::aws::kinesis(aws), stream)),
            config: subscriber_config_from_env()?,
        })
    }

    fn subscriber<H: RecordHandler>(
        self,
        handler: H,
    ) -> SqsSubscriber<H, SqsDeadLetters, KinesisStream> {
        SqsSubscriber::new(handler, self.dead_letters, self.emitter, self.config)
    }
}
