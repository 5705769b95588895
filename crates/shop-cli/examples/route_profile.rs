//! Profiling aid: route one Kinesis batch file (`shop bench router` writes
//! `.herald/bench/kinesis-batch.json`) in a loop for a few seconds, for `perf record`.

use herald::aws::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use herald::router::KinesisBatch as KinesisEvent;
use herald::router::{BusError, BusMessage, BusOutcome, EventBus, Router, RouterConfig};

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
    let path = std::env::args().nth(1).expect("a Kinesis batch file");
    let bytes = std::fs::read(path).expect("readable");
    let router = Router::with_config(
        NullBus,
        NullLetters,
        RouterConfig {
            catalog: Some(shop::catalog()),
            ..RouterConfig::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut events = 0usize;
    runtime.block_on(async {
        while started.elapsed().as_secs() < 4 {
            let batch: KinesisEvent = serde_json::from_slice(&bytes).unwrap();
            events += batch.len();
            std::hint::black_box(router.route(&batch).await);
        }
    });
    println!(
        "{:.0} events/s",
        events as f64 / started.elapsed().as_secs_f64()
    );
}
