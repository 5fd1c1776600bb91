//! MetricsConfig custom resources against a real kube-apiserver and etcd: the host watches them
//! and applies each like a config file; created, changed and deleted, their series appear, change
//! and vanish on the page; a bad one is refused at its field and changes nothing else; one that
//! names another namespace is refused; two teams' configs with the same metric do not collide;
//! the API server itself refuses what the CRD's CEL rules forbid.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use periscope_tests::controlplane::{ControlPlane, kube_client};
use periscope_tests::{Host, free_port, http_get, plugin_dir, repo_root, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "periscope.dev",
        "v1alpha1",
        "MetricsConfig",
    ))
}

fn api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// Installs the committed CRD and waits until MetricsConfigs are served.
async fn install_crd(client: &kube::Client) {
    let text = std::fs::read_to_string(repo_root().join("deploy/crds/metricsconfigs.yaml"))
        .expect("deploy/crds/metricsconfigs.yaml");
    let document = text.split_once("---\n").map_or(text.as_str(), |(_, d)| d);
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(document).expect("a CRD");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("create the CRD");
    for _ in 0..100 {
        if api(client, "default")
            .list(&Default::default())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("MetricsConfigs are not served");
}

async fn namespace_with_configmap(client: &kube::Client, namespace: &str, value: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(namespace, None),
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(&format!("cm-{namespace}"), None),
                data: Some([("value".to_owned(), value.to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create configmap");
}

/// A spec reading ConfigMaps: `team_<metric>{name}` from `data.value`, with `extra` merged into
/// the entry.
fn spec(metric: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut entry = serde_json::json!({
        "version": "v1",
        "kind": "ConfigMap",
        "prefix": "team",
        "labels": { "name": "metadata.name" },
        "metrics": [{ "name": metric, "type": "gauge", "path": "data.value" }]
    });
    if let (Some(entry), serde_json::Value::Object(extra)) = (entry.as_object_mut(), extra) {
        entry.extend(extra);
    }
    serde_json::json!({ "resources": [entry] })
}

fn metrics_config(namespace: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &resource()).within(namespace);
    object.data = serde_json::json!({ "spec": spec });
    object
}

async fn put(client: &kube::Client, namespace: &str, name: &str, spec: serde_json::Value) {
    let object = metrics_config(namespace, name, spec);
    let params = PatchParams::apply("metrics-configs-test").force();
    api(client, namespace)
        .patch(name, &params, &Patch::Apply(&object))
        .await
        .expect("apply a MetricsConfig");
}

/// The host's config: MetricsConfigs on, each capped at 50 series, a page exporter on `page`.
fn host_config(kubeconfig: &Path, page: SocketAddr) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"

[kubernetes]
kubeconfig = "{kubeconfig}"
metrics_configs = true
metrics_configs_max_series = 50

[[exporters]]
name = "page"
plugin = "prometheus"
batch = {{ max_wait = "0s" }}
config = {{ listen = "{page}" }}
"#,
        kubeconfig = kubeconfig.display()
    )
}

fn page(addr: SocketAddr) -> String {
    http_get(&format!("http://{addr}/metrics"))
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// The page's sample of `metric` from MetricsConfig `namespace/name` for ConfigMap `cm`.
fn sample(page: &str, metric: &str, namespace: &str, name: &str, cm: &str) -> Option<f64> {
    let labels =
        format!("{{config_name=\"{name}\",config_namespace=\"{namespace}\",name=\"{cm}\"}}");
    let prefix = format!("{metric}{labels} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

fn wait_for_page(addr: SocketAddr, what: &str, mut condition: impl FnMut(&str) -> bool) {
    let mut last = String::new();
    let met = wait_until(WAIT, || {
        last = page(addr);
        condition(&last)
    });
    assert!(met, "{what}; the page:\n{last}");
}

/// The condition `type_` of MetricsConfig `namespace/name`, once its status is about the
/// current generation and `check` holds for it.
async fn condition(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    type_: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..150 {
        let object = api(client, namespace).get(name).await.expect("get");
        let generation = object.metadata.generation;
        let status = &object.data["status"];
        last = status.clone();
        let current = status["observedGeneration"].as_i64() == generation;
        if let Some(found) = status["conditions"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == type_))
            && current
            && check(found)
        {
            return status.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{namespace}/{name}: no {type_} condition as expected; status: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_configs_are_applied_changed_refused_and_removed_per_team() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    install_crd(&client).await;
    namespace_with_configmap(&client, "team-a", "1").await;
    namespace_with_configmap(&client, "team-b", "2").await;

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut host = Host::start(dir.path(), &host_config(cp.kubeconfig_path(), page_addr));
    host.wait_ready(WAIT);

    // Two teams, the same metric: each reads its own namespace, under its own labels.
    put(
        &client,
        "team-a",
        "values",
        spec("value", serde_json::json!({})),
    )
    .await;
    put(
        &client,
        "team-b",
        "values",
        spec("value", serde_json::json!({})),
    )
    .await;
    wait_for_page(page_addr, "both teams' series", |p| {
        sample(p, "team_value", "team-a", "values", "cm-team-a") == Some(1.0)
            && sample(p, "team_value", "team-b", "values", "cm-team-b") == Some(2.0)
    });
    let both = page(page_addr);
    assert_eq!(
        sample(&both, "team_value", "team-a", "values", "cm-team-b"),
        None,
        "team-a reads only its namespace:\n{both}"
    );
    assert_eq!(
        both.lines()
            .filter(|l| l.starts_with("team_value{"))
            .count(),
        2,
        "{both}"
    );
    let status = condition(&client, "team-a", "values", "Ready", |c| {
        c["status"] == "True"
    })
    .await;
    let accepted = status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "Accepted"))
        .expect("Accepted");
    assert_eq!(accepted["status"], "True", "{status}");
    condition(&client, "team-a", "values", "Ready", |_| true).await;
    let mut series = 0;
    for _ in 0..100 {
        let object = api(&client, "team-a").get("values").await.expect("get");
        series = object.data["status"]["series"].as_u64().unwrap_or(0);
        if series == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(series, 1, "team-a's status counts its one series");

    // A change applies live: the renamed series comes, the old one goes, team-b's stays.
    put(
        &client,
        "team-a",
        "values",
        spec("renamed", serde_json::json!({})),
    )
    .await;
    wait_for_page(page_addr, "team-a's renamed series", |p| {
        sample(p, "team_renamed", "team-a", "values", "cm-team-a") == Some(1.0)
            && sample(p, "team_value", "team-a", "values", "cm-team-a").is_none()
            && sample(p, "team_value", "team-b", "values", "cm-team-b") == Some(2.0)
    });

    // A bad one is refused at its field; what ran before keeps running, the other team too.
    put(
        &client,
        "team-a",
        "values",
        spec("bad name!", serde_json::json!({})),
    )
    .await;
    let status = condition(&client, "team-a", "values", "Accepted", |c| {
        c["status"] == "False"
    })
    .await;
    let text = status.to_string();
    assert!(
        text.contains("spec.resources[0].metrics[0].name"),
        "the field path: {text}"
    );
    let after = page(page_addr);
    assert_eq!(
        sample(&after, "team_renamed", "team-a", "values", "cm-team-a"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "team_value", "team-b", "values", "cm-team-b"),
        Some(2.0),
        "{after}"
    );

    // Naming another namespace is refused, and reads nothing there.
    put(
        &client,
        "team-b",
        "spy",
        spec("spy", serde_json::json!({ "namespaces": ["team-a"] })),
    )
    .await;
    let status = condition(&client, "team-b", "spy", "Accepted", |c| {
        c["status"] == "False"
    })
    .await;
    assert!(
        status.to_string().contains("spec.resources[0].namespaces"),
        "{status}"
    );
    assert!(!page(page_addr).contains("team_spy"), "{}", page(page_addr));

    // The API server itself refuses what the CRD's rules forbid: a static URL.
    let with_url = metrics_config(
        "team-b",
        "urls",
        serde_json::json!({ "endpoints": [{ "name": "x", "urls": ["http://10.0.0.1/metrics"] }] }),
    );
    let refused = api(&client, "team-b")
        .create(&PostParams::default(), &with_url)
        .await
        .expect_err("a URL is refused by the CEL rule");
    assert!(
        refused.to_string().contains("not given by URL"),
        "{refused}"
    );

    // Deleted: its series vanish; the other team's stay.
    api(&client, "team-a")
        .delete("values", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for_page(page_addr, "team-a's series gone", |p| {
        !p.contains("config_namespace=\"team-a\"")
            && sample(p, "team_value", "team-b", "values", "cm-team-b") == Some(2.0)
    });
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_cap_holds_for_a_metrics_config_whatever_it_asks() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    install_crd(&client).await;
    namespace_with_configmap(&client, "team-a", "1").await;
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), "team-a");
    for name in ["cm-2", "cm-3", "cm-4"] {
        configmaps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta(name, None),
                    data: Some([("value".to_owned(), "1".to_owned())].into()),
                    ..Default::default()
                },
            )
            .await
            .expect("create configmap");
    }

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = host_config(cp.kubeconfig_path(), page_addr).replace(
        "metrics_configs_max_series = 50",
        "metrics_configs_max_series = 2",
    );
    // Four ConfigMaps, a config asking for 100 series: the operator's 2 hold. It exists before
    // the host starts: the host is ready once it is applied.
    put(
        &client,
        "team-a",
        "values",
        spec("value", serde_json::json!({ "max_series": 100 })),
    )
    .await;
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(WAIT);
    let (_, readyz) = http_get(&format!("http://{}/readyz", host.addr)).expect("/readyz");
    assert!(readyz.contains("ok   metricsconfigs"), "{readyz}");
    wait_for_page(page_addr, "two of team-a's series", |p| {
        p.lines().filter(|l| l.starts_with("team_value{")).count() == 2
    });
    let mut series = 0;
    for _ in 0..100 {
        let object = api(&client, "team-a").get("values").await.expect("get");
        series = object.data["status"]["series"].as_u64().unwrap_or(0);
        if series == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(series, 2, "the status counts the series written");
    std::thread::sleep(Duration::from_secs(1));
    let capped = page(page_addr);
    assert_eq!(
        capped
            .lines()
            .filter(|l| l.starts_with("team_value{"))
            .count(),
        2,
        "{capped}"
    );
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_are_checked_against_what_the_api_server_serves() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    install_crd(&client).await;
    namespace_with_configmap(&client, "team-a", "1").await;

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut host = Host::start(dir.path(), &host_config(cp.kubeconfig_path(), page_addr));
    host.wait_ready(WAIT);

    // A cluster-scoped kind is refused at its field.
    let nodes = serde_json::json!({ "resources": [{
        "version": "v1", "kind": "Node", "prefix": "team",
        "metrics": [{ "name": "node", "type": "info" }]
    }] });
    put(&client, "team-a", "nodes", nodes).await;
    let status = condition(&client, "team-a", "nodes", "Accepted", |c| {
        c["status"] == "False"
    })
    .await;
    let text = status.to_string();
    assert!(
        text.contains("spec.resources[0].kind") && text.contains("cluster-scoped"),
        "{text}"
    );

    // A kind not served yet is refused; once its CRD is installed, it is accepted and read.
    let widgets = serde_json::json!({ "resources": [{
        "group": "example.com", "version": "v1", "kind": "Widget", "prefix": "team",
        "labels": { "name": "metadata.name" },
        "metrics": [{ "name": "widget_size", "type": "gauge", "path": "spec.size" }]
    }] });
    put(&client, "team-a", "widgets", widgets).await;
    let status = condition(&client, "team-a", "widgets", "Accepted", |c| {
        c["status"] == "False"
    })
    .await;
    assert!(status.to_string().contains("does not serve"), "{status}");
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true } }
            }]
        }
    }))
    .expect("a CRD");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("create the Widget CRD");
    let widget_resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let mut widget = DynamicObject::new("w1", &widget_resource).within("team-a");
    widget.data = serde_json::json!({ "spec": { "size": 3 } });
    let widgets_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "team-a", &widget_resource);
    let mut created = false;
    for _ in 0..100 {
        if widgets_api
            .create(&PostParams::default(), &widget)
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(created, "a Widget created once its CRD is served");
    condition(&client, "team-a", "widgets", "Accepted", |c| {
        c["status"] == "True"
    })
    .await;
    wait_for_page(page_addr, "the widget's series", |p| {
        sample(p, "team_widget_size", "team-a", "widgets", "w1") == Some(3.0)
    });
    host.stop();
}

/// This machine's outgoing IPv4 address (EndpointSlices may not point at loopback): the route
/// to a documentation address picks it, no packet sent.
fn own_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.200:9")
        .or_else(|_| socket.connect("10.255.255.1:9"))
        .expect("a route to find this machine's own address");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_endpoints_of_the_same_name_scrape_their_own_slices() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use periscope_tests::endpoint_server::{EndpointServer, Page};

    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    install_crd(&client).await;
    let ip = own_address();
    let server = EndpointServer::start_on(ip, None);
    server.set("/metrics", Page::text("# TYPE svc_up gauge\nsvc_up 1\n"));
    for team in ["team-a", "team-b"] {
        namespace_with_configmap(&client, team, "1").await;
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-x1", "labels": {"kubernetes.io/service-name": "api"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "metrics", "port": server.addr().port(), "protocol": "TCP"}]
        }))
        .expect("a slice");
        Api::<EndpointSlice>::namespaced(client.clone(), team)
            .create(&PostParams::default(), &slice)
            .await
            .expect("create slice");
    }

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut host = Host::start(dir.path(), &host_config(cp.kubeconfig_path(), page_addr));
    host.wait_ready(WAIT);

    let endpoint = serde_json::json!({ "endpoints": [{
        "name": "api", "interval": "200ms", "timeout": "150ms",
        "kubernetes": { "role": "endpointslice", "port": "metrics",
                        "label_selector": "kubernetes.io/service-name=api" }
    }] });
    put(&client, "team-a", "svc", endpoint.clone()).await;
    put(&client, "team-b", "svc", endpoint).await;
    let series_of = |page: &str, team: &str| {
        page.lines()
            .filter(|l| l.starts_with("svc_up{"))
            .filter(|l| {
                l.contains(&format!("config_namespace=\"{team}\""))
                    && l.contains("config_name=\"svc\"")
                    && l.contains(&format!("job=\"{team}/svc/api\""))
                    && l.contains(&format!("namespace=\"{team}\""))
            })
            .count()
    };
    wait_for_page(page_addr, "one svc_up per team", |p| {
        series_of(p, "team-a") == 1
            && series_of(p, "team-b") == 1
            && p.lines().filter(|l| l.starts_with("svc_up{")).count() == 2
    });
    for team in ["team-a", "team-b"] {
        condition(&client, team, "svc", "Ready", |c| c["status"] == "True").await;
    }
    host.stop();
}
