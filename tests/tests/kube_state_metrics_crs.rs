//! Parity with the real kube-state-metrics: for every case of `tests/crs/` (CRDs, objects, a
//! CustomResourceState config and a stream of changes), kube-state-metrics v2.16.0 runs with the
//! config as it is (`--custom-resource-state-only --custom-resource-state-config-file`) and
//! Periscope with `[[imports]] kube_state_metrics_crs` of the same file, on the same real
//! apiserver. Both pages must hold the same families (HELP and TYPE) and the same series (name,
//! labels, value), before and after the changes and deletes.
//!
//! Two differences are by design and normalized here, both listed in docs/kube-state-metrics.md:
//! an empty label is a missing one (as to Prometheus), and the text format's TYPE of info and
//! state set families is `gauge` on Periscope's page (the format has no such types).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use periscope_tests::controlplane::{ControlPlane, kube_client};
use periscope_tests::{Host, free_port, http_get, plugin_dir, repo_root};

/// The corpus.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/crs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

/// Builds (or finds cached) kube-state-metrics with `bench/build-ksm.sh`, as the benchmark does.
fn kube_state_metrics() -> PathBuf {
    let script = repo_root().join("bench/build-ksm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} could not build kube-state-metrics (it needs Go and the Go module proxy): {}",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        bin.is_file(),
        "{} printed no binary path: {stdout}",
        script.display()
    );
    bin
}

/// The cases' configs joined: one `spec.resources` list.
fn joined_config(cases: &[PathBuf]) -> String {
    let mut resources = Vec::new();
    for case in cases {
        for doc in documents(&case.join("crs.yaml")) {
            resources.extend(
                doc["spec"]["resources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let config = serde_json::json!({
        "kind": "CustomResourceStateMetrics",
        "spec": { "resources": resources },
    });
    serde_yaml_ng::to_string(&config).unwrap()
}

fn api_for(client: &kube::Client, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), "default", &resource)
}

/// Creates `object`, or replaces the one of its name; retried while its CRD is not served yet.
async fn apply(client: &kube::Client, doc: &serde_json::Value) {
    let mut object: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let types = object.types.clone().expect("apiVersion and kind");
    let api = api_for(client, &types.api_version, &types.kind);
    let name = object.metadata.name.clone().expect("a name");
    for _ in 0..100 {
        let result = match api.get_opt(&name).await {
            Ok(Some(current)) => {
                object.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &object).await
            }
            Ok(None) => api.create(&PostParams::default(), &object).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("cannot apply {} {name}", types.kind);
}

/// Applies one document of `changes.yaml`: an object, or `{ delete: { apiVersion, kind, name } }`.
async fn change(client: &kube::Client, doc: &serde_json::Value) {
    match doc.get("delete") {
        Some(target) => {
            let api = api_for(
                client,
                target["apiVersion"].as_str().unwrap(),
                target["kind"].as_str().unwrap(),
            );
            api.delete(target["name"].as_str().unwrap(), &DeleteParams::default())
                .await
                .expect("delete");
        }
        None => apply(client, doc).await,
    }
}

/// One family of a text-format page.
#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    /// Series (sample name, non-empty labels) → value.
    samples: BTreeMap<(String, BTreeMap<String, String>), String>,
}

/// The families of a Prometheus text-format page that have samples, with the TYPE of info and
/// state sets written `gauge` (what the text format offers), Periscope's self-metrics left out.
fn parse_page(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // An empty HELP is no HELP.
            families.entry(name.to_owned()).or_default().help =
                Some(help.to_owned()).filter(|h| !h.is_empty());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "info" | "stateset" => "gauge",
                other => other,
            };
            families.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
        } else if !line.is_empty() && !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let value: f64 = value.parse().expect("a sample value");
            let family = families.entry(name.to_owned()).or_default();
            family
                .samples
                .insert((name.to_owned(), labels), format!("{value}"));
        }
    }
    // Periscope's exporter writes its own `periscope_*` self-metrics on the page.
    families.retain(|name, f| !f.samples.is_empty() && !name.starts_with("periscope_"));
    families
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        let name = name.trim_start_matches(',').trim();
        if !value.is_empty() {
            labels.insert(name.to_owned(), value);
        }
        rest = &after[end..];
    }
    labels
}

/// A difference docs/kube-state-metrics.md lists: with `nilIsZero`, kube-state-metrics writes
/// one `0` series without the item's labels for an object that has no list at the gauge's
/// `path` at all; Periscope writes none. In the corpus: `edge_value_nil_is_zero` of the Edges
/// without `spec.values`.
fn known_difference(family: &str, labels: &BTreeMap<String, String>) -> bool {
    family == "edge_value_nil_is_zero" && !labels.contains_key("kind")
}

/// What differs between the two pages, one line each, but for [`known_difference`]s.
fn differences(
    periscope: &BTreeMap<String, Family>,
    ksm: &BTreeMap<String, Family>,
) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = periscope.keys().chain(ksm.keys()).collect();
    for name in names {
        let (Some(p), Some(k)) = (periscope.get(name), ksm.get(name)) else {
            let side = if periscope.contains_key(name) {
                "Periscope"
            } else {
                "kube-state-metrics"
            };
            out.push(format!("{name}: only on {side}'s page"));
            continue;
        };
        if p.help != k.help {
            out.push(format!(
                "{name}: HELP {:?} (Periscope) vs {:?}",
                p.help, k.help
            ));
        }
        if p.kind != k.kind {
            out.push(format!(
                "{name}: TYPE {:?} (Periscope) vs {:?}",
                p.kind, k.kind
            ));
        }
        for (series, value) in &p.samples {
            match k.samples.get(series) {
                None => out.push(format!("only Periscope: {series:?} {value}")),
                Some(v) if v != value => {
                    out.push(format!("{series:?}: {value} (Periscope) vs {v}"))
                }
                Some(_) => {}
            }
        }
        for (series, value) in &k.samples {
            if !p.samples.contains_key(series) && !known_difference(name, &series.1) {
                out.push(format!("only kube-state-metrics: {series:?} {value}"));
            }
        }
    }
    out
}

fn page(port: u16) -> BTreeMap<String, Family> {
    match http_get(&format!("http://127.0.0.1:{port}/metrics")) {
        Ok((200, text)) => parse_page(&text),
        _ => BTreeMap::new(),
    }
}

/// Waits until both pages are equal, kube-state-metrics' holds at least `expected_families`
/// and is not `previous`; that page.
fn same_pages(
    periscope_port: u16,
    ksm_port: u16,
    expected_families: usize,
    previous: Option<&BTreeMap<String, Family>>,
    moment: &str,
) -> BTreeMap<String, Family> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (p, k) = (page(periscope_port), page(ksm_port));
        let diff = differences(&p, &k);
        if diff.is_empty() && k.len() >= expected_families && previous != Some(&k) {
            return k;
        }
        if Instant::now() > deadline {
            panic!(
                "{moment}: the pages differ ({} families on kube-state-metrics' page, {} expected: {:?}):\n{}",
                k.len(),
                expected_families,
                k.keys().collect::<Vec<_>>(),
                diff.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Ksm(Child);

impl Drop for Ksm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_crs_configs_give_the_series_kube_state_metrics_gives() {
    let ksm_bin = kube_state_metrics();
    let cases = cases();
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for case in &cases {
        for doc in documents(&case.join("crds.yaml")) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("create CRD");
        }
    }
    for case in &cases {
        for doc in documents(&case.join("objects.yaml")) {
            apply(&client, &doc).await;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let config = joined_config(&cases);
    std::fs::write(dir.path().join("crs.yaml"), &config).unwrap();
    // Family names (several resources may write one family).
    let families: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| documents(&c.join("crs.yaml")))
        .flat_map(|d| {
            d["spec"]["resources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|r| {
            let prefix = r["metricNamePrefix"]
                .as_str()
                .unwrap_or("kube_customresource")
                .to_owned();
            let metrics = r["metrics"].as_array().cloned().unwrap_or_default();
            metrics.into_iter().map(move |m| {
                let name = m["name"].as_str().unwrap().to_owned();
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}_{name}")
                }
            })
        })
        .collect();
    let families = families.len();

    let ksm_port = free_port();
    let ksm_log = std::fs::File::create(dir.path().join("kube-state-metrics.log")).unwrap();
    let _ksm = Ksm(Command::new(&ksm_bin)
        .arg(format!("--kubeconfig={}", cp.kubeconfig_path().display()))
        .arg("--host=127.0.0.1")
        .arg(format!("--port={ksm_port}"))
        .arg("--telemetry-host=127.0.0.1")
        .arg(format!("--telemetry-port={}", free_port()))
        .arg("--custom-resource-state-only")
        .arg(format!(
            "--custom-resource-state-config-file={}",
            dir.path().join("crs.yaml").display()
        ))
        .stdout(ksm_log.try_clone().unwrap())
        .stderr(ksm_log)
        .spawn()
        .expect("start kube-state-metrics"));

    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let periscope_port = free_port();
    let mut host = Host::start(
        dir.path(),
        &format!(
            "[host]\nlisten = \"{{listen}}\"\nplugin_dirs = [\"plugins\"]\nflush_interval = \"50ms\"\n\n\
             [kubernetes]\nkubeconfig = \"{}\"\n\n\
             [[imports]]\nkube_state_metrics_crs = \"crs.yaml\"\n\n\
             [[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\nconfig = {{ listen = \"127.0.0.1:{periscope_port}\" }}\n",
            cp.kubeconfig_path().display()
        ),
    );
    host.wait_ready(Duration::from_secs(60));

    let before = same_pages(
        periscope_port,
        ksm_port,
        families,
        None,
        "before the changes",
    );
    for case in &cases {
        for doc in documents(&case.join("changes.yaml")) {
            change(&client, &doc).await;
        }
    }
    // The changes show on both pages; then, after a pause for the last of them, the pages are
    // compared once more.
    same_pages(
        periscope_port,
        ksm_port,
        0,
        Some(&before),
        "after the changes",
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = same_pages(periscope_port, ksm_port, 0, None, "after the changes");
    let count =
        |page: &BTreeMap<String, Family>| -> usize { page.values().map(|f| f.samples.len()).sum() };
    println!(
        "{} cases, {families} families: {} series compared before the changes, {} after",
        cases.len(),
        count(&before),
        count(&after)
    );
}

/// A CRS config for ConfigMaps: `<name>{customresource_…, name}` from `data.value`.
fn configmap_crs(name: &str) -> String {
    format!(
        "kind: CustomResourceStateMetrics\nspec:\n  resources:\n    - groupVersionKind: {{ version: v1, kind: ConfigMap }}\n      \
         metricNamePrefix: demo\n      labelsFromPath:\n        name: [metadata, name]\n      metrics:\n        \
         - name: {name}\n          help: the value\n          each:\n            type: Gauge\n            \
         gauge:\n              path: [data, value]\n"
    )
}

#[test]
fn an_imported_crs_config_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: demo\n  uid: uid-a\ndata:\n  value: \"1\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("crs.yaml"), configmap_crs("value")).unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let port = free_port();
    let mut host = Host::start(
        dir.path(),
        &format!(
            "[host]\nlisten = \"{{listen}}\"\nplugin_dirs = [\"plugins\"]\nflush_interval = \"50ms\"\n\n\
             [[sources.files]]\npath = \"manifests\"\ninterval = \"100ms\"\n\n\
             [[imports]]\nkube_state_metrics_crs = \"crs.yaml\"\n\n\
             [[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\nconfig = {{ listen = \"127.0.0.1:{port}\" }}\n"
        ),
    );
    host.wait_ready(Duration::from_secs(30));
    let text = || {
        http_get(&format!("http://127.0.0.1:{port}/metrics"))
            .map(|(_, t)| t)
            .unwrap_or_default()
    };
    let series = "{customresource_group=\"\",customresource_kind=\"ConfigMap\",customresource_version=\"v1\",name=\"a\"} 1";
    let wait = |name: &str| {
        let wanted = format!("demo_{name}{series}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !text().contains(&wanted) {
            assert!(
                Instant::now() < deadline,
                "{wanted} missing:\n{}\n{}",
                text(),
                host.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("value");
    // Written beside the config: the watcher sees it; the old family goes, the new one comes.
    std::fs::write(dir.path().join("crs.yaml"), configmap_crs("renamed")).unwrap();
    wait("renamed");
    assert!(!text().contains("demo_value{"), "{}", text());
    // A bad key is refused at its line, and the running config goes on.
    std::fs::write(
        dir.path().join("crs.yaml"),
        configmap_crs("broken").replace("path:", "paht:"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !host.log().contains("unknown field `paht`") {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(host.log().contains("crs.yaml:14:"), "{}", host.log());
    wait("renamed");
}
