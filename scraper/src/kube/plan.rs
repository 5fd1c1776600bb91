//! Watch planning: which watches the `[[resources]]` entries and their joins need.

use std::collections::BTreeMap;

use crate::config::ResourceConfig;
use crate::objects::joins::joined_kinds;

/// What one watch covers: a kind, optionally one namespace, and server-side selectors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchTarget {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// The namespace, or `None` for all.
    pub namespace: Option<String>,
    /// Label selector passed to the apiserver.
    pub label_selector: Option<String>,
    /// Field selector passed to the apiserver.
    pub field_selector: Option<String>,
    /// The most objects the watch takes in: the smallest `max_objects` of the kind's entries.
    pub max_objects: Option<usize>,
    /// Whether only joins read the kind (no entry watches it): every shard holds its objects,
    /// since any of them may hold an object that joins one.
    pub joins_only: bool,
}

impl WatchTarget {
    /// The input's name in logs and self-metrics: `kubernetes:kubevirt.io/v1/VirtualMachineInstance`
    /// (with `@namespace` when restricted).
    pub fn input_name(&self) -> String {
        let api_version = self.api_version();
        match &self.namespace {
            Some(ns) => format!("kubernetes:{api_version}/{}@{ns}", self.kind),
            None => format!("kubernetes:{api_version}/{}", self.kind),
        }
    }

    /// The watched `apiVersion`: `group/version`, or the version alone for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What one entry, or the joins of one kind, want watched.
struct Want {
    namespaces: Vec<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    max_objects: Option<usize>,
    /// Whether it is the joins'.
    joins: bool,
}

/// The watches needed for `resources`: one per kind, split per namespace when every entry of that
/// kind names its namespaces, with selectors passed to the apiserver when every entry of that kind
/// agrees on them (otherwise the pipeline filters on its side).
///
/// A kind that joins read (`[[resources.joins]]`) is watched in every namespace; when all its
/// joins match on one label, only the objects carrying it (`label` as the selector). With no
/// entry of its own, every shard watches it ([`WatchTarget::joins_only`]); with one, it shares
/// that entry's watch, whose selectors then apply only if they are the same. What a watch holds
/// of each object is the pipeline's to say ([`crate::objects::ObjectPipeline::reads`]).
pub fn watch_targets(resources: &[ResourceConfig]) -> Vec<WatchTarget> {
    let mut by_kind: BTreeMap<(String, String, String), Vec<Want>> = BTreeMap::new();
    for r in resources {
        by_kind
            .entry((r.group.clone(), r.version.clone(), r.kind.clone()))
            .or_default()
            .push(Want {
                namespaces: r.namespaces.clone(),
                label_selector: r.label_selector.as_ref().map(|s| s.get_ref().clone()),
                field_selector: r.field_selector.as_ref().map(|s| s.get_ref().clone()),
                max_objects: r
                    .max_objects
                    .as_ref()
                    .map(|max| usize::try_from(*max.get_ref()).unwrap_or(usize::MAX)),
                joins: false,
            });
    }
    for joined in joined_kinds(resources) {
        by_kind
            .entry((joined.group, joined.version, joined.kind))
            .or_default()
            .push(Want {
                namespaces: Vec::new(),
                label_selector: joined.label,
                field_selector: None,
                max_objects: None,
                joins: true,
            });
    }
    let mut targets = Vec::new();
    for ((group, version, kind), wants) in by_kind {
        let selectors = |w: &Want| (w.label_selector.clone(), w.field_selector.clone());
        let first = selectors(&wants[0]);
        let (label_selector, field_selector) = if wants.iter().all(|w| selectors(w) == first) {
            first
        } else {
            (None, None)
        };
        let max_objects = wants.iter().filter_map(|w| w.max_objects).min();
        let joins_only = wants.iter().all(|w| w.joins);
        let namespaces: Vec<Option<String>> = if wants.iter().all(|w| !w.namespaces.is_empty()) {
            let mut all: Vec<String> = wants.iter().flat_map(|w| w.namespaces.clone()).collect();
            all.sort();
            all.dedup();
            all.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for namespace in namespaces {
            targets.push(WatchTarget {
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                namespace,
                label_selector: label_selector.clone(),
                field_selector: field_selector.clone(),
                max_objects,
                joins_only,
            });
        }
    }
    targets
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::config::test_resources as resources;

    #[test]
    fn watch_targets_group_entries_by_kind_and_split_namespaces() {
        let config = resources(
            "[[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachine\"\nnamespaces = [\"b\", \"a\"]\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n\
             [[resources]]\nversion = \"v1\"\nkind = \"Node\"\nlabel_selector = \"role=worker\"\n\
             [[resources.metrics]]\nname = \"y\"\ntype = \"info\"\n",
        );
        let targets = watch_targets(&config);
        let names: Vec<_> = targets.iter().map(WatchTarget::input_name).collect();
        assert_eq!(
            names,
            [
                "kubernetes:v1/Node",
                "kubernetes:kubevirt.io/v1/VirtualMachine@a",
                "kubernetes:kubevirt.io/v1/VirtualMachine@b"
            ]
        );
        assert_eq!(targets[0].label_selector.as_deref(), Some("role=worker"));
        assert_eq!(targets[1].api_version(), "kubevirt.io/v1");
        assert_eq!(targets[0].max_objects, None);
    }

    #[test]
    fn the_smallest_max_objects_of_a_kind_holds() {
        let config = resources(
            "[[resources]]\nversion = \"v1\"\nkind = \"Pod\"\nmax_objects = 10\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n\
             [[resources]]\nversion = \"v1\"\nkind = \"Pod\"\nmax_objects = 5\n\
             [[resources.metrics]]\nname = \"y\"\ntype = \"info\"\n\
             [[resources]]\nversion = \"v1\"\nkind = \"Pod\"\n\
             [[resources.metrics]]\nname = \"z\"\ntype = \"info\"\n",
        );
        assert_eq!(watch_targets(&config)[0].max_objects, Some(5));
    }

    #[test]
    fn a_kind_only_joins_read_is_watched_everywhere_by_its_label() {
        let config = resources(
            "[[resources]]\nversion = \"v1\"\nkind = \"ConfigMap\"\nnamespaces = [\"a\"]\n\
             [[resources.joins]]\nname = \"owner\"\nversion = \"v1\"\nkind = \"Pod\"\n\
             label = \"app\"\nlabel_from = \"metadata.name\"\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\nlabels = { node = \"@owner.spec.nodeName\" }\n",
        );
        let targets = watch_targets(&config);
        let names: Vec<_> = targets.iter().map(WatchTarget::input_name).collect();
        assert_eq!(names, ["kubernetes:v1/ConfigMap@a", "kubernetes:v1/Pod"]);
        assert!(!targets[0].joins_only);
        assert!(targets[1].joins_only);
        assert_eq!(targets[1].label_selector.as_deref(), Some("app"));
    }

    #[test]
    fn a_joined_kind_that_an_entry_watches_shares_its_watch() {
        let config = resources(
            "[[resources]]\nversion = \"v1\"\nkind = \"Pod\"\n\
             [[resources.joins]]\nname = \"owner\"\nversion = \"v1\"\nkind = \"Pod\"\n\
             label = \"app\"\nlabel_from = \"metadata.name\"\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n",
        );
        let targets = watch_targets(&config);
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].label_selector, None);
        assert!(!targets[0].joins_only);
    }
}
