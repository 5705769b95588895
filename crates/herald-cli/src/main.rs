//! `herald`: run the pipeline on your laptop, invoke its functions, send it events. Clap
//! definitions and dispatch only; each command lives in its module.

mod common;
mod console;
mod dlq;
mod doctor;
mod env;
mod invoke;
mod local;
mod new;
mod output;
mod replay;
mod republish;
mod schema;
mod send;
mod trace;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use output::Output;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "herald: an event-driven pipeline you deploy with SAM and run on your laptop",
    after_help = output::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` (readable) or `json` (one document on stdout, stable field names) for what `dlq`,
    /// `send`, `trace`, `replay`, `republish` and `doctor` print.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The AWS endpoint every command talks to (an emulator: `http://127.0.0.1:5050`); sets
    /// `AWS_ENDPOINT_URL`. Default: the variable's value, else AWS itself.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// The AWS region (sets `AWS_REGION`). Default: the SDK's (`AWS_REGION`, the profile).
    #[arg(long, global = true)]
    region: Option<String>,
    /// The named profile for credentials and region (sets `AWS_PROFILE`).
    #[arg(long, global = true)]
    profile: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Scaffold a pipeline of your own in a new directory: one cargo binary for every function,
    /// the catalog, a subscriber, template.yaml on herald's building blocks, a schema, a sample,
    /// a README and a CI script.
    New {
        /// The project's name (its cargo package and binary): lowercase letters, digits, `-`.
        name: String,
        /// Where (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on herald from this git repository (default: the checkout this herald was
        /// built from, by path).
        #[arg(long, conflicts_with = "herald_version")]
        herald_git: Option<String>,
        /// Depend on this version of herald from the registry.
        #[arg(long)]
        herald_version: Option<String>,
        /// Start from an event-sourced service (commands on accounts over HTTP, an event store,
        /// its publisher) instead of a producer taking events over HTTP.
        #[arg(long)]
        event_sourced: bool,
    },
    /// Add to the project around the current directory.
    Add {
        #[command(subcommand)]
        what: AddCommand,
    },
    /// The local pipeline.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// The same as `local up`, named for what you open: the runner with its console (the web page
    /// to watch the pipeline in, http://127.0.0.1:9001/ by default). With `--deployed`, the
    /// console of the CloudFormation stack `--stack` instead: its counts and alarms from
    /// CloudWatch, its dead letters with redrive, traces from its logs.
    Console(ConsoleArgs),
    /// Invoke one function once with an event file and print its response.
    Invoke(InvokeArgs),
    /// Send events (a file or `-` for stdin) to the producer's Function URL.
    Send(SendArgs),
    /// Print a function's environment in a running local stack (KEY=VALUE lines), for
    /// `cargo lambda watch --env-file`; or, with `--explain`, the variables each kind of function
    /// needs.
    Env {
        /// Function: logical id or binary name.
        #[arg(required_unless_present = "explain")]
        function: Option<String>,
        /// Instead: every variable each kind of function reads (producer, router, subscribers,
        /// ...), whether it is required, its default and what it means; herald's own contract,
        /// the one its code reads.
        #[arg(long, conflicts_with = "function")]
        explain: bool,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
    },
    /// Dead-letter queues: list them, show a queue's messages and reasons, send them back.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald", global = true)]
        stack: String,
    },
    /// Replay events from a point in time: from the stream while it still holds them, from the
    /// archive (S3) when they are older; through the router, or into one subscriber's queue.
    Replay {
        /// RFC 3339 timestamp (`2026-11-26T10:00:00Z`).
        #[arg(long)]
        from: String,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only events of this type (repeat for several).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Into this subscriber's queue only (e.g. `analytics`), through its filter policy: a
        /// new consumer backfills without the others seeing the events again.
        #[arg(long)]
        to_subscriber: Option<String>,
        /// Where to read: `auto` (the stream when it still holds `--from`, else the archive),
        /// `stream` or `archive`.
        #[arg(long, default_value = "auto", value_parser = ["auto", "stream", "archive"])]
        source: String,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
        /// Replay events older than the stack keeps idempotency records too, knowing a
        /// subscriber that applied them may apply them again (refused otherwise).
        #[arg(long)]
        resend_expired: bool,
    },
    /// Publish again the events the event store appended since a point in time (by their
    /// `time`): the way back when the publisher could not publish them before the store's stream
    /// dropped them (24 h). Each keeps its id, so what was published already is a duplicate
    /// downstream.
    Republish {
        /// RFC 3339 timestamp (`2026-11-26T10:00:00Z`).
        #[arg(long)]
        since: String,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
        /// Republish events older than the stack keeps idempotency records too, knowing a
        /// subscriber that applied them may apply them again (refused otherwise).
        #[arg(long)]
        resend_expired: bool,
    },
    /// Follow one business transaction through every hop, from the stack's logs: its functions'
    /// CloudWatch Logs groups (where Lambda writes a deployed stack's, and `herald local up` a
    /// local one's), or a directory of log files.
    Trace {
        /// An event id or a correlation id.
        id: String,
        /// Stack whose logs to read: deployed (`sam deploy --stack-name`) or local.
        #[arg(long, default_value = "herald")]
        stack: String,
        /// `tree` (indented, with timings) or `mermaid` (a sequence diagram).
        #[arg(long, default_value = "tree")]
        format: String,
        /// How far back to search CloudWatch Logs: `90m`, `24h`, `7d`.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Read log files here instead (`<function>.log`, as `herald local up` keeps them under
        /// `.herald/logs/<stack>`).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Whether a stack is healthy, and what to do when it is not: event source mappings enabled
    /// and processing, dead-letter and failure queues empty, stream readers keeping up, alarms
    /// not in ALARM, TTL and point-in-time recovery where the template asks for them, the archive
    /// delivering. Each finding names the resource and the command that inspects or fixes it;
    /// exits 2 when something is wrong.
    Doctor {
        /// Stack: one CloudFormation deployed (`sam deploy --stack-name`), or one `herald local
        /// up` started.
        #[arg(long, default_value = "herald")]
        stack: String,
    },
    /// Event schemas (`events/schemas`).
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every dead-letter queue with its message count, oldest message and source.
    List,
    /// A queue's messages with their reasons and ages. Reading is a receive (SQS has no peek):
    /// each message's receive count goes up by one per `show` or `list`. Nothing moves, since a
    /// dead-letter queue has no redrive policy of its own; the messages stay visible.
    Show {
        /// Queue: logical id or a unique part of it (`inventory`, `router`).
        queue: String,
    },
    /// Send every message back to its source (deleting each only after it was sent). A letter
    /// whose event happened longer ago than the stack keeps idempotency records is left in the
    /// queue, with why: sent again, its effects could be applied twice.
    Redrive {
        /// Queue: logical id or a unique part of it.
        queue: String,
        /// Send letters past the idempotency records' horizon too, knowing a subscriber that
        /// applied their events may apply them again.
        #[arg(long)]
        resend_expired: bool,
        /// Send back at most this many letters; the rest stay for a later redrive.
        #[arg(long)]
        max: Option<usize>,
        /// Send nothing, delete nothing: say what would be sent back and what would stay.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum AddCommand {
    /// A subscriber: its code (src/NAME.rs, a claimed handler counting each event once in its
    /// own table), its line in src/main.rs, its block, table and policy in template.yaml.
    Subscriber {
        /// Its name (the handler's name(), HERALD_FUNCTION): lowercase letters, digits, `_`.
        name: String,
        /// The event types it takes (its filter policy), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        types: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Fail when a released schema changed in a way that is not backward compatible, or a sample
    /// event does not match its schema (the samples `events/samples.yaml` declares).
    Check {
        /// The schema directory.
        #[arg(long, default_value = "events/schemas")]
        dir: PathBuf,
        /// Record the current schemas as released (only when the check passes).
        #[arg(long)]
        update: bool,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Provision the template on the emulator and run every function and mapping in the foreground.
    Up(UpArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The SAM template.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Stack name: the prefix of every local resource name.
    #[arg(long, default_value = "herald")]
    stack: String,
    /// Use release builds of the functions.
    #[arg(long)]
    release: bool,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    common: Common,
    /// The emulator herald starts when AWS_ENDPOINT_URL is not set: moto, or localstack
    /// (LocalStack for Kinesis, SNS, SQS, S3, Firehose and CloudFormation, moto beside it for
    /// DynamoDB and the rest; installed on first use, needs a Python >= 3.12).
    #[arg(long, env = "HERALD_EMULATOR", default_value = "moto")]
    emulator: herald_local::Emulator,
    /// Port for moto when herald starts it (ignored when AWS_ENDPOINT_URL is set).
    #[arg(long, default_value_t = 5050)]
    moto_port: u16,
    /// Port of the local Function URL server.
    #[arg(long, default_value_t = 9000)]
    url_port: u16,
    /// Concurrent instances per function.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Ignore the saved stream checkpoints (`.herald/state/<stack>/checkpoints.json`): every
    /// stream mapping reads again from its StartingPosition.
    #[arg(long)]
    fresh: bool,
    /// Evaluate every alarm of the template over periods of this many seconds instead of its
    /// `Period` (60 s or 300 s), to see alarms fire and clear quickly. Default: the template's.
    #[arg(long)]
    alarm_period: Option<f64>,
    /// Serve Lambda's Invoke API for the functions on this port (0: any free port), as `sam local
    /// start-lambda` does: `aws lambda invoke --endpoint-url http://127.0.0.1:<port>`, or
    /// `AWS_ENDPOINT_URL_LAMBDA` for whatever invokes them.
    #[arg(long)]
    lambda_port: Option<u16>,
    /// Port of the console, the local web page to watch the pipeline in (0: any free port).
    #[arg(long, default_value_t = 9001)]
    console_port: u16,
    /// Inject AWS faults between the functions and the emulator, e.g.
    /// `throttle=5%,conflict=5%,5xx=2%,latency=20ms@10%,drop=1%,outage=sns:PublishBatch@20s+30s,seed=7`
    /// (kinds: throttle, kms, conflict[=contention], 5xx, latency, drop, outage; scope any share
    /// as kind:service[:Operation]=share). `kill=3%` (or `kill:inventory=10%`) kills function
    /// processes at a random moment of that share of invocations. Counts are printed at shutdown.
    #[arg(long)]
    faults: Option<String>,
}

#[derive(Args)]
struct ConsoleArgs {
    #[command(flatten)]
    up: UpArgs,
    /// Watch the CloudFormation stack `--stack` deployed (`sam deploy --stack-name`) instead of
    /// starting the pipeline here.
    #[arg(long)]
    deployed: bool,
}

#[derive(Args)]
struct InvokeArgs {
    #[command(flatten)]
    common: Common,
    /// Function: logical id (InventoryFunction) or binary name (inventory).
    function: String,
    /// Event JSON file, or `-` for stdin.
    event: String,
}

#[derive(Args)]
struct SendArgs {
    /// Events: one event, an array, or {"events": [...]}; a file or `-`.
    events: String,
    /// The producer URL (default: the stack's producer Function URL).
    #[arg(long)]
    url: Option<String>,
    /// Stack whose producer to use: deployed (its Function URL, signed when its `AuthType` is
    /// `AWS_IAM`) or local.
    #[arg(long, default_value = "herald")]
    stack: String,
    /// How to sign: `auto` (a deployed Function URL with `AWS_IAM`, or by the host of `--url`:
    /// `*.lambda-url.*` for `lambda`, `*.execute-api.*` for `execute-api`), `lambda`,
    /// `execute-api` or `none`. Signed with the SDK's credentials (`--profile`, the
    /// environment, ...) for `--region`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "lambda", "execute-api", "none"])]
    sign: String,
    /// Print where the events would go and how they would be signed, and send nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() {
    // `herald dlq list | head`: end quietly when the reader goes, as Unix tools do, instead of
    // failing to print.
    // SAFETY: before any thread exists; restoring a signal's default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Before any thread exists: the SDK and the functions herald starts read these.
    for (variable, value) in [
        ("AWS_ENDPOINT_URL", &cli.endpoint_url),
        ("AWS_REGION", &cli.region),
        ("AWS_PROFILE", &cli.profile),
    ] {
        if let Some(value) = value {
            std::env::set_var(variable, value);
        }
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                herald_local::init_cli_logging();
                dispatch(cli.command, cli.output).await
            })
        });
    if let Err(err) = &result {
        eprintln!("herald: {err:#}");
    }
    std::process::exit(output::exit_code(&result));
}

async fn dispatch(command: Command, output: Output) -> Result<()> {
    match command {
        Command::Local {
            command: LocalCommand::Up(args),
        } => local::up(args).await,
        Command::Console(args) if args.deployed => {
            console::deployed(&args.up.common.stack, args.up.console_port).await
        }
        Command::Console(args) => local::up(args.up).await,
        Command::Invoke(args) => invoke::invoke(args).await,
        Command::Send(args) => send::send(args, output).await,
        Command::New {
            name,
            dir,
            herald_git,
            herald_version,
            event_sourced,
        } => {
            let source = match (herald_git, herald_version) {
                (Some(url), _) => new::HeraldSource::Git(url),
                (_, Some(version)) => new::HeraldSource::Version(version),
                _ => new::HeraldSource::this_build(),
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let starter = if event_sourced {
                new::Starter::EventSourced
            } else {
                new::Starter::Pipeline
            };
            new::new(&name, &dir, &source, starter)?;
            println!(
                "created {name} in {}\n\n  cd {}\n  herald local up        # the pipeline on your laptop\n  cargo test              # its tests",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Add {
            what: AddCommand::Subscriber { name, types },
        } => {
            let root = common::project()?;
            new::add_subscriber(&root, &name, &types)?;
            println!(
                "added subscriber {name} (src/{name}.rs, src/main.rs, template.yaml) taking {}",
                types.join(", ")
            );
            Ok(())
        }
        Command::Env {
            function,
            explain,
            stack,
        } => match function {
            Some(function) if !explain => env::env(&function, &stack),
            _ => {
                env::explain(output);
                Ok(())
            }
        },
        Command::Dlq { command, stack } => dlq::dlq(command, &stack, output).await,
        Command::Republish {
            since,
            until,
            stack,
            resend_expired,
        } => republish::republish(&since, until.as_deref(), &stack, resend_expired, output).await,
        Command::Replay {
            from,
            to,
            types,
            to_subscriber,
            source,
            stack,
            resend_expired,
        } => {
            replay::replay(replay::Request {
                from: &from,
                to: to.as_deref(),
                types,
                to_subscriber,
                source: &source,
                stack: &stack,
                resend_expired,
                output,
            })
            .await
        }
        Command::Trace {
            id,
            stack,
            format,
            since,
            logs,
        } => trace::trace(&id, &stack, &format, &since, logs, output).await,
        Command::Doctor { stack } => doctor::doctor(&stack, output).await,
        Command::Schema {
            command: SchemaCommand::Check { dir, update },
        } => schema::schema_check(&dir, update),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
