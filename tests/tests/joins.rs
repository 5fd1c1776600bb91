//! Joins across objects (`[[resources.joins]]`) against a real kube-apiserver and etcd: a join by
//! namespace/name (ConfigMap → PersistentVolumeClaim), by uid (ConfigMap → Pod) and by label with
//! conditions (ConfigMap → its "launcher" Pod, Running on the same node). Each joined object then
//! changes, goes or comes, and the dependent series on the Prometheus exporter's page follow.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use periscope_tests::controlplane::{ControlPlane, create_all, kube_client, service_account_token};
use periscope_tests::{Host, free_port, http_get, periscope, plugin_dir, wait_until};
use serde_json::json;

const NS: &str = "joins";

async fn namespace(client: &kube::Client) {
    namespace_named(client, NS).await;
}

async fn namespace_named(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Creates ConfigMap `name` with `data`, or sets the data of the one there; returns its uid.
async fn put_configmap(client: &kube::Client, name: &str, data: serde_json::Value) -> String {
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let patch =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data});
    let params = PatchParams::apply("joins-test").force();
    let cm = api
        .patch(name, &params, &Patch::Apply(patch))
        .await
        .expect("apply configmap");
    cm.metadata.uid.expect("a uid")
}

/// Creates Pod `name` on `node` with `labels`, then sets its phase through the status
/// subresource; returns its uid.
async fn pod(
    client: &kube::Client,
    name: &str,
    node: &str,
    labels: serde_json::Value,
    phase: &str,
) -> String {
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "example.invalid/app"}]}
    }))
    .unwrap();
    let pod = api
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    set_phase(client, name, phase).await;
    pod.metadata.uid.expect("a uid")
}

async fn set_phase(client: &kube::Client, name: &str, phase: &str) {
    Api::<Pod>::namespaced(client.clone(), NS)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await
        .expect("set pod phase");
}

async fn delete_pod(client: &kube::Client, name: &str) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete(name, &now)
        .await
        .expect("delete pod");
}

/// A host watching ConfigMaps of the test namespace with the metrics in `entry` (after the
/// `[[resources]]` header lines), serving them on a Prometheus exporter page at `listen`.
fn config(kubeconfig: &Path, listen: SocketAddr, entry: &str) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"

[kubernetes]
kubeconfig = "{kubeconfig}"

[[resources]]
version = "v1"
kind = "ConfigMap"
namespaces = ["{NS}"]
prefix = "joins"
labels = {{ name = "metadata.name" }}
{entry}
[[exporters]]
name = "prom"
plugin = "prometheus"
batch = {{ max_wait = "10ms" }}
config = {{ listen = "{listen}" }}
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// A host started in a temp dir with the Prometheus plugin, ready.
fn start(dir: &Path, config: &str) -> Host {
    plugin_dir(&dir.join("plugins"), &["prometheus"]);
    let mut host = Host::start(dir, config);
    host.wait_ready(Duration::from_secs(30));
    host
}

/// The lines of the exporter's page whose series is of family `family`, sorted.
fn series(listen: SocketAddr, family: &str) -> Vec<String> {
    let Ok((200, page)) = http_get(&format!("http://{listen}/metrics")) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = page
        .lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Waits until the page shows exactly `expected` for `family`.
fn expect_series(host: &Host, listen: SocketAddr, family: &str, expected: &[&str]) {
    assert!(
        wait_until(Duration::from_secs(20), || series(listen, family)
            == expected),
        "expected {expected:#?}, found {:#?}\n{}",
        series(listen, family),
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_by_name_follows_the_claim_as_it_is_resized_deleted_and_renamed() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client).await;
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "expandable"},
        "provisioner": "example.com/none",
        "allowVolumeExpansion": true,
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("create storage class");
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    for (name, mode) in [("data", "Filesystem"), ("other", "Block")] {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "storageClassName": "expandable",
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": mode,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }))
        .unwrap();
        claims
            .create(&PostParams::default(), &claim)
            .await
            .expect("create claim");
        // Only a bound claim may be resized: no controller binds it here, so the test does.
        claims
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}),
                ),
            )
            .await
            .expect("bind claim");
    }
    put_configmap(&client, "vm", json!({"claim": "data"})).await;
    put_configmap(&client, "unrelated", json!({})).await;
    namespace_named(&client, "monitoring").await;

    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let entry = r#"
  [[resources.joins]]
  name = "claim"
  version = "v1"
  kind = "PersistentVolumeClaim"
  name_from = "data.claim"

  [[resources.metrics]]
  name = "disk_bytes"
  type = "gauge"
  path = "@claim.spec.resources.requests.storage"
  labels = { claim = "@claim.metadata.name", mode = { expr = "joins.claim.spec.volumeMode.lowerAscii()" } }
"#;
    // The host runs as what `periscope rbac` grants: the ConfigMaps and the joined claims.
    std::fs::write(
        dir.path().join("rbac.toml"),
        config(cp.kubeconfig_path(), listen, entry).replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let (status, yaml, stderr) = periscope(
        &["rbac", "--config", "rbac.toml", "--namespace", "monitoring"],
        dir.path(),
    );
    assert!(status.success(), "{stderr}");
    assert!(
        yaml.contains(r#"resources: ["configmaps", "persistentvolumeclaims"]"#),
        "{yaml}"
    );
    create_all(&client, &yaml).await;
    let token = service_account_token(&client, "monitoring", "periscope").await;
    let kubeconfig = dir.path().join("periscope.kubeconfig");
    cp.token_kubeconfig(&token, &kubeconfig);
    let mut host = start(dir.path(), &config(&kubeconfig, listen, entry));
    expect_series(
        &host,
        listen,
        "joins_disk_bytes",
        &[r#"joins_disk_bytes{name="vm",claim="data",mode="filesystem"} 1073741824"#],
    );
    assert_eq!(
        host.metric(r#"periscope_input_synced{input="kubernetes:v1/PersistentVolumeClaim"}"#),
        1.0,
        "{}",
        host.log()
    );

    // The claim grows: the ConfigMap's series follows without the ConfigMap changing.
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
        )
        .await
        .expect("resize claim");
    expect_series(
        &host,
        listen,
        "joins_disk_bytes",
        &[r#"joins_disk_bytes{name="vm",claim="data",mode="filesystem"} 2147483648"#],
    );

    // The ConfigMap names another claim: its key changed.
    put_configmap(&client, "vm", json!({"claim": "other"})).await;
    expect_series(
        &host,
        listen,
        "joins_disk_bytes",
        &[r#"joins_disk_bytes{name="vm",claim="other",mode="block"} 1073741824"#],
    );

    // That claim is deleted: the series goes, and the one it joined before stays away.
    claims
        .delete("other", &DeleteParams::default())
        .await
        .expect("delete claim");
    // Its protection finalizer is for a controller to drop; there is none here.
    claims
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop the claim's finalizer");
    expect_series(&host, listen, "joins_disk_bytes", &[]);
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}})),
        )
        .await
        .expect("resize claim");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(series(listen, "joins_disk_bytes"), Vec::<String>::new());

    assert!(host.stop().success(), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_by_uid_and_a_join_by_label_with_conditions_follow_their_pods() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client).await;
    let owner = pod(&client, "owner", "node-1", json!({}), "Running").await;
    put_configmap(&client, "ref", json!({"owner": owner})).await;
    let vmi = put_configmap(&client, "vmi", json!({"node": "node-1"})).await;
    // Candidates: not running yet; running on the wrong node; an unrelated labelled Pod.
    pod(
        &client,
        "launcher-a",
        "node-1",
        json!({"created-by": vmi}),
        "Pending",
    )
    .await;
    pod(
        &client,
        "launcher-b",
        "node-2",
        json!({"created-by": vmi}),
        "Running",
    )
    .await;
    pod(
        &client,
        "stranger",
        "node-1",
        json!({"created-by": "nobody"}),
        "Running",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let entry = r#"
  [[resources.joins]]
  name = "owner"
  version = "v1"
  kind = "Pod"
  uid_from = "data.owner"

  [[resources.joins]]
  name = "launcher"
  version = "v1"
  kind = "Pod"
  label = "created-by"
  label_from = "metadata.uid"
  where = "joined.status.phase == 'Running' && joined.spec.nodeName == object.data.node"

  [[resources.metrics]]
  name = "owner_name_length"
  type = "gauge"
  expr = "size(joins.owner.metadata.name)"
  labels = { pod = "@owner.metadata.name", node = "@owner.spec.nodeName" }

  [[resources.metrics]]
  name = "launcher"
  type = "info"
  where = "has(object.data.node)"
  labels = { pod = "@launcher.metadata.name" }
"#;
    let host_config = config(cp.kubeconfig_path(), listen, entry);
    let mut host = start(dir.path(), &host_config);
    expect_series(
        &host,
        listen,
        "joins_owner_name_length",
        &[r#"joins_owner_name_length{name="ref",node="node-1",pod="owner"} 5"#],
    );
    expect_series(
        &host,
        listen,
        "joins_launcher_info",
        &[r#"joins_launcher_info{name="vmi",pod=""} 1"#],
    );

    // The pending candidate starts running: it is the launcher now.
    set_phase(&client, "launcher-a", "Running").await;
    expect_series(
        &host,
        listen,
        "joins_launcher_info",
        &[r#"joins_launcher_info{name="vmi",pod="launcher-a"} 1"#],
    );

    // The VMI moves to node-2, where launcher-b runs.
    put_configmap(&client, "vmi", json!({"node": "node-2"})).await;
    expect_series(
        &host,
        listen,
        "joins_launcher_info",
        &[r#"joins_launcher_info{name="vmi",pod="launcher-b"} 1"#],
    );

    // launcher-b fails, then goes: no launcher, and none comes back with it.
    set_phase(&client, "launcher-b", "Failed").await;
    expect_series(
        &host,
        listen,
        "joins_launcher_info",
        &[r#"joins_launcher_info{name="vmi",pod=""} 1"#],
    );
    delete_pod(&client, "launcher-b").await;
    // A new launcher on node-2 comes up.
    pod(
        &client,
        "launcher-c",
        "node-2",
        json!({"created-by": vmi}),
        "Running",
    )
    .await;
    expect_series(
        &host,
        listen,
        "joins_launcher_info",
        &[r#"joins_launcher_info{name="vmi",pod="launcher-c"} 1"#],
    );

    // A reload renames the metric: every watch applies its objects again with the new
    // pipeline, whose joins start empty and fill as the Pods are applied again.
    let renamed = host_config
        .replace(
            "name = \"launcher\"\n  type = \"info\"",
            "name = \"launcher_pod\"\n  type = \"info\"",
        )
        .replace("{listen}", &host.addr.to_string());
    std::fs::write(dir.path().join("periscope.toml"), renamed).unwrap();
    expect_series(
        &host,
        listen,
        "joins_launcher_pod_info",
        &[r#"joins_launcher_pod_info{name="vmi",pod="launcher-c"} 1"#],
    );
    expect_series(
        &host,
        listen,
        "joins_owner_name_length",
        &[r#"joins_owner_name_length{name="ref",node="node-1",pod="owner"} 5"#],
    );

    // The owner Pod is deleted: the series read from it vanishes.
    delete_pod(&client, "owner").await;
    expect_series(&host, listen, "joins_owner_name_length", &[]);
    assert!(host.stop().success(), "{}", host.log());
}
