//! Logging in Lambda's formats: text by default, JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (what the
//! template's `LoggingConfig` sets); the level comes from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`),
//! INFO when neither is set.
//!
//! A JSON line carries, at the top level: `timestamp`, `level`, `message`, `function` (the Lambda
//! function's name), `requestId` (from the runtime's invocation span), the fields of every span
//! the line was logged in — so lines about one event carry its `eventId`, `eventType`,
//! `correlationId` and `causationId` ([`crate::Envelope::span`]) — and the line's own fields.
//! `herald trace` follows a business transaction through these lines.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Where lambda_runtime opens its per-invocation span (`requestId`): kept on at every level, so
/// a WARN-only function still says which request a line belongs to.
const REQUEST_SPAN: &str = "lambda_runtime::layers::trace";

/// Install the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    // The SDK's own INFO lines (retries, credential loading) would drown the function's.
    // `Targets` rather than `EnvFilter`: the same per-target levels without a regex engine in
    // every function binary.
    let filter = Targets::new()
        .with_default(level)
        .with_target("aws_smithy_runtime", LevelFilter::WARN)
        .with_target("aws_config", LevelFilter::WARN)
        .with_target("hyper", LevelFilter::WARN)
        .with_target(REQUEST_SPAN, LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .fmt_fields(JsonFields::new())
                    .event_format(LambdaJson::from_env()),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .without_time(),
            )
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// One JSON object per line, in Lambda's JSON log shape plus herald's fields.
pub struct LambdaJson {
    function: Option<String>,
}

impl LambdaJson {
    /// `function` from `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn from_env() -> Self {
        LambdaJson {
            function: std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        if let Some(function) = &self.function {
            line.insert("function".into(), Value::String(function.clone()));
        }
        // Span fields from the outermost in, so an inner span wins on a name clash.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (key, value) in fields {
                        if value != Value::String(String::new()) {
                            line.insert(key, value);
                        }
                    }
                }
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::envelope::Envelope;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn lines_carry_the_function_the_request_and_the_event() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(LambdaJson {
                function: Some("herald-WelcomeFunction".into()),
            })
            .with_writer(buffer.clone())
            .finish();
        let event = Envelope::builder("user_signed_up", "herald/users")
            .subject("o-1")
            .causation_id("cause-1")
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _request = request.enter();
            tracing::info!(messages = 3, "batch done");
            let span = event.span();
            let _event = span.enter();
            tracing::warn!(reason = "x", "dead-lettered");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!(line["function"], "herald-WelcomeFunction");
            assert_eq!(line["requestId"], "req-1");
            assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        assert_eq!(lines[0]["message"], "batch done");
        assert_eq!(lines[0]["messages"], 3);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["eventId"], event.id());
        assert_eq!(lines[1]["correlationId"], event.correlation_id());
        assert_eq!(lines[1]["causationId"], "cause-1");
        assert_eq!(lines[1]["eventType"], "user_signed_up");
    }
}
