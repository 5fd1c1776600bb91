//! Joins across objects (`[[resources.joins]]`): an entry's metrics, labels and filters read
//! fields of another object, found by a key computed from this one.
//!
//! # How a change reaches the series
//!
//! Objects of a joined kind go through [`ObjectPipeline::apply`](super::ObjectPipeline::apply)
//! like any other; there [`Joins::observe`] prunes each to the fields joins read ([`Keep`]) and
//! stores it, indexed by namespace/name, uid and the labels joins match on. An object of an
//! entry with joins computes its join keys, looks them up and carries what it found under
//! [`crate::path::JOINS`] while its metrics are read; the keys it looked up are recorded, from
//! key to object, in the same lock as the lookup, so no joined object can slip in between.
//!
//! When a joined object appears, changes (in the fields kept) or disappears, every object that
//! looked up one of its keys, old or new, is marked for recomputing, and the inputs holding
//! those objects are signalled ([`Joins::signal`]): a watch takes the keys of its kind
//! ([`ObjectPipeline::take_recompute`](super::ObjectPipeline::take_recompute)) and applies
//! those objects again; the offline input reads its files again. An object whose own key
//! changed looks up the new key when it is applied, and stops depending on the old one.
//!
//! Entries without joins pay nothing: a pipeline without joins has no [`Joins`] at all.

mod depends;
mod keep;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::watch;

pub use keep::{JoinedKind, joined_kinds};

use depends::Dependencies;

use super::keep::Keep;
use super::reader::Reader;
use super::{ObjectKey, Problems, Resource};
use crate::expr::{Expr, Input};

/// A compiled `[[resources.joins]]` entry.
#[derive(Debug)]
pub(super) struct Join {
    /// What paths (`@name`) and expressions (`joins.name`) call it.
    pub(super) name: String,
    /// The joined kind: its index in [`Joins::kinds`].
    pub(super) kind: usize,
    /// How the key is read from the object.
    pub(super) lookup: Lookup,
    /// Whether the joined kind is cluster-scoped.
    pub(super) cluster: bool,
    /// What every candidate must satisfy.
    pub(super) filter: Option<Expr>,
    /// Whether the key reads several values: the join is a map by value.
    pub(super) many: bool,
}

/// How a join's key is read from the object.
#[derive(Debug)]
pub(super) enum Lookup {
    /// By namespace (this object's by default) and name.
    Name {
        namespace: Option<Reader>,
        name: Reader,
    },
    /// By uid.
    Uid(Reader),
    /// By the value of a label, in a namespace (this object's by default).
    Label {
        label: String,
        namespace: Option<Reader>,
        value: Reader,
    },
}

/// A key an object looked up: a joined kind and what identifies the joined objects in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum JoinKey {
    /// Namespace and name.
    Name(usize, String, String),
    /// Uid.
    Uid(usize, String),
    /// Label, namespace and the label's value.
    Label(usize, String, String, String),
}

/// A joined kind as the pipeline knows it.
#[derive(Debug)]
pub(super) struct Kind {
    api_version: String,
    kind: String,
    keep: Keep,
    /// The labels joins match objects of this kind on.
    labels: Vec<String>,
    /// Whether some join finds objects of this kind by name or uid: then every object is
    /// stored, not only those carrying one of `labels`.
    by_identity: bool,
}

/// The joins of a whole pipeline: the joined kinds, the stored joined objects and who depends
/// on them.
#[derive(Debug)]
pub(super) struct Joins {
    kinds: Vec<Kind>,
    /// The kinds of entries with joins, as `(apiVersion, kind)`.
    dependents: HashSet<(String, String)>,
    state: Mutex<State>,
    signal: watch::Sender<u64>,
}

/// What changes as objects come and go.
#[derive(Debug, Default)]
struct State {
    /// One store per joined kind.
    stores: Vec<Store>,
    /// The keys each object looked up at its last apply, and who looked up each key.
    dependencies: Dependencies,
    /// Objects to apply again.
    pending: HashSet<ObjectKey>,
}

/// The stored objects of one joined kind, pruned, with their indexes.
#[derive(Debug, Default)]
struct Store {
    /// By namespace and name.
    objects: HashMap<(String, String), Stored>,
    by_uid: HashMap<String, (String, String)>,
    /// By label, namespace and value: the names, in order.
    by_label: HashMap<(String, String, String), BTreeSet<(String, String)>>,
}

/// One stored object: its pruned JSON.
#[derive(Debug)]
struct Stored {
    json: Box<[u8]>,
}

impl Joins {
    /// The joins of a pipeline whose entries declare `joins` (by entry), of the joined `kinds`.
    pub(super) fn new(kinds: &[JoinedKind], resources: &[Resource]) -> Option<Joins> {
        if kinds.is_empty() {
            return None;
        }
        let mut compiled: Vec<Kind> = kinds
            .iter()
            .map(|kind| Kind {
                api_version: kind.api_version(),
                kind: kind.kind.clone(),
                keep: kind.keep.clone(),
                labels: Vec::new(),
                by_identity: false,
            })
            .collect();
        let mut dependents = HashSet::new();
        for resource in resources.iter().filter(|r| !r.joins.is_empty()) {
            dependents.insert((resource.api_version.clone(), resource.kind.clone()));
            for join in &resource.joins {
                let kind = &mut compiled[join.kind];
                match &join.lookup {
                    Lookup::Label { label, .. } => {
                        if !kind.labels.contains(label) {
                            kind.labels.push(label.clone());
                        }
                    }
                    Lookup::Name { .. } | Lookup::Uid(_) => kind.by_identity = true,
                }
            }
        }
        let state = State {
            stores: compiled.iter().map(|_| Store::default()).collect(),
            ..State::default()
        };
        Some(Joins {
            kinds: compiled,
            dependents,
            state: Mutex::new(state),
            signal: watch::Sender::new(0),
        })
    }

    /// Tells when objects are to be applied again: the value changes each time some are.
    pub(super) fn signal(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Takes the objects to apply again among those of `api_version`/`kind` (in `namespace`
    /// when given).
    pub(super) fn take(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Vec<ObjectKey> {
        let mut state = self.lock();
        let taken: Vec<ObjectKey> = state
            .pending
            .iter()
            .filter(|key| {
                key.api_version() == api_version
                    && key.kind() == kind
                    && namespace.is_none_or(|ns| ns == key.namespace())
            })
            .cloned()
            .collect();
        for key in &taken {
            state.pending.remove(key);
        }
        taken
    }

    /// Takes every object to apply again; whether there was any.
    pub(super) fn take_any(&self) -> bool {
        let mut state = self.lock();
        let any = !state.pending.is_empty();
        state.pending.clear();
        any
    }

    /// Records an object of a joined kind (`object` is `None` when it is gone) and marks what
    /// depends on it when what joins read of it changed.
    pub(super) fn observe(&self, key: &ObjectKey, object: Option<&Value>) {
        let Some(index) = self
            .kinds
            .iter()
            .position(|k| k.api_version == key.api_version() && k.kind == key.kind())
        else {
            return;
        };
        let kind = &self.kinds[index];
        let kept = object
            .filter(|object| {
                kind.by_identity
                    || kind
                        .labels
                        .iter()
                        .any(|label| label_of(object, label).is_some())
            })
            .map(|object| kind.keep.pruned(object));
        // Held as compact JSON: a pruned claim is a few hundred bytes so, several times that
        // as a `Value`.
        let json = kept.as_ref().and_then(|kept| serde_json::to_vec(kept).ok());
        let id = (key.namespace().to_owned(), key.name().to_owned());
        let mut state = self.lock();
        let store = &mut state.stores[index];
        let old = store.objects.get(&id).map(|stored| &*stored.json);
        if old == json.as_deref() {
            return;
        }
        let mut touched = Vec::new();
        if let Some(old) = store.objects.remove(&id)
            && let Ok(old) = serde_json::from_slice::<Value>(&old.json)
        {
            touched.extend(keys_of(index, kind, &old, &id));
            store.unindex(&id, &old, &kind.labels);
        }
        if let (Some(value), Some(json)) = (kept, json) {
            touched.extend(keys_of(index, kind, &value, &id));
            store.index(&id, &value, &kind.labels);
            let json = json.into_boxed_slice();
            store.objects.insert(id, Stored { json });
        }
        let mut marked = false;
        let State {
            dependencies,
            pending,
            ..
        } = &mut *state;
        for touched in touched {
            for dependent in dependencies.of(&touched) {
                marked |= pending.insert(dependent.clone());
            }
        }
        drop(state);
        if marked {
            self.signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The object as the metrics of its entries read it: with what its joins found under
    /// [`crate::path::JOINS`], or `None` when no entry selecting it has joins (the object is
    /// read as it is). Records the keys it looked up, so that it is applied again when what
    /// they find changes. Expressions that fail are pushed to `problems`.
    pub(super) fn attach(
        &self,
        key: &ObjectKey,
        object: &Value,
        resources: &[Resource],
        problems: &mut Problems,
    ) -> Option<Value> {
        if !self
            .dependents
            .contains(&(key.api_version().to_owned(), key.kind().to_owned()))
        {
            return None;
        }
        let joins: Vec<(&Resource, &Join)> = resources
            .iter()
            .filter(|r| !r.joins.is_empty() && r.selects(key, object))
            .flat_map(|r| r.joins.iter().map(move |join| (r, join)))
            .collect();
        let mut state = self.lock();
        let key_input = Input::new(object);
        let keys: Vec<Vec<(String, JoinKey)>> = joins
            .iter()
            .map(|(resource, join)| join.keys(key.namespace(), &key_input, resource, problems))
            .collect();
        drop(key_input);
        // The candidates of each key of each join, read back from the store.
        let candidates: Vec<Vec<(&str, Vec<Value>)>> = keys
            .iter()
            .map(|keys| {
                keys.iter()
                    .map(|(value, join_key)| (value.as_str(), state.candidates(join_key)))
                    .collect()
            })
            .collect();
        // Made after the candidates: a join's `where` binds them.
        let input = Input::new(object);
        let mut found = Map::new();
        for ((resource, join), candidates) in joins.iter().zip(&candidates) {
            if found.contains_key(&join.name) {
                continue;
            }
            if join.many {
                let mut by_value = Map::new();
                for (value, candidates) in candidates {
                    if let Some(object) = join.first(candidates, &input, resource, problems) {
                        by_value.insert((*value).to_owned(), object.clone());
                    }
                }
                found.insert(join.name.clone(), Value::Object(by_value));
            } else if let Some((_, candidates)) = candidates.first()
                && let Some(object) = join.first(candidates, &input, resource, problems)
            {
                found.insert(join.name.clone(), object.clone());
            }
        }
        drop(input);
        drop(candidates);
        let looked_up: Vec<JoinKey> = keys.into_iter().flatten().map(|(_, key)| key).collect();
        state.dependencies.record(key, &looked_up);
        drop(state);
        if joins.is_empty() {
            return None;
        }
        let mut joined = object.clone();
        if let Value::Object(fields) = &mut joined {
            fields.insert(crate::path::JOINS.to_owned(), Value::Object(found));
        }
        Some(joined)
    }

    /// Forgets what a removed object looked up.
    pub(super) fn forget(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.dependencies.record(key, &[]);
        state.pending.remove(key);
    }

    /// How many joined objects are stored, and their size as compact JSON: the figures of
    /// what joins hold.
    pub(super) fn held(&self) -> (usize, usize) {
        let state = self.lock();
        let objects = state.stores.iter().flat_map(|s| s.objects.values());
        objects.fold((0, 0), |(count, bytes), stored| {
            (count + 1, bytes + stored.json.len())
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the state was locked leaves it as consistent as any single update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Join {
    /// The keys this object looks up, each with the value read for it: one at most, or one
    /// per value for a `many` join. Parts that read empty look up nothing; an expression that
    /// failed is pushed to `problems`.
    fn keys(
        &self,
        own_namespace: &str,
        input: &Input<'_>,
        resource: &Resource,
        problems: &mut Problems,
    ) -> Vec<(String, JoinKey)> {
        let metric = format!("joins.{}", self.name);
        let mut read = |reader: &Reader, many: bool| {
            let texts = if many {
                reader.texts(input, None)
            } else {
                reader.text(input, None).map(|text| vec![text])
            };
            match texts {
                Ok(mut texts) => {
                    texts.retain(|text| !text.is_empty());
                    texts
                }
                Err(failed) => {
                    problems.expression(&resource.name, &metric, failed.expr, &failed.error);
                    Vec::new()
                }
            }
        };
        let (from, namespaced) = match &self.lookup {
            Lookup::Name { namespace, .. } | Lookup::Label { namespace, .. } => {
                (namespace.as_ref(), true)
            }
            Lookup::Uid(_) => (None, false),
        };
        let namespace = match (namespaced && !self.cluster, from) {
            (false, _) => String::new(),
            (true, Some(reader)) => match read(reader, false).pop() {
                Some(namespace) => namespace,
                None => return Vec::new(),
            },
            (true, None) => own_namespace.to_owned(),
        };
        let (reader, key): (&Reader, &dyn Fn(String) -> JoinKey) = match &self.lookup {
            Lookup::Name { name, .. } => (name, &|value| {
                JoinKey::Name(self.kind, namespace.clone(), value)
            }),
            Lookup::Uid(uid) => (uid, &|value| JoinKey::Uid(self.kind, value)),
            Lookup::Label { label, value, .. } => (value, &|value| {
                JoinKey::Label(self.kind, label.clone(), namespace.clone(), value)
            }),
        };
        let mut values = read(reader, self.many);
        values.dedup();
        values
            .into_iter()
            .map(|value| (value.clone(), key(value)))
            .collect()
    }
}

impl Join {
    /// The first of `candidates` the join's `where` keeps.
    fn first<'v>(
        &self,
        candidates: &'v [Value],
        input: &Input<'v>,
        resource: &Resource,
        problems: &mut Problems,
    ) -> Option<&'v Value> {
        candidates.iter().find(|candidate| {
            let Some(filter) = &self.filter else {
                return true;
            };
            match filter.keeps_joined(input, candidate) {
                Ok(keep) => keep,
                Err(error) => {
                    let metric = format!("joins.{}.where", self.name);
                    problems.expression(&resource.name, &metric, filter, &error);
                    false
                }
            }
        })
    }
}

impl State {
    /// The stored objects under `key`, by namespace and name.
    fn candidates(&self, key: &JoinKey) -> Vec<Value> {
        let (store, ids): (&Store, Vec<&(String, String)>) = match key {
            JoinKey::Name(kind, ns, name) => {
                let store = &self.stores[*kind];
                let Some((id, _)) = store.objects.get_key_value(&(ns.clone(), name.clone())) else {
                    return Vec::new();
                };
                (store, vec![id])
            }
            JoinKey::Uid(kind, uid) => {
                let store = &self.stores[*kind];
                (store, store.by_uid.get(uid).into_iter().collect())
            }
            JoinKey::Label(kind, label, ns, value) => {
                let store = &self.stores[*kind];
                let names = store
                    .by_label
                    .get(&(label.clone(), ns.clone(), value.clone()));
                (store, names.into_iter().flatten().collect())
            }
        };
        ids.into_iter()
            .filter_map(|id| serde_json::from_slice(&store.objects.get(id)?.json).ok())
            .collect()
    }
}

impl Store {
    fn index(&mut self, id: &(String, String), value: &Value, labels: &[String]) {
        if let Some(uid) = value.pointer("/metadata/uid").and_then(Value::as_str) {
            self.by_uid.insert(uid.to_owned(), id.clone());
        }
        for label in labels {
            if let Some(text) = label_of(value, label) {
                let key = (label.clone(), id.0.clone(), text.to_owned());
                self.by_label.entry(key).or_default().insert(id.clone());
            }
        }
    }

    fn unindex(&mut self, id: &(String, String), value: &Value, labels: &[String]) {
        if let Some(uid) = value.pointer("/metadata/uid").and_then(Value::as_str)
            && self.by_uid.get(uid) == Some(id)
        {
            self.by_uid.remove(uid);
        }
        for label in labels {
            if let Some(text) = label_of(value, label) {
                let key = (label.clone(), id.0.clone(), text.to_owned());
                if let Some(names) = self.by_label.get_mut(&key) {
                    names.remove(id);
                    if names.is_empty() {
                        self.by_label.remove(&key);
                    }
                }
            }
        }
    }
}

/// Every key under which a stored object of `kind` (the `index`th) is found.
fn keys_of(index: usize, kind: &Kind, value: &Value, id: &(String, String)) -> Vec<JoinKey> {
    let mut keys = vec![JoinKey::Name(index, id.0.clone(), id.1.clone())];
    if let Some(uid) = value.pointer("/metadata/uid").and_then(Value::as_str) {
        keys.push(JoinKey::Uid(index, uid.to_owned()));
    }
    for label in &kind.labels {
        if let Some(text) = label_of(value, label) {
            keys.push(JoinKey::Label(
                index,
                label.clone(),
                id.0.clone(),
                text.to_owned(),
            ));
        }
    }
    keys
}

/// The value of the label `label` of an object, if it has it.
fn label_of<'v>(object: &'v Value, label: &str) -> Option<&'v str> {
    object.get("metadata")?.get("labels")?.get(label)?.as_str()
}

#[cfg(test)]
mod tests;
