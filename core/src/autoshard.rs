//! Autosharding in a StatefulSet (`periscope run --shard-from-hostname`), as kube-state-metrics
//! does it: a pod named `<statefulset>-<ordinal>` is shard `<ordinal>`, and the total is the
//! StatefulSet's `spec.replicas`, read once at start. Scaling the StatefulSet changes the total
//! every shard divides by, so each pod polls the replicas and, when they change, cancels the
//! host's shutdown token: the host drains its exporters and exits, and the pod restarts with the
//! new total.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use periscope_scraper::kube::{ConnectError, KubernetesConfig, connect};
use periscope_scraper::shard::Shard;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where a pod finds its own namespace.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How often the StatefulSet's replicas are read again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Why the shard cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum AutoshardError {
    /// The hostname does not end in `-<ordinal>`.
    #[error(
        "hostname {hostname:?} is not a StatefulSet pod's name (<statefulset>-<ordinal>); \
         --shard-from-hostname needs one"
    )]
    Hostname {
        /// The hostname.
        hostname: String,
    },
    /// The hostname was neither given nor readable from the system.
    #[error("cannot read the hostname from {path}: {source}")]
    HostnameFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No namespace was given and the in-cluster namespace file is unreadable.
    #[error("cannot read the namespace from {path} (outside a pod, set POD_NAMESPACE): {source}")]
    Namespace {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cluster cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The StatefulSet could not be read.
    #[error("cannot read StatefulSet {namespace}/{name}: {source}")]
    Get {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// The StatefulSet has no usable `spec.replicas`, or too few for this pod's ordinal.
    #[error(
        "StatefulSet {namespace}/{name} has replicas {replicas:?}; pod ordinal {ordinal} needs more"
    )]
    Replicas {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its `spec.replicas`, if it is a number.
        replicas: Option<i64>,
        /// This pod's ordinal.
        ordinal: u32,
    },
}

/// A pod's place in its StatefulSet: the StatefulSet's name and the pod's ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The StatefulSet's name: the hostname without `-<ordinal>`.
    pub statefulset: String,
    /// The ordinal.
    pub ordinal: u32,
}

impl PodIdentity {
    /// Reads `periscope-2` as StatefulSet `periscope`, ordinal 2.
    pub fn from_hostname(hostname: &str) -> Result<PodIdentity, AutoshardError> {
        let invalid = || AutoshardError::Hostname {
            hostname: hostname.to_owned(),
        };
        let (name, ordinal) = hostname.rsplit_once('-').ok_or_else(invalid)?;
        if name.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        Ok(PodIdentity {
            statefulset: name.to_owned(),
            ordinal: ordinal.parse().map_err(|_| invalid())?,
        })
    }
}

/// The system's hostname (`/proc/sys/kernel/hostname`), for when `$HOSTNAME` is not set.
pub fn system_hostname() -> Result<String, AutoshardError> {
    let path = Path::new("/proc/sys/kernel/hostname");
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| AutoshardError::HostnameFile {
            path: path.to_owned(),
            source,
        })
}

/// This pod's shard, and the StatefulSet it was read from, to notice a changed replica count.
pub struct Autoshard {
    api: Api<DynamicObject>,
    namespace: String,
    identity: PodIdentity,
    shard: Shard,
    total: u32,
}

impl Autoshard {
    /// Reads the StatefulSet named by `hostname` in `namespace` (default: the in-cluster
    /// namespace file) through the cluster `[kubernetes]` describes; this pod's shard of its
    /// replicas.
    pub async fn discover(
        kubernetes: &KubernetesConfig,
        hostname: &str,
        namespace: Option<&str>,
    ) -> Result<Autoshard, AutoshardError> {
        let identity = PodIdentity::from_hostname(hostname)?;
        let namespace = match namespace {
            Some(ns) => ns.to_owned(),
            None => std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_owned())
                .map_err(|source| AutoshardError::Namespace {
                    path: PathBuf::from(NAMESPACE_FILE),
                    source,
                })?,
        };
        let client = connect(kubernetes).await?;
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
        let api = Api::namespaced_with(client, &namespace, &resource);
        let mut autoshard = Autoshard {
            api,
            namespace,
            identity,
            shard: Shard::ALL,
            total: 1,
        };
        let replicas = autoshard.replicas().await?;
        let total = u32::try_from(replicas.unwrap_or(-1)).ok();
        match total.and_then(|t| Shard::new(autoshard.identity.ordinal, t).map(|s| (t, s))) {
            Some((total, shard)) => {
                autoshard.total = total;
                autoshard.shard = shard;
                Ok(autoshard)
            }
            None => Err(AutoshardError::Replicas {
                namespace: autoshard.namespace,
                name: autoshard.identity.statefulset,
                replicas,
                ordinal: autoshard.identity.ordinal,
            }),
        }
    }

    /// This pod's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// This pod's ordinal: its shard's index.
    pub fn ordinal(&self) -> u32 {
        self.identity.ordinal
    }

    /// The total the shard was computed from.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The StatefulSet's `spec.replicas` now (`None` when it is not an integer).
    async fn replicas(&self) -> Result<Option<i64>, AutoshardError> {
        let name = &self.identity.statefulset;
        let object = self
            .api
            .get(name)
            .await
            .map_err(|source| AutoshardError::Get {
                namespace: self.namespace.clone(),
                name: name.clone(),
                source,
            })?;
        Ok(object.data["spec"]["replicas"].as_i64())
    }

    /// Reads the replicas every [`POLL_INTERVAL`] until `shutdown` is cancelled; cancels it
    /// itself when they differ from the total this shard was computed from. A failed read is
    /// logged and tried again at the next tick.
    pub async fn watch_replicas(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.replicas().await {
                Ok(Some(now)) if now == i64::from(self.total) => {}
                Ok(now) => {
                    info!(
                        statefulset = %self.identity.statefulset,
                        was = self.total,
                        now = ?now,
                        "the StatefulSet's replicas changed: stopping, to restart with the new total"
                    );
                    shutdown.cancel();
                    return;
                }
                Err(error) => warn!(%error, "cannot read the StatefulSet's replicas"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ordinal_is_the_last_dash_separated_number_of_the_hostname() {
        let id = PodIdentity::from_hostname("periscope-2").unwrap();
        assert_eq!(id.statefulset, "periscope");
        assert_eq!(id.ordinal, 2);
        let id = PodIdentity::from_hostname("my-periscope-shards-10").unwrap();
        assert_eq!(id.statefulset, "my-periscope-shards");
        assert_eq!(id.ordinal, 10);
    }

    #[test]
    fn hostnames_without_an_ordinal_are_refused() {
        for hostname in [
            "periscope",
            "periscope-",
            "-3",
            "periscope-7f9c-x2",
            "periscope-+1",
        ] {
            assert!(
                PodIdentity::from_hostname(hostname).is_err(),
                "{hostname} was accepted"
            );
        }
    }
}
