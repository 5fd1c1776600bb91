//! Targets found through the Kubernetes API: Pods (their IP and a container port) or
//! EndpointSlices (each endpoint's first address and a slice port), watched with the same
//! list-then-watch machinery as objects. After every change the whole target set goes to the
//! scheduler, which starts and stops scrape loops to match.

use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::targets::{Target, Targets};
use super::{Discovery, Endpoint};
use crate::config::{DiscoveryRole, PortRef};
use crate::event::{ErrorKind, Event};
use crate::kube::known::Known;
use crate::kube::object::{RawObject, WatchedKind};
use crate::objects::ObjectKey;
use crate::objects::keep::Keep;
use crate::shard::Shard;

/// The discovery of one entry.
pub(crate) struct Watch {
    pub(crate) client: kube::Client,
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) shard: Shard,
    /// The entry's URL targets, always part of the set.
    pub(crate) statics: Targets,
    pub(crate) targets: watch::Sender<Option<Targets>>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) input: String,
}

/// The targets of every object of one stream.
#[derive(Default)]
struct StreamState {
    known: Known<Targets>,
    listed: bool,
}

impl Watch {
    /// Watches until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let Some(discovery) = &self.endpoint.discovery else {
            return;
        };
        let resource = match discovery.role {
            DiscoveryRole::Pod => ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
            DiscoveryRole::EndpointSlice => {
                ApiResource::erase::<k8s_openapi::api::discovery::v1::EndpointSlice>(&())
            }
        };
        let watched = WatchedKind {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        };
        let namespaces: Vec<Option<&str>> = if discovery.namespaces.is_empty() {
            vec![None]
        } else {
            discovery
                .namespaces
                .iter()
                .map(|n| Some(n.as_str()))
                .collect()
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &discovery.label_selector {
            config = config.labels(selector);
        }
        let streams = namespaces.iter().enumerate().map(|(i, namespace)| {
            let api: Api<RawObject> = match namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            watcher(api, config.clone())
                .default_backoff()
                .map(move |event| (i, event))
                .boxed()
        });
        let mut merged = futures::stream::select_all(streams);
        let mut states: Vec<StreamState> =
            namespaces.iter().map(|_| StreamState::default()).collect();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = merged.next() => next,
            };
            let Some((i, event)) = next else { return };
            let Some(state) = states.get_mut(i) else {
                continue;
            };
            match event {
                Ok(event) => {
                    if !self.handle(discovery, &watched, state, event) {
                        continue;
                    }
                }
                Err(e) => {
                    let message = format!("discovery of targets failed (retrying): {e}");
                    let input = self.input.clone();
                    let kind = ErrorKind::Read;
                    let _ = self
                        .events
                        .send(Event::Error {
                            input,
                            kind,
                            message,
                        })
                        .await;
                    continue;
                }
            }
            if states.iter().all(|s| s.listed) {
                let mut all = self.statics.clone();
                for state in &states {
                    for targets in state.known.values() {
                        all.extend(targets.iter().map(|(id, t)| (id.clone(), t.clone())));
                    }
                }
                self.targets.send_replace(Some(all));
            }
        }
    }

    /// Applies one watch event to `state`; false when the target set cannot have changed.
    fn handle(
        &self,
        discovery: &Discovery,
        watched: &WatchedKind,
        state: &mut StreamState,
        event: watcher::Event<RawObject>,
    ) -> bool {
        match event {
            watcher::Event::Init => {
                state.known.start_relist();
                false
            }
            watcher::Event::InitApply(object) => {
                if let Some((key, targets)) = self.targets_of(discovery, watched, &object) {
                    state.known.relisted(key, targets);
                }
                false
            }
            watcher::Event::InitDone => {
                // The targets of objects not listed again leave the set sent below.
                state.known.finish_relist();
                state.listed = true;
                true
            }
            watcher::Event::Apply(object) => {
                if let Some((key, targets)) = self.targets_of(discovery, watched, &object) {
                    state.known.insert(key, targets);
                }
                true
            }
            watcher::Event::Delete(object) => {
                if let Some(key) = watched.key_of_deleted(&object) {
                    state.known.remove(&key);
                }
                true
            }
        }
    }

    /// The targets of one object (of this shard), with the object's key.
    fn targets_of(
        &self,
        discovery: &Discovery,
        watched: &WatchedKind,
        object: &RawObject,
    ) -> Option<(ObjectKey, Targets)> {
        let json = watched.json(object, &Keep::everything()).ok()?;
        let key = ObjectKey::of(&json)?;
        let found = match discovery.role {
            DiscoveryRole::Pod => pod_targets(discovery, &key, &json),
            DiscoveryRole::EndpointSlice => slice_targets(discovery, &key, &json),
        };
        let targets = found
            .into_iter()
            .map(|target| (target.source_id(&self.endpoint), Arc::new(target)))
            .filter(|(id, target)| target.in_shard(self.shard, id))
            .collect();
        Some((key, targets))
    }
}

fn text<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The URL of a target at `ip:port`.
fn url(discovery: &Discovery, ip: &str, port: u16) -> Option<reqwest::Url> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let text = format!(
        "{}://{host}:{port}{}",
        discovery.scheme.as_str(),
        discovery.path
    );
    reqwest::Url::parse(&text).ok()
}

/// The labels read from `object` by the entry's `labels` paths, after `fixed`.
fn labels(
    discovery: &Discovery,
    object: &Value,
    fixed: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut labels = fixed;
    for (name, path) in &discovery.labels {
        let value = crate::objects::label_value(path, object, object);
        labels.retain(|(n, _)| n != name);
        labels.push((name.clone(), value));
    }
    labels
}

/// A pod (`key` its key) with an IP that has not ended: one target on the configured port.
pub(super) fn pod_targets(discovery: &Discovery, key: &ObjectKey, pod: &Value) -> Vec<Target> {
    let ip = text(pod, "/status/podIP");
    let phase = text(pod, "/status/phase");
    if ip.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return Vec::new();
    }
    let port = match &discovery.port {
        PortRef::Number(port) => Some(*port),
        PortRef::Name(name) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort")?.as_u64())
            .and_then(|p| u16::try_from(p).ok()),
    };
    let Some(url) = port.and_then(|port| url(discovery, ip, port)) else {
        return Vec::new();
    };
    let fixed = vec![
        ("namespace".to_owned(), key.namespace().to_owned()),
        ("pod".to_owned(), key.name().to_owned()),
    ];
    vec![Target::new(
        url,
        labels(discovery, pod, fixed),
        Some(key.clone()),
    )]
}

/// One target per endpoint of a slice (`key` its key) with an address, on the configured port.
pub(super) fn slice_targets(discovery: &Discovery, key: &ObjectKey, slice: &Value) -> Vec<Target> {
    let port = slice
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| match &discovery.port {
            PortRef::Number(n) => p.get("port").and_then(Value::as_u64) == Some(u64::from(*n)),
            PortRef::Name(name) => p.get("name").and_then(Value::as_str) == Some(name),
        })
        .and_then(|p| p.get("port")?.as_u64())
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        return Vec::new();
    };
    let service = text(slice, "/metadata/labels/kubernetes.io~1service-name");
    slice
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|endpoint| {
            let address = endpoint.pointer("/addresses/0").and_then(Value::as_str)?;
            let url = url(discovery, address, port)?;
            let mut fixed = vec![
                ("namespace".to_owned(), key.namespace().to_owned()),
                ("service".to_owned(), service.to_owned()),
            ];
            if text(endpoint, "/targetRef/kind") == "Pod" {
                fixed.push((
                    "pod".to_owned(),
                    text(endpoint, "/targetRef/name").to_owned(),
                ));
            }
            Some(Target::new(
                url,
                labels(discovery, slice, fixed),
                Some(key.clone()),
            ))
        })
        .collect()
}
