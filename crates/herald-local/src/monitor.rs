//! The local runner's alarm loop ([`crate::alarms`] holds what it evaluates): every tick it samples what the alarms watch (queue depths from the
//! emulator, the runner's own invocation counts and iterator ages), folds the samples into each
//! alarm's current period, and when a period ends evaluates the alarm's window and reports a change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::watch;

use crate::alarms::{watches, AlarmBoard, AlarmDefinition, Source, State, Statistic, Window};
use crate::esm::Activity;
use crate::runtime::FunctionPool;

/// How the runner evaluates the template's alarms.
#[derive(Clone, Debug)]
pub struct AlarmSettings {
    /// Evaluate them at all. Default true.
    pub enabled: bool,
    /// Use this period for every alarm instead of the template's `Period` (60 s or 300 s there),
    /// so that a local run or a test sees alarms fire and clear in seconds. Default none.
    pub period: Option<Duration>,
    /// Print each change (`ALARM <name>: <why>`, `OK <name>`) on stdout. Default true.
    pub print: bool,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            enabled: true,
            period: None,
            print: true,
        }
    }
}

/// What the monitor reads its samples from.
pub struct Observed {
    /// SQS client on the emulator.
    pub sqs: aws_sdk_sqs::Client,
    /// The runner's functions, by logical id.
    pub pools: BTreeMap<String, Arc<FunctionPool>>,
    /// The mappings' shared state (iterator ages).
    pub activity: Arc<Activity>,
}

struct Running {
    period: Duration,
    started: Instant,
    /// Maximum (or the counters at the period's start, for sums) so far in this period.
    max: Option<f64>,
    counters_at_start: (usize, usize),
    window: Window,
}

/// Evaluate `alarms` until `stop`, recording on `board`.
pub async fn run(
    alarms: Vec<AlarmDefinition>,
    settings: AlarmSettings,
    observed: Observed,
    board: Arc<AlarmBoard>,
    mut stop: watch::Receiver<bool>,
) {
    let counters = |function: &str| {
        observed
            .pools
            .get(function)
            .map(|p| p.stats())
            .unwrap_or_default()
    };
    let mut running: Vec<Running> = alarms
        .iter()
        .map(|a| Running {
            period: settings
                .period
                .unwrap_or(Duration::from_secs(a.period_secs)),
            started: Instant::now(),
            max: None,
            counters_at_start: match &a.source {
                Source::FunctionErrors { function } => counters(function),
                _ => (0, 0),
            },
            window: Window::default(),
        })
        .collect();
    let tick = running
        .iter()
        .map(|r| r.period)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let queues: BTreeSet<&str> = alarms
        .iter()
        .filter_map(|a| match &a.source {
            Source::QueueDepth { url, .. } => Some(url.as_str()),
            _ => None,
        })
        .collect();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let ages = observed.activity.iterator_ages.take();
        let mut depths: HashMap<&str, f64> = HashMap::new();
        for url in &queues {
            if let Some(depth) = visible(&observed.sqs, url).await {
                depths.insert(url, depth);
            }
        }
        for (index, (alarm, run)) in alarms.iter().zip(running.iter_mut()).enumerate() {
            let sample = match &alarm.source {
                Source::QueueDepth { url, .. } => depths.get(url.as_str()).copied(),
                Source::FunctionIteratorAge { function } => {
                    ages.functions.get(function).map(|v| *v as f64)
                }
                Source::StreamIteratorAge { stream } => ages.streams.get(stream).map(|v| *v as f64),
                Source::FunctionErrors { .. } => None,
            };
            if let Some(sample) = sample {
                run.max = Some(run.max.map_or(sample, |m| m.max(sample)));
            }
            if run.started.elapsed() < run.period {
                continue;
            }
            let datapoint = match (&alarm.source, alarm.statistic) {
                (Source::FunctionErrors { function }, _) => {
                    let (invocations, errors) = counters(function);
                    let (invocations_before, errors_before) = run.counters_at_start;
                    run.counters_at_start = (invocations, errors);
                    // Lambda reports no Errors datapoint for a period without invocations.
                    (invocations > invocations_before).then(|| (errors - errors_before) as f64)
                }
                (_, Statistic::Maximum | Statistic::Sum) => run.max,
            };
            run.max = None;
            run.started = Instant::now();
            let Some(state) = run.window.push(alarm, datapoint) else {
                continue;
            };
            let reason = reason(alarm, &run.window, run.period, state);
            if let Some(change) = board.record(index, state, reason, datapoint) {
                if settings.print {
                    println!("{change}");
                }
            }
        }
    }
}

async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<f64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()?;
    out.attributes?
        .get(&QueueAttributeName::ApproximateNumberOfMessages)?
        .parse()
        .ok()
}

/// `ApproximateNumberOfMessagesVisible of InventoryDeadLetterQueue was 1 (> 0) in 1 of the last 1
/// periods of 60s`
fn reason(alarm: &AlarmDefinition, window: &Window, period: Duration, state: State) -> String {
    let points: Vec<Option<f64>> = window.datapoints().collect();
    let shown: Vec<String> = points
        .iter()
        .map(|p| p.map_or("no data".to_string(), |v| format!("{v}")))
        .collect();
    let breaching = points
        .iter()
        .filter(|p| match p {
            Some(v) => alarm.comparison.breaches(*v, alarm.threshold),
            None => alarm.missing == crate::alarms::MissingData::Breaching,
        })
        .count();
    let verdict = match state {
        State::Alarm => "breaching",
        State::Ok => "within",
        State::InsufficientData => "no data for",
    };
    format!(
        "{} was {} ({verdict} {} {}: {breaching} of the last {} periods of {period:?} breached, {} needed)",
        watches(alarm),
        shown.join(", "),
        alarm.comparison.symbol(),
        alarm.threshold,
        points.len(),
        alarm.datapoints_to_alarm
    )
}
