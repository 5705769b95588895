//! Profiling aid (not a benchmark of record): time the router's stages on a Kinesis batch file
//! (`shop bench router` writes `.herald/bench/kinesis-batch.json`), one core.
//! `router_stages FILE [decode|route|both|all] [seconds]`.

use herald::aws::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use herald::router::{
    BusError, BusMessage, BusOutcome, EventBus, KinesisBatch, Router, RouterConfig,
};
use herald::{EventCatalog, EventKind};

struct NullBus;
impl EventBus for NullBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        Ok(vec![BusOutcome::Published; entries.len()])
    }
}
struct NullLetters;
impl DeadLetters for NullLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
        letters.iter().map(|_| Ok(())).collect()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a Kinesis batch file");
    let mode = args.next().unwrap_or_else(|| "all".into());
    let seconds: f64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(2.0);
    let bytes = std::fs::read(path).expect("readable");
    let catalog = EventCatalog::new()
        .with("order_placed", EventKind::Business, 1..=2)
        .with("order_cancelled", EventKind::Business, 1..=2)
        .with("stock_reservation_failed", EventKind::Business, 1..=1)
        .with("payment_succeeded", EventKind::Business, 1..=1)
        .with("payment_failed", EventKind::Business, 1..=1)
        .with("job_failed", EventKind::System, 1..=1)
        .with("fraud_suspected", EventKind::Business, 1..=1)
        .with("payment_refunded", EventKind::Business, 1..=1)
        .with("metric_sampled", EventKind::Data, 1..=1);
    let router = Router::with_config(
        NullBus,
        NullLetters,
        RouterConfig {
            catalog: Some(catalog),
            ..RouterConfig::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let decoded: KinesisBatch = serde_json::from_slice(&bytes).unwrap();
    let n = decoded.len();
    let (_, summary) = runtime.block_on(router.route(&decoded));
    assert_eq!(summary.published, n, "{summary:?}");
    let modes: Vec<&str> = if mode == "all" {
        vec!["decode", "route", "both"]
    } else {
        vec![mode.as_str()]
    };
    for m in modes {
        let started = std::time::Instant::now();
        let mut events = 0usize;
        runtime.block_on(async {
            while started.elapsed().as_secs_f64() < seconds {
                match m {
                    "decode" => {
                        let batch: KinesisBatch = serde_json::from_slice(&bytes).unwrap();
                        std::hint::black_box(&batch);
                    }
                    "raw" => {
                        // The floor for reading Lambda's event with another parser: serde_json
                        // finding where it ends (what lambda_runtime's deserializer must do).
                        let raw: &serde_json::value::RawValue =
                            serde_json::from_slice(&bytes).unwrap();
                        std::hint::black_box(raw);
                    }
                    "route" => {
                        std::hint::black_box(router.route(&decoded).await);
                    }
                    _ => {
                        let batch: KinesisBatch = serde_json::from_slice(&bytes).unwrap();
                        std::hint::black_box(router.route(&batch).await);
                    }
                }
                events += n;
            }
        });
        let rate = events as f64 / started.elapsed().as_secs_f64();
        println!("{m:>6}: {rate:>9.0} events/s  {:>6.0} ns/event", 1e9 / rate);
    }
}
