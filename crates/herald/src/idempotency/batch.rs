//! **Transactional mode for a whole batch** ([`Idempotency::run_transactional_batch`]): the
//! records and effects of a batch's events in one `TransactWriteItems` instead of one per event,
//! with their [`Delta`]s summed per item.
//!
//! What it saves: one request per batch instead of one per event, and a hot counter written once
//! per batch. What it keeps: each event still has its own record, so a redelivery of any one of
//! them, in any later batch, is still a duplicate; and everything commits or nothing does.
//!
//! When an effect's condition fails (stock would go below zero), the events whose effect it is —
//! the owner of a plain write, or every event in a summed delta, which cannot say whose part was
//! too much — are left to the single-event path ([`Idempotency::run_transactional_until`]), with
//! the later events of their aggregates (partition keys), and the rest is committed without them.
//! The caller runs what is left one by one, in order, afterwards: so an aggregate's events are
//! still applied in order. When the failed condition returned its item (DynamoDB does, with the
//! stock level), the batch first tries once more with what is left, decided against that level. When a decision fails, when contention outlasts the backoff, or on any
//! other error DynamoDB gives the whole transaction, that event and every later one are left to
//! it.
//!
//! Duplicates stay out of the transaction where they can be known beforehand, since one would
//! cancel it for every event: the batch's records are read first (one eventually consistent
//! `BatchGetItem`, [`IdempotencyConfig::look_ahead`]), and an event seen earlier in the same
//! batch is answered by that one. A record the read missed still blocks the commit: it is
//! answered from the record DynamoDB returns with the refusal and the rest committed without it.
//!
//! [`IdempotencyConfig::look_ahead`]: super::IdempotencyConfig::look_ahead

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use aws_sdk_dynamodb::types::TransactWriteItem;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::delta::{merge, Delta};
use super::error::PersistenceError;
use super::home::{self, Home};
use super::item_locks::item_key;
use super::keyed::Item;
use super::record::{now_ms, IdempotencyRecord, RecordStatus};
use super::short_items::{apply, Level};
use super::store::BatchCommitOutcome;
use super::{Conflict, Decision, Executed, Idempotency, IdempotencyError};
use crate::aws::limits::DYNAMODB_MAX_TRANSACT_ITEMS;
use crate::envelope::Envelope;

/// Decisions asked for one event: the first, and one more per delta its item's level refused.
const MAX_DECISIONS: u32 = 4;

/// One event ready to commit.
struct Ready<T> {
    /// Index into the caller's events.
    index: usize,
    /// The event's aggregate (its partition key): the unit of ordering.
    aggregate: String,
    record: IdempotencyRecord,
    /// Where the record is kept when one of `writes` holds it ([`home`]); `None`: in the
    /// idempotency table.
    home: Option<Home>,
    hash: String,
    writes: Vec<TransactWriteItem>,
    deltas: Vec<Delta>,
    /// Deltas the item's last known level could not cover, so the handler decided again as if
    /// they had failed: the transaction must prove them short (bounds, see [`summed`]).
    refused: Vec<Delta>,
    result: T,
    json: String,
}

/// What a chunk's commit shares with the rest of its pass.
struct Chunk<'a> {
    deadline: Option<SystemTime>,
    /// Aggregates with an event left to the single-event path.
    deferred: &'a mut HashSet<String>,
    /// Set when a failed condition returned its item's level.
    learned: &'a mut bool,
}

/// An event whose key came earlier in the same batch: a duplicate of that one.
struct Repeat {
    index: usize,
    /// The index of the key's first event.
    first: usize,
    key: String,
    hash: String,
    first_hash: String,
}

impl Repeat {
    /// The first event's answer, as this one's record check would give it once the first is
    /// stored; `None` (the single-event path) when the batch did not store the first.
    fn answer<T: Clone, E>(
        &self,
        settled: &BatchResults<T, E>,
    ) -> Option<Result<Executed<T>, IdempotencyError<E>>> {
        let (Executed::Ran(result) | Executed::Replayed(result)) =
            settled[self.first].as_ref()?.as_ref().ok()?;
        if !self.hash.is_empty() && !self.first_hash.is_empty() && self.hash != self.first_hash {
            return Some(Err(IdempotencyError::PayloadMismatch {
                key: self.key.clone(),
                stored: self.first_hash.clone(),
                received: self.hash.clone(),
            }));
        }
        Some(Ok(Executed::Replayed(result.clone())))
    }
}

/// Per event: settled by the batch, or `None` (left to the single-event path).
pub type BatchResults<T, E> = Vec<Option<Result<Executed<T>, IdempotencyError<E>>>>;

impl Idempotency {
    /// **Transactional mode, a batch at a time.** `decide` is asked once per event, as in
    /// [`Idempotency::run_transactional`]; the records and effects of as many events as fit go
    /// in one `TransactWriteItems` (at most 100 items: a larger batch takes several), deltas on
    /// one item summed into one write.
    ///
    /// Returns one entry per event: the event's result when the batch settled it (committed, or
    /// a duplicate), `None` when it must go through
    /// [`Idempotency::run_transactional_until`] — for that one and every later one, in order
    /// (see the module docs for when).
    pub async fn run_transactional_batch<T, E, F>(
        &self,
        events: &[&Envelope],
        deadline: Option<SystemTime>,
        mut decide: F,
    ) -> BatchResults<T, E>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(&Envelope, Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let mut settled: BatchResults<T, E> = events.iter().map(|_| None).collect();
        // A pass whose commit failed on an item's condition and learned the item's level (a
        // sold-out SKU) is followed by one more over the events it left: decided against that
        // level, they are refused in the batch and proven there, instead of going one by one
        // (two transactions each: the failing one, then the refusal).
        for _ in 0..2 {
            let pending: Vec<usize> = (0..events.len())
                .filter(|i| settled[*i].is_none())
                .collect();
            if pending.is_empty() {
                break;
            }
            let subset: Vec<&Envelope> = pending.iter().map(|i| events[*i]).collect();
            let (results, learned) = self.batch_pass(&subset, deadline, &mut decide).await;
            for (i, result) in pending.into_iter().zip(results) {
                settled[i] = result;
            }
            if !learned {
                break;
            }
        }
        settled
    }

    /// One pass of [`Idempotency::run_transactional_batch`] over `events`; `true` with the
    /// results when a failed condition taught an item's level.
    async fn batch_pass<T, E, F>(
        &self,
        events: &[&Envelope],
        deadline: Option<SystemTime>,
        decide: &mut F,
    ) -> (BatchResults<T, E>, bool)
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(&Envelope, Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let mut settled: BatchResults<T, E> = events.iter().map(|_| None).collect();
        let (ready, repeats) = self.prepare(events, decide, &mut settled);
        let ready = self.look_ahead(ready, &mut settled).await;
        // Aggregates (partition keys) with an event left to the single-event path: their later
        // events must wait for it.
        let mut deferred = HashSet::new();
        let mut learned = false;
        let mut start = 0;
        while start < ready.len() {
            let end = chunk_end(&ready, start);
            let chunk = Chunk {
                deadline,
                deferred: &mut deferred,
                learned: &mut learned,
            };
            if !self
                .commit_chunk(&ready[start..end], chunk, &mut settled)
                .await
            {
                break;
            }
            start = end;
        }
        for repeat in repeats {
            settled[repeat.index] = repeat.answer(&settled);
        }
        (settled, learned)
    }

    /// Decide each event up to the first that cannot join a batch; duplicates the cache knows
    /// are settled on the way, and an event seen earlier in the batch waits for that one's
    /// answer (a [`Repeat`]).
    fn prepare<T, E, F>(
        &self,
        events: &[&Envelope],
        decide: &mut F,
        settled: &mut BatchResults<T, E>,
    ) -> (Vec<Ready<T>>, Vec<Repeat>)
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(&Envelope, Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let mut ready = Vec::new();
        let mut repeats = Vec::new();
        // Each key's first event in the batch, with its payload hash.
        let mut firsts: HashMap<String, (usize, String)> = HashMap::new();
        // Items found short by earlier batches, at their level as this batch takes from them.
        let mut levels: HashMap<String, Option<Level>> = HashMap::new();
        let now = now_ms();
        for (index, event) in events.iter().enumerate() {
            let key = self.key_of(event);
            let hash = self.hash_of(event);
            match self.cached::<T, E>(&key, &hash) {
                Ok(Some(result)) => {
                    settled[index] = Some(Ok(Executed::Replayed(result)));
                    continue;
                }
                Err(err) => {
                    settled[index] = Some(Err(err));
                    continue;
                }
                Ok(None) => {}
            }
            // The same event twice in one batch: the second is answered by the first.
            if let Some((first, first_hash)) = firsts.get(&key) {
                repeats.push(Repeat {
                    index,
                    first: *first,
                    key,
                    hash,
                    first_hash: first_hash.clone(),
                });
                continue;
            }
            firsts.insert(key.clone(), (index, hash.clone()));
            let Ok(decision) = decide(event, None) else {
                break;
            };
            let Some((decision, refused)) =
                self.within_levels(event, decision, decide, &mut levels)
            else {
                break;
            };
            // The record, the writes, and a slot per item a refusal is proven on.
            if decision.len() + refused.len() >= DYNAMODB_MAX_TRANSACT_ITEMS {
                break;
            }
            let Ok(json) = serde_json::to_string(&decision.result) else {
                break;
            };
            let record = IdempotencyRecord {
                result: Some(json.clone()),
                ..self.record(&key, &hash, RecordStatus::Completed, now)
            };
            let mut writes = decision.writes;
            let home = home::of(&writes);
            if let Some(home) = &home {
                home::fill(&mut writes, home, &record);
            }
            ready.push(Ready {
                index,
                aggregate: event.partition_key().to_string(),
                record,
                home,
                hash,
                writes,
                deltas: decision.deltas,
                refused,
                result: decision.result,
                json,
            });
        }
        (ready, repeats)
    }

    /// `decision`, or the one the handler makes when told that a delta of it failed, for every
    /// delta an item's known level cannot cover ([`ShortItems::level`]); the levels then take
    /// what the final decision takes. Returns the decision and the deltas it was refused, or
    /// `None` when the handler fails or keeps being refused (the batch stops there).
    fn within_levels<T, E, F>(
        &self,
        event: &Envelope,
        mut decision: Decision<T>,
        decide: &mut F,
        levels: &mut HashMap<String, Option<Level>>,
    ) -> Option<(Decision<T>, Vec<Delta>)>
    where
        F: FnMut(&Envelope, Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let mut refused = Vec::new();
        let mut decisions = 1;
        loop {
            let short = decision.deltas.iter().position(|delta| {
                let item = delta.item();
                let level = levels
                    .entry(item.clone())
                    .or_insert_with(|| self.short_items.level(&item));
                level.as_ref().is_some_and(|level| delta.short_at(level))
            });
            let Some(position) = short else {
                break;
            };
            if decisions >= MAX_DECISIONS {
                return None;
            }
            refused.push(decision.deltas[position].clone());
            // As if the write had failed: the index in `Decision::effects`.
            let conflict = Conflict {
                index: decision.writes.len() + position,
            };
            decision = decide(event, Some(conflict)).ok()?;
            decisions += 1;
        }
        for delta in &decision.deltas {
            if let Some(Some(level)) = levels.get_mut(&delta.item()) {
                apply(level, delta);
            }
        }
        Some((decision, refused))
    }

    /// Read the records of `ready` before committing ([`IdempotencyConfig::look_ahead`]), and
    /// settle the duplicates found: they stay out of the transaction, which they would cancel.
    /// A record the read misses (stale, or unprocessed) still blocks the commit, as before.
    ///
    /// [`IdempotencyConfig::look_ahead`]: super::IdempotencyConfig::look_ahead
    async fn look_ahead<T, E>(
        &self,
        ready: Vec<Ready<T>>,
        settled: &mut BatchResults<T, E>,
    ) -> Vec<Ready<T>>
    where
        T: DeserializeOwned,
    {
        if !self.config.look_ahead || ready.is_empty() {
            return ready;
        }
        let found = match self.read_records(&ready).await {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(error = %err, "reading the batch's records failed; the commit will tell");
                return ready;
            }
        };
        let now = now_ms();
        ready
            .into_iter()
            .filter(|member| {
                let key = &member.record.key;
                let Some(old) = found.get(key).filter(|old| old.blocks_claim(now)) else {
                    return true;
                };
                // What the commit would have answered; anything else it settles itself.
                match self.existing::<T, E>(key, &member.hash, old) {
                    Ok(result) => settled[member.index] = Some(Ok(Executed::Replayed(result))),
                    Err(err @ IdempotencyError::PayloadMismatch { .. }) => {
                        settled[member.index] = Some(Err(err))
                    }
                    Err(_) => return true,
                }
                false
            })
            .collect()
    }

    /// The stored records of `ready`, by key: in the idempotency table, and in the items of the
    /// writes that keep them ([`home`]), in one read each.
    async fn read_records<T>(
        &self,
        ready: &[Ready<T>],
    ) -> Result<HashMap<String, IdempotencyRecord>, PersistenceError> {
        let keys: Vec<String> = ready
            .iter()
            .filter(|m| m.home.is_none())
            .map(|m| m.record.key.clone())
            .collect();
        let mut found = if keys.is_empty() {
            HashMap::new()
        } else {
            self.store.get_many(&keys).await?
        };
        let at_home: Vec<(&Ready<T>, (String, Item))> = ready
            .iter()
            .filter_map(|m| Some((m, m.home.as_ref()?)))
            .map(|(m, home)| (m, (home.table.clone(), home.key.clone())))
            .collect();
        if !at_home.is_empty() {
            let items: Vec<(String, Item)> = at_home.iter().map(|(_, at)| at.clone()).collect();
            let read = self.store.get_items(&items, false).await?;
            for ((member, _), item) in at_home.iter().zip(read) {
                let key = &member.record.key;
                if let Some(old) = item.and_then(|item| home::record_of(&item, key)) {
                    found.insert(key.clone(), old);
                }
            }
        }
        Ok(found)
    }

    /// Commit one chunk, taking duplicates out as they show up, and leaving to the single-event
    /// path the events whose effect failed its condition (with the later events of their
    /// aggregates, in `deferred`). `false`: the chunk was not settled, so it and the rest go
    /// event by event.
    async fn commit_chunk<T, E>(
        &self,
        chunk: &[Ready<T>],
        pass: Chunk<'_>,
        settled: &mut BatchResults<T, E>,
    ) -> bool
    where
        T: Serialize + DeserializeOwned + Clone,
    {
        // Events changing an item a recent batch found short (a sold-out SKU) whose level cannot
        // judge their delta go alone at once, instead of failing the whole batch again first.
        // (Those it can judge were decided against it in `prepare`.)
        let mut members: Vec<&Ready<T>> = Vec::new();
        for member in chunk {
            let short = member.deltas.iter().any(|d| {
                self.short_items
                    .is_short(&d.item())
                    .is_some_and(|level| !level.is_some_and(|level| d.judged_at(&level)))
            });
            if short || pass.deferred.contains(&member.aggregate) {
                pass.deferred.insert(member.aggregate.clone());
            } else {
                members.push(member);
            }
        }
        let mut contended = 0;
        while !members.is_empty() {
            // Records in the idempotency table; `owners[i]` is whose `records[i]` is.
            let (owners, records): (Vec<usize>, Vec<IdempotencyRecord>) = members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.home.is_none())
                .map(|(i, m)| (i, m.record.clone()))
                .unzip();
            // The chunk's deltas, summed once per attempt: the effects, the levels to keep, and
            // which events a failed condition belongs to all read them.
            let deltas = summed(&members);
            let Ok(effects) = effects_of(&members, &deltas) else {
                return false;
            };
            let held = self.item_locks.lock(&effects).await;
            let committed = self.store.commit_batch(&records, effects, now_ms()).await;
            drop(held);
            let refused = match committed {
                Ok(BatchCommitOutcome::Committed) => {
                    let writes: usize = members
                        .iter()
                        .map(|m| m.writes.len() + m.deltas.len())
                        .sum();
                    crate::aws::metrics::count("EffectWrites", writes);
                    // For cost models: the refusals proven by this commit (each an effect that
                    // failed its condition, decided again).
                    let refusals: usize = members.iter().map(|m| m.refused.len()).sum();
                    if refusals > 0 {
                        crate::aws::metrics::count("ConditionFailures", refusals);
                    }
                    for delta in &deltas {
                        self.short_items.committed(delta);
                    }
                    for member in &members {
                        self.remember(&member.record.key, &member.hash, &member.json);
                        settled[member.index] = Some(Ok(Executed::Ran(member.result.clone())));
                    }
                    return true;
                }
                Ok(BatchCommitOutcome::RecordsExist(blocked)) => {
                    let mut duplicates = HashSet::new();
                    for (i, old) in blocked {
                        let Some((i, member)) =
                            owners.get(i).and_then(|i| Some((*i, members.get(*i)?)))
                        else {
                            return false;
                        };
                        let replayed = self.replay(member, old).await;
                        // A record that cannot be replayed (a live claim, an unreadable record)
                        // fails its event: the events after it must not commit before it.
                        let stop = matches!(
                            replayed,
                            Err(ref e) if !matches!(e, IdempotencyError::PayloadMismatch { .. })
                        );
                        settled[member.index] = Some(replayed);
                        if stop {
                            return false;
                        }
                        duplicates.insert(i);
                    }
                    let mut i = 0;
                    members.retain(|_| {
                        i += 1;
                        !duplicates.contains(&(i - 1))
                    });
                    continue;
                }
                // Whose effect failed: those events go alone (the handler decides again knowing
                // which write), and so do the later events of their aggregates.
                Ok(BatchCommitOutcome::EffectFailed {
                    index: Some(index),
                    item: found,
                }) => {
                    // A write keeping a record found it there: a duplicate the read missed.
                    if let Some(owner) = home_owner(&members, index) {
                        let member = members[owner];
                        match self.home_duplicate(member, found.clone()).await {
                            Some(Ok(old)) => {
                                let replayed = self
                                    .existing::<T, E>(&member.record.key, &member.hash, &old)
                                    .map(Executed::Replayed);
                                let stop = matches!(
                                    replayed,
                                    Err(ref e) if !matches!(e, IdempotencyError::PayloadMismatch { .. })
                                );
                                settled[member.index] = Some(replayed);
                                if stop {
                                    return false;
                                }
                                members.remove(owner);
                                continue;
                            }
                            Some(Err(err)) => {
                                tracing::debug!(error = %err, "reading a record's item failed");
                                return false;
                            }
                            None => {}
                        }
                    }
                    if let Some(item) = summed_item(&members, &deltas, index) {
                        *pass.learned |= found.is_some();
                        self.short_items.mark(item, found.as_ref());
                    }
                    let culprits = touching(&members, &deltas, index);
                    if culprits.is_empty() {
                        return false;
                    }
                    let mut i = 0;
                    members.retain(|m| {
                        i += 1;
                        let out =
                            culprits.contains(&(i - 1)) || pass.deferred.contains(&m.aggregate);
                        if out {
                            pass.deferred.insert(m.aggregate.clone());
                        }
                        !out
                    });
                    continue;
                }
                Ok(BatchCommitOutcome::EffectFailed { index: None, .. }) => return false,
                Ok(BatchCommitOutcome::Collision(err)) => err,
                Err(err) if err.is_throttling() => err,
                Err(err) => {
                    tracing::warn!(error = %err, "batch commit refused; committing event by event");
                    return false;
                }
            };
            contended += 1;
            if !self.back_off(contended, pass.deadline).await {
                tracing::warn!(error = %refused, attempts = contended, "batch commit still contended");
                return false;
            }
        }
        true
    }

    /// Whether `member`'s write that keeps its record failed because the record is there: the
    /// record, from `found` (the item DynamoDB returned with the refusal) or read.
    async fn home_duplicate<T>(
        &self,
        member: &Ready<T>,
        found: Option<Item>,
    ) -> Option<Result<IdempotencyRecord, PersistenceError>> {
        let home = member.home.as_ref()?;
        let item = match found {
            Some(item) => Some(item),
            None => match self
                .store
                .get_items(&[(home.table.clone(), home.key.clone())], true)
                .await
            {
                Ok(mut items) => items.pop().flatten(),
                Err(err) => return Some(Err(err)),
            },
        };
        home::record_of(&item?, &member.record.key).map(Ok)
    }

    /// A duplicate's answer: the result its record holds (read when the store did not return it).
    async fn replay<T: DeserializeOwned, E>(
        &self,
        member: &Ready<T>,
        old: Option<IdempotencyRecord>,
    ) -> Result<Executed<T>, IdempotencyError<E>> {
        let key = &member.record.key;
        let old = match old {
            Some(old) => Some(old),
            None => self.store.get(key).await?,
        };
        match old {
            Some(old) => self
                .existing::<T, E>(key, &member.hash, &old)
                .map(Executed::Replayed),
            None => Err(PersistenceError::new(format!(
                "the record {key} blocked the transaction but cannot be read"
            ))
            .into()),
        }
    }
}

/// Where the chunk starting at `start` ends: as many events as fit in one transaction whose
/// items are all different (DynamoDB refuses two operations on one item; deltas on one item are
/// summed, so only a delta meeting another kind of write on its item splits the chunk).
fn chunk_end<T>(ready: &[Ready<T>], start: usize) -> usize {
    let keys = key_names(&ready[start..]);
    let mut slots = 0;
    let mut written = HashSet::new();
    let mut summed = HashSet::new();
    let mut end = start;
    for member in &ready[start..] {
        let items: Vec<String> = member
            .writes
            .iter()
            .filter_map(|w| item_key(w).or_else(|| put_key(w, &keys)))
            .collect();
        // A refusal is proven on its item: one more summed slot there.
        let deltas: Vec<String> = member
            .deltas
            .iter()
            .chain(&member.refused)
            .map(Delta::item)
            .collect();
        let clash = items
            .iter()
            .any(|item| written.contains(item) || summed.contains(item))
            || deltas.iter().any(|item| written.contains(item));
        // A delta on an item the chunk already changes is summed into that write: no new slot.
        let new_items: HashSet<&String> = deltas.iter().filter(|d| !summed.contains(*d)).collect();
        let record = usize::from(member.home.is_none());
        let needs = record + member.writes.len() + new_items.len();
        if end > start && (clash || slots + needs > DYNAMODB_MAX_TRANSACT_ITEMS) {
            break;
        }
        slots += needs;
        written.extend(items);
        summed.extend(deltas);
        end += 1;
    }
    end
}

/// The key attribute names of each table, as the updates, deletes, checks and deltas name them
/// (a put's item does not say which of its attributes are the key).
fn key_names<T>(ready: &[Ready<T>]) -> HashMap<String, Vec<String>> {
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    let mut note = |table: &str, key: Vec<String>| {
        let mut key = key;
        key.sort();
        names.entry(table.to_string()).or_insert(key);
    };
    for member in ready {
        for write in &member.writes {
            if let Some(u) = write.update() {
                note(u.table_name(), u.key().keys().cloned().collect());
            } else if let Some(d) = write.delete() {
                note(d.table_name(), d.key().keys().cloned().collect());
            } else if let Some(c) = write.condition_check() {
                note(c.table_name(), c.key().keys().cloned().collect());
            }
        }
        for delta in member.deltas.iter().chain(&member.refused) {
            note(delta.table(), delta.key_names());
        }
    }
    names
}

/// A put's item in [`item_key`]'s form, when its table's key names are known.
fn put_key(write: &TransactWriteItem, keys: &HashMap<String, Vec<String>>) -> Option<String> {
    let put = write.put()?;
    let names = keys.get(put.table_name())?;
    let mut parts: Vec<String> = names
        .iter()
        .map(|name| put.item().get(name).map(|v| format!("{name}={v:?}")))
        .collect::<Option<_>>()?;
    parts.sort();
    Some(format!("{}/{}", put.table_name(), parts.join(",")))
}

/// The members whose effect is the chunk's effect at `index` (in [`effects_of`]'s order): the
/// owner of a plain write, or every member changing (or refused) a summed delta's item.
fn touching<T>(members: &[&Ready<T>], deltas: &[Delta], index: usize) -> Vec<usize> {
    let writes: Vec<usize> = members
        .iter()
        .enumerate()
        .flat_map(|(i, m)| std::iter::repeat_n(i, m.writes.len()))
        .collect();
    if let Some(owner) = writes.get(index) {
        return vec![*owner];
    }
    let Some(item) = deltas.get(index - writes.len()).map(Delta::item) else {
        return Vec::new();
    };
    members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.deltas.iter().chain(&m.refused).any(|d| d.item() == item))
        .map(|(i, _)| i)
        .collect()
}

/// The member whose write at `index` of the chunk's effects keeps its record, if it is one.
fn home_owner<T>(members: &[&Ready<T>], index: usize) -> Option<usize> {
    let mut offset = 0;
    for (i, member) in members.iter().enumerate() {
        if let Some(home) = &member.home {
            if offset + home.write == index {
                return Some(i);
            }
        }
        offset += member.writes.len();
    }
    None
}

/// The item of the summed delta at `index` of the chunk's effects (`None` for a plain write).
fn summed_item<T>(members: &[&Ready<T>], deltas: &[Delta], index: usize) -> Option<String> {
    let writes: usize = members.iter().map(|m| m.writes.len()).sum();
    deltas.get(index.checked_sub(writes)?).map(Delta::item)
}

/// The chunk's deltas summed per item, in the order items first appear, with the bounds that
/// prove its refusals: a member refused `amount` of a guarded attribute after the chunk's
/// earlier members took `taken` of it was rightly refused if the item had less than
/// `-(amount + taken)` — so the item must be under that when the transaction commits, or
/// nothing does. An item with refusals and nothing to add gets a condition check.
fn summed<T>(members: &[&Ready<T>]) -> Vec<Delta> {
    let mut merged = merge(members.iter().flat_map(|m| m.deltas.iter()));
    // Every delta the chunk's earlier members apply, per item (guarded or not: a release adds
    // to what a later refusal was judged against).
    let mut earlier: HashMap<String, Vec<&Delta>> = HashMap::new();
    for member in members {
        for refusal in &member.refused {
            let item = refusal.item();
            let position = match merged.iter().position(|d| d.item() == item) {
                Some(position) => position,
                None => {
                    merged.push(refusal.check_only());
                    merged.len() - 1
                }
            };
            for attribute in refusal.guarded() {
                let before = earlier.get(&item).map_or(0, |deltas| {
                    deltas
                        .iter()
                        .fold(0i64, |sum, d| sum.saturating_add(d.amount(attribute)))
                });
                let bound = refusal
                    .amount(attribute)
                    .saturating_add(before)
                    .saturating_neg();
                merged[position].bound_below(attribute, bound);
            }
        }
        for delta in &member.deltas {
            earlier.entry(delta.item()).or_default().push(delta);
        }
    }
    merged
}

/// The chunk's effects: every write as it is, then its `deltas` ([`summed`]).
fn effects_of<T>(
    members: &[&Ready<T>],
    deltas: &[Delta],
) -> Result<Vec<TransactWriteItem>, PersistenceError> {
    let mut effects: Vec<TransactWriteItem> = members
        .iter()
        .flat_map(|m| m.writes.iter().cloned())
        .collect();
    for delta in deltas {
        effects.push(delta.to_write()?);
    }
    Ok(effects)
}

#[cfg(test)]
mod tests;
