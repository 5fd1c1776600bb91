//! Sharding by object uid, as kube-state-metrics does: N replicas each keep the objects whose uid
//! hashes to their shard (jump consistent hash of the uid's FNV-64a), and together they cover every
//! object exactly once.

use periscope_plugin_api::hash::fnv1a_64;

/// Which share of the objects this instance keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl Shard {
    /// One instance keeping everything.
    pub const ALL: Shard = Shard { index: 0, total: 1 };

    /// Shard `index` of `total`; `None` unless `index < total`.
    pub fn new(index: u32, total: u32) -> Option<Shard> {
        (index < total).then_some(Shard { index, total })
    }

    /// Whether this instance keeps the object with `uid`. Objects without a uid (offline
    /// manifests) are kept only by shard 0.
    pub fn keeps(&self, uid: &str) -> bool {
        if self.total == 1 {
            return true;
        }
        if uid.is_empty() {
            return self.index == 0;
        }
        jump_hash(fnv1a_64(uid.as_bytes()), self.total) == self.index
    }
}

/// Jump consistent hash (Lamping and Veach): the bucket of `key` among `buckets`.
fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_and_shards_match_kube_state_metrics() {
        // Reference values from Go's hash/fnv and github.com/dgryski/go-jump, the pair
        // kube-state-metrics shards with.
        assert_eq!(jump_hash(0, 1), 0);
        assert_eq!(jump_hash(1, 10), 6);
        assert_eq!(jump_hash(0xdead_beef, 100), 87);
        let owner = |uid: &str| (0..3).find(|i| Shard::new(*i, 3).is_some_and(|s| s.keeps(uid)));
        assert_eq!(owner("uid-0"), Some(1));
        assert_eq!(owner("uid-1"), Some(0));
        assert_eq!(owner("3f1c7a52-8d0e-4b7b-9a61-0c2f5e7d9b11"), Some(2));
    }

    #[test]
    fn every_uid_lands_in_exactly_one_of_the_shards() {
        let shards: Vec<Shard> = (0..3).filter_map(|i| Shard::new(i, 3)).collect();
        for i in 0..1000 {
            let uid = format!("uid-{i}");
            assert_eq!(shards.iter().filter(|s| s.keeps(&uid)).count(), 1);
        }
        assert!(Shard::new(3, 3).is_none());
    }
}
