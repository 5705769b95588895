//! Operating a deployed stack, found by name through CloudFormation. There is no AWS account
//! here, so CloudFormation on the emulator plays the deployed stack: `infra/cfn_standin.py`
//! packages template.yaml as `sam deploy` does and creates it (the emulator runs the SAM transform
//! and keeps the template, as AWS does), and its resources get CloudFormation's names
//! (`<stack>-InventoryDeadLetterQueue-8KA3VOYWBVF4`), which no code can derive from a logical id.
//! `herald doctor`, `dlq`, `trace` and `send --stack <name>` then work on it; docs/operations.md's
//! "Operate it" walkthrough runs here command by command. The emulator runs as one process per
//! test: moto's CloudFormation creates resources in its own process, where every service must
//! answer.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use herald::Envelope;
use serde_json::{json, Value};

/// A process (moto for every service, a console), stopped when dropped.
struct Running(Child);

impl Drop for Running {
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

fn moto() -> (Running, String) {
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
    (Running(child), format!("http://127.0.0.1:{port}"))
}

/// `herald` against the emulator at `endpoint` only (no per-service endpoints).
fn herald(endpoint: &str, args: &[&str]) -> Output {
    herald_in(&common::root(), endpoint, args)
}

/// `herald` run in `dir`, against the emulator at `endpoint` only.
fn herald_in(dir: &std::path::Path, endpoint: &str, args: &[&str]) -> Output {
    herald_command(dir, endpoint).args(args).output().unwrap()
}

/// The `herald` command in `dir`, set for the emulator at `endpoint` only.
fn herald_command(dir: &std::path::Path, endpoint: &str) -> Command {
    let mut command = Command::new(common::bin_dir().join("herald"));
    for (variable, _) in std::env::vars() {
        if variable.starts_with("AWS_ENDPOINT_URL_") {
            command.env_remove(variable);
        }
    }
    command.env("AWS_ENDPOINT_URL", endpoint).current_dir(dir);
    command
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
async fn queue_url(aws: &aws_config::SdkConfig, stack: &str, logical_id: &str) -> String {
    physical_in(aws, stack, logical_id).await
}

/// The physical id CloudFormation gave `logical_id` in `stack`, asked of CloudFormation here, not
/// through herald's own reader. A resource of a nested stack goes by its application's id and its
/// own (`BusIdempotencyTable`: `IdempotencyTable` in the nested stack `Bus`).
fn physical_in<'a>(
    aws: &'a aws_config::SdkConfig,
    stack: &'a str,
    logical_id: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + 'a>> {
    Box::pin(async move {
        let resources = aws_sdk_cloudformation::Client::new(aws)
            .list_stack_resources()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        let summaries = resources.stack_resource_summaries();
        if let Some(found) = summaries
            .iter()
            .find(|r| r.logical_resource_id() == Some(logical_id))
        {
            return found.physical_resource_id().unwrap().to_string();
        }
        for nested in summaries
            .iter()
            .filter(|r| r.resource_type() == Some("AWS::CloudFormation::Stack"))
        {
            let application = nested.logical_resource_id().unwrap_or_default();
            if let Some(rest) = logical_id.strip_prefix(application) {
                let child = nested.physical_resource_id().unwrap().to_string();
                return physical_in(aws, &child, rest).await;
            }
        }
        panic!("{logical_id} is not in the stack {stack}")
    })
}

/// A CloudFormation stack of the project's template on its own moto, as `sam deploy` would leave
/// it (resources under CloudFormation's names).
struct Deployed {
    _moto: Running,
    endpoint: String,
    stack: String,
    aws: aws_config::SdkConfig,
}

impl Deployed {
    /// The stack, or `None` (reported as skipped) when the machine cannot play CloudFormation.
    async fn create(test: &str) -> Option<Deployed> {
        Deployed::create_from(test, "template.yaml").await
    }

    /// A stack of `template` (relative to the repository), or `None` as [`Deployed::create`].
    async fn create_from(test: &str, template: &str) -> Option<Deployed> {
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
                "--template",
                template,
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

    /// Put the alarm `logical_id` in ALARM, as AWS does when a letter arrives (CloudWatch on the
    /// emulator evaluates no alarm); its physical name.
    async fn fire_alarm(&self, logical_id: &str) -> String {
        let alarm = self.physical(logical_id).await;
        aws_sdk_cloudwatch::Client::new(&self.aws)
            .set_alarm_state()
            .alarm_name(&alarm)
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason(
                "Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0)",
            )
            .send()
            .await
            .unwrap();
        alarm
    }

    /// The physical id CloudFormation gave `logical_id` ([`physical_in`]).
    async fn physical(&self, logical_id: &str) -> String {
        physical_in(&self.aws, &self.stack, logical_id).await
    }

    /// A letter (`body`) in the dead-letter queue `queue` makes `doctor` report exactly one
    /// problem, about that queue, with the command that shows it.
    async fn a_dead_letter_is_one_problem(&self, queue: &str, body: &str) {
        aws_sdk_sqs::Client::new(&self.aws)
            .send_message()
            .queue_url(self.physical(queue).await)
            .message_body(body)
            .send()
            .await
            .unwrap();
        let (code, report) = self.doctor();
        assert_one_problem(
            &report,
            code,
            "deadLetters",
            queue,
            &format!("herald dlq show {queue} --stack {}", self.stack),
        );
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
    let dlq = queue_url(aws, stack, "InventoryDeadLetterQueue").await;
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

    // A second letter; a dry run says both would go back and sends nothing, `--max 1` sends one.
    let second = Envelope::builder("order_placed", "herald/orders")
        .subject("order-d2")
        .partition_key("customer-2")
        .schema_version(2)
        .data(json!({"orderId": "order-d2", "customer": {"id": "customer-2", "email": "d@example.com"},
                     "items": [{"sku": "SKU-CABLE", "quantity": 2, "unitPrice": 1299}],
                     "total": 2598, "currency": "EUR", "paymentToken": "tok_visa"}))
        .build()
        .unwrap();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(second.to_json())
        .send()
        .await
        .unwrap();
    let redrive_json = |extra: &[&str]| {
        let mut args = vec![
            "dlq",
            "redrive",
            "inventory",
            "--stack",
            stack,
            "--output",
            "json",
        ];
        args.extend(extra);
        json_of(&herald(endpoint, &args))
    };
    let depth = || {
        let list = json_of(&herald(
            endpoint,
            &["dlq", "list", "--stack", stack, "--output", "json"],
        ));
        list["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "InventoryDeadLetterQueue")
            .map(|q| q["messages"].as_u64().unwrap())
            .unwrap()
    };
    let dry = redrive_json(&["--dry-run"]);
    assert_eq!(
        (
            dry["dryRun"].as_bool(),
            dry["sentBack"].as_u64(),
            dry["left"].as_u64()
        ),
        (Some(true), Some(2), Some(0)),
        "{dry}"
    );
    assert_eq!(depth(), 2, "a dry run leaves every letter");
    let one = redrive_json(&["--max", "1"]);
    assert_eq!(
        (one["sentBack"].as_u64(), one["remaining"].as_u64()),
        (Some(1), Some(1)),
        "{one}"
    );
    assert_eq!(depth(), 1);

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
    // Both back in the queue CloudFormation named, where the deployed inventory function reads.
    let queue = queue_url(aws, stack, "InventoryQueue").await;
    let mut back = Vec::new();
    let started = Instant::now();
    while back.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        back.extend(
            sqs.receive_message()
                .queue_url(&queue)
                .max_number_of_messages(10)
                .wait_time_seconds(2)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default(),
        );
    }
    assert_eq!(back.len(), 2);
    for sent in [&order, &second] {
        assert!(
            back.iter()
                .any(|m| m.body().unwrap_or_default().contains(sent.id())),
            "{} back",
            sent.id()
        );
    }
    assert_eq!(depth(), 0);

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
    assert_eq!(count("ttl"), 3, "the three idempotency tables");
    assert_eq!(count("pointInTimeRecovery"), 8);
    assert_eq!(count("archive"), 1);
    assert!(count("alarm") >= 70, "{}", count("alarm"));
    let router = &findings(&report, "mapping", "BusRouterStreamMapping")[0];
    assert_eq!(
        router["physical"],
        deployed.physical("BusRouterStreamMapping").await
    );

    // The text form says the same; and it needs no checkout: run from a directory that is no
    // herald project, the wiring comes from the template CloudFormation keeps (GetTemplate).
    let elsewhere = std::env::temp_dir().join(common::unique("no-project"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let text = herald_in(
        &elsewhere,
        &deployed.endpoint,
        &["doctor", "--stack", &deployed.stack],
    );
    let _ = std::fs::remove_dir_all(&elsewhere);
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
    deployed
        .a_dead_letter_is_one_problem("PaymentDeadLetterQueue", "{}")
        .await;
}

/// A template on the building blocks deploys as nested stacks, one per application; herald reads
/// it through them into the resources a local stack of it has (`WelcomeDeadLetterQueue`, not
/// the nested stack `Welcome`), so doctor and the dead-letter commands work on it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_on_the_building_blocks_is_read_through_its_nested_stacks() {
    let Some(deployed) = Deployed::create_from(
        "deployed::a_stack_on_the_building_blocks_is_read_through_its_nested_stacks",
        "tests/signups/template.yaml",
    )
    .await
    else {
        return;
    };
    let (code, report) = deployed.doctor();
    assert_eq!(code, Some(0), "{:?}", unhealthy(&report));
    for (check, resource) in [
        ("mapping", "BusRouterStreamMapping"),
        ("mapping", "WelcomeQueueMapping"),
        ("ttl", "BusIdempotencyTable"),
    ] {
        assert_eq!(
            findings(&report, check, resource).len(),
            1,
            "{check} {resource} in {report}"
        );
    }

    // A letter in the subscriber's dead-letter queue, which lives in the nested stack
    // `Welcome` under a name CloudFormation gave it there.
    deployed
        .a_dead_letter_is_one_problem("WelcomeDeadLetterQueue", r#"{"type": "user_signed_up"}"#)
        .await;
    let shown =
        json_of(&deployed.herald(&["dlq", "show", "WelcomeDeadLetterQueue", "--output", "json"]));
    assert_eq!(
        shown["messages"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_ttl_off_on_the_idempotency_table() {
    let Some(deployed) =
        Deployed::create("deployed::doctor_finds_ttl_off_on_the_idempotency_table").await
    else {
        return;
    };
    let table = deployed.physical("BusIdempotencyTable").await;
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
        "BusIdempotencyTable",
        &format!("aws dynamodb update-time-to-live --table-name {table}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_an_alarm_in_alarm() {
    let Some(deployed) = Deployed::create("deployed::doctor_finds_an_alarm_in_alarm").await else {
        return;
    };
    let alarm = deployed.fire_alarm("InventoryDeadLetterQueueAlarm").await;
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

/// The "Operate it" walkthrough (docs/operations.md) on a deployed stack, command by command: an alarm
/// fires, `doctor` says what is wrong and what to run, `dlq show` gives the reason, the cause is
/// fixed, `dlq redrive` sends the letter back, the deployed function applies it, and `trace`
/// follows it in the stack's CloudWatch Logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operate_a_deployed_stack_as_the_readme_walks_it() {
    let Some(deployed) =
        Deployed::create("deployed::operate_a_deployed_stack_as_the_readme_walks_it").await
    else {
        return;
    };
    let stack = &deployed.stack;
    let sqs = aws_sdk_sqs::Client::new(&deployed.aws);

    // What happened before the operator looked: the inventory gave up on an order (SQS moved it
    // to the DLQ after its last receive) and CloudWatch set the DLQ's alarm (the emulator's
    // CloudWatch evaluates no alarm, so the test sets it as AWS would).
    let order = Envelope::builder("order_placed", "herald/orders")
        .subject("order-walk")
        .partition_key("customer-7")
        .schema_version(2)
        .data(json!({"orderId": "order-walk", "customer": {"id": "customer-7", "email": "w@example.com"},
                     "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
                     "total": 1299, "currency": "EUR", "paymentToken": "tok_visa"}))
        .build()
        .unwrap();
    let dlq = queue_url(&deployed.aws, stack, "InventoryDeadLetterQueue").await;
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(order.to_json())
        .message_attributes(
            "herald.reason",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("stock table throttled past the retry budget")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let alarm = deployed.physical("InventoryDeadLetterQueueAlarm").await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployed.aws);
    let set_alarm = |state: aws_sdk_cloudwatch::types::StateValue| {
        cloudwatch
            .set_alarm_state()
            .alarm_name(&alarm)
            .state_value(state)
            .state_reason("set by the test, as CloudWatch would")
            .send()
    };
    set_alarm(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .await
        .unwrap();

    // 1. herald doctor --stack prod: two problems, both pointing at `herald dlq show`.
    let (code, report) = deployed.doctor();
    assert_eq!(code, Some(2), "{:?}", unhealthy(&report));
    let show_command = format!("herald dlq show InventoryDeadLetterQueue --stack {stack}");
    for (check, resource) in [
        ("alarm", "InventoryDeadLetterQueueAlarm"),
        ("deadLetters", "InventoryDeadLetterQueue"),
    ] {
        let found = findings(&report, check, resource);
        assert_eq!(found[0]["status"], "problem", "{}", found[0]);
        assert_eq!(found[0]["fix"], show_command.as_str());
    }
    assert_eq!(unhealthy(&report).len(), 2, "{:?}", unhealthy(&report));

    // 2. herald dlq show inventory --stack prod: the reason.
    let show = json_of(&deployed.herald(&["dlq", "show", "inventory", "--output", "json"]));
    assert_eq!(
        show["messages"][0]["reason"],
        "stock table throttled past the retry budget"
    );

    // 3. The cause is fixed, and the deployed functions run (played here by the local runner
    //    on the stack CloudFormation created, with its names; their output goes to the stack's
    //    log groups as Lambda's does).
    let mut resolved = herald_ops::from_cloudformation(stack, &deployed.aws, &deployed.endpoint)
        .await
        .unwrap();
    resolved.service_endpoints.clear();
    let mut options = herald_local::RunnerOptions::new(common::bin_dir());
    options.url_port = None;
    let pipeline = herald_local::LocalPipeline::start(
        resolved,
        &herald_local::Endpoint::external(deployed.endpoint.clone()),
        options,
    )
    .await
    .unwrap();

    // 4. herald dlq redrive inventory --stack prod: back in the queue the inventory reads.
    let redrive = json_of(&deployed.herald(&["dlq", "redrive", "inventory", "--output", "json"]));
    assert_eq!(redrive["sentBack"], 1, "{redrive}");
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(120))
        .await
        .unwrap();
    pipeline.flush_logs().await;

    // 5. herald trace <order id> --stack prod: the inventory applied it, from CloudWatch Logs.
    let trace = json_of(&deployed.herald(&["trace", order.id(), "--output", "json"]));
    let events = trace["events"].as_array().unwrap();
    let hops_of = |id: &str| {
        events
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {trace}"))["hops"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert!(
        hops_of(order.id())
            .iter()
            .any(|h| h["function"] == "inventory" && h["kind"] == "applied"),
        "{trace}"
    );
    // Its follow-up (no stock in a fresh stack) went through the deployed stream, router and
    // topic subscriptions to a subscriber, each hop in the stack's logs.
    let follow_up = events
        .iter()
        .find(|e| e["causationId"] == order.id())
        .unwrap_or_else(|| panic!("a follow-up in {trace}"));
    let kinds: Vec<&str> = follow_up["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"stream") && kinds.contains(&"topic") && kinds.contains(&"applied"),
        "{trace}"
    );

    // And the stack is healthy again once CloudWatch sees the empty queue.
    set_alarm(aws_sdk_cloudwatch::types::StateValue::Ok)
        .await
        .unwrap();
    let (code, report) = deployed.doctor();
    assert_eq!(code, Some(0), "{:?}", unhealthy(&report));
    pipeline.stop().await;
}

/// What a Function URL with `AuthType: AWS_IAM` does with a request, played by a stand-in that
/// checks SigV4 with the crate AWS's SDKs sign with: the signature is computed again from the
/// request as received, with the caller's secret, and must match. Answers like the producer
/// (200 with a report) when it does, 403 when it does not.
mod signature_checker {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use serde_json::json;

    pub const ACCESS_KEY: &str = "AKIDHERALDSENDTEST";
    pub const SECRET: &str = "herald-send-test-secret";

    /// Each request's verdict: (signed correctly, the service and region it was signed for).
    pub type Verdicts = Arc<Mutex<Vec<(bool, String)>>>;

    pub async fn start() -> (String, Verdicts) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let verdicts: Verdicts = Arc::default();
        let kept = verdicts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let verdicts = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let verdicts = verdicts.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(request, &verdicts).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{address}/"), verdicts)
    }

    async fn answer(
        request: hyper::Request<Incoming>,
        verdicts: &Verdicts,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let scope = scope(&parts.headers);
        let valid = verify(&parts, &body);
        verdicts.lock().unwrap().push((valid, scope));
        let (status, answer) = if valid {
            let events: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let n = events
                .as_array()
                .or_else(|| events["events"].as_array())
                .map_or(1, Vec::len);
            (200, json!({"accepted": n, "rejected": 0, "results": []}))
        } else {
            (
                403,
                json!({"message": "The request signature we calculated does not match the signature you provided."}),
            )
        };
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap()
    }

    /// `<date>/<region>/<service>/aws4_request` of the Authorization header.
    fn scope(headers: &http::HeaderMap) -> String {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        auth.split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .and_then(|c| c.split_once('/'))
            .map(|(_, scope)| scope.to_string())
            .unwrap_or_default()
    }

    fn verify(parts: &http::request::Parts, body: &[u8]) -> bool {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(authorization), Some(date)) = (header("authorization"), header("x-amz-date"))
        else {
            return false;
        };
        let Ok(time) = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ") else {
            return false;
        };
        let time: SystemTime = time.and_utc().into();
        let scope = scope(&parts.headers);
        let mut scope = scope.split('/');
        let (Some(_), Some(region), Some(service)) = (scope.next(), scope.next(), scope.next())
        else {
            return false;
        };
        let identity =
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let host = header("host").unwrap_or_default();
        let uri = format!("http://{host}{}", parts.uri);
        // The request as signed, as AWS reads it: the headers the signature names
        // (`SignedHeaders`), without those signing itself adds.
        let signed_headers: Vec<&str> = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|h| h.split(',').next())
            .map(|h| h.split(';').collect())
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                signed_headers.contains(&name.as_str())
                    && !matches!(name.as_str(), "x-amz-date" | "x-amz-security-token")
            })
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let Ok(signable) = SignableRequest::new(
            parts.method.as_str(),
            uri,
            headers.into_iter(),
            SignableBody::Bytes(body),
        ) else {
            return false;
        };
        let Ok(signed) = sign(signable, &params) else {
            return false;
        };
        let (instructions, _) = signed.into_parts();
        let expected = instructions
            .headers()
            .find(|(name, _)| *name == "authorization")
            .map(|(_, value)| value.to_string());
        expected.as_deref() == Some(authorization)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_for_a_deployed_function_url() {
    let Some(deployed) = Deployed::create("deployed::send_signs_for_a_deployed_function_url").await
    else {
        return;
    };
    // --stack: the producer's Function URL as AWS gave it, signed because its AuthType is AWS_IAM.
    let lambda = aws_sdk_lambda::Client::new(&deployed.aws);
    let producer = deployed.physical("ProducerFunction").await;
    let url = lambda
        .get_function_url_config()
        .function_name(&producer)
        .send()
        .await
        .unwrap()
        .function_url()
        .to_string();
    let plan = json_of(&deployed.herald(&[
        "send",
        "events/producer/direct-invoke.json",
        "--dry-run",
        "--output",
        "json",
    ]));
    assert_eq!(plan["url"], url.as_str(), "{plan}");
    assert!(url.contains(".lambda-url.us-east-1.on.aws"), "{url}");
    assert_eq!(plan["signing"], "SigV4 (lambda)");
    assert_eq!(plan["events"], 2);

    // The signature, checked by a stand-in that verifies it.
    let (checker, verdicts) = signature_checker::start().await;
    let send = |secret: &str, sign: &str| {
        let mut command = Command::new(common::bin_dir().join("herald"));
        command
            .env("AWS_ACCESS_KEY_ID", signature_checker::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .args([
                "send",
                "events/producer/direct-invoke.json",
                "--url",
                &checker,
            ])
            .args(["--sign", sign, "--region", "eu-west-1", "--output", "json"])
            .current_dir(common::root())
            .output()
            .unwrap()
    };
    let signed = send(signature_checker::SECRET, "lambda");
    assert_eq!(json_of(&signed)["accepted"], 2);
    assert_eq!(
        verdicts
            .lock()
            .unwrap()
            .last()
            .cloned()
            .map(|(ok, scope)| (ok, scope.split_once('/').map(|(_, s)| s.to_string()))),
        Some((true, Some("eu-west-1/lambda/aws4_request".to_string())))
    );
    // A wrong secret, or no signature: refused, and herald fails saying what it got.
    for (secret, sign) in [
        ("not-the-secret", "lambda"),
        (signature_checker::SECRET, "none"),
    ] {
        let refused = send(secret, sign);
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("answered 403"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    let verdicts = verdicts.lock().unwrap();
    assert_eq!(
        verdicts.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
        vec![true, false, false]
    );
}

/// `herald replay --stack` on a deployed stack: the stream re-read and sent through the deployed
/// router (Lambda's `Invoke`), whose publishes reach subscribers that skip what they applied. The
/// runner plays the stack's functions and answers `Invoke` for them, as `sam local
/// start-lambda` does; `AWS_ENDPOINT_URL_LAMBDA` points herald there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_goes_through_the_deployed_router() {
    let Some(deployed) =
        Deployed::create("deployed::replay_goes_through_the_deployed_router").await
    else {
        return;
    };
    let stack = &deployed.stack;
    let mut resolved = herald_ops::from_cloudformation(stack, &deployed.aws, &deployed.endpoint)
        .await
        .unwrap();
    resolved.service_endpoints.clear();
    let mut options = herald_local::RunnerOptions::new(common::bin_dir());
    options.url_port = None;
    options.lambda_port = Some(0);
    let pipeline = herald_local::LocalPipeline::start(
        resolved,
        &herald_local::Endpoint::external(deployed.endpoint.clone()),
        options,
    )
    .await
    .unwrap();
    let lambda = pipeline.lambda_endpoint().unwrap().to_string();

    // One order on the deployed stream, routed and applied once.
    let from = chrono::Utc::now() - chrono::Duration::seconds(5);
    let order = Envelope::builder("order_placed", "herald/orders")
        .subject("order-replay")
        .partition_key("customer-9")
        .schema_version(2)
        .data(json!({"orderId": "order-replay", "customer": {"id": "customer-9", "email": "r@example.com"},
                     "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
                     "total": 1299, "currency": "EUR", "paymentToken": "tok_visa"}))
        .build()
        .unwrap();
    aws_sdk_kinesis::Client::new(&deployed.aws)
        .put_record()
        .stream_name(deployed.physical("BusEventStream").await)
        .partition_key("customer-9")
        .data(aws_sdk_kinesis::primitives::Blob::new(order.to_json()))
        .send()
        .await
        .unwrap();
    let tally = |function: &str, key: &str| {
        pipeline
            .tallies()
            .get(function)
            .and_then(|t| t.get(key).copied())
            .unwrap_or(0)
    };
    common::wait_until(
        "the order applied by the inventory",
        Duration::from_secs(120),
        || async { tally("inventory", "applied") >= 1 },
    )
    .await;
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(120))
        .await
        .unwrap();
    let published = tally("router", "published");

    let mut command = Command::new(common::bin_dir().join("herald"));
    for (variable, _) in std::env::vars() {
        if variable.starts_with("AWS_ENDPOINT_URL_") {
            command.env_remove(variable);
        }
    }
    let replay = json_of(
        &command
            .env("AWS_ENDPOINT_URL", &deployed.endpoint)
            .env("AWS_ENDPOINT_URL_LAMBDA", &lambda)
            .args(["replay", "--from", &from.to_rfc3339(), "--source", "stream"])
            .args(["--stack", stack, "--output", "json"])
            .current_dir(common::root())
            .output()
            .unwrap(),
    );
    // The order and its follow-ups (the inventory's answer, ...): everything on the stream since.
    let read = replay["read"].as_i64().unwrap();
    assert!(
        read >= 1 && replay["batches"].as_u64() >= Some(1),
        "{replay}"
    );
    assert_eq!(replay["target"], "router");
    // Through the deployed router (invoked, not run here), on to the subscribers, which skip it.
    common::wait_until(
        "the replayed order skipped as a duplicate",
        Duration::from_secs(120),
        || async { tally("inventory", "duplicates") >= 1 },
    )
    .await;
    common::wait_until(
        "the router publishing the replay",
        Duration::from_secs(60),
        || async { tally("router", "published") >= published + read },
    )
    .await;
    assert_eq!(tally("router", "published"), published + read);
    assert_eq!(
        tally("inventory", "applied"),
        1,
        "applied once, whatever the replays"
    );
    pipeline.stop().await;
}

/// `herald console --deployed --stack <name>`: the page's API on a CloudFormation stack, read
/// from CloudWatch and the stack's queues and logs. Lambda publishes its metrics and writes its
/// logs as the functions run; no function runs on the emulator, so the test puts what Lambda
/// would (`AWS/Lambda` counts, herald's EMF counts, a producer's log line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_watches_a_deployed_stack() {
    use herald_local::http::{get_json, post_json};
    use std::io::BufRead;

    let Some(deployed) = Deployed::create("deployed::the_console_watches_a_deployed_stack").await
    else {
        return;
    };
    let stack = herald_ops::from_cloudformation(&deployed.stack, &deployed.aws, &deployed.endpoint)
        .await
        .unwrap();
    let producer = stack.function("ProducerFunction").unwrap().clone();

    // Lambda's and herald's metrics for the producer: 3 invocations, 1 error, 7 events in.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployed.aws);
    let datum = |name: &str, dimension: &str, value: &str, amount: f64| {
        aws_sdk_cloudwatch::types::MetricDatum::builder()
            .metric_name(name)
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name(dimension)
                    .value(value)
                    .build(),
            )
            .value(amount)
            .timestamp(aws_smithy_types::DateTime::from_secs(
                chrono::Utc::now().timestamp() - 60,
            ))
            .build()
    };
    for (namespace, datum) in [
        (
            "AWS/Lambda",
            datum("Invocations", "FunctionName", &producer.name, 2.0),
        ),
        (
            "AWS/Lambda",
            datum("Invocations", "FunctionName", &producer.name, 1.0),
        ),
        (
            "AWS/Lambda",
            datum("Errors", "FunctionName", &producer.name, 1.0),
        ),
        (
            "herald",
            datum("EventsIn", "function", producer.label(), 7.0),
        ),
    ] {
        cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .metric_data(datum)
            .send()
            .await
            .unwrap();
    }
    let alarm = deployed.fire_alarm("PaymentDeadLetterQueueAlarm").await;
    // A dead letter, and a producer's line in its log group.
    let sqs = aws_sdk_sqs::Client::new(&deployed.aws);
    let dlq = queue_url(&deployed.aws, &deployed.stack, "PaymentDeadLetterQueue").await;
    let source = queue_url(&deployed.aws, &deployed.stack, "PaymentQueue").await;
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(r#"{"Message": "{}"}"#)
        .send()
        .await
        .unwrap();
    let correlation = common::unique("c");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&deployed.aws);
    let _ = logs
        .create_log_group()
        .log_group_name(&producer.log_group)
        .send()
        .await;
    logs.create_log_stream()
        .log_group_name(&producer.log_group)
        .log_stream_name("2026/12/05/[$LATEST]test")
        .send()
        .await
        .unwrap();
    let line = json!({
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "level": "INFO",
        "message": "written to stream",
        "eventId": "e-console-1",
        "eventType": "order_placed",
        "correlationId": correlation,
        "shardId": "shardId-000000000000",
        "sequenceNumber": "1",
    });
    logs.put_log_events()
        .log_group_name(&producer.log_group)
        .log_stream_name("2026/12/05/[$LATEST]test")
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(chrono::Utc::now().timestamp_millis())
                .message(line.to_string())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // herald console --deployed --stack <name> --console-port 0
    let mut console = herald_command(&common::root(), &deployed.endpoint)
        .args(["console", "--deployed", "--stack", &deployed.stack])
        .args(["--console-port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = console.stdout.take().unwrap();
    // The URL from its output, which is read to the end (a closed pipe would end the console).
    let (found, url) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("console") {
                let url = url
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if let Some(found) = found.take() {
                    let _ = found.send(url);
                }
            }
        }
    });
    let url = url.await.ok();
    let mut console = Running(console);
    let Some(url) = url else {
        let mut err = String::new();
        use std::io::Read;
        let _ = console.0.stderr.take().unwrap().read_to_string(&mut err);
        panic!("herald console printed no URL: {err}");
    };
    let api = |path: &str| format!("{url}api/{path}");

    // The flow is the deployed template's.
    let (status, flow) = get_json(&api("flow")).await.unwrap();
    assert_eq!(status, 200, "{flow}");
    assert!(
        flow.to_string().contains("PaymentDeadLetterQueue"),
        "{flow}"
    );

    // Counts from CloudWatch, depths from the queues.
    let (status, stats) = get_json(&api("stats")).await.unwrap();
    assert_eq!(status, 200, "{stats}");
    let counted = &stats["functions"]["ProducerFunction"];
    assert_eq!(counted["invocations"], 3, "{stats}");
    assert_eq!(counted["errors"], 1, "{stats}");
    assert_eq!(counted["events_in"], 7.0, "{stats}");
    assert_eq!(stats["functions"]["BusRouterFunction"]["invocations"], 0);
    assert_eq!(
        stats["queues"]["PaymentDeadLetterQueue"]["visible"], 1,
        "{stats}"
    );

    // The alarm as CloudWatch has it, its change first.
    let (status, alarms) = get_json(&api("alarms")).await.unwrap();
    assert_eq!(status, 200, "{alarms}");
    let firing: Vec<&Value> = alarms["evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "ALARM")
        .collect();
    assert_eq!(firing.len(), 1, "{alarms}");
    assert_eq!(firing[0]["logical_id"], "PaymentDeadLetterQueueAlarm");
    assert_eq!(firing[0]["name"], alarm.as_str());
    assert!(
        firing[0]["watches"]
            .as_str()
            .unwrap()
            .contains(dlq.rsplit('/').next().unwrap()),
        "{}",
        firing[0]
    );
    assert_eq!(alarms["changes"][0]["name"], alarm.as_str(), "{alarms}");
    assert_eq!(alarms["not_evaluated"], json!([]), "{alarms}");

    // The transaction from the producer's log group.
    let (status, traces) = get_json(&api("traces")).await.unwrap();
    assert_eq!(status, 200, "{traces}");
    assert!(
        traces
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["correlation_id"] == correlation.as_str()),
        "{traces}"
    );
    let (status, one) = get_json(&api(&format!("traces/{correlation}")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["hops"][0]["function"], producer.label(), "{one}");

    // The dead letter, and a redrive that sends it back to the subscriber's queue.
    let (status, dlqs) = get_json(&api("dlqs")).await.unwrap();
    assert_eq!(status, 200, "{dlqs}");
    let payment = dlqs
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "PaymentDeadLetterQueue")
        .unwrap_or_else(|| panic!("{dlqs}"));
    assert_eq!(payment["redrives_to"], "PaymentQueue");
    assert_eq!(payment["letters"].as_array().unwrap().len(), 1, "{payment}");
    let (status, redriven) = post_json(&api("dlqs/PaymentDeadLetterQueue/redrive"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["moved"], 1, "{redriven}");
    let back = sqs
        .receive_message()
        .queue_url(&source)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.messages().len(),
        1,
        "the letter is back in PaymentQueue"
    );
    let (_, stats) = get_json(&api("stats")).await.unwrap();
    assert_eq!(
        stats["queues"]["PaymentDeadLetterQueue"]["visible"], 0,
        "{stats}"
    );
    drop(console);
}
