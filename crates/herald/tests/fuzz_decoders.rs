//! Property tests (issue 11): every decoder that takes outside bytes, fed arbitrary bytes and
//! structured garbage. Each must answer — never panic — and every rejection must name what was
//! wrong: the envelope parsers, the Lambda events the functions receive (Kinesis for the router,
//! SQS for subscribers, the DynamoDB stream for the publisher), and the producer's HTTP door.
//! They run with `cargo test` in a few seconds (proptest, a fixed number of cases each).

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use base64::Engine;
use herald::envelope::validate_record;
use herald::event_sourcing::publisher::{Publisher, StoreChanges};
use herald::producer::{api, Producer, ProducerConfig, SubmissionPolicy};
use herald::router::{KinesisBatch, Router};
use herald::subscriber::{
    Delivery, Outcome, RecordError, RecordHandler, SqsSubscriber, SubscriberConfig,
};
use herald::testing::{InMemoryBus, InMemoryDeadLetters, InMemoryStream};
use herald::{Envelope, EventCatalog, EventKind};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const ATTRIBUTES: [&str; 15] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "kind",
    "schemaversion",
    "correlationid",
    "causationid",
    "aggregateversion",
    "data",
    "extension",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep, biased towards the shapes envelopes have.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("1.0"),
            Just("business"),
            Just("system"),
            Just("data"),
            Just("2026-11-30T10:00:00.000Z"),
            Just("application/json"),
            Just("order_placed"),
            Just("herald/orders"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object whose keys are (mostly) CloudEvents attributes with arbitrary values: garbage
/// that gets past "is it JSON" and exercises every attribute's check.
fn envelope_like() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (prop::sample::select(ATTRIBUTES.to_vec()), json_value()),
        0..15,
    )
    .prop_map(|fields| {
        let mut object = Map::new();
        for (name, value) in fields {
            object.insert(name.to_string(), value);
        }
        Value::Object(object)
    })
}

/// A valid envelope's JSON with one attribute replaced by garbage.
fn mutated_envelope() -> impl Strategy<Value = Value> {
    (prop::sample::select(ATTRIBUTES.to_vec()), json_value()).prop_map(|(name, value)| {
        let mut event = serde_json::to_value(valid("e-1", "s-1")).unwrap();
        event[name] = value;
        event
    })
}

fn valid(id: &str, subject: &str) -> Envelope {
    Envelope::builder("order_placed", "herald/orders")
        .id(id)
        .subject(subject)
        .data(json!({"orderId": subject}))
        .build()
        .unwrap()
}

/// Bytes that are sometimes JSON, sometimes an envelope, sometimes noise.
fn outside_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        envelope_like().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        mutated_envelope().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ".{0,200}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// The strict parser, the submission parser and the router's payload-free check answer
    /// every input; what they accept survives a round trip, what they reject names an attribute.
    #[test]
    fn envelope_parsers_answer_every_input_and_name_what_they_reject(bytes in outside_bytes()) {
        for result in [Envelope::parse(&bytes), validate_record(&bytes).map(|_| valid("x", "y"))] {
            if let Err(err) = result {
                prop_assert!(!err.field().is_empty());
                prop_assert!(!err.to_string().is_empty());
            }
        }
        if let Ok(event) = Envelope::parse(&bytes) {
            prop_assert_eq!(Envelope::parse(&event.to_json_bytes()), Ok(event));
        }
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            match Envelope::parse_submission(&value) {
                Ok(event) => prop_assert_eq!(Envelope::parse(&event.to_json_bytes()), Ok(event)),
                Err(err) => prop_assert!(!err.field().is_empty()),
            }
        }
    }

    /// Lambda's Kinesis event as the router receives it: garbage payloads fail to decode with a
    /// serde error; garbage records are published or dead-lettered, each accounted for.
    #[test]
    fn the_router_accounts_for_every_kinesis_record_of_garbage(
        records in prop::collection::vec((outside_bytes(), ".{0,12}", any::<bool>()), 0..12),
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = serde_json::from_slice::<KinesisBatch>(&payload);
        let records: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, (data, key, arn))| {
                let mut record = json!({
                    "kinesis": {
                        "sequenceNumber": (i + 1).to_string(),
                        "partitionKey": key,
                        "data": base64::engine::general_purpose::STANDARD.encode(data),
                    },
                    "eventID": format!("shardId-000000000000:{}", i + 1),
                });
                if *arn {
                    record["eventSourceARN"] = json!("arn:aws:kinesis:us-east-1:123456789012:stream/s");
                }
                record
            })
            .collect();
        let batch: KinesisBatch = serde_json::from_value(json!({ "Records": records })).unwrap();
        let catalog = EventCatalog::new().with("order_placed", EventKind::Business, 1..=1);
        let router = Router::with_config(
            InMemoryBus::new(),
            InMemoryDeadLetters::new(),
            herald::router::RouterConfig { catalog: Some(catalog), ..Default::default() },
        );
        let (response, summary) = runtime().block_on(router.route(&batch));
        prop_assert_eq!(summary.published + summary.dead_lettered + summary.failed, records.len());
        prop_assert_eq!(summary.failed, response.batch_item_failures.len());
        prop_assert_eq!(summary.failed, 0, "nothing to retry: the bus and the DLQ are up");
    }

    /// SQS messages as a subscriber receives them (raw delivery or SNS-wrapped): each is applied
    /// or dead-lettered with a reason; none panics, none is left unaccounted.
    #[test]
    fn a_subscriber_accounts_for_every_sqs_message_of_garbage(
        bodies in prop::collection::vec(prop_oneof![
            outside_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            outside_bytes().prop_map(|b| json!({"Type": "Notification", "Message": String::from_utf8_lossy(&b)}).to_string()),
        ], 0..10),
        receives in 1u32..8,
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = serde_json::from_slice::<SqsEvent>(&payload);
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut message = SqsMessage::default();
                message.message_id = Some(format!("m-{i}"));
                message.body = Some(body.clone());
                message.attributes.insert("ApproximateReceiveCount".into(), receives.to_string());
                message
            })
            .collect();
        let letters = InMemoryDeadLetters::new();
        let subscriber = SqsSubscriber::new(
            Applies,
            letters,
            Producer::new(InMemoryStream::new()),
            SubscriberConfig { max_receive_count: Some(5), ..SubscriberConfig::default() },
        );
        let deadline = SystemTime::now() + Duration::from_secs(60);
        let (response, summary) = runtime().block_on(subscriber.handle(&event, deadline));
        prop_assert_eq!(
            summary.applied + summary.duplicates + summary.ignored + summary.dead_lettered + summary.failed,
            bodies.len()
        );
        prop_assert_eq!(summary.failed, response.batch_item_failures.len());
    }

    /// The event store's DynamoDB stream as the publisher receives it: garbage images are skipped
    /// or dead-lettered with a reason; valid events are published.
    #[test]
    fn the_publisher_accounts_for_every_stream_record_of_garbage(
        records in prop::collection::vec((
            prop::sample::select(vec!["INSERT", "MODIFY", "REMOVE", ""]),
            prop::option::of(outside_bytes()),
            prop::option::of(json_value()),
            any::<bool>(),
        ), 0..10),
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = serde_json::from_slice::<StoreChanges>(&payload);
        let records: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, (name, event, extra, with_image))| {
                let mut image = json!({"aggregateId": {"S": "a-1"}, "version": {"N": "1"}});
                if let Some(event) = event {
                    image["event"] = json!({"S": String::from_utf8_lossy(event)});
                }
                if let Some(extra) = extra {
                    image["junk"] = extra.clone();
                }
                let mut change = json!({
                    "SequenceNumber": (i + 1).to_string(),
                    "Keys": {"aggregateId": {"S": "a-1"}, "version": {"N": "1"}},
                });
                if *with_image {
                    change["NewImage"] = image;
                }
                json!({"eventName": name, "dynamodb": change})
            })
            .collect();
        let changes: StoreChanges = serde_json::from_value(json!({ "Records": records })).unwrap();
        let publisher = Publisher::new(Producer::new(InMemoryStream::new()), InMemoryDeadLetters::new());
        let (response, summary) = runtime().block_on(publisher.publish(&changes));
        prop_assert_eq!(
            summary.published + summary.skipped + summary.dead_lettered + summary.failed,
            records.len()
        );
        prop_assert_eq!(summary.failed, response.batch_item_failures.len());
    }

    /// The producer's door, as a Function URL request or a direct invoke: every payload gets an
    /// answer (a status the API documents, a JSON body), never a panic.
    #[test]
    fn the_producer_answers_every_request(
        body in prop_oneof![
            outside_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            prop::collection::vec(prop_oneof![envelope_like(), mutated_envelope()], 0..5)
                .prop_map(|events| Value::Array(events).to_string()),
        ],
        method in prop::sample::select(vec!["POST", "GET", "PUT", ""]),
        base64 in any::<bool>(),
        key in prop::option::of(".{0,20}"),
        direct in json_value(),
        with_policy in any::<bool>(),
    ) {
        let mut config = ProducerConfig::default();
        if with_policy {
            config.submissions = Some(
                SubmissionPolicy::new()
                    .allow("order_placed", &["herald/orders"])
                    .schema("order_placed", 1, json!({"type": "object", "required": ["orderId"]})),
            );
        }
        let producer = Producer::with_config(InMemoryStream::new(), config);
        let mut request = json!({
            "version": "2.0",
            "rawPath": "/",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": "/"}},
            "body": if base64 { base64::engine::general_purpose::STANDARD.encode(&body) } else { body.clone() },
            "isBase64Encoded": base64,
        });
        if let Some(key) = key {
            request["headers"]["idempotency-key"] = json!(key);
        }
        let rt = runtime();
        let response = rt.block_on(api::handle(&producer, request));
        let status = response["statusCode"].as_u64().unwrap();
        prop_assert!([202, 207, 400, 405].contains(&status), "{}", response);
        let answer: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        for result in answer["results"].as_array().into_iter().flatten() {
            if result["status"] == "rejected" {
                prop_assert!(!result["error"]["field"].as_str().unwrap().is_empty(), "{}", result);
            }
        }
        let answer = rt.block_on(api::handle(&producer, direct));
        prop_assert!(answer.get("results").is_some() || answer.get("error").is_some(), "{}", answer);
    }
}

/// A subscriber that applies every event it can read.
struct Applies;

impl RecordHandler for Applies {
    fn name(&self) -> &'static str {
        "applies"
    }

    async fn process(
        &self,
        _event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        Ok(Delivery::Applied(Outcome::new("applied")))
    }
}

/// Found by the property test above in CI: a number the default JSON parser reads one ULP off
/// came back different after a round trip. (`serde_json`'s `float_roundtrip` reads it exactly.)
#[test]
fn a_number_in_data_reads_back_exactly() {
    let bytes = br#"{"specversion":"1.0","id":"e-1","source":"herald/orders","type":"order_placed","subject":"s-1","time":"2026-11-30T09:16:39.154Z","kind":"business","schemaversion":1,"correlationid":"e-1","data":{"a":4.6421669939001084e+38}}"#;
    let event = Envelope::parse(bytes).unwrap();
    assert_eq!(Envelope::parse(&event.to_json_bytes()), Ok(event));
}
