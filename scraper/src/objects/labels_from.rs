//! `labels_from`: a whole map of an object (`metadata.labels`, `metadata.annotations`, a CRD's
//! own map) made labels, one per key, as kube-state-metrics makes `kube_pod_labels`.
//!
//! # Names
//!
//! A key becomes a label name as in kube-state-metrics (`internal/store/utils.go`: its
//! `sanitizeLabelName`, then `toSnakeCase`): every character other than an ASCII letter, digit
//! or `_` becomes one `_`; then an `_` is put between a lower-case letter or digit and an
//! upper-case letter right after it (matches taken left to right, not overlapping, as Go's
//! `ReplaceAllString` of `([a-z0-9])([A-Z])` does); then the whole is lower-cased. The prefix
//! goes in front. With `names = "sanitized"` only the first step is taken, case kept, as
//! kube-state-metrics' CustomResourceState names the labels of a `"*"` key. kube-state-metrics
//! puts `label_` in front of `kube_pod_labels`, so a key starting with a digit never makes an
//! invalid name there; here the prefix is empty or starts with a letter, and a key whose name
//! would still not start with a letter or `_` is left out and counted.
//!
//! # Collisions
//!
//! Two keys can give one name (`app.kubernetes.io/name` and `app_kubernetes_io/name`). Keys are
//! taken in byte order of the original key and the first one keeps the name: the later ones are
//! left out and counted (`periscope_label_collisions_total{resource,metric}`). A name that a
//! label of the entry or of the metric (or a stateset's state label) already carries is left out
//! and counted too: labels written in the config win. kube-state-metrics instead renames every
//! colliding key `…_conflictN`; a name that moves when a new key appears breaks queries, so here
//! a name stays with the key that had it first in order.
//!
//! # Merged maps
//!
//! `merge` names further maps, read like the first and laid over it in order: a key in a later
//! map takes the value there (a VirtualMachine's labels and its template's, the template winning,
//! as KubeVirt's `kubevirt_vm_labels`). A path reaching nothing adds nothing.
//!
//! # Allow list
//!
//! Each pattern of `allow` must match a whole original key (it is anchored, as
//! kube-state-metrics' allow lists are); without `allow` every key is taken.

use std::collections::BTreeMap;

use regex::RegexSet;
use serde_json::Value;

use super::extract::{Single, single};
use crate::config::LabelNames;
use crate::path::Path;
use crate::value;

/// The prefix when none is configured: kube-state-metrics' `label_`.
pub const DEFAULT_PREFIX: &str = "label_";

/// A compiled `labels_from`.
#[derive(Debug)]
pub(super) struct LabelsFrom {
    /// The map's path, then the paths of the maps merged over it (a later key wins).
    pub(super) paths: Vec<Path>,
    pub(super) prefix: String,
    /// How keys become names.
    pub(super) names: LabelNames,
    /// The anchored allow patterns; `None` takes every key.
    pub(super) allow: Option<RegexSet>,
    /// Label names the samples already carry: a key giving one of them is left out.
    pub(super) taken: Vec<String>,
}

/// The labels read from a map, and how many keys were left out because their name was taken.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct MapLabels {
    /// Label names and values, in name order.
    pub(super) labels: Vec<(String, String)>,
    /// Keys whose name another key (earlier in order) or a configured label already had.
    pub(super) collisions: u64,
}

/// Why a `labels_from` path gave no labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum MapError {
    /// The path reached something other than a map.
    #[error("reached {0}, not a map")]
    NotAMap(String),
    /// The path reached several values.
    #[error("reached {0} values; a `labels_from` path must reach one map")]
    TooMany(usize),
}

impl LabelsFrom {
    /// The labels of the maps at the paths from `item` of `object`, merged: none when no path
    /// reaches anything. An error names the path that reached something other than one map.
    pub(super) fn read(
        &self,
        object: &Value,
        item: &Value,
    ) -> Result<MapLabels, (&Path, MapError)> {
        // Sorted by key, so the first key to claim a name is always the same one (a map from
        // JSON may keep its keys in document order); a later map's value replaces an earlier's.
        let mut merged: BTreeMap<&String, &Value> = BTreeMap::new();
        for path in &self.paths {
            let map = match single(path, object, item) {
                Single::None => continue,
                Single::One(Value::Object(map)) => map,
                Single::One(other) => return Err((path, MapError::NotAMap(other.to_string()))),
                Single::Many(count) => return Err((path, MapError::TooMany(count))),
            };
            merged.extend(
                map.iter()
                    .filter(|(key, _)| self.allow.as_ref().is_none_or(|a| a.is_match(key))),
            );
        }
        let keys = merged;
        let mut out = MapLabels::default();
        let mut names: Vec<(String, String)> = Vec::with_capacity(keys.len());
        for (key, value) in keys {
            let mut name = self.prefix.clone();
            match self.names {
                LabelNames::SnakeCase => sanitize_into(key, &mut name),
                LabelNames::Sanitized => name.extend(key.chars().map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })),
            }
            // Only an empty prefix lets a key give a name that is no label name.
            if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                out.collisions += 1;
                continue;
            }
            names.push((name, value::label_text(value)));
        }
        // Stable: among equal names the first key (in byte order) stays first.
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in names {
            let seen = out.labels.last().is_some_and(|(last, _)| *last == name);
            if seen || self.taken.contains(&name) {
                out.collisions += 1;
            } else {
                out.labels.push((name, value));
            }
        }
        Ok(out)
    }
}

/// Appends `key` made a label name body, as kube-state-metrics does (see the module docs).
pub(super) fn sanitize_into(key: &str, out: &mut String) {
    let sanitized: Vec<u8> = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c as u8
            } else {
                b'_'
            }
        })
        .collect();
    let mut i = 0;
    while i < sanitized.len() {
        let c = sanitized[i];
        let next = sanitized.get(i + 1).copied();
        out.push(char::from(c.to_ascii_lowercase()));
        match next {
            Some(upper)
                if (c.is_ascii_lowercase() || c.is_ascii_digit()) && upper.is_ascii_uppercase() =>
            {
                out.push('_');
                out.push(char::from(upper.to_ascii_lowercase()));
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// The anchored form of an allow pattern: it must match the whole key.
pub(super) fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sanitized(key: &str) -> String {
        let mut out = String::new();
        sanitize_into(key, &mut out);
        out
    }

    #[test]
    fn keys_are_sanitized_as_kube_state_metrics_does() {
        for (key, name) in [
            ("app", "app"),
            ("app.kubernetes.io/name", "app_kubernetes_io_name"),
            (
                "app.kubernetes.io/managedBy",
                "app_kubernetes_io_managed_by",
            ),
            ("kubevirt.io/vmName", "kubevirt_io_vm_name"),
            ("ABc", "abc"),
            ("aBC", "a_bc"),
            ("aBcD", "a_bc_d"),
            ("v1Beta", "v1_beta"),
            ("9lives", "9lives"),
            ("é-x", "__x"),
            ("", ""),
        ] {
            assert_eq!(sanitized(key), name, "{key}");
        }
    }

    fn labels_from(allow: Option<&[&str]>, taken: &[&str]) -> LabelsFrom {
        LabelsFrom {
            paths: vec![Path::parse("metadata.labels").unwrap()],
            prefix: DEFAULT_PREFIX.to_owned(),
            names: LabelNames::SnakeCase,
            allow: allow
                .map(|patterns| RegexSet::new(patterns.iter().map(|p| anchored(p))).unwrap()),
            taken: taken.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn the_first_key_in_order_keeps_a_name_and_the_others_are_counted() {
        let object = json!({"metadata": {"labels": {
            "app_kubernetes_io/name": "second",
            "app.kubernetes.io/name": "first",
            "app-kubernetes-io-name": "third",
            "tier": "web",
        }}});
        let read = labels_from(None, &[]).read(&object, &object).unwrap();
        assert_eq!(
            read.labels,
            [
                (
                    "label_app_kubernetes_io_name".to_owned(),
                    "third".to_owned()
                ),
                ("label_tier".to_owned(), "web".to_owned()),
            ],
            "`-` sorts before `.` and `_`"
        );
        assert_eq!(read.collisions, 2);
    }

    #[test]
    fn configured_labels_win_over_map_keys() {
        let object = json!({"metadata": {"labels": {"name": "from-map", "tier": "web"}}});
        let read = labels_from(None, &["label_name"])
            .read(&object, &object)
            .unwrap();
        assert_eq!(read.labels, [("label_tier".to_owned(), "web".to_owned())]);
        assert_eq!(read.collisions, 1);
    }

    #[test]
    fn allow_patterns_match_whole_keys() {
        let object = json!({"metadata": {"labels": {
            "app.kubernetes.io/name": "web",
            "x.app.kubernetes.io/name": "no",
            "app.kubernetes.io/name-suffix": "no",
        }}});
        let from = labels_from(Some(&["app\\.kubernetes\\.io/name"]), &[]);
        let read = from.read(&object, &object).unwrap();
        assert_eq!(
            read.labels,
            [("label_app_kubernetes_io_name".to_owned(), "web".to_owned())]
        );
    }

    #[test]
    fn a_missing_map_gives_no_labels_and_a_scalar_is_an_error() {
        let from = labels_from(None, &[]);
        assert_eq!(from.read(&json!({}), &json!({})), Ok(MapLabels::default()));
        let object = json!({"metadata": {"labels": "x"}});
        assert_eq!(
            from.read(&object, &object),
            Err((&from.paths[0], MapError::NotAMap("\"x\"".to_owned())))
        );
    }

    #[test]
    fn merged_maps_are_laid_over_the_first_and_a_later_key_wins() {
        let mut from = labels_from(None, &[]);
        from.paths
            .push(Path::parse("spec.template.metadata.labels").unwrap());
        from.paths.push(Path::parse("spec.missing").unwrap());
        let object = json!({
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web-frontend", "vm": "web-1"}}}},
        });
        let read = from.read(&object, &object).unwrap();
        assert_eq!(
            read.labels,
            [
                ("label_app".to_owned(), "web-frontend".to_owned()),
                ("label_tier".to_owned(), "front".to_owned()),
                ("label_vm".to_owned(), "web-1".to_owned()),
            ]
        );
        assert_eq!(read.collisions, 0);
        // Only the template's map: its keys alone.
        let object = json!({"spec": {"template": {"metadata": {"labels": {"vm": "x"}}}}});
        let read = from.read(&object, &object).unwrap();
        assert_eq!(read.labels, [("label_vm".to_owned(), "x".to_owned())]);
        // A merged path reaching a scalar is an error naming that path.
        let object = json!({"metadata": {"labels": {}}, "spec": {"missing": 1}});
        assert_eq!(
            from.read(&object, &object),
            Err((&from.paths[2], MapError::NotAMap("1".to_owned())))
        );
    }

    #[test]
    fn non_string_values_become_label_text() {
        let object = json!({"metadata": {"labels": {"n": 3, "b": true, "z": null}}});
        let read = labels_from(None, &[]).read(&object, &object).unwrap();
        assert_eq!(
            read.labels,
            [
                ("label_b".to_owned(), "true".to_owned()),
                ("label_n".to_owned(), "3".to_owned()),
                ("label_z".to_owned(), String::new()),
            ]
        );
    }
}
