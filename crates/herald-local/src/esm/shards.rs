//! Reading a stream's shards (Kinesis or DynamoDB Streams): one task per shard, the batching
//! window, and `ParallelizationFactor` lanes handing batches to [`super::batch`].
//!
//! The mapping's task lists the shards again every few polls, as Lambda does: after a reshard the
//! child shards are read once their parents are read to their end (so one key's records stay in
//! order), and every shard resumes after its saved checkpoint ([`super::checkpoints`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::batch::process_kinesis_batch;
use super::stream_event::dynamodb_change;
use super::window::{self, OpenWindow};
use super::{Activity, Context, Payload, StreamRecord};
use crate::runtime::FunctionPool;
use crate::stack::{StartingPosition, StreamMapping, StreamSource};

/// One `GetRecords` answer, whichever the stream.
struct Read {
    records: Vec<StreamRecord>,
    next_iterator: Option<String>,
    millis_behind: i64,
}

impl Read {
    /// What a shard whose end was read already answers: nothing more, and no iterator.
    fn end() -> Read {
        Read {
            records: Vec::new(),
            next_iterator: None,
            millis_behind: 0,
        }
    }
}

/// One shard as listed.
#[derive(Clone, Debug)]
struct ShardInfo {
    id: String,
    /// `ParentShardId` and `AdjacentParentShardId` (a merge has two parents).
    parents: Vec<String>,
    /// Closed by a reshard (it has an ending sequence number): it takes no more records.
    closed: bool,
}

/// The shards of a mapping's stream, and (DynamoDB) the table's partition key attribute.
struct Listing {
    shards: Vec<ShardInfo>,
    hash_key: Option<String>,
}

/// Where a shard starts reading.
#[derive(Clone, Debug, PartialEq)]
enum Start {
    /// Right after this sequence number (a checkpoint).
    After(String),
    /// The oldest record.
    TrimHorizon,
    /// The tip.
    Latest,
    /// The first record at or after this instant (milliseconds since the epoch).
    AtMillis(i64),
}

/// Counts one shard (or a mapping not yet listed) in [`Activity::shards_behind`] while it is
/// behind; stops counting it when dropped.
struct Behind {
    activity: Arc<Activity>,
    behind: bool,
}

impl Behind {
    fn new(activity: &Arc<Activity>) -> Behind {
        activity.shards_behind.fetch_add(1, Ordering::SeqCst);
        Behind::adopt(activity)
    }

    /// Take over a count someone else added.
    fn adopt(activity: &Arc<Activity>) -> Behind {
        Behind {
            activity: activity.clone(),
            behind: true,
        }
    }

    fn set(&mut self, behind: bool) {
        if behind != self.behind {
            if behind {
                self.activity.shards_behind.fetch_add(1, Ordering::SeqCst);
            } else {
                self.activity.shards_behind.fetch_sub(1, Ordering::SeqCst);
            }
            self.behind = behind;
        }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// How a shard's task ended.
enum ShardEnd {
    /// Closed and read to its end: its children may start.
    Drained,
    /// The runner stopped.
    Stopped,
}

/// The pause before the `attempt`-th retry of a failed read, listing or send (from 0): doubling
/// from 50 ms up to `max`.
pub(super) fn backoff(attempt: u32, max: Duration) -> Duration {
    (Duration::from_millis(50) * 2u32.saturating_pow(attempt.min(10))).min(max)
}

/// Sleep `delay`, or less when the runner stops; whether it is still running.
pub(crate) async fn pause(delay: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
    let stopped = *stop.borrow();
    !stopped
}

/// What identifies the stream behind a mapping across runs: its ARN and creation time (a stream
/// deleted and created again under the same name, or a new emulator, is another stream).
async fn stream_identity(ctx: &Context, mapping: &StreamMapping) -> Result<String> {
    let created = match mapping.source {
        StreamSource::Kinesis => ctx
            .kinesis
            .describe_stream_summary()
            .stream_name(&mapping.stream_name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?
            .stream_description_summary
            .map(|s| s.stream_creation_timestamp),
        StreamSource::DynamoDb => ctx
            .dynamodb_streams
            .describe_stream()
            .stream_arn(&mapping.stream_arn)
            .limit(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?
            .stream_description
            .and_then(|d| d.creation_request_date_time),
    };
    let created = created
        .map(|t| format!("{}.{:09}", t.secs(), t.subsec_nanos()))
        .unwrap_or_default();
    Ok(format!("{}@{created}", mapping.stream_arn))
}

/// Every shard of the mapping's stream (all pages).
async fn list_shards(ctx: &Context, mapping: &StreamMapping) -> Result<Listing> {
    let mut shards = Vec::new();
    match mapping.source {
        StreamSource::Kinesis => {
            let mut next: Option<String> = None;
            loop {
                let request = match &next {
                    // With a token, the stream must not be named.
                    Some(token) => ctx.kinesis.list_shards().next_token(token),
                    None => ctx.kinesis.list_shards().stream_name(&mapping.stream_name),
                };
                let out = request
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
                shards.extend(out.shards().iter().map(|s| {
                    ShardInfo {
                        id: s.shard_id.clone(),
                        parents: s
                            .parent_shard_id
                            .iter()
                            .chain(s.adjacent_parent_shard_id.iter())
                            .cloned()
                            .collect(),
                        closed: s
                            .sequence_number_range
                            .as_ref()
                            .is_some_and(|r| r.ending_sequence_number.is_some()),
                    }
                }));
                next = out.next_token;
                if next.is_none() {
                    return Ok(Listing {
                        shards,
                        hash_key: None,
                    });
                }
            }
        }
        StreamSource::DynamoDb => {
            let mut hash_key = None;
            let mut start: Option<String> = None;
            loop {
                let out = ctx
                    .dynamodb_streams
                    .describe_stream()
                    .stream_arn(&mapping.stream_arn)
                    .set_exclusive_start_shard_id(start.take())
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
                let Some(description) = out.stream_description else {
                    break;
                };
                hash_key = description
                    .key_schema()
                    .iter()
                    .find(|k| k.key_type == aws_sdk_dynamodbstreams::types::KeyType::Hash)
                    .map(|k| k.attribute_name.clone())
                    .or(hash_key);
                shards.extend(description.shards().iter().filter_map(|s| {
                    Some(ShardInfo {
                        id: s.shard_id.clone()?,
                        parents: s.parent_shard_id.iter().cloned().collect(),
                        closed: s
                            .sequence_number_range
                            .as_ref()
                            .is_some_and(|r| r.ending_sequence_number.is_some()),
                    })
                }));
                start = description.last_evaluated_shard_id;
                if start.is_none() {
                    break;
                }
            }
            Ok(Listing { shards, hash_key })
        }
    }
}

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
        let listed = async {
            let identity = stream_identity(&ctx, &mapping).await?;
            Ok::<_, anyhow::Error>((identity, list_shards(&ctx, &mapping).await?))
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
        match list_shards(&self.ctx, &self.mapping).await {
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
    fn start_ready(&mut self, shards: &[ShardInfo]) {
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
                Start::AtMillis(millis) => Some(*millis),
                // Saved as the instant reading started, so a restart before the first batch
                // loses nothing written meanwhile (and reads nothing older).
                Start::Latest => Some(Utc::now().timestamp_millis()),
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
            self.tasks.spawn(run_shard(
                self.mapping.clone(),
                shard.id.clone(),
                start,
                self.pool.clone(),
                self.ctx.clone(),
                self.stop.clone(),
                self.closed.clone(),
                self.identity.clone(),
                window,
                Behind::new(&self.ctx.activity),
            ));
        }
    }

    /// Where `shard` starts: after its checkpoint, where it started before, at the mapping's
    /// StartingPosition (a new mapping), or at its oldest record (a shard found later).
    fn start_of(&self, shard: &str) -> Start {
        if let Some(saved) = self.saved.get(shard) {
            return match (&saved.after, saved.since_millis) {
                (Some(after), _) => Start::After(after.clone()),
                (None, Some(millis)) => Start::AtMillis(millis),
                (None, None) => Start::TrimHorizon,
            };
        }
        if !self.initial.contains(shard) {
            return Start::TrimHorizon;
        }
        match self.mapping.starting_position {
            StartingPosition::TrimHorizon => Start::TrimHorizon,
            StartingPosition::Latest => Start::Latest,
            StartingPosition::AtTimestamp(secs) => Start::AtMillis(secs.saturating_mul(1000)),
        }
    }
}

/// An iterator at `start`, retried with backoff until it is had (a shard that cannot be read is
/// not caught up); none when the runner stops first.
async fn iterator_with_retry(
    ctx: &Context,
    mapping: &StreamMapping,
    shard_id: &str,
    start: &Start,
    label: &str,
    stop: &watch::Receiver<bool>,
) -> Option<String> {
    let mut attempt = 0;
    loop {
        match shard_iterator(ctx, mapping, shard_id, start).await {
            Ok(iterator) => return Some(iterator),
            Err(err) => {
                ctx.logs.note(
                    label,
                    &format!("GetShardIterator on {shard_id}: {err:#} (retrying)"),
                );
                if !pause(backoff(attempt, ctx.settings.max_retry_delay * 5), stop).await {
                    return None;
                }
                attempt += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    mapping: Arc<StreamMapping>,
    shard_id: String,
    start: Start,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
    closed: Arc<Mutex<BTreeSet<String>>>,
    identity: String,
    mut window: Option<OpenWindow>,
    mut behind: Behind,
) -> (String, ShardEnd, Behind) {
    let label = pool.spec().label().to_string();
    let mapping = &*mapping;
    // DynamoDB Streams has no AT_TIMESTAMP: read from the trim horizon and skip what is older.
    let skip_before = match (&start, mapping.source) {
        (Start::AtMillis(millis), StreamSource::DynamoDb) => {
            DateTime::from_timestamp_millis(*millis)
        }
        _ => None,
    };
    // The last sequence number read: after an error, reading resumes right after it.
    let mut last_read: Option<String> = match &start {
        Start::After(after) => Some(after.clone()),
        _ => None,
    };
    let Some(mut iterator) =
        iterator_with_retry(&ctx, mapping, &shard_id, &start, &label, &stop).await
    else {
        return (shard_id, ShardEnd::Stopped, behind);
    };
    let mut open_window = window::OpenGauge::new(&ctx.activity, window.is_some());
    let mut buffer: VecDeque<StreamRecord> = VecDeque::new();
    let mut window_started: Option<Instant> = None;
    let mut read_errors = 0;
    // A shard's end may come in the same answer as its last records (AWS's and LocalStack's
    // closed shards do): the iterator is spent then, and reading it again would give those
    // records again, so the rest of the buffer is handled without reading.
    let mut shard_ended = false;
    while !*stop.borrow() {
        open_window.set(window.is_some());
        if buffer.len() < mapping.batch_size * mapping.parallelization_factor {
            let limit = (mapping.batch_size * mapping.parallelization_factor - buffer.len())
                .clamp(1, 10_000) as i32;
            let answer = if shard_ended {
                Ok(Read::end())
            } else {
                read(&ctx, mapping, &shard_id, &iterator, limit).await
            };
            match answer {
                Ok(out) => {
                    read_errors = 0;
                    tracing::debug!(shard = %shard_id, records = out.records.len(), buffered = buffer.len(), "GetRecords");
                    let at_tip = out.millis_behind == 0;
                    let ended = out.next_iterator.is_none();
                    shard_ended |= ended;
                    if mapping.source == crate::stack::StreamSource::Kinesis {
                        let oldest = out.records.first().map(|r| {
                            Utc::now()
                                .signed_duration_since(r.arrival)
                                .num_milliseconds()
                        });
                        ctx.activity
                            .iterator_ages
                            .stream(&mapping.stream_name, oldest.unwrap_or(0).max(0) as u64);
                    }
                    if let Some(next) = out.next_iterator {
                        iterator = next;
                    }
                    let mut records = out.records;
                    if let Some(last) = records.last() {
                        last_read = Some(last.sequence_number.clone());
                    }
                    if let Some(before) = skip_before {
                        records.retain(|r| r.arrival >= before);
                    }
                    let got = records.len();
                    buffer.extend(records);
                    if got > 0 && window_started.is_none() {
                        window_started = Some(Instant::now());
                    }
                    if buffer.is_empty() {
                        // A closed shard (after resharding) read to its end has nothing more to
                        // give: AWS ends its iterators; moto does not, but a closed shard at its
                        // tip takes no more records.
                        let is_closed = closed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains(&shard_id);
                        let drained = ended || (is_closed && got == 0 && at_tip);
                        // A window closes when its shard ends, or when the shard has waited at
                        // its tip past the window's end.
                        if let (Some(open), Some(length)) = (&window, mapping.tumbling_window) {
                            if drained
                                || (at_tip
                                    && window::expired(open, length, ctx.settings.window_grace))
                            {
                                if !close_window(
                                    mapping,
                                    &pool,
                                    &ctx,
                                    &shard_id,
                                    &identity,
                                    &mut window,
                                    &stop,
                                )
                                .await
                                {
                                    break;
                                }
                                continue;
                            }
                        }
                        if drained {
                            return (shard_id, ShardEnd::Drained, behind);
                        }
                        behind.set(!at_tip);
                        tokio::time::sleep(ctx.settings.idle_poll).await;
                        continue;
                    }
                    if got == 0 && buffer.len() < mapping.batch_size {
                        let waited = window_started.map(|w| w.elapsed()).unwrap_or_default();
                        if waited < mapping.batching_window {
                            behind.set(true);
                            tokio::time::sleep(
                                ctx.settings.idle_poll.min(mapping.batching_window - waited),
                            )
                            .await;
                            continue;
                        }
                    } else if buffer.len() < mapping.batch_size
                        && window_started.map(|w| w.elapsed()).unwrap_or_default()
                            < mapping.batching_window
                    {
                        behind.set(true);
                        continue;
                    }
                }
                Err(err) => {
                    ctx.logs
                        .note(&label, &format!("GetRecords on {shard_id}: {err:#}"));
                    behind.set(true);
                    if !pause(
                        backoff(read_errors, ctx.settings.max_retry_delay * 5),
                        &stop,
                    )
                    .await
                    {
                        break;
                    }
                    read_errors += 1;
                    // The iterator may have expired: resume right after the last record read.
                    let resume = match &last_read {
                        Some(after) => Start::After(after.clone()),
                        None => start.clone(),
                    };
                    match iterator_with_retry(&ctx, mapping, &shard_id, &resume, &label, &stop)
                        .await
                    {
                        Some(it) => iterator = it,
                        None => break,
                    }
                    continue;
                }
            }
        }
        behind.set(true);
        if let Some(length) = mapping.tumbling_window {
            // One window per batch; a record of a later window closes the open one first.
            let start = window::window_of(&buffer[0], length, window.as_ref());
            if window
                .as_ref()
                .is_some_and(|open| open.start_millis != start)
                && !close_window(
                    mapping,
                    &pool,
                    &ctx,
                    &shard_id,
                    &identity,
                    &mut window,
                    &stop,
                )
                .await
            {
                break;
            }
            let open = window.get_or_insert_with(|| OpenWindow::new(start));
            open_window.set(true);
            let take = buffer
                .iter()
                .take(mapping.batch_size)
                .take_while(|r| window::window_of(r, length, Some(open)) == start)
                .count()
                .max(1);
            let batch: Vec<StreamRecord> = buffer.drain(..take).collect();
            window_started = (!buffer.is_empty()).then(Instant::now);
            let last = batch.last().map(|r| r.sequence_number.clone());
            process_kinesis_batch(mapping, &pool, &ctx, batch, Some(&mut *open)).await;
            if open.state_too_big() {
                ctx.logs.note(
                    &label,
                    "the window's state is over 1 MB: the window ends early and goes on with a \
                     fresh state",
                );
                if !window::close(mapping, &pool, &ctx, &shard_id, open, true, &stop).await {
                    break;
                }
                open.state = serde_json::json!({});
            }
            if let Err(err) = ctx.checkpoints.commit_window(
                &mapping.logical_id,
                &identity,
                &shard_id,
                last.as_deref(),
                window.clone(),
            ) {
                ctx.logs
                    .note(&label, &format!("cannot save a checkpoint: {err:#}"));
            }
            continue;
        }
        let take = buffer
            .len()
            .min(mapping.batch_size * mapping.parallelization_factor);
        let batch: Vec<StreamRecord> = buffer.drain(..take).collect();
        window_started = if buffer.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let last = batch.last().map(|r| r.sequence_number.clone());
        process_lanes(mapping, &pool, &ctx, batch).await;
        // Every record of the batch is processed or its failure record sent: a restart resumes
        // after it.
        if let Some(last) = last {
            if let Err(err) =
                ctx.checkpoints
                    .commit(&mapping.logical_id, &identity, &shard_id, &last)
            {
                ctx.logs
                    .note(&label, &format!("cannot save a checkpoint: {err:#}"));
            }
        }
    }
    (shard_id, ShardEnd::Stopped, behind)
}

/// The open window's final invocation, then its checkpoint cleared; false when the runner
/// stopped first.
async fn close_window(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    shard_id: &str,
    identity: &str,
    window: &mut Option<OpenWindow>,
    stop: &watch::Receiver<bool>,
) -> bool {
    let Some(open) = window.as_ref() else {
        return true;
    };
    if !window::close(mapping, pool, ctx, shard_id, open, false, stop).await {
        return false;
    }
    *window = None;
    if let Err(err) =
        ctx.checkpoints
            .commit_window(&mapping.logical_id, identity, shard_id, None, None)
    {
        ctx.logs.note(
            pool.spec().label(),
            &format!("cannot save a checkpoint: {err:#}"),
        );
    }
    true
}

/// `ParallelizationFactor`: the records are spread over that many lanes by partition key, lanes
/// run concurrently, and each lane processes its records in order in batches of `BatchSize`, so
/// one key's records stay in order.
async fn process_lanes(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    records: Vec<StreamRecord>,
) {
    let factor = mapping.parallelization_factor.max(1);
    let mut lanes: Vec<Vec<StreamRecord>> = vec![Vec::new(); factor];
    for record in records {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&record.partition_key, &mut hasher);
        lanes[(std::hash::Hasher::finish(&hasher) % factor as u64) as usize].push(record);
    }
    let runs = lanes
        .into_iter()
        .filter(|lane| !lane.is_empty())
        .map(|lane| async move {
            for batch in lane.chunks(mapping.batch_size) {
                process_kinesis_batch(mapping, pool, ctx, batch.to_vec(), None).await;
            }
        });
    futures::future::join_all(runs).await;
}

/// An iterator at `start`.
async fn shard_iterator(
    ctx: &Context,
    mapping: &StreamMapping,
    shard_id: &str,
    start: &Start,
) -> Result<String> {
    if mapping.source == StreamSource::DynamoDb {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType as Type;
        let request = ctx
            .dynamodb_streams
            .get_shard_iterator()
            .stream_arn(&mapping.stream_arn)
            .shard_id(shard_id);
        let request = match start {
            Start::After(after) => request
                .shard_iterator_type(Type::AfterSequenceNumber)
                .sequence_number(after),
            Start::Latest => request.shard_iterator_type(Type::Latest),
            // DynamoDB Streams has no AT_TIMESTAMP (the shard's reader skips older records).
            Start::TrimHorizon | Start::AtMillis(_) => {
                request.shard_iterator_type(Type::TrimHorizon)
            }
        };
        return request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?
            .shard_iterator
            .ok_or_else(|| anyhow::anyhow!("GetShardIterator returned no iterator"));
    }
    let request = ctx
        .kinesis
        .get_shard_iterator()
        .stream_name(&mapping.stream_name)
        .shard_id(shard_id);
    let request = match start {
        Start::After(after) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(after),
        Start::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Start::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        Start::AtMillis(millis) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_millis(*millis)),
    };
    request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?
        .shard_iterator
        .ok_or_else(|| anyhow::anyhow!("GetShardIterator returned no iterator"))
}

/// One `GetRecords` call on the mapping's stream.
async fn read(
    ctx: &Context,
    mapping: &StreamMapping,
    shard_id: &str,
    iterator: &str,
    limit: i32,
) -> Result<Read> {
    let to_utc = |secs: i64, nanos: u32| DateTime::from_timestamp(secs, nanos);
    match mapping.source {
        StreamSource::Kinesis => {
            let out = ctx
                .kinesis
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
            Ok(Read {
                millis_behind: out.millis_behind_latest.unwrap_or(0),
                next_iterator: out.next_shard_iterator,
                records: out
                    .records
                    .into_iter()
                    .map(|r| StreamRecord {
                        shard_id: shard_id.to_string(),
                        sequence_number: r.sequence_number,
                        partition_key: r.partition_key.unwrap_or_default(),
                        payload: Payload::Kinesis(r.data.into_inner()),
                        arrival: r
                            .approximate_arrival_timestamp
                            .and_then(|t| to_utc(t.secs(), t.subsec_nanos()))
                            .unwrap_or_else(Utc::now),
                    })
                    .collect(),
            })
        }
        StreamSource::DynamoDb => {
            let out = ctx
                .dynamodb_streams
                .get_records()
                .shard_iterator(iterator)
                .limit(limit.min(1000))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
            let records = out
                .records
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| {
                    let change = r.dynamodb?;
                    let sequence_number = change.sequence_number.clone()?;
                    // The table's partition key keeps one partition's records in one lane.
                    let partition_key = change
                        .keys
                        .as_ref()
                        .and_then(|keys| match &mapping.partition_key_attribute {
                            Some(name) => keys.get(name),
                            None => keys.iter().min_by_key(|(k, _)| k.as_str()).map(|(_, v)| v),
                        })
                        .map(|v| match v {
                            aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => s.clone(),
                            aws_sdk_dynamodbstreams::types::AttributeValue::N(n) => n.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    let arrival = change
                        .approximate_creation_date_time
                        .and_then(|t| to_utc(t.secs(), t.subsec_nanos()))
                        .unwrap_or_else(Utc::now);
                    Some(StreamRecord {
                        shard_id: shard_id.to_string(),
                        sequence_number,
                        partition_key,
                        arrival,
                        payload: Payload::DynamoDb {
                            event_id: r.event_id.unwrap_or_default(),
                            event_name: r
                                .event_name
                                .map(|n| n.as_str().to_string())
                                .unwrap_or_default(),
                            change: dynamodb_change(&change),
                        },
                    })
                })
                .collect::<Vec<_>>();
            Ok(Read {
                millis_behind: 0,
                next_iterator: out.next_shard_iterator,
                records,
            })
        }
    }
}
