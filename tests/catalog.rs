//! The console's event catalog is right for every event type of the shop: its subscribers are
//! the queues SNS would deliver the type to (each subscription's filter policy judged on the
//! attributes the router gives the type's samples — `$or` policies included), each with the
//! function reading the queue; its producers are the resources template.yaml's `Metadata`
//! declares as announcing it (`Herald: Announces: {resource: [types]}`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use herald_local::{StackOptions, Template};
use herald_ops::console::catalog::catalog;
use herald_ops::console::{ConsoleState, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_the_subscribers_sns_delivers_each_type_to() {
    let endpoint = common::endpoint().await;
    let aws = common::aws().await;
    let template = Template::load(&common::root().join("template.yaml")).unwrap();
    let options = StackOptions {
        name: common::unique("catalog"),
        ..StackOptions::default()
    };
    let stack = herald_local::provision(&template, &options, &aws, &endpoint.url)
        .await
        .unwrap();
    let state = ConsoleState {
        stack: std::sync::Arc::new(stack),
        aws,
        events_dir: Some(common::root().join("events")),
        pipeline: Pipeline::Deployed,
    };
    let types = catalog(&state).unwrap();

    let listed: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = types
        .iter()
        .map(|t| {
            let functions = t
                .subscribers
                .iter()
                .map(|s| s.function.as_deref().unwrap_or(s.queue.as_str()))
                .collect();
            let producers = t.producers.iter().map(String::as_str).collect();
            (t.name.as_str(), (functions, producers))
        })
        .collect();
    // What template.yaml's filter policies let through, written out by hand:
    //   inventory  type: order_placed, order_cancelled
    //   payment    $or: order_placed | order_cancelled of the event store (aggregateversion)
    //   email      type: payment_succeeded
    //   analytics  kind: business, data
    //   ops        $or: kind system | type fraud_suspected
    //   compensation type: fraud_suspected
    //   projector  order_placed, order_cancelled of the event store (aggregateversion)
    let expected: [(&str, &[&str], &[&str]); 9] = [
        (
            "fraud_suspected",
            &["analytics", "compensation", "ops"],
            &["FraudFunction"],
        ),
        ("job_failed", &["ops"], &["Producer"]),
        ("metric_sampled", &["analytics"], &["Producer"]),
        (
            "order_cancelled",
            &["analytics", "inventory", "payment", "projector"],
            &["OrderService"],
        ),
        (
            "order_placed",
            &["analytics", "inventory", "payment", "projector"],
            &["OrderService"],
        ),
        ("payment_failed", &["analytics"], &["Payment"]),
        ("payment_refunded", &["analytics"], &["Payment"]),
        ("payment_succeeded", &["analytics", "email"], &["Payment"]),
        ("stock_reservation_failed", &["analytics"], &["Inventory"]),
    ];
    for (name, subscribers, producers) in &expected {
        let (functions, sources) = listed
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the catalog: {listed:?}"));
        assert_eq!(
            functions,
            &subscribers.iter().copied().collect(),
            "subscribers of {name}"
        );
        assert_eq!(
            sources,
            &producers.iter().copied().collect(),
            "producers of {name}"
        );
    }
    assert_eq!(listed.len(), expected.len(), "every type: {listed:?}");
    // The samples' `source`s are shown beside the declared producers.
    let sampled = types.iter().find(|t| t.name == "metric_sampled").unwrap();
    assert_eq!(sampled.sources, ["herald/devices"]);
}
