//! `[kubernetes]`: which cluster to watch, and how.

use std::path::PathBuf;

use serde::Deserialize;

use crate::objects::Secrets;

/// `[kubernetes]`: where the cluster is. Its presence turns the watcher on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; without it, the usual inference (in-cluster, `KUBECONFIG`, `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; its current context by default.
    #[serde(default)]
    pub context: Option<String>,
    /// Objects per page of the initial list (smaller pages, less memory at start-up).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Allows watching Secrets. Off by default; their `data` and `stringData` are never readable.
    #[serde(default)]
    pub allow_secrets: bool,
    /// Watches `MetricsConfig` resources (`periscope.dev/v1alpha1`) and applies each like one
    /// more config file, bounded to its namespace. Off by default.
    #[serde(default)]
    pub metrics_configs: bool,
    /// Only MetricsConfigs in these namespaces; empty means every namespace.
    #[serde(default)]
    pub metrics_configs_namespaces: Vec<String>,
    /// The most series one MetricsConfig writes, shared evenly between its entries. No cap by
    /// default.
    #[serde(default)]
    pub metrics_configs_max_series: Option<u64>,
}

fn default_page_size() -> u32 {
    500
}

impl KubernetesConfig {
    /// The settings that make a cluster client and its watches: all but those of
    /// MetricsConfigs, which change without a reconnection.
    pub fn connection(&self) -> KubernetesConfig {
        KubernetesConfig {
            metrics_configs: false,
            metrics_configs_namespaces: Vec::new(),
            metrics_configs_max_series: None,
            ..self.clone()
        }
    }

    /// What `allow_secrets` means for compiling `[[resources]]`.
    pub fn secrets(&self) -> Secrets {
        if self.allow_secrets {
            Secrets::Allowed
        } else {
            Secrets::Refused
        }
    }
}
