//! One shard's reader: reads it, gathers batches within the batching window, hands them to
//! [`super::batch`] (in `ParallelizationFactor` lanes, or one tumbling window at a time), and
//! moves the shard's checkpoint past every batch that is done.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::batch::process_kinesis_batch;
use super::pause::{backoff, pause};
use super::window::{self, OpenGauge, OpenWindow};
use super::{Activity, Context, StreamRecord};
use crate::runtime::FunctionPool;
use crate::stack::{StreamMapping, StreamSource};
use crate::stream::{Page, Position, Stream};

/// Counts one shard (or a mapping not yet listed) in [`Activity::shards_behind`] while it is
/// behind; stops counting it when dropped.
pub(super) struct Behind {
    activity: Arc<Activity>,
    behind: bool,
}

impl Behind {
    pub(super) fn new(activity: &Arc<Activity>) -> Behind {
        activity.shards_behind.fetch_add(1, Ordering::SeqCst);
        Behind::adopt(activity)
    }

    /// Take over a count someone else added.
    pub(super) fn adopt(activity: &Arc<Activity>) -> Behind {
        Behind {
            activity: activity.clone(),
            behind: true,
        }
    }

    pub(super) fn set(&mut self, behind: bool) {
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
pub(super) enum ShardEnd {
    /// Closed and read to its end: its children may start.
    Drained,
    /// The runner stopped.
    Stopped,
}

/// What one read left to do.
enum Next {
    /// Hand the buffer's first batch to the function.
    Process,
    /// Read again.
    Read,
    /// The shard is closed and read to its end.
    Drained,
    /// The runner stopped.
    Stop,
}

/// One shard of a mapping, read from `start`.
pub(super) struct ShardReader {
    pub(super) mapping: Arc<StreamMapping>,
    pub(super) shard_id: String,
    pub(super) start: Position,
    pub(super) pool: Arc<FunctionPool>,
    pub(super) ctx: Context,
    pub(super) stop: watch::Receiver<bool>,
    /// Shards the mapping's last listing showed closed.
    pub(super) closed: Arc<Mutex<BTreeSet<String>>>,
    /// The stream's identity, which its checkpoints are saved under.
    pub(super) identity: String,
    /// The tumbling window open when the shard's checkpoint was saved.
    pub(super) window: Option<OpenWindow>,
    pub(super) behind: Behind,
}

/// Where reading has got to.
struct Cursor {
    stream: Stream,
    iterator: String,
    /// The last sequence number read: after an error, reading resumes right after it.
    last_read: Option<String>,
    read_errors: u32,
    /// A shard's end may come in the same answer as its last records (AWS's and LocalStack's
    /// closed shards do): the iterator is spent then, and reading it again would give those
    /// records again, so the rest of the buffer is handled without reading.
    ended: bool,
    /// DynamoDB Streams has no AT_TIMESTAMP: it reads from the trim horizon and skips older.
    skip_before: Option<DateTime<Utc>>,
    /// Records read and not yet handed to the function.
    buffer: VecDeque<StreamRecord>,
    /// When the buffer's batching window opened.
    window_started: Option<Instant>,
}

impl ShardReader {
    /// Read the shard until the runner stops or the shard is closed and read to its end.
    pub(super) async fn run(mut self) -> (String, ShardEnd, Behind) {
        let end = self.read_to_end().await;
        (self.shard_id, end, self.behind)
    }

    async fn read_to_end(&mut self) -> ShardEnd {
        let stream = self.ctx.stream(&self.mapping);
        let start = self.start.clone();
        let Some(iterator) = self.iterator_with_retry(&stream, &start).await else {
            return ShardEnd::Stopped;
        };
        let mut cursor = Cursor {
            skip_before: start.skips_before(&stream),
            stream,
            iterator,
            last_read: match start {
                Position::After(after) => Some(after),
                _ => None,
            },
            read_errors: 0,
            ended: false,
            buffer: VecDeque::new(),
            window_started: None,
        };
        let mut open_window = OpenGauge::new(&self.ctx.activity, self.window.is_some());
        let capacity = self.mapping.batch_size * self.mapping.parallelization_factor;
        while !*self.stop.borrow() {
            open_window.set(self.window.is_some());
            if cursor.buffer.len() < capacity {
                match self.read(&mut cursor).await {
                    Next::Process => {}
                    Next::Read => continue,
                    Next::Drained => return ShardEnd::Drained,
                    Next::Stop => break,
                }
            }
            self.behind.set(true);
            let going_on = if self.mapping.tumbling_window.is_some() {
                self.process_window_batch(&mut cursor, &mut open_window)
                    .await
            } else {
                self.process_batch(&mut cursor).await;
                true
            };
            if !going_on {
                break;
            }
        }
        ShardEnd::Stopped
    }

    /// One `GetRecords` into the buffer, and what to do next: process a batch, or read again
    /// (the batching window is open, the shard is at its tip, a read failed and was reopened).
    async fn read(&mut self, cursor: &mut Cursor) -> Next {
        let mapping = &*self.mapping;
        let capacity = mapping.batch_size * mapping.parallelization_factor;
        let limit = (capacity - cursor.buffer.len()).clamp(1, 10_000) as i32;
        let answer = if cursor.ended {
            Ok(Page::end())
        } else {
            cursor
                .stream
                .read(&self.shard_id, &cursor.iterator, limit)
                .await
        };
        let page = match answer {
            Ok(page) => page,
            Err(err) => return self.recover(cursor, err).await,
        };
        cursor.read_errors = 0;
        tracing::debug!(shard = %self.shard_id, records = page.records.len(), buffered = cursor.buffer.len(), "GetRecords");
        let at_tip = page.at_tip();
        let ended = page.next_iterator.is_none();
        cursor.ended |= ended;
        if mapping.source == StreamSource::Kinesis {
            let oldest = page.records.first().map(|r| {
                Utc::now()
                    .signed_duration_since(r.arrival)
                    .num_milliseconds()
            });
            self.ctx
                .activity
                .iterator_ages
                .stream(&mapping.stream_name, oldest.unwrap_or(0).max(0) as u64);
        }
        if let Some(next) = page.next_iterator {
            cursor.iterator = next;
        }
        let mut records = page.records;
        if let Some(last) = records.last() {
            cursor.last_read = Some(last.sequence_number.clone());
        }
        if let Some(before) = cursor.skip_before {
            records.retain(|r| r.arrival >= before);
        }
        let got = records.len();
        cursor.buffer.extend(records);
        if got > 0 && cursor.window_started.is_none() {
            cursor.window_started = Some(Instant::now());
        }
        if cursor.buffer.is_empty() {
            return self.idle(got, at_tip, ended).await;
        }
        let waited = cursor
            .window_started
            .map(|w| w.elapsed())
            .unwrap_or_default();
        if cursor.buffer.len() < mapping.batch_size && waited < mapping.batching_window {
            // The batching window is open: gather more first.
            self.behind.set(true);
            if got == 0 {
                tokio::time::sleep(
                    self.ctx
                        .settings
                        .idle_poll
                        .min(mapping.batching_window - waited),
                )
                .await;
            }
            return Next::Read;
        }
        Next::Process
    }

    /// Nothing buffered after a read that brought `got` records: the shard is drained, a
    /// tumbling window is due to close, or it waits at its tip.
    async fn idle(&mut self, got: usize, at_tip: bool, ended: bool) -> Next {
        // A closed shard (after resharding) read to its end has nothing more to give: AWS ends
        // its iterators; moto does not, but a closed shard at its tip takes no more records.
        let is_closed = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&self.shard_id);
        let drained = ended || (is_closed && got == 0 && at_tip);
        // A window closes when its shard ends, or when the shard has waited at its tip past the
        // window's end.
        if let (Some(open), Some(length)) = (&self.window, self.mapping.tumbling_window) {
            if drained || (at_tip && window::expired(open, length, self.ctx.settings.window_grace))
            {
                return match self.close_window().await {
                    true => Next::Read,
                    false => Next::Stop,
                };
            }
        }
        if drained {
            return Next::Drained;
        }
        self.behind.set(!at_tip);
        tokio::time::sleep(self.ctx.settings.idle_poll).await;
        Next::Read
    }

    /// A failed read: wait, then reopen the shard right after the last record read (the
    /// iterator may have expired).
    async fn recover(&mut self, cursor: &mut Cursor, err: anyhow::Error) -> Next {
        let label = self.pool.spec().label();
        self.ctx
            .logs
            .note(label, &format!("GetRecords on {}: {err:#}", self.shard_id));
        self.behind.set(true);
        let delay = backoff(cursor.read_errors, self.ctx.settings.max_retry_delay * 5);
        if !pause(delay, &self.stop).await {
            return Next::Stop;
        }
        cursor.read_errors += 1;
        let resume = match &cursor.last_read {
            Some(after) => Position::After(after.clone()),
            None => self.start.clone(),
        };
        match self.iterator_with_retry(&cursor.stream, &resume).await {
            Some(iterator) => {
                cursor.iterator = iterator;
                Next::Read
            }
            None => Next::Stop,
        }
    }

    /// An iterator at `position`, retried with backoff until it is had (a shard that cannot be
    /// read is not caught up); none when the runner stops first.
    async fn iterator_with_retry(&self, stream: &Stream, position: &Position) -> Option<String> {
        let mut attempt = 0;
        loop {
            match stream.iterator(&self.shard_id, position).await {
                Ok(iterator) => return Some(iterator),
                Err(err) => {
                    self.ctx.logs.note(
                        self.pool.spec().label(),
                        &format!("GetShardIterator on {}: {err:#} (retrying)", self.shard_id),
                    );
                    let delay = backoff(attempt, self.ctx.settings.max_retry_delay * 5);
                    if !pause(delay, &self.stop).await {
                        return None;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// The buffer's first batch, in `ParallelizationFactor` lanes; then the checkpoint: every
    /// record of the batch is processed or its failure record sent, so a restart resumes after
    /// it.
    async fn process_batch(&mut self, cursor: &mut Cursor) {
        let mapping = &*self.mapping;
        let take = cursor
            .buffer
            .len()
            .min(mapping.batch_size * mapping.parallelization_factor);
        let batch: Vec<StreamRecord> = cursor.buffer.drain(..take).collect();
        cursor.window_started = (!cursor.buffer.is_empty()).then(Instant::now);
        let last = batch.last().map(|r| r.sequence_number.clone());
        process_lanes(mapping, &self.pool, &self.ctx, batch).await;
        if let Some(last) = last {
            let saved = self.ctx.checkpoints.commit(
                &mapping.logical_id,
                &self.identity,
                &self.shard_id,
                &last,
            );
            self.note_checkpoint(saved);
        }
    }

    /// The buffer's first batch of one tumbling window (a record of a later window closes the
    /// open one first); then the checkpoint with the window's state. False when the runner
    /// stopped first.
    async fn process_window_batch(
        &mut self,
        cursor: &mut Cursor,
        open_window: &mut OpenGauge,
    ) -> bool {
        let Some(length) = self.mapping.tumbling_window else {
            return true;
        };
        let start = window::window_of(&cursor.buffer[0], length, self.window.as_ref());
        if self
            .window
            .as_ref()
            .is_some_and(|open| open.start_millis != start)
            && !self.close_window().await
        {
            return false;
        }
        let mapping = &*self.mapping;
        let open = self.window.get_or_insert_with(|| OpenWindow::new(start));
        open_window.set(true);
        let take = cursor
            .buffer
            .iter()
            .take(mapping.batch_size)
            .take_while(|r| window::window_of(r, length, Some(open)) == start)
            .count()
            .max(1);
        let batch: Vec<StreamRecord> = cursor.buffer.drain(..take).collect();
        cursor.window_started = (!cursor.buffer.is_empty()).then(Instant::now);
        let last = batch.last().map(|r| r.sequence_number.clone());
        process_kinesis_batch(mapping, &self.pool, &self.ctx, batch, Some(&mut *open)).await;
        if open.state_too_big() {
            self.ctx.logs.note(
                self.pool.spec().label(),
                "the window's state is over 1 MB: the window ends early and goes on with a \
                 fresh state",
            );
            let closed = window::close(
                mapping,
                &self.pool,
                &self.ctx,
                &self.shard_id,
                open,
                true,
                &self.stop,
            )
            .await;
            if !closed {
                return false;
            }
            open.state = serde_json::json!({});
        }
        let saved = self.ctx.checkpoints.commit_window(
            &mapping.logical_id,
            &self.identity,
            &self.shard_id,
            last.as_deref(),
            self.window.clone(),
        );
        self.note_checkpoint(saved);
        true
    }

    /// The open window's final invocation, then its checkpoint cleared; false when the runner
    /// stopped first.
    async fn close_window(&mut self) -> bool {
        let Some(open) = self.window.as_ref() else {
            return true;
        };
        let mapping = &*self.mapping;
        if !window::close(
            mapping,
            &self.pool,
            &self.ctx,
            &self.shard_id,
            open,
            false,
            &self.stop,
        )
        .await
        {
            return false;
        }
        self.window = None;
        let saved = self.ctx.checkpoints.commit_window(
            &mapping.logical_id,
            &self.identity,
            &self.shard_id,
            None,
            None,
        );
        self.note_checkpoint(saved);
        true
    }

    fn note_checkpoint(&self, saved: anyhow::Result<()>) {
        if let Err(err) = saved {
            self.ctx.logs.note(
                self.pool.spec().label(),
                &format!("cannot save a checkpoint: {err:#}"),
            );
        }
    }
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
