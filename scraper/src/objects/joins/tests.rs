use serde_json::{Value, json};

use super::super::tests::{apply_at, key};
use super::super::{CompileError, ObjectPipeline, Secrets};
use crate::config::test_resources as resources;
use periscope_plugin_api::batch::Update;

fn pipeline(text: &str) -> ObjectPipeline {
    ObjectPipeline::compile(&resources(text), Secrets::Refused).unwrap()
}

fn errors(text: &str) -> Vec<CompileError> {
    ObjectPipeline::compile(&resources(text), Secrets::Refused).unwrap_err()
}

/// The samples of an object's update, as `name{labels} value` lines.
fn lines(pipeline: &ObjectPipeline, object: &Value) -> Vec<String> {
    let (update, problems) = apply_at(pipeline, object, 1_000).expect("selected");
    assert!(problems.is_empty(), "{problems:?}");
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels().map(|(n, v)| format!("{n}={v:?}")).collect();
            format!("{}{{{}}} {}", s.metric_name(), labels.join(","), s.value())
        })
        .collect()
}

fn pod(name: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "n1", "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
    })
}

fn claim(name: &str, namespace: &str, size: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": {"volumeMode": "Filesystem", "resources": {"requests": {"storage": size}}},
    })
}

const BY_NAME: &str = r#"
[[resources]]
version = "v1"
kind = "Pod"
labels = { pod = "metadata.name" }
[[resources.joins]]
name = "claim"
version = "v1"
kind = "PersistentVolumeClaim"
name_from = "spec.volumes[0].persistentVolumeClaim.claimName"
[[resources.metrics]]
name = "claim_bytes"
type = "gauge"
path = "@claim.spec.resources.requests.storage"
labels = { mode = { expr = "joins.claim.spec.volumeMode.lowerAscii()" } }
"#;

#[test]
fn a_join_by_name_reads_the_joined_object_in_paths_and_expressions() {
    let pipeline = pipeline(BY_NAME);
    pipeline.apply(&key(&claim("c1", "a", "1Ki")), &claim("c1", "a", "1Ki"), 0);
    assert_eq!(
        lines(&pipeline, &pod("p1", "c1")),
        ["claim_bytes{pod=\"p1\",mode=\"filesystem\"} 1024"]
    );
    // The same name in another namespace is another claim.
    let other = claim("c2", "b", "1Ki");
    pipeline.apply(&key(&other), &other, 0);
    assert_eq!(lines(&pipeline, &pod("p2", "c2")), Vec::<String>::new());
}

#[test]
fn a_joined_object_that_changes_or_goes_marks_its_dependents_and_only_them() {
    let pipeline = pipeline(BY_NAME);
    let mut signal = pipeline.recompute_signal().expect("the config has joins");
    assert_eq!(lines(&pipeline, &pod("p1", "c1")), Vec::<String>::new());
    lines(&pipeline, &pod("p2", "c2"));
    assert!(!signal.has_changed().unwrap());
    // The claim appears: p1 looked it up, p2 did not.
    pipeline.apply(&key(&claim("c1", "a", "1Ki")), &claim("c1", "a", "1Ki"), 0);
    assert!(signal.has_changed().unwrap());
    signal.mark_unchanged();
    let taken = pipeline.take_recompute("v1", "Pod", None);
    assert_eq!(taken, [key(&pod("p1", "c1"))]);
    assert!(pipeline.take_recompute("v1", "Pod", None).is_empty());
    assert_eq!(
        lines(&pipeline, &pod("p1", "c1")),
        ["claim_bytes{pod=\"p1\",mode=\"filesystem\"} 1024"]
    );
    // Applied again unchanged: nothing to recompute.
    pipeline.apply(&key(&claim("c1", "a", "1Ki")), &claim("c1", "a", "1Ki"), 0);
    assert!(!signal.has_changed().unwrap());
    // A change of a field joins do not read is no change either.
    let mut labelled = claim("c1", "a", "1Ki");
    labelled["metadata"]["labels"] = json!({"x": "y"});
    pipeline.apply(&key(&labelled), &labelled, 0);
    assert!(!signal.has_changed().unwrap());
    // Resized.
    pipeline.apply(&key(&claim("c1", "a", "2Ki")), &claim("c1", "a", "2Ki"), 0);
    assert!(signal.has_changed().unwrap());
    assert_eq!(pipeline.take_recompute("v1", "Pod", Some("a")).len(), 1);
    assert_eq!(
        lines(&pipeline, &pod("p1", "c1")),
        ["claim_bytes{pod=\"p1\",mode=\"filesystem\"} 2048"]
    );
    // Deleted.
    pipeline.remove(&key(&claim("c1", "a", "2Ki")));
    assert_eq!(pipeline.take_recompute("v1", "Pod", Some("a")).len(), 1);
    assert_eq!(lines(&pipeline, &pod("p1", "c1")), Vec::<String>::new());
}

#[test]
fn an_object_whose_key_changes_stops_depending_on_the_old_one() {
    let pipeline = pipeline(BY_NAME);
    lines(&pipeline, &pod("p1", "c1"));
    lines(&pipeline, &pod("p1", "c2"));
    pipeline.apply(&key(&claim("c1", "a", "1Ki")), &claim("c1", "a", "1Ki"), 0);
    assert!(pipeline.take_recompute("v1", "Pod", None).is_empty());
    pipeline.apply(&key(&claim("c2", "a", "1Ki")), &claim("c2", "a", "1Ki"), 0);
    assert_eq!(pipeline.take_recompute("v1", "Pod", None).len(), 1);
    // Removed: it depends on nothing any more.
    pipeline.remove(&key(&pod("p1", "c2")));
    pipeline.remove(&key(&claim("c2", "a", "1Ki")));
    assert!(pipeline.take_recompute("v1", "Pod", None).is_empty());
}

#[test]
fn a_join_by_uid_finds_the_object_in_any_namespace() {
    let pipeline = pipeline(
        r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
[[resources.joins]]
name = "owner"
version = "v1"
kind = "Pod"
uid_from = "metadata.annotations.owner"
[[resources.metrics]]
name = "owner"
type = "info"
labels = { pod = "@owner.metadata.name", node = "@owner.spec.nodeName" }
"#,
    );
    let owner = pod("p1", "c1");
    pipeline.apply(&key(&owner), &owner, 0);
    let map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "m", "namespace": "other", "annotations": {"owner": "uid-p1"}},
    });
    assert_eq!(
        lines(&pipeline, &map),
        ["owner_info{node=\"n1\",pod=\"p1\"} 1"]
    );
}

const BY_LABEL: &str = r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
[[resources.joins]]
name = "launcher"
version = "v1"
kind = "Pod"
label = "created-by"
label_from = "metadata.uid"
where = "joined.status.phase == 'Running' && joined.spec.nodeName == object.data.node"
[[resources.metrics]]
name = "launcher"
type = "info"
labels = { pod = { expr = "has(joins.launcher) ? joins.launcher.metadata.name : ''" } }
"#;

fn launcher(name: &str, owner: &str, phase: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}"), "labels": {"created-by": owner}},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    })
}

fn config_map() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "vmi", "namespace": "a", "uid": "uid-vmi"},
        "data": {"node": "n1"},
    })
}

#[test]
fn a_label_join_takes_the_first_candidate_its_where_keeps() {
    let pipeline = pipeline(BY_LABEL);
    for pod in [
        launcher("l0", "uid-vmi", "Running", "n2"),
        launcher("l1", "uid-vmi", "Pending", "n1"),
        launcher("l2", "uid-vmi", "Running", "n1"),
        launcher("l3", "uid-vmi", "Running", "n1"),
        launcher("l4", "uid-other", "Running", "n1"),
    ] {
        pipeline.apply(&key(&pod), &pod, 0);
    }
    assert_eq!(
        lines(&pipeline, &config_map()),
        ["launcher_info{pod=\"l2\"} 1"]
    );
    // l2 stops running: l3 is next.
    let stopped = launcher("l2", "uid-vmi", "Succeeded", "n1");
    pipeline.apply(&key(&stopped), &stopped, 0);
    assert_eq!(pipeline.take_recompute("v1", "ConfigMap", None).len(), 1);
    assert_eq!(
        lines(&pipeline, &config_map()),
        ["launcher_info{pod=\"l3\"} 1"]
    );
    // l3 loses its label: none is left.
    let mut unlabelled = launcher("l3", "uid-vmi", "Running", "n1");
    unlabelled["metadata"]["labels"] = json!({});
    pipeline.apply(&key(&unlabelled), &unlabelled, 0);
    assert_eq!(pipeline.take_recompute("v1", "ConfigMap", None).len(), 1);
    assert_eq!(
        lines(&pipeline, &config_map()),
        ["launcher_info{pod=\"\"} 1"]
    );
    // Only the Pods carrying the label are held, pruned to what the join reads.
    let (objects, bytes) = pipeline.joined_held();
    assert_eq!(objects, 4);
    assert!(bytes < 4 * 250, "{bytes} bytes");
}

#[test]
fn join_mistakes_are_config_errors_naming_their_key() {
    let errors = errors(
        r#"
[[resources]]
version = "v1"
kind = "Pod"
labels = { a = "@nope.metadata.name", b = { expr = "joins.other.x" } }
[[resources.joins]]
name = "claim"
version = "v1"
kind = "PersistentVolumeClaim"
[[resources.joins]]
name = "claim"
version = "v1"
kind = "Secret"
name_from = "@claim.metadata.name"
label = "x"
[[resources.metrics]]
name = "x"
type = "info"
[[resources]]
version = "v1"
kind = "Node"
[[resources.metrics]]
name = "y"
type = "gauge"
expr = "joins.a.b"
"#,
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "resources[0].joins[0]",
            "resources[0].joins[1].name",
            "resources[0].joins[1].kind",
            "resources[0].joins[1]",
            "resources[0].joins[1].label_from",
            "resources[0].joins[1].name_from",
            "resources[0].labels.a",
            "resources[0].labels.b",
            "resources[1].metrics[0].expr",
        ],
        "{errors:#?}"
    );
    assert!(
        errors[6].message.contains("no join named `nope`"),
        "{}",
        errors[6].message
    );
    assert!(
        errors[8].message.contains("no `[[resources.joins]]`"),
        "{}",
        errors[8].message
    );
}

#[test]
fn entries_without_joins_have_no_join_state() {
    let pipeline = pipeline(
        "[[resources]]\nversion = \"v1\"\nkind = \"Pod\"\n[[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n",
    );
    assert!(pipeline.recompute_signal().is_none());
    assert!(!pipeline.take_any_recompute());
}

/// A PersistentVolumeClaim as the apiserver serves it, managed fields and all.
fn served_claim() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "disk-rootdisk-7d4f9",
            "namespace": "tenant-a",
            "uid": "5b0c5e5e-8a0b-4a5f-9a43-0d0a8a1f6b2e",
            "resourceVersion": "4819274",
            "creationTimestamp": "2026-11-20T10:14:03Z",
            "labels": {"app": "containerized-data-importer", "app.kubernetes.io/component": "storage"},
            "annotations": {
                "cdi.kubevirt.io/storage.contentType": "kubevirt",
                "cdi.kubevirt.io/storage.pod.phase": "Succeeded",
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.beta.kubernetes.io/storage-provisioner": "rook-ceph.rbd.csi.ceph.com",
                "volume.kubernetes.io/storage-provisioner": "rook-ceph.rbd.csi.ceph.com"
            },
            "finalizers": ["kubernetes.io/pvc-protection"],
            "ownerReferences": [{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "disk-rootdisk-7d4f9", "uid": "0c9c1d7e-2f3b-4d43-8f2a-6a1e3b0f1c55", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-20T10:14:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {"f:pv.kubernetes.io/bind-completed": {}, "f:pv.kubernetes.io/bound-by-controller": {}}}, "f:spec": {"f:volumeName": {}}}},
                {"manager": "virt-cdi-controller", "operation": "Update", "apiVersion": "v1", "time": "2026-11-20T10:14:03Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:ownerReferences": {}}, "f:spec": {"f:accessModes": {}, "f:resources": {"f:requests": {".": {}, "f:storage": {}}}, "f:volumeMode": {}}}}
            ]
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "30Gi"}},
            "storageClassName": "ocs-storagecluster-ceph-rbd-virtualization",
            "volumeMode": "Block",
            "volumeName": "pvc-5b0c5e5e-8a0b-4a5f-9a43-0d0a8a1f6b2e"
        },
        "status": {"accessModes": ["ReadWriteMany"], "capacity": {"storage": "30Gi"}, "phase": "Bound"}
    })
}

#[test]
fn a_served_claim_is_held_in_a_fraction_of_its_size() {
    let kinds = super::joined_kinds(&resources(BY_NAME));
    let served = served_claim();
    let pruned = kinds[0].keep.pruned(&served);
    let whole = serde_json::to_vec(&served).unwrap().len();
    let held = serde_json::to_vec(&pruned).unwrap().len();
    let compressed = periscope_plugin_api::lz4::Compressor::default()
        .compress(&serde_json::to_vec(&pruned).unwrap())
        .len();
    println!("claim: {whole} bytes of JSON, {held} pruned, {compressed} pruned and compressed");
    assert!(held * 5 < whole, "{held} of {whole}");
    let pipeline = pipeline(BY_NAME);
    pipeline.apply(&key(&served), &served, 0);
    assert_eq!(pipeline.joined_held(), (1, held));
}

#[test]
fn a_many_join_finds_one_object_per_value_for_each_item() {
    let config = r#"
[[resources]]
version = "v1"
kind = "Pod"
[[resources.joins]]
name = "claims"
version = "v1"
kind = "PersistentVolumeClaim"
name_from = "spec.volumes[*].persistentVolumeClaim.claimName"
many = true
[[resources.metrics]]
name = "disk_bytes"
type = "gauge"
each = "spec.volumes[*]"
where = "has(item.persistentVolumeClaim) && item.persistentVolumeClaim.claimName in joins.claims"
expr = "joins.claims[item.persistentVolumeClaim.claimName].spec.resources.requests.storage"
labels = { device = "name", mode = { expr = "joins.claims[item.persistentVolumeClaim.claimName].spec.volumeMode" } }
"#;
    let pipeline = pipeline(config);
    for claim in [claim("c1", "a", "1Ki"), claim("c2", "a", "2Ki")] {
        pipeline.apply(&key(&claim), &claim, 0);
    }
    let mut pod = pod("p1", "c1");
    pod["spec"]["volumes"] = json!([
        {"name": "root", "persistentVolumeClaim": {"claimName": "c1"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "c2"}},
        {"name": "gone", "persistentVolumeClaim": {"claimName": "c3"}},
        {"name": "scratch", "emptyDir": {}},
    ]);
    assert_eq!(
        lines(&pipeline, &pod),
        [
            "disk_bytes{device=\"root\",mode=\"Filesystem\"} 1024",
            "disk_bytes{device=\"data\",mode=\"Filesystem\"} 2048",
        ]
    );
    // c3 appears: the Pod depends on it too.
    pipeline.apply(&key(&claim("c3", "a", "3Ki")), &claim("c3", "a", "3Ki"), 0);
    assert_eq!(pipeline.take_recompute("v1", "Pod", None).len(), 1);
    assert_eq!(lines(&pipeline, &pod).len(), 3);
    // Pruned all the same: the dynamic index is the key, what follows it is kept.
    let kinds = super::joined_kinds(&resources(config));
    assert!(!kinds[0].keep.is_whole());
    let pruned = kinds[0].keep.pruned(&claim("c1", "a", "1Ki"));
    assert_eq!(pruned["spec"]["resources"]["requests"]["storage"], "1Ki");
    assert_eq!(pruned["spec"]["volumeMode"], "Filesystem");
}
