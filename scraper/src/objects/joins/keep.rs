//! What of a joined object is kept: the fields joins read, found from the config text.

use std::collections::BTreeMap;

use crate::config::{JoinConfig, ResourceConfig};
use crate::expr::{ANY_FIELD, Expr, JOINED, JOINS, Scope};
use crate::objects::keep::Keep;
use crate::path::Path;

/// A kind some join reads, and what its watch needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedKind {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// The fields joins read, the key fields included.
    pub keep: Keep,
    /// The label every join of the kind matches on, when they all match on one label: its
    /// watch needs only the objects that carry it.
    pub label: Option<String>,
}

impl JoinedKind {
    /// `group/version`, or the version alone for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every kind the joins of `resources` read, in the order first named, each with the fields
/// read of it. Paths and expressions that do not parse are left out (compiling reports them).
pub fn joined_kinds(resources: &[ResourceConfig]) -> Vec<JoinedKind> {
    let mut kinds: Vec<JoinedKind> = Vec::new();
    // Whether some join of the kind matches on something other than one label.
    let mut any_match: Vec<bool> = Vec::new();
    for resource in resources {
        // The joins of this entry: name → index in `kinds`, and whether it is a `many` join.
        let mut of_entry: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
        for join in &resource.joins {
            let index = kinds
                .iter()
                .position(|k| {
                    k.group == join.group && k.version == join.version && k.kind == join.kind
                })
                .unwrap_or_else(|| {
                    kinds.push(JoinedKind {
                        group: join.group.clone(),
                        version: join.version.clone(),
                        kind: join.kind.clone(),
                        keep: Keep::default(),
                        label: None,
                    });
                    any_match.push(false);
                    kinds.len() - 1
                });
            of_entry.insert(join.name.get_ref(), (index, join.many));
            let kind = &mut kinds[index];
            kind.keep.add(&["apiVersion"]);
            kind.keep.add(&["kind"]);
            for field in ["name", "namespace", "uid"] {
                kind.keep.add(&["metadata", field]);
            }
            match (&join.label, label_only(join)) {
                (Some(label), true) => {
                    kind.keep.add(&["metadata", "labels", label.get_ref()]);
                    match &kind.label {
                        None if !any_match[index] => kind.label = Some(label.get_ref().clone()),
                        Some(same) if same == label.get_ref() => {}
                        _ => {
                            kind.label = None;
                            any_match[index] = true;
                        }
                    }
                }
                _ => {
                    kind.label = None;
                    any_match[index] = true;
                }
            }
            if let Some(filter) = &join.filter
                && let Ok(expr) = Expr::compile(filter.get_ref(), Scope::Joined)
            {
                kind.keep.add_reads(expr.field_reads(JOINED));
            }
        }
        if of_entry.is_empty() {
            continue;
        }
        let read = |kinds: &mut Vec<JoinedKind>, name: &str, fields: &[&str]| {
            if let Some(&(index, many)) = of_entry.get(name) {
                // A `many` join is a map by key value: what is read of an object starts after it.
                let fields = match (many, fields.split_first()) {
                    (true, Some((_, rest))) => rest,
                    (true, None) => &[],
                    (false, _) => fields,
                };
                kinds[index].keep.add(fields);
            }
        };
        for (_, text) in resource.paths() {
            if let Ok(path) = Path::parse(text.get_ref())
                && let Some((name, fields)) = path.join()
            {
                read(&mut kinds, name, &fields);
            }
        }
        for (_, text) in resource.expressions() {
            let Ok(expr) = Expr::compile(text.get_ref(), Scope::Item) else {
                continue;
            };
            for (fields, presence) in expr.field_reads(JOINS) {
                match fields.split_first() {
                    // `has(joins.x)`: whether the join found an object, which its key shows;
                    // `k in joins.x` of a `many` join: whether it found one for `k`.
                    Some(_) if presence && fields.len() == 1 => {}
                    Some((name, rest))
                        if presence
                            && rest == [ANY_FIELD]
                            && of_entry.get(name.as_str()).is_some_and(|(_, many)| *many) => {}
                    Some((name, rest)) => {
                        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                        read(&mut kinds, name, &rest);
                    }
                    // `joins` read whole: every joined object of the entry, whole.
                    None => {
                        for &(index, _) in of_entry.values() {
                            kinds[index].keep.add::<&str>(&[]);
                        }
                    }
                }
            }
        }
    }
    kinds
}

/// Whether the join matches on a label (and a `where`) only.
fn label_only(join: &JoinConfig) -> bool {
    join.label.is_some() && join.name_from.is_none() && join.uid_from.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_resources as resources;

    #[test]
    fn the_fields_joins_read_come_from_paths_expressions_and_filters() {
        let config = resources(
            r#"[[resources]]
version = "v1"
kind = "Pod"
labels = { mode = "@claim.spec.volumeMode", size = { expr = "joins.claim.spec.resources.requests['storage']" } }
[[resources.joins]]
name = "claim"
version = "v1"
kind = "PersistentVolumeClaim"
name_from = "spec.volumes[0].persistentVolumeClaim.claimName"
[[resources.joins]]
name = "owner"
version = "v1"
kind = "Pod"
label = "owner"
label_from = "metadata.uid"
where = "joined.status.phase == 'Running'"
[[resources.metrics]]
name = "x"
type = "gauge"
expr = "has(joins.owner) ? 1 : 0"
"#,
        );
        let kinds = joined_kinds(&config);
        assert_eq!(kinds.len(), 2);
        let mut claim = Keep::default();
        for path in [
            &["apiVersion"][..],
            &["kind"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "uid"],
            &["spec", "volumeMode"],
            &["spec", "resources", "requests", "storage"],
        ] {
            claim.add(path);
        }
        assert_eq!(kinds[0].keep, claim);
        assert_eq!(kinds[0].label, None);
        // `has(joins.owner)` reads whether there is one, its phase is read by the filter.
        let mut owner = Keep::default();
        for path in [
            &["apiVersion"][..],
            &["kind"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "uid"],
            &["metadata", "labels", "owner"],
            &["status", "phase"],
        ] {
            owner.add(path);
        }
        assert_eq!(kinds[1].keep, owner);
        assert_eq!(kinds[1].label.as_deref(), Some("owner"));
        assert_eq!(kinds[1].api_version(), "v1");
    }

    #[test]
    fn a_kind_joined_by_name_and_by_label_gets_no_label_selector() {
        let config = resources(
            r#"[[resources]]
version = "v1"
kind = "Pod"
[[resources.joins]]
name = "a"
version = "v1"
kind = "ConfigMap"
label = "x"
label_from = "metadata.name"
[[resources.joins]]
name = "b"
version = "v1"
kind = "ConfigMap"
name_from = "metadata.name"
[[resources.metrics]]
name = "x"
type = "info"
"#,
        );
        let kinds = joined_kinds(&config);
        assert_eq!(kinds.len(), 1);
        assert_eq!(kinds[0].label, None);
        assert!(!kinds[0].keep.is_whole());
    }
}
