//! A read-only map from byte-string keys, tuned for looking up values read from records (a
//! plugin's lookup tables: routes, enrichment data).

use std::collections::HashMap;

/// Tables up to this size are searched linearly: for a handful of short keys that is about
/// three times faster than hashing (measured: 5 ns against 15 ns natively for 3 keys).
const LINEAR_MAX: usize = 8;

/// Keys → values, built once from the config.
#[derive(Debug)]
pub enum Table<V> {
    /// Few entries, compared one by one.
    Small(Vec<(Box<[u8]>, V)>),
    /// Many entries, hashed.
    Large(HashMap<Box<[u8]>, V>),
}

impl<V> Table<V> {
    /// Builds the table; of duplicate keys the last wins.
    pub fn new(entries: Vec<(Box<[u8]>, V)>) -> Table<V> {
        if entries.len() <= LINEAR_MAX {
            let mut small: Vec<(Box<[u8]>, V)> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                match small.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => small.push((key, value)),
                }
            }
            Table::Small(small)
        } else {
            Table::Large(entries.into_iter().collect())
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        match self {
            Table::Small(entries) => entries.iter().find(|(k, _)| **k == *key).map(|(_, v)| v),
            Table::Large(map) => map.get(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    fn table(n: usize) -> Table<usize> {
        Table::new(
            (0..n)
                .map(|i| (format!("k{i}").into_bytes().into(), i))
                .collect(),
        )
    }

    #[test]
    fn small_and_large_agree() {
        for n in [0, 1, 8, 9, 100] {
            let t = table(n);
            assert_eq!(matches!(t, Table::Small(_)), n <= 8);
            for i in 0..n {
                assert_eq!(t.get(format!("k{i}").as_bytes()), Some(&i));
            }
            assert_eq!(t.get(b"k"), None);
            assert_eq!(t.get(format!("k{n}").as_bytes()), None);
        }
        let dup = Table::new(vec![(b"a".to_vec().into(), 1), (b"a".to_vec().into(), 2)]);
        assert_eq!(dup.get(b"a"), Some(&2));
    }
}
