//! Schema evolution: every sample and generated event matches the schema of its type and
//! version, `herald schema check` rejects a breaking change, and a stored v1 event is upcast and
//! processed by today's consumers.

mod common;

use std::process::Command;
use std::time::Duration;

use herald::producer::KinesisStream;
use herald::producer::Producer;
use herald::Envelope;
use herald_local::moto::free_port;
use herald_local::schemas;
use serde_json::json;
use shop_cli::demo::report::effects;
use shop_cli::demo::workload::{self, Workload};

#[test]
fn sample_and_generated_events_match_their_schemas() {
    let root = common::root();
    let set = schemas::load(&root.join("events/schemas")).unwrap();
    let samples = schemas::sample_events(&root.join("events")).unwrap();
    assert!(samples.len() >= 8, "{samples:?}");
    for (file, event) in &samples {
        schemas::validate_event(&set, event).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    }
    let catalog = workload::catalog(&root.join("infra/seed")).unwrap();
    let traffic = Workload {
        malformed: false,
        ..Workload::default()
    }
    .generate(&catalog);
    for event in traffic.requests.iter().flatten() {
        schemas::validate_event(&set, event).unwrap_or_else(|e| panic!("{event}: {e:?}"));
    }
}

fn schema_check(dir: &str) -> (bool, String) {
    let out = Command::new(common::bin_dir().join("herald"))
        .args(["schema", "check", "--dir", dir])
        .current_dir(common::root())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn schema_check_rejects_a_breaking_change_and_accepts_a_compatible_one() {
    let (ok, output) = schema_check("tests/fixtures/schemas/breaking");
    assert!(!ok, "{output}");
    assert!(
        output.contains("order_placed/v1: the required property `paymentToken` was removed"),
        "{output}"
    );
    let (ok, output) = schema_check("tests/fixtures/schemas/compatible");
    assert!(ok, "{output}");
    let (ok, output) = schema_check("events/schemas");
    assert!(ok, "the project's own schemas: {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_v1_order_is_upcast_and_processed_by_current_consumers() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("upcast", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    // A v1 order, as the order service announced it before `currency` existed.
    let v1 = json!({
        "id": "legacy-1",
        "type": "order_placed",
        "source": "herald/orders",
        "subject": "order-legacy-1",
        "schemaversion": 1,
        "data": {
            "orderId": "order-legacy-1",
            "customer": {"id": "c-9", "email": "c9@example.com"},
            "items": [{"sku": "SKU-MOUSE", "quantity": 2, "unitPrice": 2999}],
            "total": 5998,
            "paymentToken": "tok_visa"
        }
    });
    let set = schemas::load(&common::root().join("events/schemas")).unwrap();
    schemas::validate_event(&set, &v1).unwrap();
    // On the stream as the publisher wrote it then (a replay or a redrive brings such events).
    let stream = KinesisStream::new(
        aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
    );
    let results = Producer::new(stream)
        .publish(&[Envelope::parse_submission(&v1).unwrap()])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    pipeline
        .wait_idle(Duration::from_millis(800), Duration::from_secs(120))
        .await
        .unwrap();
    let effects = effects(&stack, &aws).await.unwrap();
    assert_eq!(
        effects.inventory_outcomes.values().collect::<Vec<_>>(),
        ["reserved"]
    );
    assert_eq!(effects.payments.get("succeeded"), Some(&1));
    assert_eq!(
        effects.analytics["revenue#EUR"],
        (1, 5998),
        "the upcaster's default currency"
    );
    assert_eq!(effects.emails_per_order.get("order-legacy-1"), Some(&1));
    pipeline.stop().await;
}
