//! The Kubernetes watcher against a real kube-apiserver and etcd (`tests/controlplane`): objects
//! followed through create, update and delete; CRDs appearing and vanishing; convergence after an
//! apiserver restart and after an expired watch, each with changes the watcher could not see; RBAC
//! from `periscope rbac`; sharding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use periscope_tests::controlplane::{ControlPlane, create_all, kube_client, service_account_token};
use periscope_tests::proxy::TcpProxy;
use periscope_tests::{
    Host, StateSample, http_get, ndjson_state, periscope, plugin_dir, read_ndjson, wait_until,
};

mod common;

use common::recorded_values;

const NS: &str = "demo";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

async fn namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(name),
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
}

/// Creates or replaces ConfigMap `name` in `demo` with `data.value = value`.
async fn put_configmap(client: &kube::Client, name: &str, value: &str) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let mut cm = ConfigMap {
        metadata: meta(name),
        data: Some([("value".to_owned(), value.to_owned())].into()),
        ..Default::default()
    };
    match api.get_opt(name).await.expect("get configmap") {
        Some(old) => {
            cm.metadata.resource_version = old.metadata.resource_version;
            api.replace(name, &PostParams::default(), &cm)
                .await
                .expect("replace configmap");
        }
        None => {
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create configmap");
        }
    }
}

async fn delete_configmap(client: &kube::Client, name: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete configmap");
}

/// A config watching ConfigMaps (`demo_value{name}` from `data.value`) and whatever `more` adds,
/// exporting to `out/metrics.ndjson`.
fn config(kubeconfig: &Path, more: &str) -> String {
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
prefix = "demo"
labels = {{ name = "metadata.name" }}

  [[resources.metrics]]
  name = "value"
  type = "gauge"
  path = "data.value"

{more}
[[exporters]]
name = "files"
plugin = "file"
batch = {{ max_wait = "10ms" }}
config = {{ path = "out/metrics.ndjson", fsync = "never" }}
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// `demo_value` per ConfigMap name in the current state of the NDJSON output.
fn values(dir: &Path) -> BTreeMap<String, f64> {
    ndjson_state(&read_ndjson(&dir.join("out/metrics.ndjson")))
        .into_values()
        .flatten()
        .filter(|(metric, _, _)| metric == "demo_value")
        .filter_map(|(_, labels, value)| {
            let labels: serde_json::Value = serde_json::from_str(&labels).ok()?;
            Some((labels["name"].as_str()?.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn expect_values(host: &Host, dir: &Path, expected: &[(&str, f64)]) {
    let expected: BTreeMap<String, f64> =
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert!(
        wait_until(Duration::from_secs(20), || values(dir) == expected),
        "expected {expected:?}, found {:?}\n{}",
        values(dir),
        host.log()
    );
}

fn host_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_followed_through_create_update_and_delete() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client, NS).await;
    put_configmap(&client, "a", "1").await;

    let dir = host_dir();
    let mut host = Host::start(dir.path(), &config(cp.kubeconfig_path(), ""));
    host.wait_ready(Duration::from_secs(30));
    expect_values(&host, dir.path(), &[("a", 1.0)]);

    put_configmap(&client, "b", "2").await;
    put_configmap(&client, "a", "3").await;
    expect_values(&host, dir.path(), &[("a", 3.0), ("b", 2.0)]);

    delete_configmap(&client, "b").await;
    expect_values(&host, dir.path(), &[("a", 3.0)]);
    let removes: Vec<_> = read_ndjson(&dir.path().join("out/metrics.ndjson"))
        .into_iter()
        .filter(|r| r["op"] == "remove")
        .collect();
    assert_eq!(removes.len(), 1, "{removes:?}");
    assert_eq!(removes[0]["source"]["id"], "v1/ConfigMap/demo/b");
    assert_eq!(host.metric("periscope_sources"), 1.0);
    assert!(host.stop().success());
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } }
            }]
        }
    }))
    .expect("valid CRD")
}

const WIDGETS: &str = r#"[[resources]]
group = "example.com"
version = "v1"
kind = "Widget"
prefix = "example_widget"
labels = { name = "metadata.name" }

  [[resources.metrics]]
  name = "size"
  type = "gauge"
  path = "spec.size"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_installed_after_start_is_picked_up_and_its_deletion_removes_the_series() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client, NS).await;

    let dir = host_dir();
    let mut host = Host::start(dir.path(), &config(cp.kubeconfig_path(), WIDGETS));
    // A kind that is not served yet does not hold readiness back.
    host.wait_ready(Duration::from_secs(30));

    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("create CRD");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource);
    let mut widget = DynamicObject::new("w1", &resource);
    widget.data = serde_json::json!({ "spec": { "size": 5 } });
    let mut created = false;
    for _ in 0..100 {
        if widgets
            .create(&PostParams::default(), &widget)
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "the Widget CRD never became usable");

    let out = dir.path().join("out/metrics.ndjson");
    let widget_series = |records: &[serde_json::Value]| -> Vec<StateSample> {
        ndjson_state(records)
            .into_values()
            .flatten()
            .filter(|(m, _, _)| m == "example_widget_size")
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || widget_series(&read_ndjson(
            &out
        ))
        .len()
            == 1),
        "the Widget was not picked up:\n{}",
        host.log()
    );
    assert_eq!(widget_series(&read_ndjson(&out))[0].2, "5.0");

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    assert!(
        wait_until(Duration::from_secs(30), || widget_series(&read_ndjson(
            &out
        ))
        .is_empty()),
        "the Widget's series outlived its CRD:\n{}",
        host.log()
    );
    assert!(host.stop().success());
}

/// Talks to etcd's JSON gateway.
fn etcd(cp: &ControlPlane, path: &str, body: serde_json::Value) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let text = agent
        .post(&format!("{}{path}", cp.etcd_url()))
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("etcd {path}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("etcd answer");
    serde_json::from_str(&text).expect("etcd JSON")
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_apiserver_restart_and_a_compacted_watch_the_state_is_exact() {
    let mut cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client, NS).await;
    for (name, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        put_configmap(&client, name, value).await;
    }
    let dir = host_dir();
    let mut host = Host::start(dir.path(), &config(cp.kubeconfig_path(), ""));
    host.wait_ready(Duration::from_secs(30));
    expect_values(&host, dir.path(), &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);

    // While kube-apiserver is down, change etcd behind its back: delete b, create d, then compact
    // the history so no watch can resume across the change (410 Gone forces a relist).
    cp.stop_apiserver();
    etcd(
        &cp,
        "/v3/kv/deleterange",
        serde_json::json!({ "key": b64("/registry/configmaps/demo/b") }),
    );
    let d = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "d", "namespace": NS, "uid": "5d7e2c9a-0000-4000-8000-00000000000d",
                      "creationTimestamp": "2026-01-01T00:00:00Z" },
        "data": { "value": "4" }
    });
    let put = etcd(
        &cp,
        "/v3/kv/put",
        serde_json::json!({ "key": b64("/registry/configmaps/demo/d"), "value": b64(&d.to_string()) }),
    );
    let revision = put["header"]["revision"]
        .as_str()
        .expect("etcd revision")
        .to_owned();
    etcd(
        &cp,
        "/v3/kv/compaction",
        serde_json::json!({ "revision": revision, "physical": true }),
    );
    cp.start_apiserver();

    expect_values(&host, dir.path(), &[("a", 1.0), ("c", 3.0), ("d", 4.0)]);
    assert!(wait_until(Duration::from_secs(10), || host
        .metric("periscope_sources")
        == 3.0));

    // And it keeps following changes after the restart.
    put_configmap(&client, "a", "10").await;
    expect_values(&host, dir.path(), &[("a", 10.0), ("c", 3.0), ("d", 4.0)]);
    assert!(host.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_relists_and_the_state_is_exact() {
    // Without the watch cache, a watch resumes from etcd, which has compacted the history the
    // watcher last saw: the resumed watch gets 410 Gone and the watcher must relist.
    let cp = ControlPlane::start_with(&["--watch-cache=false"]);
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client, NS).await;
    for (name, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        put_configmap(&client, name, value).await;
    }
    // Periscope reaches the apiserver through a proxy the test can cut.
    let server: std::net::SocketAddr = cp
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let proxy = TcpProxy::start(server);
    let kubeconfig = cp.dir().join("proxied.kubeconfig");
    let text = std::fs::read_to_string(cp.kubeconfig_path()).unwrap();
    assert!(text.contains(&cp.server_url()));
    std::fs::write(
        &kubeconfig,
        text.replace(&cp.server_url(), &format!("https://{}", proxy.addr())),
    )
    .unwrap();

    let dir = host_dir();
    let mut host = Host::start(dir.path(), &config(&kubeconfig, ""));
    host.wait_ready(Duration::from_secs(30));
    expect_values(&host, dir.path(), &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);

    // Cut the watcher off, change things it cannot see, compact them away, let it back in.
    proxy.pause();
    delete_configmap(&client, "b").await;
    put_configmap(&client, "d", "4").await;
    put_configmap(&client, "c", "30").await;
    let revision = etcd(
        &cp,
        "/v3/kv/range",
        serde_json::json!({ "key": b64("/registry/configmaps/demo/c") }),
    )["header"]["revision"]
        .as_str()
        .expect("etcd revision")
        .to_owned();
    etcd(
        &cp,
        "/v3/kv/compaction",
        serde_json::json!({ "revision": revision, "physical": true }),
    );
    proxy.resume();

    expect_values(&host, dir.path(), &[("a", 1.0), ("c", 30.0), ("d", 4.0)]);
    // The way back was the expiry: the resumed watch was refused as too old, and a relist followed.
    assert!(host.log().contains("too old"), "{}", host.log());
    assert!(wait_until(Duration::from_secs(10), || host
        .metric("periscope_sources")
        == 3.0));
    assert!(host.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_from_periscope_rbac_watches_everything_configured_and_no_secret() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    namespace(&admin, NS).await;
    namespace(&admin, "monitoring").await;
    put_configmap(&admin, "a", "1").await;
    Api::<Secret>::namespaced(admin.clone(), NS)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("password"),
                string_data: Some([("password".to_owned(), "hunter2".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create secret");

    // Apply what `periscope rbac` prints.
    let dir = host_dir();
    std::fs::write(
        dir.path().join("rbac.toml"),
        config(cp.kubeconfig_path(), "").replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let (status, yaml, stderr) = periscope(
        &["rbac", "--config", "rbac.toml", "--namespace", "monitoring"],
        dir.path(),
    );
    assert!(status.success(), "{stderr}");
    create_all(&admin, &yaml).await;
    let token = service_account_token(&admin, "monitoring", "periscope").await;
    let kubeconfig = dir.path().join("periscope.kubeconfig");
    cp.token_kubeconfig(&token, &kubeconfig);

    // Everything configured works with that identity…
    let mut host = Host::start(dir.path(), &config(&kubeconfig, ""));
    host.wait_ready(Duration::from_secs(30));
    expect_values(&host, dir.path(), &[("a", 1.0)]);
    for kind in ["read", "parse", "value", "scrape", "config"] {
        let errors = format!(
            "periscope_input_errors_total{{input=\"kubernetes:v1/ConfigMap@demo\",kind=\"{kind}\"}}"
        );
        assert_eq!(host.metric(&errors), 0.0, "{kind}");
    }
    assert!(host.stop().success());

    // …and reading a Secret is forbidden.
    let as_periscope = kube_client(&kubeconfig).await;
    let err = Api::<Secret>::namespaced(as_periscope, NS)
        .get("password")
        .await
        .expect_err("reading a Secret must be forbidden");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_together_produce_exactly_the_series_of_one_instance() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    namespace(&client, NS).await;
    for i in 0..30 {
        put_configmap(&client, &format!("cm{i:02}"), &i.to_string()).await;
    }
    let expected: Vec<(String, f64)> = (0..30)
        .map(|i| (format!("cm{i:02}"), f64::from(i)))
        .collect();

    // A count over all ConfigMaps: each shard counts its share, and the shares add up.
    let count = "  [[resources.aggregates]]\n  name = \"count\"\n  type = \"count\"\n";
    let run = |args: &[&str]| {
        let dir = host_dir();
        let mut host = Host::start_with(dir.path(), &config(cp.kubeconfig_path(), count), args);
        host.wait_ready(Duration::from_secs(30));
        (dir, host)
    };
    let whole = run(&[]);
    let shards: Vec<_> = (0..3)
        .map(|i| run(&["--shard", &i.to_string(), "--total-shards", "3"]))
        .collect();

    let all: BTreeMap<String, f64> = expected.iter().cloned().collect();
    assert!(
        wait_until(Duration::from_secs(20), || values(whole.0.path()) == all),
        "{:?}",
        values(whole.0.path())
    );
    let union = || {
        let mut union = BTreeMap::new();
        let mut total = 0;
        for (dir, _) in &shards {
            let part = values(dir.path());
            total += part.len();
            union.extend(part);
        }
        (union, total)
    };
    assert!(
        wait_until(Duration::from_secs(20), || union() == (all.clone(), 30)),
        "{:?}",
        union()
    );
    // Every shard holds some of them (30 uids over 3 shards).
    let sizes: BTreeSet<usize> = shards
        .iter()
        .map(|(dir, _)| values(dir.path()).len())
        .collect();
    assert!(!sizes.contains(&0), "{sizes:?}");
    let counted = |dir: &Path| -> f64 {
        ndjson_state(&read_ndjson(&dir.join("out/metrics.ndjson")))
            .get("aggregate:demo_count")
            .and_then(|samples| {
                samples
                    .iter()
                    .next()
                    .map(|(_, _, v)| v.parse().unwrap_or(f64::NAN))
            })
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || counted(whole.0.path()) == 30.0),
        "{}",
        counted(whole.0.path())
    );
    let shard_counts = || {
        shards
            .iter()
            .map(|(dir, _)| counted(dir.path()))
            .sum::<f64>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || shard_counts() == 30.0),
        "{}",
        shard_counts()
    );
    let (status, body) = http_get(&format!("http://{}/metrics", whole.1.addr)).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("periscope_sources 31"),
        "30 ConfigMaps and the count: {body}"
    );
}

const CHAOS: &str = r#"[[exporters]]
name = "chaos"
plugin = "chaos"
batch = { max_wait = "10ms" }
retry = { initial = "20ms", max = "200ms" }
"#;

/// Per ConfigMap name, the values of `demo_value` the file exporter wrote, in order.
fn written_values(dir: &Path) -> BTreeMap<String, Vec<f64>> {
    let mut written: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for record in read_ndjson(&dir.join("out/metrics.ndjson")) {
        if record["op"] == "replace"
            && record["metric"] == "demo_value"
            && let (Some(name), Some(value)) =
                (record["labels"]["name"].as_str(), record["value"].as_f64())
        {
            written.entry(name.to_owned()).or_default().push(value);
        }
    }
    written
}

/// The chaos exporter's record, and the last `demo_value` of every ConfigMap in it.
fn recorded(dir: &Path) -> (Vec<serde_json::Value>, BTreeMap<String, f64>) {
    let lines = read_ndjson(&dir.join("record.ndjson"));
    let last = (0..20)
        .filter_map(|i| {
            let name = format!("cm{i}");
            let value = *recorded_values(&lines, &name).last()?;
            Some((name, value))
        })
        .collect();
    (lines, last)
}

/// A host watching ConfigMaps `cm0`..`cm19` (all at `value`), exporting to the file exporter
/// and to the chaos exporter configured with `chaos`.
async fn twenty_configmaps_and_two_exporters(
    client: &kube::Client,
    kubeconfig: &Path,
    chaos: &str,
    value: &str,
) -> (tempfile::TempDir, Host) {
    namespace(client, NS).await;
    for i in 0..20 {
        put_configmap(client, &format!("cm{i}"), value).await;
    }
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "chaos"]);
    let more = format!("{CHAOS}config = {{ record = \"record.ndjson\", {chaos} }}\n");
    let mut host = Host::start(dir.path(), &config(kubeconfig, &more));
    host.wait_ready(Duration::from_secs(30));
    (dir, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_exporter_gets_every_watched_source_back_and_no_other_exporter_sees_it_twice() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    // The second export call panics: the instance started again asks for the whole state.
    let (dir, mut host) = twenty_configmaps_and_two_exporters(
        &client,
        cp.kubeconfig_path(),
        "panic_on_calls = [2]",
        "1",
    )
    .await;
    let all_ones: BTreeMap<String, f64> = (0..20).map(|i| (format!("cm{i}"), 1.0)).collect();
    assert!(
        wait_until(Duration::from_secs(20), || recorded(dir.path()).1
            == all_ones),
        "{:?}\n{}",
        recorded(dir.path()).1,
        host.log()
    );
    put_configmap(&client, "cm0", "2").await;
    let restarts = "periscope_exporter_restarts_total{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(restarts) == 1.0),
        "{}",
        host.metrics()
    );
    // After the panic, every source came again with its current value: the watch sent them all
    // again for the new instance.
    let mut expected = all_ones.clone();
    expected.insert("cm0".to_owned(), 2.0);
    let after_panic = || {
        let lines: Vec<_> = recorded(dir.path())
            .0
            .into_iter()
            .filter(|l| l["call"].as_u64() > Some(2))
            .collect();
        (0..20)
            .filter_map(|i| {
                let name = format!("cm{i}");
                Some((name.clone(), *recorded_values(&lines, &name).last()?))
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert!(
        wait_until(Duration::from_secs(20), || after_panic() == expected),
        "{:?}\n{}",
        after_panic(),
        host.log()
    );
    assert!(host.metric("periscope_exporter_resyncs_total{exporter=\"chaos\"}") >= 1.0);
    // The other exporter saw each value once: nothing sent again reached it.
    let mut once: BTreeMap<String, Vec<f64>> =
        (0..20).map(|i| (format!("cm{i}"), vec![1.0])).collect();
    once.insert("cm0".to_owned(), vec![1.0, 2.0]);
    assert_eq!(written_values(dir.path()), once);
    assert_eq!(
        host.metric("periscope_exporter_resyncs_total{exporter=\"files\"}"),
        0.0
    );
    assert_eq!(host.metric("periscope_unchanged_updates_total"), 0.0);
    assert_eq!(host.metric("periscope_sources"), 20.0);
    assert!(host.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_changing_while_an_exporter_restarts_again_and_again_end_with_their_last_values() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    // Slow calls, several of them panicking: resyncs are gathered while the objects change.
    let chaos = "panic_on_calls = [3, 6, 9, 12], export_delay_ms = 40";
    let (dir, mut host) =
        twenty_configmaps_and_two_exporters(&client, cp.kubeconfig_path(), chaos, "0").await;
    for round in 1..=5 {
        for i in 0..20 {
            put_configmap(&client, &format!("cm{i}"), &round.to_string()).await;
        }
    }
    let all_fives: BTreeMap<String, f64> = (0..20).map(|i| (format!("cm{i}"), 5.0)).collect();
    assert!(
        wait_until(Duration::from_secs(30), || recorded(dir.path()).1
            == all_fives),
        "{:?}\n{}",
        recorded(dir.path()).1,
        host.log()
    );
    assert!(
        host.metric("periscope_exporter_restarts_total{exporter=\"chaos\"}") >= 2.0,
        "{}",
        host.metrics()
    );
    // The file exporter saw every value of every object once, in order.
    let every: BTreeMap<String, Vec<f64>> = (0..20)
        .map(|i| (format!("cm{i}"), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || written_values(dir.path())
            == every),
        "{:?}",
        written_values(dir.path())
    );
    assert!(host.stop().success());
}
