//! Where each stream mapping has got to, per shard, kept across runner restarts.
//!
//! One small JSON file per stack (`<state dir>/<stack>/checkpoints.json`), rewritten atomically
//! (write a temporary file, then rename it over the old one) after every batch that is done —
//! processed, or its failure record sent — so a restarted runner resumes right after it
//! (`AFTER_SEQUENCE_NUMBER`) instead of re-reading the stream from its starting position.
//!
//! A file rather than a table on the emulator: it costs the emulator no request per batch (moto
//! answers one request at a time, and a fault-injecting proxy would fail the runner's own
//! bookkeeping), it survives a restart of the runner alone, and it can be read or deleted by hand.
//! Each mapping's entry names the stream it points into (ARN and creation time), so checkpoints of
//! a stream that was since deleted and created again — a new emulator — are never applied to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// The file's name inside `<state dir>/<stack>/`.
pub const FILE_NAME: &str = "checkpoints.json";

/// What is saved for one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The last sequence number whose batch is done: reading resumes right after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// When nothing is done yet: where reading started, as milliseconds since the epoch
    /// (`LATEST` and `AT_TIMESTAMP` resume at that instant); none means the trim horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_millis: Option<i64>,
    /// The shard is closed (resharded) and was read to its end: its children may be read.
    #[serde(default)]
    pub finished: bool,
    /// A tumbling window not yet closed, with its state: a restart goes on with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<super::window::OpenWindow>,
}

impl ShardCheckpoint {
    /// Where a reader of this shard resumes: right after its last batch done, else where it
    /// started reading (an instant), else the trim horizon.
    pub fn resume_at(&self) -> crate::stream::Position {
        use crate::stream::Position;
        match (&self.after, self.since_millis) {
            (Some(after), _) => Position::After(after.clone()),
            (None, Some(millis)) => Position::AtMillis(millis),
            (None, None) => Position::TrimHorizon,
        }
    }
}

/// What is saved for one mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingCheckpoints {
    /// The stream the checkpoints point into: its ARN and creation time.
    pub stream: String,
    /// Per shard id.
    #[serde(default)]
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct File {
    /// Format version (1).
    version: u32,
    /// Per mapping logical id.
    #[serde(default)]
    mappings: BTreeMap<String, MappingCheckpoints>,
}

/// The checkpoints of one stack's stream mappings: in memory, and in a file when one is given.
#[derive(Debug)]
pub struct Checkpoints {
    path: Option<PathBuf>,
    state: Mutex<File>,
}

impl Checkpoints {
    /// Checkpoints kept in memory only (lost when the process ends; kept across
    /// [`crate::LocalPipeline::restart`]).
    pub fn in_memory() -> Checkpoints {
        Checkpoints {
            path: None,
            state: Mutex::new(File {
                version: 1,
                ..File::default()
            }),
        }
    }

    /// The checkpoints saved at `path` (none yet when it does not exist); `fresh` ignores what
    /// is saved there (and overwrites it with the first checkpoint).
    pub fn open(path: PathBuf, fresh: bool) -> Result<Checkpoints> {
        let state = match std::fs::read(&path) {
            Ok(_) if fresh => File::default(),
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a checkpoints file; delete it or start with --fresh to read every \
                     stream from its mapping's StartingPosition",
                    path.display()
                )
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", path.display()));
            }
        };
        Ok(Checkpoints {
            path: Some(path),
            state: Mutex::new(File {
                version: 1,
                ..state
            }),
        })
    }

    /// `<state_dir>/<stack>/checkpoints.json`.
    pub fn path(state_dir: &Path, stack: &str) -> PathBuf {
        state_dir.join(stack).join(FILE_NAME)
    }

    /// The file they are saved in, if any.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is saved for `mapping` when it points into `stream` (ARN and creation time); none
    /// for a new mapping or a stream that was created again since.
    pub fn mapping(&self, mapping: &str, stream: &str) -> Option<MappingCheckpoints> {
        self.lock()
            .mappings
            .get(mapping)
            .filter(|m| m.stream == stream)
            .cloned()
    }

    /// Every mapping's checkpoints (for tests and inspection).
    pub fn snapshot(&self) -> BTreeMap<String, MappingCheckpoints> {
        self.lock().mappings.clone()
    }

    /// Reading of `shard` starts (nothing done yet): where, so a restart before the first batch
    /// starts there again. Kept as it is when the shard has an entry already.
    pub fn begin(
        &self,
        mapping: &str,
        stream: &str,
        shard: &str,
        since_millis: Option<i64>,
    ) -> Result<()> {
        self.update(mapping, stream, |m| {
            m.shards
                .entry(shard.to_string())
                .or_insert_with(|| ShardCheckpoint {
                    since_millis,
                    ..ShardCheckpoint::default()
                });
        })
    }

    /// Every record of `shard` up to `sequence_number` is done.
    pub fn commit(
        &self,
        mapping: &str,
        stream: &str,
        shard: &str,
        sequence_number: &str,
    ) -> Result<()> {
        self.update(mapping, stream, |m| {
            m.shards.entry(shard.to_string()).or_default().after = Some(sequence_number.into());
        })
    }

    /// With a tumbling window: every record up to `sequence_number` (when given) is done, and
    /// `window` is the open window with its state (none once its final invocation succeeded).
    /// Saved together, so a restart neither loses a record's share of the state nor counts it
    /// twice.
    pub fn commit_window(
        &self,
        mapping: &str,
        stream: &str,
        shard: &str,
        sequence_number: Option<&str>,
        window: Option<super::window::OpenWindow>,
    ) -> Result<()> {
        self.update(mapping, stream, |m| {
            let shard = m.shards.entry(shard.to_string()).or_default();
            if let Some(sequence_number) = sequence_number {
                shard.after = Some(sequence_number.into());
            }
            shard.window = window;
        })
    }

    /// `shard` is closed and read to its end.
    pub fn finish(&self, mapping: &str, stream: &str, shard: &str) -> Result<()> {
        self.update(mapping, stream, |m| {
            m.shards.entry(shard.to_string()).or_default().finished = true;
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        // A panic while holding the lock left the state as it was before or after one change;
        // both are valid checkpoints.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(
        &self,
        mapping: &str,
        stream: &str,
        change: impl FnOnce(&mut MappingCheckpoints),
    ) -> Result<()> {
        let mut state = self.lock();
        let entry = state.mappings.entry(mapping.to_string()).or_default();
        if entry.stream != stream {
            // A new stream behind the mapping: what was saved points into the old one.
            *entry = MappingCheckpoints {
                stream: stream.to_string(),
                shards: BTreeMap::new(),
            };
        }
        change(entry);
        let Some(path) = &self.path else {
            return Ok(());
        };
        // Written while holding the lock, synchronously: writes never interleave, and a task
        // aborted by the runner's stop cannot stop between the write and the rename.
        write_atomically(path, &serde_json::to_vec_pretty(&*state)?)
    }
}

/// Write `bytes` to a temporary file beside `path` and rename it over `path`: a reader (or a
/// runner killed mid-write) sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file() -> PathBuf {
        std::env::temp_dir()
            .join(format!(
                "herald-checkpoints-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .join(FILE_NAME)
    }

    #[test]
    fn commits_survive_reopening_and_a_new_stream_starts_over() {
        let path = temp_file();
        let saved = Checkpoints::open(path.clone(), false).unwrap();
        saved.begin("M", "arn@1", "shard-0", None).unwrap();
        saved.commit("M", "arn@1", "shard-0", "42").unwrap();
        saved.finish("M", "arn@1", "shard-1").unwrap();

        let reopened = Checkpoints::open(path.clone(), false).unwrap();
        let mapping = reopened.mapping("M", "arn@1").unwrap();
        assert_eq!(mapping.shards["shard-0"].after.as_deref(), Some("42"));
        assert!(mapping.shards["shard-1"].finished);
        assert!(reopened.mapping("M", "arn@2").is_none(), "another stream");
        assert!(
            reopened.mapping("Other", "arn@1").is_none(),
            "another mapping"
        );

        reopened.commit("M", "arn@2", "shard-0", "1").unwrap();
        let after = Checkpoints::open(path.clone(), false).unwrap();
        assert!(after.mapping("M", "arn@1").is_none());
        assert_eq!(
            after.mapping("M", "arn@2").unwrap().shards["shard-0"].after,
            Some("1".into())
        );
        assert!(Checkpoints::open(path, true)
            .unwrap()
            .mapping("M", "arn@2")
            .is_none());
    }

    #[test]
    fn an_open_window_is_saved_with_its_checkpoint_and_cleared_when_closed() {
        let path = temp_file();
        let saved = Checkpoints::open(path.clone(), false).unwrap();
        let mut window = super::super::window::OpenWindow::new(60_000);
        window.state = serde_json::json!({"orders": 2});
        saved
            .commit_window("M", "s", "shard-0", Some("9"), Some(window.clone()))
            .unwrap();
        let reopened = Checkpoints::open(path.clone(), false).unwrap();
        let shard = &reopened.mapping("M", "s").unwrap().shards["shard-0"];
        assert_eq!(
            (shard.after.as_deref(), shard.window.as_ref()),
            (Some("9"), Some(&window))
        );
        reopened
            .commit_window("M", "s", "shard-0", None, None)
            .unwrap();
        let shard = &Checkpoints::open(path, false)
            .unwrap()
            .mapping("M", "s")
            .unwrap()
            .shards["shard-0"]
            .clone();
        assert_eq!(
            (shard.after.as_deref(), shard.window.as_ref()),
            (Some("9"), None)
        );
    }

    #[test]
    fn begin_keeps_what_is_saved() {
        let checkpoints = Checkpoints::in_memory();
        checkpoints.commit("M", "s", "shard-0", "7").unwrap();
        checkpoints.begin("M", "s", "shard-0", Some(5)).unwrap();
        let shard = &checkpoints.mapping("M", "s").unwrap().shards["shard-0"];
        assert_eq!(
            (shard.after.as_deref(), shard.since_millis),
            (Some("7"), None)
        );
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_naming_it_and_fresh_ignores_it() {
        let path = temp_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{not json").unwrap();
        let err = Checkpoints::open(path.clone(), false).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&path.display().to_string()) && text.contains("--fresh"),
            "{text}"
        );
        assert!(Checkpoints::open(path, true).is_ok());
    }
}
