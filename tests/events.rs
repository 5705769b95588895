//! Every sample in events/ is accepted by its function, invoked through the local Runtime API
//! against the emulator (the same files work with `herald invoke`, `cargo lambda invoke
//! --data-file` and `sam local invoke -e`).

mod common;

use serde_json::Value;

fn sample(path: &str) -> Value {
    let text =
        std::fs::read_to_string(common::root().join("events").join(path)).expect("sample exists");
    serde_json::from_str(&text).expect("sample is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_is_accepted_by_its_function() {
    let pipeline = common::pipeline("events", |o| o.runner.mappings = false).await;

    let response = pipeline
        .invoke("producer", &sample("producer/function-url.json"))
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 202, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["accepted"], 1);

    let response = pipeline
        .invoke("producer", &sample("producer/direct-invoke.json"))
        .await
        .unwrap();
    assert_eq!(response["accepted"], 2, "{response}");
    assert_eq!(response["rejected"], 0);

    // Two envelopes are published; the third record is poison and goes to the router's DLQ,
    // so nothing is reported back for retry.
    let response = pipeline
        .invoke("router", &sample("router/kinesis.json"))
        .await
        .unwrap();
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );

    for subscriber in ["inventory", "payment", "email", "analytics", "ops"] {
        let event = sample(&format!("{subscriber}/sqs.json"));
        let response = pipeline.invoke(subscriber, &event).await.unwrap();
        assert_eq!(
            response["batchItemFailures"],
            serde_json::json!([]),
            "{subscriber}: {response}"
        );
        // A second delivery of the same message is a duplicate, not a failure.
        let again = pipeline.invoke(subscriber, &event).await.unwrap();
        assert_eq!(
            again["batchItemFailures"],
            serde_json::json!([]),
            "{subscriber} (again): {again}"
        );
    }

    // The windowed consumer: a batch folds into the state it is given; the final invocation
    // announces the customer over the limits (and answers an empty state).
    let folded = pipeline
        .invoke("fraud", &sample("fraud/window-batch.json"))
        .await
        .unwrap();
    assert_eq!(
        folded["state"]["customer-13"]["orders"]
            .as_object()
            .map(|orders| orders.len()),
        Some(6),
        "{folded}"
    );
    assert_eq!(folded["batchItemFailures"], serde_json::json!([]));
    let closed = pipeline
        .invoke("fraud", &sample("fraud/window-final.json"))
        .await
        .unwrap();
    assert_eq!(closed["state"], serde_json::json!({}), "{closed}");
    // The order service's compensation: the sample names orders it does not hold.
    let event = sample("compensation/sqs.json");
    for _ in 0..2 {
        let response = pipeline.invoke("compensation", &event).await.unwrap();
        assert_eq!(
            response["batchItemFailures"],
            serde_json::json!([]),
            "compensation: {response}"
        );
    }

    // The event-sourced side: commands, the store's stream, the projector (the sample delivers
    // the cancellation before the order), and the queries.
    let placed = pipeline
        .invoke("orders", &sample("orders/place-order.json"))
        .await
        .unwrap();
    assert_eq!(placed["statusCode"], 201, "{placed}");
    let cancelled = pipeline
        .invoke("orders", &sample("orders/cancel-order.json"))
        .await
        .unwrap();
    assert_eq!(cancelled["statusCode"], 200, "{cancelled}");
    let published = pipeline
        .invoke("publisher", &sample("publisher/dynamodb-stream.json"))
        .await
        .unwrap();
    assert_eq!(
        published["batchItemFailures"],
        serde_json::json!([]),
        "{published}"
    );
    let projected = pipeline
        .invoke("projector", &sample("projector/sqs.json"))
        .await
        .unwrap();
    assert_eq!(
        projected["batchItemFailures"],
        serde_json::json!([]),
        "{projected}"
    );
    let order = pipeline
        .invoke("query", &sample("query/get-order.json"))
        .await
        .unwrap();
    assert_eq!(order["statusCode"], 200, "{order}");
    let view: Value = serde_json::from_str(order["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (view["status"].as_str(), view["version"].as_u64()),
        (Some("cancelled"), Some(2))
    );
    let listing = pipeline
        .invoke("query", &sample("query/customer-orders.json"))
        .await
        .unwrap();
    let listing: Value = serde_json::from_str(listing["body"].as_str().unwrap()).unwrap();
    assert_eq!(listing["orders"][0]["orderId"], "order-2001", "{listing}");

    let tallies = pipeline.tallies();
    assert_eq!(
        tallies["publisher"]["published"], 2,
        "{:?}",
        tallies["publisher"]
    );
    // The late order_placed (v1) arrived after the cancellation (v2): projected as stale.
    assert_eq!(
        tallies["projector"]["applied"], 1,
        "{:?}",
        tallies["projector"]
    );
    assert_eq!(
        tallies["projector"]["duplicates"], 1,
        "{:?}",
        tallies["projector"]
    );
    // Each sample invoked twice: its events applied once, then duplicates (analytics' sample
    // carries four events: every business event reaches it, and the catalog shows them).
    for (subscriber, events) in [
        ("inventory", 1),
        ("payment", 1),
        ("email", 1),
        ("analytics", 4),
        ("ops", 1),
    ] {
        assert_eq!(
            tallies[subscriber]["applied"], events,
            "{subscriber}: {:?}",
            tallies[subscriber]
        );
        assert_eq!(
            tallies[subscriber]["duplicates"], events,
            "{subscriber}: {:?}",
            tallies[subscriber]
        );
    }
    assert_eq!(tallies["router"]["published"], 2);
    assert_eq!(tallies["router"]["dead_lettered"], 1);
    pipeline.stop().await;
}
