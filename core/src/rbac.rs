//! `periscope rbac`: the least-privilege RBAC objects for a config — get, list and watch on exactly
//! the configured resources, the kinds their joins read, and the Pods or EndpointSlices that
//! endpoint targets are discovered from; with `[kubernetes] metrics_configs`, get, list and watch
//! on MetricsConfigs and update and patch on their status; nothing else — with a ServiceAccount and
//! a ClusterRoleBinding for it.
//!
//! What the MetricsConfigs themselves watch is not known in advance: the operator grants the
//! kinds teams may read (a watch the role does not allow fails, and says so in the log).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kube::api::{ApiResource, GroupVersionKind};
use periscope_scraper::config::{DiscoveryRole, EndpointConfig, ResourceConfig};

/// The RBAC manifests (YAML, several documents) for `resources`, the discovery of `endpoints`
/// and, when `metrics_configs`, the MetricsConfigs, for a ServiceAccount `name` in `namespace`.
/// Resource names (plurals) are inferred from the kinds the way kube-rs does
/// (`VirtualMachineInstance` → `virtualmachineinstances`).
pub fn manifests(
    resources: &[ResourceConfig],
    endpoints: &[EndpointConfig],
    metrics_configs: bool,
    name: &str,
    namespace: &str,
) -> String {
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut grant = |group: &str, plural: String| {
        let list = by_group.entry(group.to_owned()).or_default();
        if !list.contains(&plural) {
            list.push(plural);
        }
    };
    for r in resources {
        let plural =
            ApiResource::from_gvk(&GroupVersionKind::gvk(&r.group, &r.version, &r.kind)).plural;
        grant(&r.group, plural);
    }
    for joined in periscope_scraper::objects::joins::joined_kinds(resources) {
        let gvk = GroupVersionKind::gvk(&joined.group, &joined.version, &joined.kind);
        grant(&joined.group, ApiResource::from_gvk(&gvk).plural);
    }
    for discovery in endpoints.iter().filter_map(|e| e.kubernetes.as_ref()) {
        match discovery.role {
            DiscoveryRole::Pod => grant("", "pods".to_owned()),
            DiscoveryRole::EndpointSlice => {
                grant("discovery.k8s.io", "endpointslices".to_owned());
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {}\nrules:",
        quote(name)
    );
    if by_group.is_empty() && !metrics_configs {
        out.truncate(out.len() - "rules:\n".len());
        out.push_str("rules: []\n");
    }
    for (group, mut plurals) in by_group {
        plurals.sort();
        let _ = writeln!(
            out,
            "  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [\"get\", \"list\", \"watch\"]",
            quote(&group),
            plurals
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if metrics_configs {
        let _ = writeln!(
            out,
            "  - apiGroups: [\"periscope.dev\"]\n    resources: [\"metricsconfigs\"]\n    \
             verbs: [\"get\", \"list\", \"watch\"]\n\
             \x20 - apiGroups: [\"periscope.dev\"]\n    resources: [\"metricsconfigs/status\"]\n    \
             verbs: [\"update\", \"patch\"]"
        );
    }
    let _ = writeln!(
        out,
        "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {n}\n  namespace: {ns}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {n}\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {n}\n\
         subjects:\n  - kind: ServiceAccount\n    name: {n}\n    namespace: {ns}",
        n = quote(name),
        ns = quote(namespace)
    );
    out
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_grants_read_on_exactly_the_configured_resources() {
        #[derive(serde::Deserialize)]
        struct Doc {
            resources: Vec<ResourceConfig>,
            endpoints: Vec<EndpointConfig>,
        }
        let doc: Doc = periscope_plugin_api::config::parse(
            "[[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachineInstance\"\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n\
             [[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachine\"\n\
             [[resources.metrics]]\nname = \"y\"\ntype = \"info\"\n\
             [[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
             [[resources.metrics]]\nname = \"z\"\ntype = \"info\"\n\
             [[endpoints]]\nname = \"a\"\n[endpoints.kubernetes]\nrole = \"pod\"\nport = 80\n\
             [[endpoints]]\nname = \"b\"\n[endpoints.kubernetes]\nrole = \"endpointslice\"\nport = \"m\"\n",
        )
        .unwrap();
        let text = manifests(
            &doc.resources,
            &doc.endpoints,
            false,
            "periscope",
            "monitoring",
        );
        assert!(text.contains("  - apiGroups: [\"\"]\n    resources: [\"nodes\", \"pods\"]\n    verbs: [\"get\", \"list\", \"watch\"]"), "{text}");
        assert!(
            text.contains(
                "  - apiGroups: [\"discovery.k8s.io\"]\n    resources: [\"endpointslices\"]"
            ),
            "{text}"
        );
        assert!(text.contains("  - apiGroups: [\"kubevirt.io\"]\n    resources: [\"virtualmachineinstances\", \"virtualmachines\"]"), "{text}");
        assert_eq!(text.matches("verbs:").count(), 3, "{text}");
        assert!(text.contains("kind: ServiceAccount\nmetadata:\n  name: \"periscope\"\n  namespace: \"monitoring\""), "{text}");
        assert!(text.contains("kind: ClusterRoleBinding"), "{text}");
    }

    #[test]
    fn role_grants_read_on_the_kinds_joins_read() {
        #[derive(serde::Deserialize)]
        struct Doc {
            resources: Vec<ResourceConfig>,
        }
        let doc: Doc = periscope_plugin_api::config::parse(
            "[[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachineInstance\"\n\
             [[resources.joins]]\nname = \"launcher\"\nversion = \"v1\"\nkind = \"Pod\"\n\
             label = \"kubevirt.io/created-by\"\nlabel_from = \"metadata.uid\"\n\
             [[resources.joins]]\nname = \"type\"\ngroup = \"instancetype.kubevirt.io\"\nversion = \"v1beta1\"\n\
             kind = \"VirtualMachineClusterInstancetype\"\ncluster = true\n\
             name_from = \"metadata.annotations['kubevirt.io/cluster-instancetype-name']\"\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n",
        )
        .unwrap();
        let text = manifests(&doc.resources, &[], false, "periscope", "monitoring");
        assert!(
            text.contains("  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n"),
            "{text}"
        );
        assert!(
            text.contains("  - apiGroups: [\"instancetype.kubevirt.io\"]\n    resources: [\"virtualmachineclusterinstancetypes\"]\n"),
            "{text}"
        );
        assert_eq!(text.matches("verbs:").count(), 3, "{text}");
    }

    #[test]
    fn metrics_configs_add_their_watch_and_their_status() {
        let text = manifests(&[], &[], true, "periscope", "monitoring");
        assert!(
            text.contains(
                "rules:\n  - apiGroups: [\"periscope.dev\"]\n    resources: [\"metricsconfigs\"]\n    \
                 verbs: [\"get\", \"list\", \"watch\"]\n  - apiGroups: [\"periscope.dev\"]\n    \
                 resources: [\"metricsconfigs/status\"]\n    verbs: [\"update\", \"patch\"]\n---"
            ),
            "{text}"
        );
    }
}
