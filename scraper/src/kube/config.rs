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
}

fn default_page_size() -> u32 {
    500
}

impl KubernetesConfig {
    /// What `allow_secrets` means for compiling `[[resources]]`.
    pub fn secrets(&self) -> Secrets {
        if self.allow_secrets {
            Secrets::Allowed
        } else {
            Secrets::Refused
        }
    }
}
