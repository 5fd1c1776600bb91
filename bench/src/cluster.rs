//! What the benchmark does to the API server: install CRDs, create objects quickly (many
//! requests in flight), and send a steady stream of status updates.

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

/// Creates every CRD in `crd_file` (one or more YAML documents) and waits until each is
/// established.
pub async fn install_crd(client: &Client, crd_file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(crd_file)
        .map_err(|e| format!("read {}: {e}", crd_file.display()))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd: Option<CustomResourceDefinition> = serde::Deserialize::deserialize(document)
            .map_err(|e| format!("parse {}: {e}", crd_file.display()))?;
        let Some(crd) = crd else { continue };
        let name = crd.name_any();
        api.create(&PostParams::default(), &crd)
            .await
            .map_err(|e| format!("create CRD {name}: {e}"))?;
        wait_established(&api, &name).await?;
    }
    Ok(())
}

/// Waits up to 30 s until CRD `name` is established.
async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let current = api
            .get(name)
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

/// Creates namespaces `names`.
pub async fn create_namespaces(
    client: &Client,
    names: impl Iterator<Item = String>,
) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))
                .map_err(|e| format!("namespace object: {e}"))?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("create namespace {name}: {e}"))?;
    }
    Ok(())
}

/// Creates `count` objects of `resource`, `object(i)` the i-th (namespaced, with its namespace
/// in its metadata), `IN_FLIGHT` requests at a time; when `status_subresource`, each object's
/// `status` is then set through the status subresource (the create drops it). Returns the uid
/// the API server gave each object, in index order.
pub async fn create_objects(
    client: &Client,
    resource: &ApiResource,
    count: usize,
    status_subresource: bool,
    object: impl Fn(usize) -> serde_json::Value,
) -> Result<Vec<String>, String> {
    let results: Vec<Result<(usize, String), String>> = futures::stream::iter(0..count)
        .map(|i| {
            let value = object(i);
            async move {
                let object: DynamicObject = serde_json::from_value(value)
                    .map_err(|e| format!("{} {i} as an object: {e}", resource.kind))?;
                let name = object.name_any();
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &namespace, resource);
                let params = PostParams::default();
                let created = with_retries(&name, || api.create(&params, &object)).await?;
                if let Some(status) = object.data.get("status").filter(|_| status_subresource) {
                    let patch = serde_json::json!({ "status": status });
                    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                    with_retries(&name, || api.patch_status(&name, &params, &patch)).await?;
                }
                Ok((i, created.uid().unwrap_or_default()))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut uids = vec![String::new(); count];
    for result in results {
        let (i, uid) = result?;
        uids[i] = uid;
    }
    Ok(uids)
}

/// Sends a request until it succeeds: a busy API server may refuse one now and then (429).
async fn with_retries<T, F>(name: &str, mut send: impl FnMut() -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut tries = 0;
    loop {
        match send().await {
            Ok(answer) => return Ok(answer),
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("{name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
}

/// Creates the namespaces and every VMI of `fleet`, `IN_FLIGHT` requests at a time.
pub async fn create_fleet(client: &Client, fleet: &Fleet) -> Result<(), String> {
    create_namespaces(client, (0..NAMESPACES).map(Fleet::namespace)).await?;
    create_objects(client, &vmi_resource(), fleet.len(), false, |i| {
        fleet.object(i)
    })
    .await?;
    Ok(())
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

impl StreamStats {
    /// What was asked (`rate` patches/s for `seconds`) and what went through, in words: `"500
    /// merge patches/s asked for 60 s (48 in flight at most); 10012 applied in 60.1 s (167/s), 0
    /// failed, 19988 not sent in time"`.
    pub fn summary(&self, rate: u32, seconds: u64) -> String {
        let elapsed = self.elapsed.as_secs_f64();
        format!(
            "{rate} merge patches/s asked for {seconds} s ({IN_FLIGHT} in flight at most); {} \
             applied in {elapsed:.1} s ({:.0}/s), {} failed, {} not sent in time",
            self.applied,
            self.applied as f64 / elapsed,
            self.failed,
            self.skipped
        )
    }
}

/// Objects an update stream patches: where, how, and what to remember once a patch went through.
pub trait Updated: Send + Sync + 'static {
    /// The kind the patches go to.
    fn resource(&self) -> ApiResource;
    /// Whether the patches go through the status subresource.
    fn status_subresource(&self) -> bool;
    /// How many objects there are; the stream patches them round robin, so no two updates of one
    /// object are ever in flight together while fewer than that are.
    fn len(&self) -> usize;
    /// The `k`-th update.
    fn update(&self, k: usize) -> Update;
    /// Records that object `i` is now in `state` (its update went through).
    fn applied(&self, i: usize, state: u8);
}

/// One update of an object.
pub struct Update {
    /// The object's index.
    pub index: usize,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The state it moves to, as the objects number them.
    pub state: u8,
    /// The JSON merge patch.
    pub patch: serde_json::Value,
}

/// Sends `rate` merge patches a second to `objects` for `duration`, then waits for the ones in
/// flight.
pub async fn update_stream<U: Updated>(
    client: &Client,
    objects: Arc<U>,
    rate: u32,
    duration: Duration,
) -> StreamStats {
    let resource = objects.resource();
    let status_subresource = objects.status_subresource();
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
            let update = objects.update(sent);
            sent += 1;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &update.namespace, &resource);
            let (objects, applied, failed) = (objects.clone(), applied.clone(), failed.clone());
            tasks.spawn(async move {
                let patch = Patch::Merge(&update.patch);
                let params = PatchParams::default();
                let result = if status_subresource {
                    api.patch_status(&update.name, &params, &patch).await
                } else {
                    api.patch(&update.name, &params, &patch).await
                };
                match result {
                    Ok(_) => {
                        objects.applied(update.index, update.state);
                        applied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("patch {}: {e}", update.name);
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
