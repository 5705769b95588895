//! The functions' output: shown readably (one line per log event, prefixed with the function),
//! kept raw per function under a log directory, and tallied.
//!
//! Tallies: subscribers log `batch done` and the router logs `batch routed` with counts
//! (`applied`, `duplicates`, `published`, `dead_lettered`, ...); the numbers of those lines are
//! summed per function, so a run can report what every function did from the functions' own words.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::log_shipping::Shipper;

/// Messages whose numeric fields are tallied.
pub const TALLIED: [&str; 3] = ["batch done", "batch routed", "batch published"];

/// Where function output goes.
pub struct Logs {
    echo: bool,
    dir: Option<PathBuf>,
    files: Mutex<BTreeMap<String, File>>,
    tallies: Mutex<BTreeMap<String, BTreeMap<String, i64>>>,
    metrics: Mutex<BTreeMap<String, BTreeMap<String, f64>>>,
    shipper: Option<Arc<Shipper>>,
}

impl Logs {
    /// Print lines when `echo`; keep raw lines under `dir` when given.
    pub fn new(echo: bool, dir: Option<PathBuf>) -> Self {
        if let Some(dir) = &dir {
            let _ = std::fs::create_dir_all(dir);
        }
        Logs {
            echo,
            dir,
            files: Mutex::new(BTreeMap::new()),
            tallies: Mutex::new(BTreeMap::new()),
            metrics: Mutex::new(BTreeMap::new()),
            shipper: None,
        }
    }

    /// Also send every line to CloudWatch Logs through `shipper`.
    pub fn shipping_to(mut self, shipper: Arc<Shipper>) -> Self {
        self.shipper = Some(shipper);
        self
    }

    /// Where lines are sent to CloudWatch Logs, if anywhere.
    pub fn shipper(&self) -> Option<&Arc<Shipper>> {
        self.shipper.as_ref()
    }

    /// One line of output from `label` (`inventory`, `inventory#1`).
    pub fn line(&self, label: &str, line: &str) {
        let function = label.split('#').next().unwrap_or(label);
        if let Some(dir) = &self.dir {
            let mut files = self.files.lock().expect("lock");
            if !files.contains_key(function) {
                if let Ok(file) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{function}.log")))
                {
                    files.insert(function.to_string(), file);
                }
            }
            if let Some(file) = files.get_mut(function) {
                let _ = writeln!(file, "{line}");
            }
        }
        let parsed: Option<Value> = line
            .starts_with('{')
            .then(|| serde_json::from_str(line).ok())
            .flatten();
        if let Some(shipper) = &self.shipper {
            let emf = matches!(&parsed, Some(Value::Object(f)) if f.contains_key("_aws"));
            // EMF documents become metrics (summed here); what a trace reads are the lines.
            if !emf {
                let timestamp = parsed
                    .as_ref()
                    .and_then(|p| p.get("timestamp"))
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis());
                shipper.keep(function, line, timestamp);
            }
        }
        if let Some(Value::Object(fields)) = &parsed {
            if fields.contains_key("_aws") {
                self.add_metrics(function, fields);
                // EMF documents are data, not something to read as they scroll by.
                return;
            }
            let message = fields
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if TALLIED.contains(&message) {
                let mut tallies = self.tallies.lock().expect("lock");
                let tally = tallies.entry(function.to_string()).or_default();
                for (key, value) in fields {
                    if let Some(n) = value.as_i64() {
                        *tally.entry(key.clone()).or_default() += n;
                    }
                }
            }
        }
        if self.echo {
            println!("{}", render(label, parsed.as_ref(), line));
        }
    }

    /// A note from the runner itself about `label`.
    pub fn note(&self, label: &str, message: &str) {
        if self.echo {
            println!("{label:>12} | runner: {message}");
        }
    }

    fn add_metrics(&self, function: &str, doc: &serde_json::Map<String, Value>) {
        let mut metrics = self.metrics.lock().expect("lock");
        let sums = metrics.entry(function.to_string()).or_default();
        let declared = doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["Metrics"].as_array().into_iter().flatten())
            .filter_map(|m| m["Name"].as_str());
        for name in declared {
            if let Some(value) = doc.get(name).and_then(Value::as_f64) {
                *sums.entry(name.to_string()).or_default() += value;
            }
        }
        *sums.entry("Invocations".into()).or_default() += 1.0;
        if let Some(Value::Object(requests)) = doc.get("awsRequests") {
            for (operation, n) in requests {
                *sums.entry(format!("aws:{operation}")).or_default() += n.as_f64().unwrap_or(0.0);
            }
        }
    }

    /// Summed EMF metrics per function (plus `Invocations`, and `aws:<Service.Operation>` request
    /// counts from the documents' `awsRequests`).
    pub fn metrics(&self) -> BTreeMap<String, BTreeMap<String, f64>> {
        self.metrics.lock().expect("lock").clone()
    }

    /// Summed counts per function.
    pub fn tallies(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        self.tallies.lock().expect("lock").clone()
    }
}

/// `   inventory | INFO  batch done applied=3 duplicates=1`
fn render(label: &str, parsed: Option<&Value>, raw: &str) -> String {
    let Some(Value::Object(fields)) = parsed else {
        return format!("{label:>12} | {raw}");
    };
    let level = fields.get("level").and_then(Value::as_str).unwrap_or("");
    let message = fields.get("message").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{label:>12} | {level:<5} {message}");
    for (key, value) in fields {
        if matches!(
            key.as_str(),
            "timestamp" | "level" | "message" | "target" | "span" | "spans" | "fields"
        ) {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!(" {key}={text}"));
    }
    out
}
