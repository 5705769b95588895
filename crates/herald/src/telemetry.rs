//! Logging in Lambda's formats: text by default, JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`; the level
//! comes from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), INFO when neither is set.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Install the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    // The SDK's own INFO lines (retries, credential loading) would drown the function's.
    let filter = EnvFilter::builder().parse_lossy(format!(
        "{level},aws_smithy_runtime=warn,aws_config=warn,hyper=warn"
    ));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.without_time().try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
