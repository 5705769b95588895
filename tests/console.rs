//! The console in a real browser (headless Chromium from the system's packages, driven through
//! chromedriver): the page loads, its counts move when orders are sent, a poison record shows in
//! its dead-letter queue with its reason, the redrive button moves a dead letter back, an order's
//! trace shows its hops on the timeline, and the catalog shows who receives three of the types.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium
//! chromium-driver`; `scripts/bootstrap --browser`, which scripts/test runs, installs them as
//! root). Without them the test is reported skipped by scripts/test (and fails outside it), and
//! fails outright when `HERALD_REQUIRE_BROWSER` is set (CI sets it).
//! `HERALD_CONSOLE_SCREENSHOT=<file.png>` keeps a screenshot of the page.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use herald::Envelope;
use herald_local::http::post_json;
use herald_local::moto::free_port;
use herald_ops::inspect::put_raw;
use serde_json::{json, Value};
use shop::events::{sources, types};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn order(id: &str) -> Value {
    json!({
        "id": id,
        "type": types::ORDER_PLACED,
        "source": sources::ORDERS,
        "subject": format!("order-{id}"),
        "data": {
            "orderId": format!("order-{id}"),
            "customer": {"id": "c-1", "email": "c1@example.com"},
            "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
            "total": 1299,
            "currency": "EUR",
            "paymentToken": "tok_visa"
        }
    })
}

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the browser is here. When it is not, the test is skipped, visibly (see
/// [`common::skip`]), unless `HERALD_REQUIRE_BROWSER` is set (CI sets it): then it fails.
fn browser_present(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message = format!(
        "{CHROMIUM} or {CHROMEDRIVER} is missing: install them with `apt-get install chromium chromium-driver` (scripts/bootstrap --browser does, as root)"
    );
    if std::env::var_os("HERALD_REQUIRE_BROWSER").is_some() {
        panic!("HERALD_REQUIRE_BROWSER is set and {message}");
    }
    common::skip(test, &message);
    false
}

async fn browser() -> (Driver, Client) {
    let port = free_port().unwrap();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // No background connections: this machine's network refuses them, and they only
            // slow the page down.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"]
        }
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(client) => return (driver, client),
            Err(err) if Instant::now() > deadline => panic!("chromedriver did not answer: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The text of `css` once `done` holds for it (bounded: a broken page fails, it does not hang).
async fn text_when(client: &Client, css: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if done(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = client.source().await.unwrap_or_default();
    panic!("{css} never got there; last text {last:?}; the page:\n{page}");
}

fn count(text: &str) -> f64 {
    text.trim().parse().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_pipeline_moving_and_redrives_a_dead_letter() {
    if !browser_present("console::the_console_shows_the_pipeline_moving_and_redrives_a_dead_letter")
    {
        return;
    }
    let url_port = free_port().unwrap();
    let log_dir = std::env::temp_dir().join(common::unique("console-logs"));
    let mut pipeline = common::pipeline("console", |o| {
        o.runner.url_port = Some(url_port);
        o.runner.log_dir = Some(log_dir.clone());
        o.runner.alarms.period = Some(Duration::from_millis(500));
        o.runner.alarms.print = false;
    })
    .await;
    let console = herald_ops::console::serve_local(&mut pipeline, 0, common::root().join("events"))
        .await
        .unwrap();
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let (_driver, client) = browser().await;

    // The page loads and draws the flow from the template.
    client.goto(&console).await.unwrap();
    client
        .wait()
        .for_element(Locator::Css("[data-node=BusEventTopic]"))
        .await
        .unwrap();
    let inventory_in = "tr[data-fn=InventoryFunction] td.events_in";
    let before = count(&text_when(&client, inventory_in, |_| true).await);

    // Orders placed: the inventory's count moves on the page.
    let orders = format!(
        "{}/orders",
        stack.function_url("orders").unwrap().trim_end_matches('/')
    );
    let mut correlation = String::new();
    for i in 0..3 {
        let placed = order(&common::unique(&format!("seen-{i}")));
        let (status, body) = post_json(&orders, &placed["data"]).await.unwrap();
        assert_eq!(status, 201, "{body}");
        correlation = body["events"][0]["correlationId"]
            .as_str()
            .unwrap_or_else(|| panic!("no correlation id in {body}"))
            .to_string();
    }
    let after = count(&text_when(&client, inventory_in, |t| count(t) >= before + 3.0).await);
    assert!(after >= before + 3.0);

    // The flow fits a 1,280-pixel window: no sideways scrolling, no node over another, no text
    // past its node (a long one is cut with "…", whole on hover).
    let fit = client
        .execute(
            r##"
            const flow = document.querySelector("#flow");
            const boxes = [...flow.querySelectorAll(".node")].map((g) => [g.dataset.node, g.querySelector("rect").getBoundingClientRect(), g]);
            const overlaps = [], overflowing = [];
            boxes.forEach(([a, ra], i) => boxes.slice(i + 1).forEach(([b, rb]) => {
              if (ra.left < rb.right && rb.left < ra.right && ra.top < rb.bottom && rb.top < ra.bottom) overlaps.push(a + " / " + b);
            }));
            for (const [id, r, g] of boxes)
              for (const t of g.querySelectorAll("text")) {
                const tb = t.getBoundingClientRect();
                if (tb.width > 0 && (tb.left < r.left || tb.right > r.right || tb.top < r.top || tb.bottom > r.bottom)) overflowing.push(id + ": " + t.textContent);
              }
            return { width: window.innerWidth, page: document.documentElement.scrollWidth, flow: [flow.scrollWidth, flow.clientWidth],
                     nodes: boxes.length, overlaps, overflowing, cut: [...flow.querySelectorAll("text")].filter((t) => t.textContent.endsWith("…")).length };
            "##,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fit["width"], 1280, "{fit}");
    assert!(fit["nodes"].as_u64().unwrap() > 20, "{fit}");
    assert!(fit["page"].as_u64() <= fit["width"].as_u64(), "{fit}");
    assert!(fit["flow"][0].as_u64() <= fit["flow"][1].as_u64(), "{fit}");
    assert_eq!(fit["overlaps"], json!([]), "{fit}");
    assert_eq!(fit["overflowing"], json!([]), "{fit}");
    eprintln!("the flow at 1,280 pixels: {fit}");

    // A poison record: the router parks it, and the page shows it in that DLQ with its reason.
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &[b"{ poison".to_vec()],
    )
    .await
    .unwrap();
    // An order the inventory gave up on earlier, parked in its DLQ by the redrive policy.
    let parked = common::unique("parked");
    let dlq = herald_ops::find_dead_letter_queue(&stack, "InventoryDeadLetterQueue").unwrap();
    aws_sdk_sqs::Client::new(&aws)
        .send_message()
        .queue_url(&dlq.url)
        .message_body(
            Envelope::parse_submission(&order(&parked))
                .unwrap()
                .to_json(),
        )
        .send()
        .await
        .unwrap();
    client.goto(&format!("{console}#dlqs")).await.unwrap();
    text_when(&client, "[data-dlq=BusRouterDeadLetterQueue] .count", |t| {
        t == "1"
    })
    .await;
    let reason = text_when(
        &client,
        "[data-dlq=BusRouterDeadLetterQueue] .letter .reason",
        |t| !t.is_empty(),
    )
    .await;
    assert!(reason.to_lowercase().contains("json"), "{reason}");
    text_when(&client, "[data-dlq=InventoryDeadLetterQueue] .count", |t| {
        t == "1"
    })
    .await;

    // Redrive from the page: the letter goes back to its queue, the inventory applies it.
    client
        .find(Locator::Css(
            "[data-dlq=InventoryDeadLetterQueue] button.redrive",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "[data-dlq=InventoryDeadLetterQueue] .count", |t| {
        t == "0"
    })
    .await;
    pipeline
        .wait_idle(Duration::from_millis(500), Duration::from_secs(120))
        .await
        .unwrap();
    assert!(herald_ops::letters(&aws, &dlq.url)
        .await
        .unwrap()
        .is_empty());
    client.goto(&format!("{console}#pipeline")).await.unwrap();
    text_when(&client, inventory_in, |t| count(t) >= after + 1.0).await;

    // The alarm of the poisoned DLQ is on, on the page.
    text_when(
        &client,
        "[data-alarm=BusRouterDeadLetterQueueAlarm] .pill",
        |t| t == "ALARM",
    )
    .await;
    if let Some(path) = std::env::var_os("HERALD_CONSOLE_SCREENSHOT") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
    }

    // Traces: one order's hops on the timeline, from the command to its subscribers.
    client.goto(&format!("{console}#traces")).await.unwrap();
    let form = client.find(Locator::Css("#trace-id")).await.unwrap();
    form.send_keys(&correlation).await.unwrap();
    client
        .find(Locator::Css("#trace-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = text_when(&client, "#trace .timeline", |t| {
        ["orders", "publisher", "router", "inventory"]
            .iter()
            .all(|hop| t.contains(hop))
    })
    .await;
    assert!(timeline.contains("order_placed"), "{timeline}");

    // Catalog: who receives each type, as SNS delivers it (payment's policy is an `$or`).
    client.goto(&format!("{console}#catalog")).await.unwrap();
    for (event_type, expected) in [
        (
            "order_cancelled",
            &["analytics", "inventory", "payment", "projector"][..],
        ),
        ("job_failed", &["ops"][..]),
        ("payment_succeeded", &["analytics", "email"][..]),
    ] {
        let css = format!("[data-type={event_type}] ul li");
        text_when(&client, &css, |t| !t.is_empty()).await;
        let mut shown = Vec::new();
        for item in client.find_all(Locator::Css(&css)).await.unwrap() {
            let text = item.text().await.unwrap();
            shown.push(
                text.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        shown.sort();
        assert_eq!(shown, expected, "subscribers of {event_type} on the page");
    }
    // And who announces a type, as the template declares it.
    let producers = text_when(&client, "[data-type=payment_failed] .producers", |t| {
        !t.is_empty()
    })
    .await;
    assert_eq!(producers, "Payment");

    client.close().await.unwrap();
    pipeline.stop().await;
    let _ = std::fs::remove_dir_all(&log_dir);
}
