//! Who looked up which join key: the objects to apply again when what a key finds changes.
//!
//! This is the largest part of what joins hold (the KubeVirt example at 10k VMs: about 20,000
//! objects looking up 120,000 keys), so keys are kept as 64-bit hashes and objects as numbers.
//! Two keys sharing a hash would only make an object be applied again for nothing, which writes
//! the same series: the hashes can err only on the side of more work.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::JoinKey;
use crate::objects::ObjectKey;

/// The keys each object looked up at its last apply, and the objects that looked up each key.
#[derive(Debug, Default)]
pub(super) struct Dependencies {
    /// Each object's number.
    numbers: HashMap<ObjectKey, u32>,
    /// By number: the object and the hashes of the keys it looked up; `None` for a free number.
    objects: Vec<Option<(ObjectKey, Box<[u64]>)>>,
    /// Numbers free for the next object.
    free: Vec<u32>,
    /// The numbers of the objects that looked up each key, by the key's hash.
    by_key: HashMap<u64, Vec<u32>>,
}

impl Dependencies {
    /// Records the keys `object` looked up now, instead of those it looked up before.
    pub(super) fn record(&mut self, object: &ObjectKey, keys: &[JoinKey]) {
        let mut hashes: Vec<u64> = keys.iter().map(hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let number = match self.numbers.get(object) {
            // Applied again because what a key found changed: the same keys, nothing to do (a
            // key looked up by thousands of objects would cost a scan of them each time).
            Some(&number) if self.keys_of(number) == Some(hashes.as_slice()) => return,
            Some(&number) => {
                self.forget_keys(number);
                if hashes.is_empty() {
                    self.numbers.remove(object);
                    self.free.push(number);
                    return;
                }
                number
            }
            None if hashes.is_empty() => return,
            None => {
                let number = self.free.pop().unwrap_or_else(|| {
                    self.objects.push(None);
                    u32::try_from(self.objects.len() - 1).unwrap_or(u32::MAX)
                });
                self.numbers.insert(object.clone(), number);
                number
            }
        };
        for &hash in &hashes {
            self.by_key.entry(hash).or_default().push(number);
        }
        if let Some(slot) = self.objects.get_mut(number as usize) {
            *slot = Some((object.clone(), hashes.into_boxed_slice()));
        }
    }

    /// The objects that looked up `key` (or a key of the same hash).
    pub(super) fn of(&self, key: &JoinKey) -> impl Iterator<Item = &ObjectKey> {
        self.by_key
            .get(&hash(key))
            .into_iter()
            .flatten()
            .filter_map(|&number| Some(&self.objects.get(number as usize)?.as_ref()?.0))
    }

    /// The hashes of the keys object `number` looked up.
    fn keys_of(&self, number: u32) -> Option<&[u64]> {
        let (_, hashes) = self.objects.get(number as usize)?.as_ref()?;
        Some(hashes)
    }

    /// Takes the keys object `number` looked up out of the index.
    fn forget_keys(&mut self, number: u32) {
        let Some((_, hashes)) = self.objects.get_mut(number as usize).and_then(Option::take) else {
            return;
        };
        for hash in hashes {
            if let Some(numbers) = self.by_key.get_mut(&hash) {
                numbers.retain(|&n| n != number);
                if numbers.is_empty() {
                    self.by_key.remove(&hash);
                }
            }
        }
    }
}

/// A key's hash: the same in every run of the host (`DefaultHasher::new` has fixed keys).
fn hash(key: &JoinKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectKey {
        ObjectKey::new("v1", "Pod", "ns", name, "u").expect("a key")
    }

    fn claim(name: &str) -> JoinKey {
        JoinKey::Name(0, "ns".to_owned(), name.to_owned())
    }

    fn dependents(deps: &Dependencies, key: &JoinKey) -> Vec<String> {
        let mut names: Vec<String> = deps.of(key).map(|k| k.name().to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn an_object_depends_on_the_keys_it_looked_up_last() {
        let mut deps = Dependencies::default();
        deps.record(&object("a"), &[claim("c1"), claim("c2"), claim("c1")]);
        deps.record(&object("b"), &[claim("c1")]);
        assert_eq!(dependents(&deps, &claim("c1")), ["a", "b"]);
        // The same keys again change nothing.
        deps.record(&object("b"), &[claim("c1")]);
        assert_eq!(dependents(&deps, &claim("c1")), ["a", "b"]);
        assert_eq!(dependents(&deps, &claim("c2")), ["a"]);
        // A new apply replaces what it looked up.
        deps.record(&object("a"), &[claim("c3")]);
        assert_eq!(dependents(&deps, &claim("c1")), ["b"]);
        assert!(dependents(&deps, &claim("c2")).is_empty());
        assert_eq!(dependents(&deps, &claim("c3")), ["a"]);
        // Looking up nothing (or being removed) frees the object's number for the next one.
        deps.record(&object("a"), &[]);
        assert!(dependents(&deps, &claim("c3")).is_empty());
        deps.record(&object("c"), &[claim("c2")]);
        assert_eq!(deps.objects.len(), 2);
        assert_eq!(dependents(&deps, &claim("c2")), ["c"]);
        deps.record(&object("b"), &[]);
        deps.record(&object("c"), &[]);
        assert!(deps.by_key.is_empty() && deps.numbers.is_empty());
    }
}
