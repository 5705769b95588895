//! One shard read page by page up to where it ends now.

use anyhow::Result;

use super::{Position, Record, Stream};

/// Reads one shard from a [`Position`] to its tip (a page with no records at the tip) or, for a
/// closed shard, to its end: what a one-off read — a replay, a redrive — wants. Empty pages in
/// the middle of a shard (Kinesis answers them) are read through.
pub struct ToTip<'a> {
    stream: &'a Stream,
    shard: String,
    iterator: Option<String>,
}

impl<'a> ToTip<'a> {
    /// Open `shard` of `stream` at `from`.
    pub async fn open(stream: &'a Stream, shard: &str, from: &Position) -> Result<ToTip<'a>> {
        Ok(ToTip {
            stream,
            shard: shard.to_string(),
            iterator: Some(stream.iterator(shard, from).await?),
        })
    }

    /// The next records (at most `limit`, none empty), or `None` once the shard is read to its
    /// tip or end.
    pub async fn next(&mut self, limit: i32) -> Result<Option<Vec<Record>>> {
        while let Some(iterator) = self.iterator.take() {
            let page = self.stream.read(&self.shard, &iterator, limit).await?;
            let at_tip = page.at_tip();
            // A closed shard's end may come with its last records: the iterator is spent then.
            self.iterator = page.next_iterator;
            if !page.records.is_empty() {
                return Ok(Some(page.records));
            }
            if at_tip {
                self.iterator = None;
            }
        }
        Ok(None)
    }
}
