//! What a watch remembers of the objects it reported, so that a relist can tell which are gone.
//!
//! kube-runtime's watcher relists after an apiserver restart or a watch expiry (`Init`,
//! `InitApply` per object, `InitDone`) without saying which objects disappeared in between: the
//! objects known before and not listed again are those. Both watch loops (objects and endpoint
//! targets) keep their objects here.
//!
//! kube-runtime's reflector store would do the same bookkeeping, but it keeps every object whole
//! (its metadata and its JSON, a few KB each); this keeps one [`ObjectKey`] per object and what
//! the watch derived from it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::objects::ObjectKey;

/// The objects a watch knows, each with what the watch keeps of it (`V`), by source id.
#[derive(Debug)]
pub(crate) struct Known<V> {
    objects: HashMap<BySourceId, V>,
    /// The objects listed again since the last `Init`, while a relist runs.
    relisted: Option<HashMap<BySourceId, V>>,
}

impl<V> Default for Known<V> {
    fn default() -> Self {
        Known {
            objects: HashMap::new(),
            relisted: None,
        }
    }
}

impl<V> Known<V> {
    /// A relist starts (`Init`): the objects listed from now on replace the known ones at its end.
    pub(crate) fn start_relist(&mut self) {
        self.relisted = Some(HashMap::new());
    }

    /// An object listed by the relist (`InitApply`). The known objects stay as they were until
    /// the relist ends.
    pub(crate) fn relisted(&mut self, key: ObjectKey, value: V) {
        self.relisted
            .get_or_insert_with(HashMap::new)
            .insert(BySourceId(key), value);
    }

    /// The relist is complete (`InitDone`): the objects it listed are now the known ones. Returns
    /// the objects known before that it did not list again.
    pub(crate) fn finish_relist(&mut self) -> Vec<(ObjectKey, V)> {
        let relisted = self.relisted.take().unwrap_or_default();
        let before = std::mem::replace(&mut self.objects, relisted);
        before
            .into_iter()
            .filter(|(key, _)| !self.objects.contains_key(key))
            .map(|(key, value)| (key.0, value))
            .collect()
    }

    /// An object added or changed (`Apply`); an object of the same source id is replaced.
    pub(crate) fn insert(&mut self, key: ObjectKey, value: V) {
        self.objects.insert(BySourceId(key), value);
    }

    /// Forgets the object with the source id of `key`; returns what was kept of it, if it was
    /// known.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> Option<V> {
        self.objects.remove(key.source_id())
    }

    /// Forgets every object; returns them.
    pub(crate) fn take_all(&mut self) -> Vec<(ObjectKey, V)> {
        self.objects
            .drain()
            .map(|(key, value)| (key.0, value))
            .collect()
    }

    /// Whether the object may be taken in under a cap of `max` objects: it is known already
    /// (listed again, during a relist), or there is room for one more.
    pub(crate) fn has_room_for(&self, key: &ObjectKey, max: usize) -> bool {
        let objects = self.relisted.as_ref().unwrap_or(&self.objects);
        objects.contains_key(key.source_id()) || objects.len() < max
    }

    /// How many objects are known (before a relist in progress).
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the object is known (listed again, during a relist).
    pub(crate) fn knows(&self, key: &ObjectKey) -> bool {
        let objects = self.relisted.as_ref().unwrap_or(&self.objects);
        objects.contains_key(key.source_id())
    }

    /// What is known of `key`: from the relist in progress, else from before it.
    pub(crate) fn get(&self, key: &ObjectKey) -> Option<&V> {
        let id = key.source_id();
        self.relisted
            .as_ref()
            .and_then(|relisted| relisted.get(id))
            .or_else(|| self.objects.get(id))
    }

    /// Like [`get`](Self::get), to change it.
    pub(crate) fn get_mut(&mut self, key: &ObjectKey) -> Option<&mut V> {
        let id = key.source_id();
        if let Some(value) = self.relisted.as_mut().and_then(|r| r.get_mut(id)) {
            return Some(value);
        }
        self.objects.get_mut(id)
    }

    /// The key of every object known, counting a relist in progress.
    pub(crate) fn keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self.objects.keys().map(|k| k.0.clone()).collect();
        if let Some(relisted) = &self.relisted {
            keys.extend(
                relisted
                    .keys()
                    .filter(|k| !self.objects.contains_key(*k))
                    .map(|k| k.0.clone()),
            );
        }
        keys
    }

    /// What is kept of every known object (before a relist in progress).
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.objects.values()
    }
}

/// A key that stands for its source id: an object re-created under the same name (another uid)
/// is the same entry, as it is the same source.
#[derive(Debug)]
struct BySourceId(ObjectKey);

impl PartialEq for BySourceId {
    fn eq(&self, other: &Self) -> bool {
        self.0.source_id() == other.0.source_id()
    }
}

impl Eq for BySourceId {}

impl Hash for BySourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as the `str`'s hash, as `Borrow` requires.
        self.0.source_id().hash(state);
    }
}

impl Borrow<str> for BySourceId {
    fn borrow(&self) -> &str {
        self.0.source_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str) -> ObjectKey {
        ObjectKey::new("v1", "Pod", "apps", name, uid).unwrap()
    }

    fn names(objects: Vec<(ObjectKey, u8)>) -> Vec<(String, u8)> {
        let mut names: Vec<_> = objects
            .into_iter()
            .map(|(key, value)| (key.name().to_owned(), value))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn room_is_counted_in_the_relist_while_one_runs() {
        let mut known = Known::default();
        known.insert(pod("a", "1"), ());
        known.insert(pod("b", "2"), ());
        assert!(known.has_room_for(&pod("a", "1"), 2), "known already");
        assert!(!known.has_room_for(&pod("c", "3"), 2));
        known.start_relist();
        known.relisted(pod("c", "3"), ());
        assert!(known.has_room_for(&pod("a", "1"), 2), "the relist has room");
        known.relisted(pod("a", "1"), ());
        assert!(!known.has_room_for(&pod("b", "2"), 2), "the relist is full");
        assert!(known.knows(&pod("c", "3")));
    }

    #[test]
    fn a_relist_returns_the_objects_it_did_not_list_again() {
        let mut known = Known::default();
        known.insert(pod("a", "1"), 1);
        known.insert(pod("b", "2"), 2);
        known.insert(pod("c", "3"), 3);
        known.start_relist();
        known.relisted(pod("b", "2"), 20);
        known.relisted(pod("d", "4"), 40);
        // Until the relist ends, the objects known before are the known ones.
        assert_eq!(known.remove(&pod("c", "3")), Some(3));
        assert_eq!(known.remove(&pod("d", "4")), None);
        assert_eq!(names(known.finish_relist()), [("a".to_owned(), 1)]);
        let mut values: Vec<_> = known.values().copied().collect();
        values.sort();
        assert_eq!(values, [20, 40]);
    }

    #[test]
    fn objects_are_known_by_source_id_whatever_their_uid() {
        let mut known = Known::default();
        known.insert(pod("a", "old"), 1);
        known.insert(pod("a", "new"), 2);
        assert_eq!(known.values().count(), 1);
        assert_eq!(known.remove(&pod("a", "other")), Some(2));
        assert_eq!(known.remove(&pod("a", "new")), None);
    }

    #[test]
    fn take_all_forgets_every_object() {
        let mut known = Known::default();
        known.insert(pod("a", "1"), 1);
        known.insert(pod("b", "2"), 2);
        assert_eq!(
            names(known.take_all()),
            [("a".to_owned(), 1), ("b".to_owned(), 2)]
        );
        assert_eq!(known.values().count(), 0);
    }
}
