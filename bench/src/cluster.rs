//! What the benchmark does to the API server: install the VMI CRD, create the fleet quickly
//! (many requests in flight), and send a steady stream of status updates.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt as _};
use tokio::sync::Semaphore;

use crate::fleet::{Fleet, NAMESPACES};

/// How many create or patch requests are in flight at most.
pub const IN_FLIGHT: usize = 48;

/// The VMI kind as the API serves it.
pub fn vmi_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance");
    ApiResource::from_gvk_with_plural(&gvk, "virtualmachineinstances")
}

/// Creates the CRD in `crd_file` and waits until it is established.
pub async fn install_crd(client: &Client, crd_file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(crd_file)
        .map_err(|e| format!("read {}: {e}", crd_file.display()))?;
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("parse {}: {e}", crd_file.display()))?;
    let name = crd.name_any();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd)
        .await
        .map_err(|e| format!("create CRD {name}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let current = api
            .get(&name)
            .await
            .map_err(|e| format!("get CRD {name}: {e}"))?;
        let established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("CRD {name} not established after 30 s"))
}

/// Creates the namespaces and every VMI of `fleet`, `IN_FLIGHT` requests at a time.
pub async fn create_fleet(client: &Client, fleet: &Fleet) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let ns: Namespace = serde_json::from_value(
            serde_json::json!({ "metadata": { "name": Fleet::namespace(n) } }),
        )
        .map_err(|e| format!("namespace object: {e}"))?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("create namespace {}: {e}", Fleet::namespace(n)))?;
    }
    let resource = vmi_resource();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..fleet.len())
        .map(|i| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &Fleet::namespace(i), &resource);
            let object = fleet.object(i);
            async move {
                let object: DynamicObject = serde_json::from_value(object)
                    .map_err(|e| format!("VMI {i} as an object: {e}"))?;
                // A busy API server may refuse a request now and then (429): try again.
                let mut tries = 0;
                loop {
                    match api.create(&PostParams::default(), &object).await {
                        Ok(_) => return Ok(()),
                        Err(e) if tries < 5 => {
                            tries += 1;
                            eprintln!("create {}: {e}; retrying", Fleet::name(i));
                            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                        }
                        Err(e) => return Err(format!("create {}: {e}", Fleet::name(i))),
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What an update stream achieved.
#[derive(Debug, Clone, Copy)]
pub struct StreamStats {
    /// Updates the API server accepted.
    pub applied: usize,
    /// Updates it refused.
    pub failed: usize,
    /// Updates the stream could not send on time because `IN_FLIGHT` were already waiting.
    pub skipped: usize,
    /// From the first update to the last answer.
    pub elapsed: Duration,
}

/// Sends `rate` merge patches a second to the fleet's VMIs for `duration`, then waits for the
/// ones in flight.
pub async fn update_stream(
    client: &Client,
    fleet: Arc<Fleet>,
    rate: u32,
    duration: Duration,
) -> StreamStats {
    let resource = vmi_resource();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let applied = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut skipped = 0;
    let mut sent = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as usize;
        while sent + skipped < due {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                skipped += due - sent - skipped;
                break;
            };
            let (i, phase, patch) = fleet.update(sent);
            sent += 1;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &Fleet::namespace(i), &resource);
            let (fleet, applied, failed) = (fleet.clone(), applied.clone(), failed.clone());
            tasks.spawn(async move {
                let result = api
                    .patch(
                        &Fleet::name(i),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                match result {
                    Ok(_) => {
                        fleet.applied(i, phase);
                        applied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("patch {}: {e}", Fleet::name(i));
                        }
                    }
                }
                drop(permit);
            });
        }
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    StreamStats {
        applied: applied.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        skipped,
        elapsed: start.elapsed(),
    }
}

/// The API server's version (`/version`'s gitVersion).
pub async fn apiserver_version(client: &Client) -> String {
    client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
