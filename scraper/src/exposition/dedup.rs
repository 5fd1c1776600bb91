//! Series already read: a sample whose metric name and label set (in any order) were seen before is
//! a duplicate. Also where a label name written twice in one sample is caught.
//!
//! Each series is hashed once (its name, plus the sum of the hashes of its label pairs, so that the
//! order of labels does not matter) with a fast word-at-a-time hash seeded at random per page, and the set keeps only the hash and where the first sample is;
//! samples with equal hashes are compared for real, so a collision costs time, never a sample.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::ParsedFamily;
use super::labels::Label;

/// No more entries in a chain.
const END: usize = usize::MAX;

/// The series read so far.
pub(super) struct SeriesSet {
    seed: u64,
    /// Hash → the first entry with that hash.
    heads: HashMap<u64, usize, BuildHasherDefault<AlreadyHashed>>,
    entries: Vec<Entry>,
    /// Label indices sorted by name, for label sets that are not already sorted.
    order: Vec<usize>,
}

/// Where a series' first sample is, and the next entry with the same hash.
struct Entry {
    family: usize,
    sample: usize,
    next: usize,
}

impl SeriesSet {
    /// An empty set with a fresh seed, room for `capacity` series.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        SeriesSet {
            seed: RandomState::new().hash_one(0x5eed_u64),
            heads: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            entries: Vec::with_capacity(capacity),
            order: Vec::new(),
        }
    }

    /// The hash of the series `name{labels}`, or the label name that `labels` has twice.
    ///
    /// Labels are hashed pair by pair and the pair hashes added up, so the order they were written
    /// in does not matter and nothing is sorted or copied.
    pub(super) fn hash<'a>(&mut self, name: &str, labels: &[Label<'a>]) -> Result<u64, &'a str> {
        if let Some(label) = self.repeated_name(labels) {
            return Err(label);
        }
        let mut hash = hash_bytes(self.seed, name.as_bytes(), &[]);
        for (label, value) in labels {
            hash = hash.wrapping_add(hash_bytes(self.seed, label.as_bytes(), value.as_bytes()));
        }
        Ok(hash)
    }

    /// A label name that `labels` has twice.
    fn repeated_name<'a>(&mut self, labels: &[Label<'a>]) -> Option<&'a str> {
        // Client libraries sort labels, but for `le` and `quantile`, which they put last.
        let sorted = labels.windows(2).all(|pair| pair[0].0 < pair[1].0);
        if sorted {
            return None;
        }
        if labels.len() <= 16 {
            for (at, (label, _)) in labels.iter().enumerate() {
                if labels[at + 1..].iter().any(|(other, _)| other == label) {
                    return Some(label);
                }
            }
            return None;
        }
        self.order.clear();
        self.order.extend(0..labels.len());
        self.order.sort_unstable_by_key(|&index| labels[index].0);
        self.order
            .windows(2)
            .find(|pair| labels[pair[0]].0 == labels[pair[1]].0)
            .map(|pair| labels[pair[0]].0)
    }

    /// Records the series `name{labels}` (hashed to `hash`) as sample `sample` of family `family`,
    /// unless it is already in the set: then returns `false` and records nothing.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        name: &str,
        labels: &[Label<'_>],
        (family, sample): (usize, usize),
        families: &[ParsedFamily<'_>],
    ) -> bool {
        let head = self.heads.get(&hash).copied().unwrap_or(END);
        let mut at = head;
        while let Some(entry) = self.entries.get(at) {
            let seen = families
                .get(entry.family)
                .and_then(|f| f.samples.get(entry.sample).map(|s| (f, s)));
            if let Some((seen_family, seen_sample)) = seen
                && same_name(name, seen_family, seen_sample.suffix.as_str())
                && same_labels(labels, &seen_sample.labels)
            {
                return false;
            }
            at = entry.next;
        }
        self.entries.push(Entry {
            family,
            sample,
            next: head,
        });
        self.heads.insert(hash, self.entries.len() - 1);
        true
    }
}

/// Whether `name` is `family.name` followed by `suffix`.
fn same_name(name: &str, family: &ParsedFamily<'_>, suffix: &str) -> bool {
    name.len() == family.name.len() + suffix.len()
        && name.starts_with(family.name)
        && name.ends_with(suffix)
}

/// Whether two label sets, each without repeated names, hold the same pairs.
fn same_labels(a: &[Label<'_>], b: &[Label<'_>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(name, value)| b.iter().any(|(n, v)| n == name && v == value))
}

/// A word-at-a-time multiplicative hash (in the manner of FxHash) of two strings, with a strong
/// finaliser.
fn hash_bytes(seed: u64, first: &[u8], second: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seed;
    for bytes in [first, second] {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        // The tail, with the length in its last byte so that `ab`,`c` and `a`,`bc` differ.
        let tail = chunks.remainder();
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        word[7] ^= bytes.len() as u8;
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    // The murmur3 finaliser, so that every bit reaches the low bits the table indexes with and
    // the high bits it tags with.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hasher of a table whose keys are hashes already.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
