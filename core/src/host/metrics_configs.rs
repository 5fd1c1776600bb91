//! The MetricsConfigs the host applies (`[kubernetes] metrics_configs = true`): watched, each
//! turned into one more config file ([`crate::metrics_config::tenancy`]) and applied through the
//! same reload as the host's own files; their status written back.
//!
//! A MetricsConfig that the checks refuse is left out of the reload (the rest goes through);
//! the version of it that was last accepted, if any, keeps running, as a config file refused
//! by a reload leaves the running config in place. Its status says `Accepted=False` with the
//! field at fault.
//!
//! While the watch's first list is not applied, the host is not ready (`/readyz`): a page
//! without the teams' series is not complete.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use periscope_scraper::kube::KubernetesConfig;
use periscope_scraper::objects::PipelineStats;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::reload::{ReloadRequest, Trigger};
use crate::config::{ConfigFile, ConfigText, Problem};
use crate::metrics_config::tenancy::{self, KindScope, Refusal, Tenant};
use crate::metrics_config::{Condition, MetricsConfig, MetricsConfigSpec, MetricsConfigStatus};
use crate::readiness::Readiness;

/// The item of the host's readiness that waits for the first list of MetricsConfigs.
const READINESS: &str = "metricsconfigs";

/// How often the series counts in the statuses are brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Which MetricsConfigs a host watches, and in which cluster, from its `[kubernetes]` table.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    cluster: KubernetesConfig,
    namespaces: Vec<String>,
}

impl Settings {
    fn of(kubernetes: Option<&KubernetesConfig>) -> Option<Settings> {
        kubernetes.filter(|k| k.metrics_configs).map(|k| Settings {
            cluster: k.connection(),
            namespaces: k.metrics_configs_namespaces.clone(),
        })
    }
}

/// One MetricsConfig as the host holds it.
struct Held {
    generation: Option<i64>,
    spec: MetricsConfigSpec,
    scopes: Vec<KindScope>,
    /// The file of the version last applied.
    applied: Option<ConfigFile>,
    /// Why the latest version is refused.
    refused: Option<String>,
    /// Where its entries count their series: the stats and entry key of each.
    counted: Vec<(Arc<PipelineStats>, String)>,
    /// The status last written.
    written: Option<MetricsConfigStatus>,
}

type Key = (String, String);

/// The MetricsConfigs known now, shared by the watch, the reloads and the status writer.
#[derive(Default)]
struct Store {
    held: BTreeMap<Key, Held>,
    /// Whether the watch's first list is complete (every MetricsConfig there was is held).
    listed: bool,
}

/// The watch of MetricsConfigs and what it holds.
#[derive(Default)]
pub(super) struct MetricsConfigs {
    running: Option<(Settings, CancellationToken)>,
    store: Arc<Mutex<Store>>,
    /// Wakes the status writer after a reload.
    reloaded: Arc<Notify>,
}

/// The files of a reload: the host's own, then one per MetricsConfig.
pub(super) struct Merged {
    /// Every file, the MetricsConfigs' last.
    pub text: ConfigText,
    /// Each MetricsConfig in the text, in the order of its files.
    tenants: Vec<InText>,
}

/// One MetricsConfig's file in a [`Merged`] text.
struct InText {
    key: Key,
    /// Whether the file is its latest version (not the last accepted one, the latest being
    /// refused).
    latest: bool,
    /// Its number of `[[resources]]` and `[[endpoints]]` entries.
    entries: (usize, usize),
}

impl MetricsConfigs {
    /// The host's files `text` with a file for each MetricsConfig, as `kubernetes` (of the
    /// config being applied) allows: its latest version, or the last accepted one when the
    /// latest is refused (`refused` names those refused by the checks of this reload).
    pub(super) fn merge(
        &self,
        text: &ConfigText,
        kubernetes: Option<&KubernetesConfig>,
        refused: &BTreeMap<Key, String>,
    ) -> Merged {
        let mut files = text.files().to_vec();
        let mut tenants = Vec::new();
        let enabled = kubernetes.is_some_and(|k| k.metrics_configs);
        let max_series = kubernetes.and_then(|k| k.metrics_configs_max_series);
        let mut store = self.lock();
        for (key, held) in store.held.iter_mut().filter(|_| enabled) {
            let tenant = Tenant {
                namespace: &key.0,
                name: &key.1,
                spec: &held.spec,
                scopes: &held.scopes,
            };
            let latest = match refused.get(key) {
                Some(problem) => Err(problem.clone()),
                None => tenancy::config_file(&tenant, max_series).map_err(|r| r.to_string()),
            };
            held.refused = latest.as_ref().err().cloned();
            let (file, latest) = match (latest, &held.applied) {
                (Ok(file), _) => (file, true),
                (Err(_), Some(applied)) => (applied.clone(), false),
                (Err(_), None) => continue,
            };
            tenants.push(InText {
                key: key.clone(),
                latest,
                entries: entry_counts(&file),
            });
            files.push(file);
        }
        Merged {
            text: ConfigText::new(files),
            tenants,
        }
    }

    /// The MetricsConfigs that `problems` are about, each with its problems as one message.
    pub(super) fn problems_by_tenant(&self, problems: &[Problem]) -> BTreeMap<Key, String> {
        let store = self.lock();
        let mut by_tenant: BTreeMap<Key, String> = BTreeMap::new();
        for problem in problems {
            let Some(key) = store
                .held
                .keys()
                .find(|(ns, name)| tenancy::file_name(ns, name) == problem.file)
            else {
                continue;
            };
            let refusal = Refusal {
                key: problem.key.clone(),
                message: problem.message.clone(),
            };
            let message = by_tenant.entry(key.clone()).or_default();
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&refusal.to_string());
        }
        by_tenant
    }

    /// Records what a successful reload applied: `merged`, whose `resources` and `endpoints`
    /// entries (after the host's own, `host_entries` of each) count their series in `pipeline`
    /// and in `endpoints` (one per endpoint entry, in order).
    pub(super) fn applied(
        &self,
        merged: &Merged,
        host_entries: (usize, usize),
        pipeline: &Arc<PipelineStats>,
        endpoints: &[Arc<PipelineStats>],
    ) {
        let mut store = self.lock();
        let (mut resource, mut endpoint) = host_entries;
        let mut files = merged
            .text
            .files()
            .iter()
            .rev()
            .take(merged.tenants.len())
            .rev();
        for tenant in &merged.tenants {
            let file = files.next().cloned();
            let (resources, endpoint_entries) = tenant.entries;
            let Some(held) = store.held.get_mut(&tenant.key) else {
                continue;
            };
            if tenant.latest {
                held.applied = file;
            }
            held.counted = (resource..resource + resources)
                .map(|i| (pipeline.clone(), format!("resources[{i}]")))
                .chain((endpoint..endpoint + endpoint_entries).filter_map(|i| {
                    let stats = endpoints.get(i)?;
                    Some((stats.clone(), format!("endpoints[{i}]")))
                }))
                .collect();
            resource += resources;
            endpoint += endpoint_entries;
        }
        let running: Vec<&Key> = merged.tenants.iter().map(|t| &t.key).collect();
        for (key, held) in &mut store.held {
            if !running.contains(&key) {
                held.counted.clear();
                held.applied = None;
            }
        }
    }

    /// Starts, restarts or stops the watch as `kubernetes` says, with the cluster's `client`.
    pub(super) fn reconcile(
        &mut self,
        kubernetes: Option<&KubernetesConfig>,
        client: Option<Client>,
        reloads: &mpsc::Sender<ReloadRequest>,
        shutdown: &CancellationToken,
        readiness: &Readiness,
    ) {
        let wanted = Settings::of(kubernetes).zip(client);
        if self.running.as_ref().map(|(s, _)| s) == wanted.as_ref().map(|(s, _)| s) {
            return;
        }
        if let Some((_, stop)) = self.running.take() {
            stop.cancel();
            let mut store = self.lock();
            store.held.clear();
            store.listed = false;
        }
        let Some((settings, client)) = wanted else {
            readiness.remove(READINESS);
            return;
        };
        info!(namespaces = ?settings.namespaces, "watching MetricsConfigs");
        expect_first_list(readiness);
        let stop = shutdown.child_token();
        tokio::spawn(watch(
            client.clone(),
            settings.clone(),
            self.store.clone(),
            reloads.clone(),
            stop.clone(),
        ));
        tokio::spawn(write_statuses(
            client,
            self.store.clone(),
            self.reloaded.clone(),
            reloads.clone(),
            stop.clone(),
        ));
        self.running = Some((settings, stop));
    }

    /// After a reload (`applied`: it went through): the statuses are written now, and the host
    /// is ready once the watch's first list is complete, each MetricsConfig of it then having
    /// been applied (or refused).
    pub(super) fn reloaded(&self, applied: bool, readiness: &Readiness) {
        if applied && self.running.is_some() && self.lock().listed {
            readiness.set(READINESS, Ok(()));
        }
        self.reloaded.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }
}

/// Marks the host not ready until the first list of MetricsConfigs is applied: at the start,
/// before anything else is ready, when `[kubernetes]` turns them on; and whenever the watch
/// starts.
pub(super) fn expect_first_list(readiness: &Readiness) {
    readiness.expect(
        READINESS,
        "the first list of MetricsConfigs is not applied yet",
    );
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The number of `[[resources]]` and `[[endpoints]]` entries of a generated file.
fn entry_counts(file: &ConfigFile) -> (usize, usize) {
    let table: toml::Table = file.text.parse().unwrap_or_default();
    let count = |list: &str| {
        table
            .get(list)
            .and_then(toml::Value::as_array)
            .map_or(0, Vec::len)
    };
    (count("resources"), count("endpoints"))
}

/// Watches the MetricsConfigs `settings` names, asking for a reload once the first list is
/// complete and whenever a spec changes or one goes away.
async fn watch(
    client: Client,
    settings: Settings,
    store: Arc<Mutex<Store>>,
    reloads: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    let apis: Vec<Api<MetricsConfig>> = if settings.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let streams = apis
        .into_iter()
        .map(|api| watcher(api, watcher::Config::default()).boxed());
    let mut events = futures::stream::select_all(streams);
    let mut listing = settings.namespaces.len().max(1);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let changed = match event {
            None => return,
            Some(Err(e)) => {
                warn!(error = %e, "watching MetricsConfigs failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
            Some(Ok(watcher::Event::Apply(config) | watcher::Event::InitApply(config))) => {
                put(&client, &store, config).await
            }
            Some(Ok(watcher::Event::Delete(config))) => {
                let key = (config.namespace().unwrap_or_default(), config.name_any());
                lock(&store).held.remove(&key).is_some()
            }
            Some(Ok(watcher::Event::Init)) => false,
            Some(Ok(watcher::Event::InitDone)) => {
                listing = listing.saturating_sub(1);
                if listing == 0 {
                    lock(&store).listed = true;
                }
                listing == 0
            }
        };
        if changed && listing == 0 {
            let request = ReloadRequest {
                trigger: Trigger::MetricsConfigs,
                reply: None,
            };
            if reloads.send(request).await.is_err() {
                return;
            }
        }
    }
}

/// Holds `config`'s latest spec, with the scope of each kind it reads; whether it changed (a
/// status update, the host's own, changes nothing).
async fn put(client: &Client, store: &Mutex<Store>, config: MetricsConfig) -> bool {
    let key = (config.namespace().unwrap_or_default(), config.name_any());
    let generation = config.metadata.generation;
    if let Some(held) = lock(store).held.get(&key)
        && held.spec == config.spec
        && held.generation == generation
    {
        return false;
    }
    let mut scopes = Vec::new();
    for entry in &config.spec.resources {
        scopes.push(scope(client, entry).await);
    }
    let mut store = lock(store);
    let held = store.held.entry(key).or_insert_with(|| Held {
        generation,
        spec: config.spec.clone(),
        scopes: Vec::new(),
        applied: None,
        refused: None,
        counted: Vec::new(),
        written: config.status.clone(),
    });
    held.generation = generation;
    held.spec = config.spec;
    held.scopes = scopes;
    true
}

/// Whether the API server serves the kind of a `resources` entry, and in namespaces.
async fn scope(client: &Client, entry: &serde_json::Value) -> KindScope {
    let text = |key: &str| entry.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let gvk = kube::api::GroupVersionKind::gvk(text("group"), text("version"), text("kind"));
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((_, caps)) if caps.scope == kube::discovery::Scope::Namespaced => KindScope::Namespaced,
        Ok(_) => KindScope::Cluster,
        Err(_) => KindScope::Unknown,
    }
}

/// Writes each MetricsConfig's status when it changes, looking after each reload and every
/// [`STATUS_EVERY`]; asks for
/// a reload when a kind a MetricsConfig names, not served before, is served now (its CRD was
/// installed after it).
async fn write_statuses(
    client: Client,
    store: Arc<Mutex<Store>>,
    reloaded: Arc<Notify>,
    reloads: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    loop {
        if rescope(&client, &store).await {
            let request = ReloadRequest {
                trigger: Trigger::MetricsConfigs,
                reply: None,
            };
            if reloads.send(request).await.is_err() {
                return;
            }
        }
        let due: Vec<(Key, MetricsConfigStatus)> = {
            let store = lock(&store);
            store
                .held
                .iter()
                .filter_map(|(key, held)| {
                    let status = status_of(held);
                    (held.written.as_ref().map(without_times) != Some(without_times(&status)))
                        .then(|| (key.clone(), status))
                })
                .collect()
        };
        for ((namespace, name), mut status) in due {
            let api: Api<MetricsConfig> = Api::namespaced(client.clone(), &namespace);
            let previous = lock(&store)
                .held
                .get(&(namespace.clone(), name.clone()))
                .and_then(|held| held.written.clone());
            keep_transition_times(&mut status, previous.as_ref());
            let patch = serde_json::json!({ "status": status });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(held) = lock(&store).held.get_mut(&(namespace, name)) {
                        held.written = Some(status);
                    }
                }
                Err(e) => {
                    warn!(%namespace, %name, error = %e, "cannot write the status of a MetricsConfig")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(STATUS_EVERY) => {}
            () = reloaded.notified() => {}
        }
    }
}

/// Looks again at the kinds of MetricsConfigs that name a kind not served; whether one is
/// served now.
async fn rescope(client: &Client, store: &Mutex<Store>) -> bool {
    let unknown: Vec<(Key, MetricsConfigSpec)> = lock(store)
        .held
        .iter()
        .filter(|(_, held)| held.scopes.contains(&KindScope::Unknown))
        .map(|(key, held)| (key.clone(), held.spec.clone()))
        .collect();
    let mut changed = false;
    for (key, spec) in unknown {
        let mut scopes = Vec::new();
        for entry in &spec.resources {
            scopes.push(scope(client, entry).await);
        }
        let mut store = lock(store);
        if let Some(held) = store.held.get_mut(&key)
            && held.spec == spec
            && held.scopes != scopes
        {
            held.scopes = scopes;
            changed = true;
        }
    }
    changed
}

/// The status `held` should have now.
fn status_of(held: &Held) -> MetricsConfigStatus {
    let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: held.generation,
        last_transition_time: now(),
    };
    let accepted = match &held.refused {
        None => condition("Accepted", true, "Accepted", String::new()),
        Some(problem) => condition("Accepted", false, "Invalid", problem.clone()),
    };
    let ready = if held.applied.is_some() && held.refused.is_none() {
        condition("Ready", true, "Applied", String::new())
    } else if held.applied.is_some() {
        condition(
            "Ready",
            false,
            "PreviousVersionRuns",
            "the last accepted version runs".to_owned(),
        )
    } else {
        condition("Ready", false, "NotApplied", String::new())
    };
    let series = held
        .counted
        .iter()
        .map(|(stats, entry)| stats.snapshot().series.get(entry).copied().unwrap_or(0))
        .sum();
    MetricsConfigStatus {
        observed_generation: held.generation,
        conditions: vec![accepted, ready],
        series,
    }
}

/// The status without its times, to compare.
fn without_times(status: &MetricsConfigStatus) -> MetricsConfigStatus {
    let mut status = status.clone();
    for condition in &mut status.conditions {
        condition.last_transition_time.clear();
    }
    status
}

/// Keeps the time of each condition whose status did not change.
fn keep_transition_times(status: &mut MetricsConfigStatus, previous: Option<&MetricsConfigStatus>) {
    let Some(previous) = previous else {
        return;
    };
    for condition in &mut status.conditions {
        if let Some(old) = previous
            .conditions
            .iter()
            .find(|old| old.type_ == condition.type_ && old.status == condition.status)
        {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
