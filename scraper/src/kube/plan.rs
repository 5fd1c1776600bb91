//! Watch planning: which watches the `[[resources]]` entries need.

use std::collections::BTreeMap;

use crate::config::ResourceConfig;

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

/// The watches needed for `resources`: one per kind, split per namespace when every entry of that
/// kind names its namespaces, with selectors passed to the apiserver when every entry of that kind
/// agrees on them (otherwise the pipeline filters on its side).
pub fn watch_targets(resources: &[ResourceConfig]) -> Vec<WatchTarget> {
    let mut by_kind: BTreeMap<(String, String, String), Vec<&ResourceConfig>> = BTreeMap::new();
    for r in resources {
        by_kind
            .entry((r.group.clone(), r.version.clone(), r.kind.clone()))
            .or_default()
            .push(r);
    }
    let mut targets = Vec::new();
    for ((group, version, kind), entries) in by_kind {
        let selectors = |r: &ResourceConfig| {
            (
                r.label_selector.as_ref().map(|s| s.get_ref().clone()),
                r.field_selector.as_ref().map(|s| s.get_ref().clone()),
            )
        };
        let first = selectors(entries[0]);
        let (label_selector, field_selector) = if entries.iter().all(|r| selectors(r) == first) {
            first
        } else {
            (None, None)
        };
        let max_objects = entries
            .iter()
            .filter_map(|r| r.max_objects.as_ref())
            .map(|max| usize::try_from(*max.get_ref()).unwrap_or(usize::MAX))
            .min();
        let namespaces: Vec<Option<String>> = if entries.iter().all(|r| !r.namespaces.is_empty()) {
            let mut all: Vec<String> = entries.iter().flat_map(|r| r.namespaces.clone()).collect();
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
}
