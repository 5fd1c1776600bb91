//! FNV-1a (64 bit): a small, fast, stable hash of bytes, for choosing a slot, a shard or an offset.
//!
//! Stable means the same bytes hash the same in every build and process, which a
//! [`std::hash::Hasher`] from the standard library does not promise. Not for anything an attacker
//! may choose to collide.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes`, the same as Go's `hash/fnv.New64a`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        // Go's hash/fnv, as kube-state-metrics shards with it.
        assert_eq!(fnv1a_64(b"uid-0"), 9_974_082_451_890_147_472);
    }
}
