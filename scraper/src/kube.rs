//! The Kubernetes input: watches the configured resources through the API and feeds every object
//! through the same [`ObjectPipeline`] as the offline input.
//!
//! One watch runs per resource kind (and per namespace when the config restricts namespaces). Each
//! resolves its kind by discovery — retrying until it exists, so a CRD installed after start-up is
//! picked up — and then runs kube-runtime's watcher (initial list, watch, bookmarks, relist on
//! `410 Gone`, backoff on errors). Nothing of an object is kept but its identity: the samples live
//! in the host's state, so memory stays small at 100k objects.
//!
//! A relist (`Init … InitDone`) ends with a `Remove` of every source that was not listed again, so
//! the state converges after an apiserver restart or a watch expiry. A resource whose CRD is
//! deleted stops cleanly: its sources are removed and the watch goes back to waiting for the kind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, DynamicObject, GroupVersionKind};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::runtime::WatchStreamExt as _;
use ::kube::runtime::watcher;
use ::kube::{Client, discovery};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ResourceConfig;
use crate::event::{ErrorKind, Event};
use crate::objects::{CompileError, ObjectKey, ObjectPipeline};
use crate::shard::Shard;

/// `[kubernetes]`: where the cluster is. Its presence turns the watcher on.
#[derive(Debug, Clone, Default, Deserialize)]
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

/// Why the cluster cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read.
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: ::kube::config::KubeconfigError,
    },
    /// No usable configuration was found.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The client could not be built.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] ::kube::Error),
}

/// Builds a client from `[kubernetes]`.
pub async fn connect(config: &KubernetesConfig) -> Result<Client, ConnectError> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let client_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| ConnectError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            ::kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ConnectError::Config(e.to_string()))?
        }
        None if config.context.is_some() => ::kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ConnectError::Config(e.to_string()))?,
        None => ::kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Config(e.to_string()))?,
    };
    Ok(Client::try_from(client_config)?)
}

/// Checks the rule for Secrets: refused as a watched resource unless `[kubernetes]
/// allow_secrets = true`, and even then no path may reach their `data` or `stringData`.
pub fn check_secrets(resources: &[ResourceConfig], allow: bool) -> Vec<CompileError> {
    let mut errors = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        if !(resource.group.is_empty() && resource.kind == "Secret") {
            continue;
        }
        if !allow {
            errors.push(CompileError {
                key: format!("resources[{i}].kind"),
                span: None,
                message: "watching Secrets needs `allow_secrets = true` in [kubernetes]; their data is never readable".to_owned(),
            });
            continue;
        }
        for (key, path) in resource.paths() {
            if reaches_secret_data(path.get_ref()) {
                errors.push(CompileError {
                    key: format!("resources[{i}].{key}"),
                    span: Some(path.span()),
                    message: format!(
                        "{:?} would read a Secret's data, which Periscope never exports",
                        path.get_ref()
                    ),
                });
            }
        }
    }
    errors
}

/// Whether a path starts at a Secret's `data` or `stringData`, or at every field of the object.
fn reaches_secret_data(path: &str) -> bool {
    let path = path.trim();
    let path = path
        .strip_prefix('$')
        .unwrap_or(path)
        .trim_start_matches('.');
    path.starts_with('[')
        || ["data", "stringData"].iter().any(|field| {
            path.strip_prefix(field).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
}

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
}

impl WatchTarget {
    /// The input's name in logs and self-metrics: `kubernetes:kubevirt.io/v1/VirtualMachineInstance`
    /// (with `@namespace` when restricted).
    pub fn input_name(&self) -> String {
        let api_version = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        match &self.namespace {
            Some(ns) => format!("kubernetes:{api_version}/{}@{ns}", self.kind),
            None => format!("kubernetes:{api_version}/{}", self.kind),
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
            });
        }
    }
    targets
}

/// One running watch.
pub struct KubeWatch {
    client: Client,
    target: WatchTarget,
    pipeline: Arc<ObjectPipeline>,
    shard: Shard,
    page_size: u32,
}

/// How long to wait before looking for a kind that does not exist (yet) again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

impl KubeWatch {
    /// A watch of `target` through `client`, keeping only the objects of `shard`.
    pub fn new(
        client: Client,
        target: WatchTarget,
        pipeline: Arc<ObjectPipeline>,
        shard: Shard,
        page_size: u32,
    ) -> Self {
        KubeWatch {
            client,
            target,
            pipeline,
            shard,
            page_size,
        }
    }

    /// The input's name (see [`WatchTarget::input_name`]).
    pub fn input_name(&self) -> String {
        self.target.input_name()
    }

    /// Watches until `shutdown`, sending updates, `Synced` after the first complete list, and
    /// errors. A kind that does not exist is looked for again every few seconds.
    pub async fn run(self, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
        let input = self.input_name();
        let mut state = WatchState::new(
            input,
            &self.target,
            self.pipeline.clone(),
            self.shard,
            events,
        );
        let gvk =
            GroupVersionKind::gvk(&self.target.group, &self.target.version, &self.target.kind);
        let mut announced_missing = false;
        loop {
            let resolved = tokio::select! {
                _ = shutdown.cancelled() => return,
                resolved = discovery::pinned_kind(&self.client, &gvk) => resolved,
            };
            let resource = match resolved {
                Ok((resource, _capabilities)) => resource,
                Err(e) => {
                    if !announced_missing {
                        announced_missing = true;
                        state
                            .error(
                                ErrorKind::Read,
                                format!(
                                    "{} is not served (yet): {e}; looking again every {}s",
                                    self.target.kind,
                                    DISCOVERY_RETRY.as_secs()
                                ),
                            )
                            .await;
                        // A kind that does not exist has no objects: the first read is complete.
                        state.synced().await;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(DISCOVERY_RETRY) => continue,
                    }
                }
            };
            announced_missing = false;
            let api: Api<DynamicObject> = match &self.target.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            let mut config = watcher::Config::default().page_size(self.page_size);
            if let Some(labels) = &self.target.label_selector {
                config = config.labels(labels);
            }
            if let Some(fields) = &self.target.field_selector {
                config = config.fields(fields);
            }
            let mut stream = watcher(api, config).default_backoff().boxed();
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(event)) => state.handle(event).await,
                    Some(Err(e)) if is_not_found(&e) => {
                        // The kind is gone (its CRD was deleted): drop its sources, wait for it again.
                        state
                            .error(
                                ErrorKind::Read,
                                format!("{} is no longer served: {e}", self.target.kind),
                            )
                            .await;
                        state.remove_all().await;
                        break;
                    }
                    Some(Err(e)) => {
                        state
                            .error(
                                ErrorKind::Read,
                                format!(
                                    "watch of {} failed: {e}; retrying with backoff",
                                    self.target.kind
                                ),
                            )
                            .await
                    }
                    None => break,
                }
            }
        }
    }
}

fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(::kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(::kube::Error::Api(status))
        | watcher::Error::WatchFailed(::kube::Error::Api(status)) => status.is_not_found(),
        watcher::Error::WatchError(status) => status.is_not_found(),
        _ => false,
    }
}

/// What a watch remembers: the name of every object it reported, to remove the ones a relist no
/// longer shows.
struct WatchState {
    input: String,
    /// The watched kind's `apiVersion` and `kind`.
    api_version: String,
    kind: String,
    pipeline: Arc<ObjectPipeline>,
    shard: Shard,
    events: mpsc::Sender<Event>,
    /// Source id → the object's name. A few strings per object: the whole object, or even its
    /// identity as a JSON value, was a sixth of the host's heap at 10k objects (`bench/`).
    known: HashMap<String, Named>,
    /// Ids listed since the last `Init`.
    relisted: Option<HashMap<String, Named>>,
    synced: bool,
}

impl WatchState {
    fn new(
        input: String,
        target: &WatchTarget,
        pipeline: Arc<ObjectPipeline>,
        shard: Shard,
        events: mpsc::Sender<Event>,
    ) -> Self {
        WatchState {
            input,
            api_version: if target.group.is_empty() {
                target.version.clone()
            } else {
                format!("{}/{}", target.group, target.version)
            },
            kind: target.kind.clone(),
            pipeline,
            shard,
            events,
            known: HashMap::new(),
            relisted: None,
            synced: false,
        }
    }

    async fn handle(&mut self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.relisted = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let Some((id, named)) = self.apply(object).await
                    && let Some(relisted) = &mut self.relisted
                {
                    relisted.insert(id, named);
                }
            }
            watcher::Event::InitDone => {
                let relisted = self.relisted.take().unwrap_or_default();
                let gone: Vec<Named> = self
                    .known
                    .iter()
                    .filter(|(id, _)| !relisted.contains_key(*id))
                    .map(|(_, named)| named.clone())
                    .collect();
                for named in gone {
                    self.remove(&named).await;
                }
                self.known = relisted;
                self.synced().await;
            }
            watcher::Event::Apply(object) => {
                if let Some((id, named)) = self.apply(object).await {
                    self.known.insert(id, named);
                }
            }
            watcher::Event::Delete(object) => {
                let metadata = object.metadata;
                let named = Named {
                    namespace: metadata.namespace.unwrap_or_default(),
                    name: metadata.name.unwrap_or_default(),
                    uid: metadata.uid.unwrap_or_default(),
                };
                self.remove(&named).await;
            }
        }
    }

    /// The object as JSON, with `apiVersion` and `kind` filled in (list items may lack them).
    ///
    /// The object is taken apart rather than serialized whole: everything but its metadata is
    /// JSON already, and copying it once more was a sixth of Periscope's CPU time under a stream
    /// of updates (`bench/`). The result is the same as `serde_json::to_value(object)`.
    async fn json_of(&mut self, object: DynamicObject) -> Option<Value> {
        let DynamicObject {
            types,
            metadata,
            data,
        } = object;
        let mut fields = match data {
            Value::Object(fields) => fields,
            Value::Null => serde_json::Map::new(),
            other => {
                self.error(
                    ErrorKind::Parse,
                    format!("an object that is not a JSON object: {other}"),
                )
                .await;
                return None;
            }
        };
        let metadata = match serde_json::to_value(metadata) {
            Ok(metadata) => metadata,
            Err(e) => {
                self.error(
                    ErrorKind::Parse,
                    format!("cannot read an object's metadata as JSON: {e}"),
                )
                .await;
                return None;
            }
        };
        // Serializing the object writes the type fields, then the metadata, then the other
        // fields, a later key replacing an earlier one: so the other fields win here too.
        fields.entry("metadata").or_insert(metadata);
        if let Some(types) = types {
            fields
                .entry("apiVersion")
                .or_insert(types.api_version.into());
            fields.entry("kind").or_insert(types.kind.into());
        }
        if self.kind == "Secret" && self.api_version == "v1" {
            // Never let a Secret's data into the pipeline, whatever the config says.
            fields.remove("data");
            fields.remove("stringData");
        }
        let mut value = Value::Object(fields);
        if value["apiVersion"].is_null() {
            value["apiVersion"] = self.api_version.clone().into();
        }
        if value["kind"].is_null() {
            value["kind"] = self.kind.clone().into();
        }
        Some(value)
    }

    /// Sends the object's update; returns its id and name if it is now a known source.
    async fn apply(&mut self, object: DynamicObject) -> Option<(String, Named)> {
        let value = self.json_of(object).await?;
        let named = Named::of(&value);
        if !self.shard.keeps(&named.uid) {
            return None;
        }
        match self.pipeline.apply(&value, periscope_plugin_api::now_ms()) {
            Some((update, problems)) => {
                let id = update.source_id().to_owned();
                for problem in problems {
                    self.error(ErrorKind::Value, format!("{id}: {problem}"))
                        .await;
                }
                self.send(Event::Update(update)).await;
                Some((id, named))
            }
            None => {
                // No longer selected (its labels changed): if it was a source, it is gone.
                self.remove(&named).await;
                None
            }
        }
    }

    /// Sends the `Remove` of the object if it was a known source.
    async fn remove(&mut self, named: &Named) {
        if named.name.is_empty() {
            return;
        }
        // A watch's objects come in the version it asked for, so its apiVersion and kind name
        // them with the rest.
        let key = ObjectKey {
            api_version: &self.api_version,
            kind: &self.kind,
            namespace: &named.namespace,
            name: &named.name,
            uid: &named.uid,
        };
        if self.known.remove(&key.source_id()).is_some()
            && let Some(update) = self.pipeline.remove(&key)
        {
            self.send(Event::Update(update)).await;
        }
    }

    async fn remove_all(&mut self) {
        let all: Vec<Named> = self.known.values().cloned().collect();
        for named in all {
            self.remove(&named).await;
        }
    }

    async fn synced(&mut self) {
        if !self.synced {
            self.synced = true;
            let input = self.input.clone();
            self.send(Event::Synced { input }).await;
        }
    }

    async fn error(&mut self, kind: ErrorKind, message: String) {
        let input = self.input.clone();
        self.send(Event::Error {
            input,
            kind,
            message,
        })
        .await;
    }

    async fn send(&self, event: Event) {
        // The host stopped listening only at shutdown.
        let _ = self.events.send(event).await;
    }
}

/// The part of a watched object that names it, with the watch's apiVersion and kind: enough to
/// build its `Remove` later.
#[derive(Debug, Clone)]
struct Named {
    namespace: String,
    name: String,
    uid: String,
}

impl Named {
    fn of(object: &Value) -> Named {
        let field = |name: &str| {
            object["metadata"][name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        Named {
            namespace: field("namespace"),
            name: field("name"),
            uid: field("uid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_paths_are_recognised() {
        for path in [
            "data",
            "data.password",
            ".data[\"x\"]",
            "stringData.x",
            "[*]",
        ] {
            assert!(reaches_secret_data(path), "{path}");
        }
        for path in ["metadata.name", "type", "database"] {
            assert!(!reaches_secret_data(path), "{path}");
        }
    }

    fn resources(text: &str) -> Vec<ResourceConfig> {
        #[derive(Deserialize)]
        struct Doc {
            resources: Vec<ResourceConfig>,
        }
        periscope_plugin_api::config::parse::<Doc>(text)
            .expect("valid config")
            .resources
    }

    #[test]
    fn secrets_are_refused_unless_allowed_and_never_with_data() {
        let config = resources(
            "[[resources]]\nversion = \"v1\"\nkind = \"Secret\"\nlabels = { name = \"metadata.name\" }\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\nlabels = { pw = \"data.password\" }\n",
        );
        let refused = check_secrets(&config, false);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].key, "resources[0].kind");
        let allowed = check_secrets(&config, true);
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].key, "resources[0].metrics[0].labels.pw");
    }

    #[test]
    fn secret_data_is_refused_in_aggregates_and_derived_metrics_too() {
        let config = resources(
            "[[resources]]\nversion = \"v1\"\nkind = \"Secret\"\n\
             [[resources.aggregates]]\nname = \"n\"\ntype = \"count\"\nby = { pw = \"$.data.password\" }\n\
             [[resources.derived]]\nname = \"t\"\ntype = \"transitions\"\npath = \"stringData\"\n",
        );
        let keys: Vec<_> = check_secrets(&config, true)
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "resources[0].aggregates[0].by.pw",
                "resources[0].derived[0].path"
            ]
        );
    }

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
    }
}
