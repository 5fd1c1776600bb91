//! The Kubernetes input: watches the configured resources through the API and feeds every object
//! through the same [`ObjectPipeline`](crate::objects::ObjectPipeline) as the offline input.
//!
//! One watch runs per resource kind (and per namespace when the config restricts namespaces). Each
//! resolves its kind by discovery — retrying until it exists, so a CRD installed after start-up is
//! picked up — and then runs kube-runtime's watcher (initial list, watch, bookmarks, relist on
//! `410 Gone`, backoff on errors). Nothing of an object is kept but its key: the samples live
//! in the host's state, so memory stays small at 100k objects.
//!
//! A relist (`Init … InitDone`) ends with a `Remove` of every source that was not listed again, so
//! the state converges after an apiserver restart or a watch expiry. A resource whose CRD is
//! deleted stops cleanly: its sources are removed and the watch goes back to waiting for the kind.
//!
//! The modules, by job: `config` (`[kubernetes]`), `connect` (the client), `plan` (which watches
//! the config needs), `watch` (the watch loop), `known` (what a watch remembers across relists,
//! shared with endpoint discovery) and `object` (an object from the watcher as JSON, and its key).
//! Whether Secrets may be watched is checked when `[[resources]]` is compiled
//! ([`Secrets`](crate::objects::Secrets)).

mod config;
mod connect;
pub(crate) mod known;
pub(crate) mod object;
mod plan;
mod watch;

pub use config::KubernetesConfig;
pub use connect::{ConnectError, connect};
pub use plan::{WatchTarget, watch_targets};
pub use watch::KubeWatch;
