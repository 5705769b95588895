//! A deployed stack, found by name through CloudFormation (issue 25, first step). There is no
//! AWS account here, so CloudFormation on the emulator plays the deployed stack:
//! `infra/cfn_standin.py` translates template.yaml as `sam deploy` does and creates it, and its
//! resources get CloudFormation's names (`<stack>-InventoryDeadLetterQueue-8KA3VOYWBVF4`), which
//! no code can derive from a logical id. `herald dlq list / show / redrive --stack <name>` then
//! work on it as on a local stack. The emulator runs as one process here: moto's CloudFormation
//! creates resources in its own process, where every service must answer.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use herald::Envelope;
use serde_json::{json, Value};

/// One moto process for every service, stopped when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> PathBuf {
    common::root().join(".venv/bin/python")
}

fn can_play_cloudformation() -> Result<(), String> {
    let ok = Command::new(python())
        .args(["-c", "import moto, samtranslator, boto3"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} with moto and aws-sam-translator (scripts/bootstrap --tools installs them)",
            python().display()
        ))
    }
}

fn moto() -> (Moto, String) {
    let port = herald_local::moto::free_port().unwrap();
    let child = Command::new(python())
        .args([
            "infra/moto_server.py",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .current_dir(common::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Moto(child), format!("http://127.0.0.1:{port}"))
}

/// `herald` against the emulator at `endpoint` only (no per-service endpoints).
fn herald(endpoint: &str, args: &[&str]) -> Output {
    let mut command = Command::new(common::bin_dir().join("herald"));
    for (variable, _) in std::env::vars() {
        if variable.starts_with("AWS_ENDPOINT_URL_") {
            command.env_remove(variable);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The URL of the stack's queue `logical_id`, as CloudFormation named it.
async fn queue_url(sqs: &aws_sdk_sqs::Client, stack: &str, logical_id: &str) -> String {
    let prefix = format!("{stack}-{logical_id}-");
    let urls = sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    assert_eq!(urls.len(), 1, "one queue named {prefix}…: {urls:?}");
    urls[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_find_a_cloudformation_stack_by_name() {
    const TEST: &str = "deployed::dlq_commands_find_a_cloudformation_stack_by_name";
    if let Err(why) = can_play_cloudformation() {
        return common::skip(TEST, &why);
    }
    let (_moto, endpoint) = moto();
    let stack = common::unique("prod");
    let created = Command::new(python())
        .args([
            "infra/cfn_standin.py",
            "--endpoint",
            &endpoint,
            "--stack",
            &stack,
        ])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );
    let aws = herald_local::Endpoint::external(endpoint.clone())
        .sdk_config()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dlq = queue_url(&sqs, &stack, "InventoryDeadLetterQueue").await;
    assert!(
        !dlq.ends_with(&format!("{stack}-InventoryDeadLetterQueue")),
        "CloudFormation's name has a random suffix: {dlq}"
    );

    // An order the inventory gave up on.
    let order = Envelope::builder("order_placed", "herald/orders")
        .subject("order-d1")
        .partition_key("customer-1")
        .schema_version(2)
        .data(json!({"orderId": "order-d1", "customer": {"id": "customer-1", "email": "c@example.com"},
                     "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
                     "total": 1299, "currency": "EUR", "paymentToken": "tok_visa"}))
        .build()
        .unwrap();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(order.to_json())
        .message_attributes(
            "herald.reason",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("the stock table was missing")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let list = json_of(&herald(
        &endpoint,
        &["dlq", "list", "--stack", &stack, "--output", "json"],
    ));
    let inventory = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "InventoryDeadLetterQueue")
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    // The queue CloudFormation created (its URL as CloudFormation reports it).
    let name_of = |url: &str| url.rsplit('/').next().unwrap_or_default().to_string();
    assert_eq!(name_of(inventory["url"].as_str().unwrap()), name_of(&dlq));
    assert_eq!(inventory["messages"], 1);
    assert_eq!(
        inventory["source"],
        json!({"kind": "queue", "logicalId": "InventoryQueue"})
    );
    assert_eq!(list["queues"].as_array().unwrap().len(), 12, "{list}");

    let show = json_of(&herald(
        &endpoint,
        &[
            "dlq",
            "show",
            "inventory",
            "--stack",
            &stack,
            "--output",
            "json",
        ],
    ));
    assert_eq!(show["messages"][0]["reason"], "the stock table was missing");
    assert!(show["messages"][0]["body"]
        .as_str()
        .unwrap()
        .contains(order.id()));

    // The endpoint as flags this time, the way an operator points at one.
    let mut redrive = Command::new(common::bin_dir().join("herald"));
    for (variable, _) in std::env::vars() {
        if variable.starts_with("AWS_ENDPOINT_URL") {
            redrive.env_remove(variable);
        }
    }
    let redrive = json_of(
        &redrive
            .args([
                "dlq",
                "redrive",
                "inventory",
                "--stack",
                &stack,
                "--output",
                "json",
            ])
            .args(["--endpoint-url", &endpoint, "--region", "us-east-1"])
            .current_dir(common::root())
            .output()
            .unwrap(),
    );
    assert_eq!(
        (redrive["sentBack"].as_u64(), redrive["left"].as_u64()),
        (Some(1), Some(0))
    );
    // Back in the queue CloudFormation named, where the deployed inventory function reads.
    let queue = queue_url(&sqs, &stack, "InventoryQueue").await;
    let back = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(back.len(), 1);
    assert!(back[0].body().unwrap_or_default().contains(order.id()));

    // A name CloudFormation does not know: failed, saying so.
    let missing = herald(&endpoint, &["dlq", "list", "--stack", "no-such-stack"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no stack no-such-stack"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
