//! herald through its public API only: a second, tiny application (user sign-ups,
//! `tests/signups`) with its own template, brought up on the local runner and driven over HTTP.
//!
//! Sign-ups in two schema versions go through the producer, some twice (a retrying client), some
//! straight onto the stream twice; garbage and events outside the catalog go straight onto the
//! stream. Every user must be welcomed exactly once, at the current schema version, and every bad
//! record must end in the router's dead-letter queue with its reason.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald::Envelope;
use herald_local::http::request;
use herald_local::moto::free_port;
use herald_ops::inspect::{peek, put_raw, scan};
use serde_json::{json, Value};

const SOURCE: &str = "signups/web";

/// User `i` signing up as a client submits it: v1 (a single `name`) for even `i`, v2 for odd.
fn signup(i: usize) -> Value {
    let user = format!("user-{i:02}");
    let (version, data) = if i.is_multiple_of(2) {
        (1, json!({"userId": user, "name": format!("User {i}")}))
    } else {
        let data = json!({"userId": user, "displayName": format!("User {i}"), "plan": "pro"});
        (2, data)
    };
    json!({
        "type": "user_signed_up", "source": SOURCE, "subject": user,
        "schemaversion": version, "data": data,
    })
}

/// A complete envelope as a writer that skips the producer puts it on the stream.
fn envelope(id: &str, event_type: &str, version: u32, data: Value) -> Vec<u8> {
    let user = data["userId"].as_str().unwrap_or("nobody").to_string();
    Envelope::builder(event_type, SOURCE)
        .id(id)
        .subject(user)
        .schema_version(version)
        .data(data)
        .build()
        .unwrap()
        .to_json_bytes()
}

/// POST `body` to the producer; the status and the answer.
async fn post(url: &str, body: &Value, idempotency_key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|key| ("idempotency-key", key))
        .into_iter()
        .collect();
    request("POST", url, Some(body.to_string().into_bytes()), &headers)
        .await
        .unwrap()
}

/// The ids of the accepted events, in order.
fn accepted_ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_welcomed_exactly_once_upcast_and_poison_is_parked() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("signups", |o| {
        o.template = common::root().join("tests/signups/template.yaml");
        o.seed = false;
        o.runner.url_port = Some(port);
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let url = stack.function_url("producer").unwrap();
    let started = Instant::now();

    // (1) 20 sign-ups, half v1 and half v2, in one request: all accepted.
    let batch = Value::Array((0..20).map(signup).collect());
    let (status, first) = post(&url, &batch, Some("batch-1")).await;
    assert_eq!(status, 202, "{first}");
    let ids = accepted_ids(&first);
    assert_eq!(ids.len(), 20, "{first}");

    // (3) The client did not see the answer and retries: same body, same Idempotency-Key, so the
    // same event ids, written to the stream a second time.
    let (status, retry) = post(&url, &batch, Some("batch-1")).await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(
        accepted_ids(&retry),
        ids,
        "a retry yields the same event ids"
    );

    // (2) A type outside the catalog is rejected, naming `type`; a good event beside it is kept.
    let unknown =
        json!({"type": "user_deleted", "source": SOURCE, "subject": "user-99", "data": {}});
    let (status, mixed) = post(&url, &json!([signup(20), unknown]), None).await;
    assert_eq!(status, 207, "{mixed}");
    assert_eq!(mixed["results"][1]["status"], "rejected", "{mixed}");
    assert_eq!(mixed["results"][1]["error"]["field"], "type", "{mixed}");
    let (status, alone) = post(&url, &unknown, None).await;
    assert_eq!(status, 400, "{alone}");
    assert_eq!(alone["results"][0]["error"]["field"], "type", "{alone}");

    // (3) Straight onto the stream, each twice: users 21..=25 (v1 and v2), and a copy of user
    // 00's event (same source and id as the producer gave it).
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let stream = stack.reference("BusEventStream").unwrap();
    let mut direct = vec![envelope(
        &ids[0],
        "user_signed_up",
        1,
        json!({"userId": "user-00", "name": "User 0"}),
    )];
    for i in 21..=25 {
        let event = signup(i);
        let version = event["schemaversion"].as_u64().unwrap() as u32;
        direct.push(envelope(
            &format!("direct-{i}"),
            "user_signed_up",
            version,
            event["data"].clone(),
        ));
    }
    let twice: Vec<Vec<u8>> = direct.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
    put_raw(&kinesis, stream, &twice).await.unwrap();

    // (5) Poison straight onto the stream: garbage, an unknown type, an unknown version.
    let poison = vec![
        b"not json at all".to_vec(),
        br#"{"type": "user_signed_up", "source": "#.to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        envelope(
            "poison-unknown-type",
            "user_deleted",
            1,
            json!({"userId": "user-99"}),
        ),
        envelope(
            "poison-v3",
            "user_signed_up",
            3,
            json!({"userId": "user-98"}),
        ),
    ];
    put_raw(&kinesis, stream, &poison).await.unwrap();

    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(180))
        .await
        .unwrap();
    let settled = started.elapsed();

    // (3) Every user welcomed, each exactly once.
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let items = scan(&dynamodb, stack.reference("WelcomeTable").unwrap())
        .await
        .unwrap();
    let welcomed: BTreeMap<String, Value> = items
        .into_iter()
        .map(|item| (item["userId"].as_str().unwrap().to_string(), item))
        .collect();
    let expected: Vec<String> = (0..=25).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(
        welcomed.keys().cloned().collect::<Vec<_>>(),
        expected,
        "one item per user, none for the rejected or poisoned ones"
    );
    for (user, item) in &welcomed {
        assert_eq!(item["welcomes"], 1, "{user} welcomed once: {item}");
    }
    assert_eq!(
        welcomed["user-00"]["eventId"], ids[0],
        "the direct copy was a duplicate"
    );

    // (4) The handler saw v2 for every event: v1's `name` became `displayName`, plan `free`.
    for (i, user) in expected.iter().enumerate() {
        let item = &welcomed[user];
        assert_eq!(item["schemaVersion"], 2, "{item}");
        assert_eq!(item["displayName"], format!("User {i}"), "{item}");
        let plan = if i.is_multiple_of(2) { "free" } else { "pro" };
        assert_eq!(item["plan"], plan, "{item}");
    }

    // (5) Poison in the router's DLQ with its reason; nothing in the other failure queues.
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let letters = peek(&sqs, stack.reference("BusRouterDeadLetterQueue").unwrap())
        .await
        .unwrap();
    assert_eq!(letters.len(), poison.len(), "{letters:?}");
    assert!(letters
        .iter()
        .all(|l| l.stage == "router" && !l.reason.is_empty()));
    let reason_of = |id: &str| {
        letters
            .iter()
            .find(|l| l.body.contains(id))
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| panic!("no dead letter for {id}: {letters:?}"))
    };
    let unknown_type = reason_of("poison-unknown-type");
    assert!(
        unknown_type.contains("not in the event catalog"),
        "{unknown_type}"
    );
    assert!(reason_of("poison-v3").contains("schemaversion"));
    for queue in ["WelcomeDeadLetterQueue", "BusStreamFailureQueue"] {
        let parked = peek(&sqs, stack.reference(queue).unwrap()).await.unwrap();
        assert!(parked.is_empty(), "{queue}: {parked:?}");
    }
    assert_eq!(pipeline.on_failure_batches(), 0);

    // The subscriber itself saw the duplicates and skipped them: every delivery after a user's
    // first (20 retried, 6 put twice, and user 00's direct copy once more).
    let tallies = pipeline.tallies();
    let duplicates = tallies["welcome"]["duplicates"];
    assert!(duplicates >= 27, "{tallies:?}");
    println!(
        "signups: {} users welcomed once each, {duplicates} duplicates skipped, {} poison records \
         parked; settled in {settled:.1?}",
        welcomed.len(),
        letters.len()
    );
    pipeline.stop().await;
}
