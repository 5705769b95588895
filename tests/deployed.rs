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

/// A CloudFormation stack of the project's template on its own moto, as `sam deploy` would leave
/// it (resources under CloudFormation's names).
struct Deployed {
    _moto: Moto,
    endpoint: String,
    stack: String,
    aws: aws_config::SdkConfig,
}

impl Deployed {
    /// The stack, or `None` (reported as skipped) when the machine cannot play CloudFormation.
    async fn create(test: &str) -> Option<Deployed> {
        if let Err(why) = can_play_cloudformation() {
            common::skip(test, &why);
            return None;
        }
        let (moto, endpoint) = moto();
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
        Some(Deployed {
            _moto: moto,
            endpoint,
            stack,
            aws,
        })
    }

    /// `herald <args> --stack <this stack>` against its endpoint.
    fn herald(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--stack", &self.stack]);
        herald(&self.endpoint, &all)
    }

    /// `herald doctor --output json`: its exit code and report.
    fn doctor(&self) -> (Option<i32>, Value) {
        let out = self.herald(&["doctor", "--output", "json"]);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "doctor printed no JSON ({err}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    }

    /// The physical id CloudFormation gave `logical_id` (asked of CloudFormation here, not
    /// through herald's own reader).
    async fn physical(&self, logical_id: &str) -> String {
        aws_sdk_cloudformation::Client::new(&self.aws)
            .list_stack_resources()
            .stack_name(&self.stack)
            .send()
            .await
            .unwrap()
            .stack_resource_summaries()
            .iter()
            .find(|r| r.logical_resource_id() == Some(logical_id))
            .and_then(|r| r.physical_resource_id())
            .unwrap_or_else(|| panic!("{logical_id} is not in the stack"))
            .to_string()
    }
}

/// The findings of `check` about `resource`.
fn findings<'a>(report: &'a Value, check: &str, resource: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check && f["resource"] == resource)
        .collect()
}

/// The findings that are not ok, as `check resource` strings.
fn unhealthy(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "ok")
        .map(|f| format!("{} {}: {}", f["check"], f["resource"], f["detail"]))
        .collect()
}

/// Doctor finds exactly one problem, `check` on `resource`, and says which command fixes it.
fn assert_one_problem(report: &Value, code: Option<i32>, check: &str, resource: &str, fix: &str) {
    assert_eq!(code, Some(2), "doctor exits 2 on a problem: {report}");
    assert_eq!(report["healthy"], false);
    let wrong = unhealthy(report);
    assert_eq!(wrong.len(), 1, "one finding, {check} {resource}: {wrong:?}");
    let found = findings(report, check, resource);
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0]["status"], "problem");
    let command = found[0]["fix"].as_str().unwrap_or_default();
    assert!(
        command.contains(fix),
        "fix {command:?} should contain {fix:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_find_a_cloudformation_stack_by_name() {
    let Some(deployed) =
        Deployed::create("deployed::dlq_commands_find_a_cloudformation_stack_by_name").await
    else {
        return;
    };
    let (endpoint, stack, aws) = (&deployed.endpoint, &deployed.stack, &deployed.aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let dlq = queue_url(&sqs, stack, "InventoryDeadLetterQueue").await;
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
        endpoint,
        &["dlq", "list", "--stack", stack, "--output", "json"],
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
        endpoint,
        &[
            "dlq",
            "show",
            "inventory",
            "--stack",
            stack,
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
                stack,
                "--output",
                "json",
            ])
            .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
            .current_dir(common::root())
            .output()
            .unwrap(),
    );
    assert_eq!(
        (redrive["sentBack"].as_u64(), redrive["left"].as_u64()),
        (Some(1), Some(0))
    );
    // Back in the queue CloudFormation named, where the deployed inventory function reads.
    let queue = queue_url(&sqs, stack, "InventoryQueue").await;
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
    let missing = herald(endpoint, &["dlq", "list", "--stack", "no-such-stack"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no stack no-such-stack"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_a_fresh_deployed_stack_is_healthy() {
    let Some(deployed) =
        Deployed::create("deployed::doctor_says_a_fresh_deployed_stack_is_healthy").await
    else {
        return;
    };
    let (code, report) = deployed.doctor();
    assert_eq!(code, Some(0), "{:?}", unhealthy(&report));
    assert_eq!(report["healthy"], true);
    assert_eq!(report["deployed"], true);
    assert!(unhealthy(&report).is_empty(), "{:?}", unhealthy(&report));
    let count = |check: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check)
            .count()
    };
    // Everything the template declares was looked at, under CloudFormation's names.
    assert_eq!(count("mapping"), 10);
    assert_eq!(count("deadLetters"), 12);
    assert_eq!(count("iteratorAge"), 3, "the three stream readers");
    assert_eq!(count("ttl"), 1, "the idempotency table");
    assert_eq!(count("pointInTimeRecovery"), 6);
    assert_eq!(count("archive"), 1);
    assert!(count("alarm") >= 70, "{}", count("alarm"));
    let router = &findings(&report, "mapping", "RouterStreamMapping")[0];
    assert_eq!(
        router["physical"],
        deployed.physical("RouterStreamMapping").await
    );

    // The text form says the same, a line per finding.
    let text = deployed.herald(&["doctor"]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("0 problems, 0 warnings"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_a_disabled_mapping() {
    let Some(deployed) = Deployed::create("deployed::doctor_finds_a_disabled_mapping").await else {
        return;
    };
    let uuid = deployed.physical("InventoryQueueMapping").await;
    aws_sdk_lambda::Client::new(&deployed.aws)
        .update_event_source_mapping()
        .uuid(&uuid)
        .enabled(false)
        .send()
        .await
        .unwrap();
    let (code, report) = deployed.doctor();
    assert_one_problem(
        &report,
        code,
        "mapping",
        "InventoryQueueMapping",
        &format!("aws lambda update-event-source-mapping --uuid {uuid} --enabled"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_a_dead_letter() {
    let Some(deployed) = Deployed::create("deployed::doctor_finds_a_dead_letter").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&deployed.aws);
    let dlq = queue_url(&sqs, &deployed.stack, "PaymentDeadLetterQueue").await;
    sqs.send_message()
        .queue_url(&dlq)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let (code, report) = deployed.doctor();
    assert_one_problem(
        &report,
        code,
        "deadLetters",
        "PaymentDeadLetterQueue",
        &format!(
            "herald dlq show PaymentDeadLetterQueue --stack {}",
            deployed.stack
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_ttl_off_on_the_idempotency_table() {
    let Some(deployed) =
        Deployed::create("deployed::doctor_finds_ttl_off_on_the_idempotency_table").await
    else {
        return;
    };
    let table = deployed.physical("IdempotencyTable").await;
    aws_sdk_dynamodb::Client::new(&deployed.aws)
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (code, report) = deployed.doctor();
    assert_one_problem(
        &report,
        code,
        "ttl",
        "IdempotencyTable",
        &format!("aws dynamodb update-time-to-live --table-name {table}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_an_alarm_in_alarm() {
    let Some(deployed) = Deployed::create("deployed::doctor_finds_an_alarm_in_alarm").await else {
        return;
    };
    // CloudWatch on the emulator evaluates no alarm: set as AWS sets it when a letter arrives.
    let alarm = deployed.physical("InventoryDeadLetterQueueAlarm").await;
    aws_sdk_cloudwatch::Client::new(&deployed.aws)
        .set_alarm_state()
        .alarm_name(&alarm)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0)")
        .send()
        .await
        .unwrap();
    let (code, report) = deployed.doctor();
    assert_one_problem(
        &report,
        code,
        "alarm",
        "InventoryDeadLetterQueueAlarm",
        // What it watches, and the command for it.
        &format!(
            "herald dlq show InventoryDeadLetterQueue --stack {}",
            deployed.stack
        ),
    );
    let found = &findings(&report, "alarm", "InventoryDeadLetterQueueAlarm")[0];
    assert_eq!(found["physical"], alarm);
    assert!(
        found["detail"]
            .as_str()
            .unwrap()
            .contains("Threshold Crossed"),
        "{found}"
    );
}
