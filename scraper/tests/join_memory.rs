//! What the join store holds per joined object, measured with a counting allocator: a
//! PersistentVolumeClaim as the apiserver serves it, pruned to the fields one join reads, with
//! its indexes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use periscope_scraper::config::ResourceConfig;
use periscope_scraper::objects::{ObjectKey, ObjectPipeline, Secrets};
use serde::Deserialize;
use serde_json::json;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
// Unsafe because a global allocator can only be written so: the measurement needs one.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as the trait requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: allocated above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONFIG: &str = r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
[[resources.joins]]
name = "claim"
version = "v1"
kind = "PersistentVolumeClaim"
name_from = "data.claim"
[[resources.metrics]]
name = "disk_bytes"
type = "gauge"
path = "@claim.spec.resources.requests.storage"
labels = { mode = "@claim.spec.volumeMode" }
"#;

fn claim(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": format!("disk-rootdisk-{i:05}"),
            "namespace": "tenant-a",
            "uid": format!("5b0c5e5e-8a0b-4a5f-9a43-0d0a8a{i:06}"),
            "resourceVersion": "4819274",
            "creationTimestamp": "2026-11-20T10:14:03Z",
            "labels": {"app": "containerized-data-importer"},
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "volume.kubernetes.io/storage-provisioner": "rook-ceph.rbd.csi.ceph.com"
            },
            "finalizers": ["kubernetes.io/pvc-protection"],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-20T10:14:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:volumeName": {}}}}]
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "30Gi"}},
            "storageClassName": "ocs-storagecluster-ceph-rbd-virtualization",
            "volumeMode": "Block",
            "volumeName": format!("pvc-5b0c5e5e-8a0b-4a5f-9a43-0d0a8a{i:06}")
        },
        "status": {"accessModes": ["ReadWriteMany"], "capacity": {"storage": "30Gi"}, "phase": "Bound"}
    })
}

#[test]
fn a_joined_claim_costs_the_store_under_a_kibibyte() {
    #[derive(Deserialize)]
    struct Doc {
        resources: Vec<ResourceConfig>,
    }
    let doc: Doc = periscope_plugin_api::config::parse(CONFIG).unwrap();
    let pipeline = ObjectPipeline::compile(&doc.resources, Secrets::Refused).unwrap();
    const CLAIMS: usize = 2000;
    let claims: Vec<_> = (0..CLAIMS).map(claim).collect();
    let keys: Vec<_> = claims.iter().map(|c| ObjectKey::of(c).unwrap()).collect();
    let served = serde_json::to_vec(&claims[0]).unwrap().len();
    let before = LIVE.load(Ordering::Relaxed);
    for (key, claim) in keys.iter().zip(&claims) {
        pipeline.apply(key, claim, 0);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let per_claim = held / CLAIMS as isize;
    let (objects, json) = pipeline.joined_held();
    assert_eq!(objects, CLAIMS);
    println!(
        "per claim: {served} bytes served as JSON, {} bytes of pruned JSON, {per_claim} bytes of heap in the join store",
        json / CLAIMS
    );
    assert!(per_claim < 1024, "{per_claim} bytes per claim");
}
