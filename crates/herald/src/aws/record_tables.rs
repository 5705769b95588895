//! [`RecordTables`]: records spread over several tables by key.
//!
//! A DynamoDB table takes at most 40 000 write units a second by default (on demand), and a
//! subscriber that sees every event writes one record per event — two units inside a
//! transaction — whatever else it saves. Spreading the records over several tables multiplies
//! that quota, the way shards multiply a stream's: each key always lands in the same table, so a
//! redelivery meets its record's condition as before.

use std::fmt;

/// The tables records are kept in: one, or several that share the records by key.
///
/// A key's table is chosen by a hash of the key (FNV-1a, stable across processes and releases)
/// modulo the number of tables. **The list is part of where records are**: changing its length
/// or order moves most keys to another table, where their records are not found, so an event
/// redelivered (or redriven from a DLQ) after the change could apply twice. Fix the list when the
/// stack is created, as herald's bus block does.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordTables {
    names: Vec<String>,
}

impl RecordTables {
    /// The tables named in `list`: one name, or several separated by commas (a table name cannot
    /// hold one). Blank entries are ignored.
    pub fn parse(list: &str) -> Self {
        RecordTables {
            names: list
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// The table that keeps `key`'s record.
    pub fn for_key(&self, key: &str) -> &str {
        match self.names.len() {
            0 => "",
            1 => &self.names[0],
            n => &self.names[(fnv1a(key.as_bytes()) % n as u64) as usize],
        }
    }

    /// Every table, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl fmt::Debug for RecordTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(","))
    }
}

/// 64-bit FNV-1a: small, fast, and fixed by its definition (Rust's `DefaultHasher` may change
/// between releases, and a record's table must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_takes_every_key() {
        let tables = RecordTables::parse("records");
        assert_eq!(tables.for_key("a"), "records");
        assert_eq!(tables.for_key("b"), "records");
        assert_eq!(tables.names(), ["records"]);
    }

    #[test]
    fn several_tables_share_the_keys_evenly_and_always_alike() {
        let tables = RecordTables::parse("r1, r2,r3,");
        assert_eq!(tables.names(), ["r1", "r2", "r3"]);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let key = format!("analytics#shop/orders#e-{i}");
            let table = tables.for_key(&key);
            assert_eq!(table, tables.for_key(&key), "a key keeps its table");
            counts[tables.names().iter().position(|t| t == table).unwrap()] += 1;
        }
        for count in counts {
            assert!((900..=1100).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        // Published test vectors: a key's table must never change between releases.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
