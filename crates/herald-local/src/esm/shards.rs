//! A stream mapping's shards (Kinesis or DynamoDB Streams): listed, each read by its own task
//! ([`super::shard`]), listed again every few polls as Lambda does. After a reshard the child
//! shards are read once their parents are read to their end (so one key's records stay in
//! order), and every shard resumes after its saved checkpoint ([`super::checkpoints`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use chrono::Utc;
use tokio::sync::watch;

use super::pause::{backoff, pause};
use super::shard::{Behind, ShardEnd, ShardReader};
use super::Context;
use crate::runtime::FunctionPool;
use crate::stack::{StartingPosition, StreamMapping};
use crate::stream::{Position, Shard};

/// Run a stream mapping (Kinesis or DynamoDB) until `stop` turns true: list the shards, read
/// each (children after their parents), and list again now and then to find new ones.
pub async fn run_stream(
    mapping: StreamMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    // The runner counted this mapping as one shard behind until its shards are listed.
    let mut listing_behind = Behind::adopt(&ctx.activity);
    let label = pool.spec().label().to_string();
    let mut attempt = 0;
    // A failed listing is retried: the mapping is not caught up before its shards are read.
    let (identity, listing) = loop {
        let stream = ctx.stream(&mapping);
        let listed = async {
            let identity = stream.identity().await?;
            Ok::<_, anyhow::Error>((identity, stream.shards().await?))
        }
        .await;
        match listed {
            Ok(listed) => break listed,
            Err(err) => {
                ctx.logs.note(
                    &label,
                    &format!("cannot list the shards of {}: {err:#}", mapping.stream_name),
                );
                if !pause(backoff(attempt, ctx.settings.max_retry_delay * 5), &stop).await {
                    return Ok(());
                }
                attempt += 1;
            }
        }
    };
    let mut mapping = mapping;
    if let Some(hash_key) = &listing.hash_key {
        mapping.partition_key_attribute = Some(hash_key.clone());
    }
    let saved = ctx.checkpoints.mapping(&mapping.logical_id, &identity);
    let mut readers = Readers {
        mapping: Arc::new(mapping),
        identity,
        pool,
        ctx: ctx.clone(),
        stop: stop.clone(),
        closed: Arc::new(Mutex::new(BTreeSet::new())),
        finished: saved
            .iter()
            .flat_map(|m| m.shards.iter())
            .filter(|(_, s)| s.finished)
            .map(|(id, _)| id.clone())
            .collect(),
        started: BTreeSet::new(),
        // A mapping seen before resumes every shard it knew; a new one starts the shards there
        // are now at its StartingPosition, and shards found later (children) at their start.
        initial: if saved.is_some() {
            BTreeSet::new()
        } else {
            listing.shards.iter().map(|s| s.id.clone()).collect()
        },
        saved: saved.map(|m| m.shards).unwrap_or_default(),
        // A JoinSet aborts the shard tasks when this task is aborted (the runner's stop).
        tasks: tokio::task::JoinSet::new(),
    };
    readers.start_ready(&listing.shards);
    listing_behind.set(false);
    let relist_every = ctx.settings.idle_poll * 10;
    let mut stop_rx = stop.clone();
    while !*stop.borrow() {
        tokio::select! {
            Some(ended) = readers.tasks.join_next() => {
                let Ok((shard_id, ShardEnd::Drained, behind)) = ended else {
                    continue;
                };
                if let Err(err) = ctx.checkpoints.finish(
                    &readers.mapping.logical_id,
                    &readers.identity,
                    &shard_id,
                ) {
                    ctx.logs.note(&label, &format!("cannot save a checkpoint: {err:#}"));
                }
                readers.finished.insert(shard_id);
                // Its children start before it stops counting as behind, so the mapping never
                // looks settled between the two.
                readers.relist(&label).await;
                drop(behind);
            }
            _ = tokio::time::sleep(relist_every) => readers.relist(&label).await,
            _ = stop_rx.changed() => {}
        }
    }
    Ok(())
}

/// The shard tasks of one mapping, and what it knows about its shards.
struct Readers {
    mapping: Arc<StreamMapping>,
    identity: String,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
    /// Shards the last listing showed closed.
    closed: Arc<Mutex<BTreeSet<String>>>,
    /// Shards read to their end.
    finished: BTreeSet<String>,
    /// Shards being read (or read) in this run.
    started: BTreeSet<String>,
    /// Shards that start at the mapping's StartingPosition (a new mapping's first listing).
    initial: BTreeSet<String>,
    /// The saved checkpoints when the runner started.
    saved: BTreeMap<String, super::checkpoints::ShardCheckpoint>,
    tasks: tokio::task::JoinSet<(String, ShardEnd, Behind)>,
}

impl Readers {
    async fn relist(&mut self, label: &str) {
        match self.ctx.stream(&self.mapping).shards().await {
            Ok(listing) => self.start_ready(&listing.shards),
            // Listed again at the next turn; the shards being read go on meanwhile.
            Err(err) => self.ctx.logs.note(
                label,
                &format!(
                    "cannot list the shards of {}: {err:#}",
                    self.mapping.stream_name
                ),
            ),
        }
    }

    /// Start every listed shard not started yet whose parents are read to their end (or gone).
    fn start_ready(&mut self, shards: &[Shard]) {
        let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        {
            let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            closed.extend(shards.iter().filter(|s| s.closed).map(|s| s.id.clone()));
        }
        for shard in shards {
            if self.started.contains(&shard.id) || self.finished.contains(&shard.id) {
                continue;
            }
            let parents_done = shard
                .parents
                .iter()
                .all(|p| self.finished.contains(p) || !listed.contains(p.as_str()));
            if !parents_done {
                continue;
            }
            let start = self.start_of(&shard.id);
            let window = self
                .saved
                .get(&shard.id)
                .and_then(|saved| saved.window.clone());
            let since = match &start {
                Position::AtMillis(millis) => Some(*millis),
                // Saved as the instant reading started, so a restart before the first batch
                // loses nothing written meanwhile (and reads nothing older).
                Position::Latest => Some(Utc::now().timestamp_millis()),
                _ => None,
            };
            if let Err(err) = self.ctx.checkpoints.begin(
                &self.mapping.logical_id,
                &self.identity,
                &shard.id,
                since,
            ) {
                self.ctx.logs.note(
                    self.pool.spec().label(),
                    &format!("cannot save a checkpoint: {err:#}"),
                );
            }
            self.started.insert(shard.id.clone());
            let reader = ShardReader {
                mapping: self.mapping.clone(),
                shard_id: shard.id.clone(),
                start,
                pool: self.pool.clone(),
                ctx: self.ctx.clone(),
                stop: self.stop.clone(),
                closed: self.closed.clone(),
                identity: self.identity.clone(),
                window,
                behind: Behind::new(&self.ctx.activity),
            };
            self.tasks.spawn(reader.run());
        }
    }

    /// Where `shard` starts: after its checkpoint, where it started before, at the mapping's
    /// StartingPosition (a new mapping), or at its oldest record (a shard found later).
    fn start_of(&self, shard: &str) -> Position {
        if let Some(saved) = self.saved.get(shard) {
            return saved.resume_at();
        }
        if !self.initial.contains(shard) {
            return Position::TrimHorizon;
        }
        match self.mapping.starting_position {
            StartingPosition::TrimHorizon => Position::TrimHorizon,
            StartingPosition::Latest => Position::Latest,
            StartingPosition::AtTimestamp(secs) => Position::AtMillis(secs.saturating_mul(1000)),
        }
    }
}
