//! Property tests (issue 11): the order service's HTTP door and the query function's `next`
//! token, fed arbitrary bytes and structured garbage. Every request gets a status the service
//! documents and a JSON body naming the field — never a panic, never a 503 for the client's
//! own mistake. (The store here is herald's in-memory one: what is checked is the decoding.)

use herald::testing::InMemoryEventStore;
use herald::{HttpRequest, HttpService};
use proptest::prelude::*;
use serde_json::{json, Value};
use shop::commands::OrderCommands;

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,80}".prop_map(Value::String),
        Just(json!("o-1")),
        Just(json!("\u{1}".repeat(300))),
        (0usize..3000).prop_map(|n| Value::String("x".repeat(n))),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// An order body with every field garbage, valid, missing or oversized.
fn order_body() -> impl Strategy<Value = Vec<u8>> {
    let item = (
        text(),
        prop_oneof![any::<u32>().prop_map(Value::from), text()],
        any::<u64>(),
    )
        .prop_map(
            |(sku, quantity, price)| json!({"sku": sku, "quantity": quantity, "unitPrice": price}),
        );
    let order = (
        text(),
        text(),
        text(),
        prop::collection::vec(item, 0..60),
        prop_oneof![any::<u64>().prop_map(Value::from), text()],
        text(),
        text(),
    )
        .prop_map(
            |(order_id, customer, email, items, total, currency, token)| {
                serde_json::to_vec(&json!({
                    "orderId": order_id, "customer": {"id": customer, "email": email},
                    "items": items, "total": total, "currency": currency, "paymentToken": token
                }))
                .unwrap()
            },
        );
    prop_oneof![
        order,
        prop::collection::vec(any::<u8>(), 0..300),
        ".{0,100}".prop_map(String::into_bytes),
        text().prop_map(|reason| serde_json::to_vec(&json!({ "reason": reason })).unwrap()),
    ]
}

fn request(method: &str, path: &str, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        path: path.into(),
        query: Default::default(),
        headers: Default::default(),
        body,
        principal: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_order_service_answers_every_request_with_a_documented_status(
        body in order_body(),
        path in prop_oneof![
            Just("/orders".to_string()),
            "[a-z0-9_-]{0,10}".prop_map(|id| format!("/orders/{id}/cancel")),
            ".{0,40}".prop_map(|p| format!("/orders/{p}/cancel")),
            ".{0,40}",
        ],
        method in prop::sample::select(vec!["POST", "GET", "DELETE"]),
        place_first in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let service = OrderCommands::new(InMemoryEventStore::new().with_upcasters(shop::upcasters()));
        if place_first {
            // So that cancellations find something to cancel, whatever the body placed.
            let _ = rt.block_on(service.handle(request("POST", "/orders", body.clone())));
        }
        let response = rt.block_on(service.handle(request(method, &path, body)));
        prop_assert!(
            [200, 201, 400, 404, 405, 409, 413].contains(&response.status_code),
            "{} {}: {}", method, path, response.body
        );
        let answer: Value = serde_json::from_str(&response.body).unwrap();
        if response.status_code >= 400 {
            prop_assert!(answer["error"]["field"].as_str().is_some_and(|f| !f.is_empty()), "{}", answer);
        }
    }
}
