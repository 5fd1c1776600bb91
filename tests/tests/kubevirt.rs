//! The KubeVirt example against a real kube-apiserver: its CRDs and objects (with instance types,
//! claims and launcher Pods) are created in the cluster, `examples/kubevirt/periscope.toml` watches
//! them, and the output holds every metric the example's README lists — with the same series and
//! values as reading the same objects from disk, and a Prometheus page that `promtool check
//! metrics` accepts. Then join targets change after the fact (a claim resized, an instance type
//! deleted, a launcher Pod moved) and the series that read them follow.
//!
//! A real Prometheus also scrapes the example (read from disk) with
//! `examples/kubevirt/prometheus-rules.yaml` loaded: every rule evaluates without an error, the
//! recording rule counts the example's VMs by namespace, and the alerts the objects call for are
//! pending while the others stay inactive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use periscope_tests::controlplane::{ControlPlane, kube_client};
use periscope_tests::prometheus::Prometheus;
use periscope_tests::{
    Host, StateSample, free_port, http_get, ndjson_state, plugin_dir, read_ndjson, repo_root,
    wait_until,
};

/// Families whose values depend on `metadata.creationTimestamp`, which the apiserver sets to the
/// time of creation instead of the manifest's: compared by presence only.
const CREATION_DEPENDENT: [&str; 3] = [
    "kubevirt_vmi_phase_transition_time_from_creation_seconds",
    "kubevirt_vmi_migration_phase_transition_time_from_creation_seconds",
    "kubevirt_vm_create_date_timestamp_seconds",
];

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The order objects are created in: what others refer to by uid (migrations by VMIs, VMIs by
/// their launcher Pods) first, so the uids the cluster gives can replace the manifests' ones.
const CREATION_ORDER: [&str; 7] = [
    "instancetypes.yaml",
    "persistentvolumeclaims.yaml",
    "virtualmachineinstancemigrations.yaml",
    "virtualmachineinstances.yaml",
    "virtualmachines.yaml",
    "virtualmachinesnapshots.yaml",
    "pods.yaml",
];

/// The API of an object's kind, in its namespace or cluster-wide.
fn api_of(client: &kube::Client, object: &DynamicObject) -> Api<DynamicObject> {
    let types = object.types.clone().expect("apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", &types.api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
    match &object.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Creates the example's CRDs and objects; statuses behind a status subresource go through it.
/// A uid the manifests refer to (a launcher Pod's `kubevirt.io/created-by`, a VMI's
/// `migrationUid`) becomes the uid the cluster gave the object.
async fn create_example(client: &kube::Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // Pods and claims have a status subresource too.
    let mut with_status_subresource =
        BTreeSet::from(["Pod".to_owned(), "PersistentVolumeClaim".to_owned()]);
    for entry in std::fs::read_dir(repo_root().join("examples/kubevirt/crds")).unwrap() {
        for doc in documents(&entry.unwrap().path()) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
            if crd
                .spec
                .versions
                .iter()
                .any(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some()))
            {
                with_status_subresource.insert(crd.spec.names.kind.clone());
            }
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("create CRD");
        }
    }
    assert!(
        !with_status_subresource.contains("VirtualMachineInstance"),
        "VMIs have no status subresource in KubeVirt"
    );
    for ns in ["prod", "dev", "ci"] {
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(ns.to_owned()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("create namespace");
    }
    // The claims' class allows resizing them.
    let class: StorageClass = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "expandable"},
        "provisioner": "example.com/none",
        "allowVolumeExpansion": true,
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("create storage class");
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("examples/kubevirt/objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort_by_key(|f| CREATION_ORDER.iter().position(|o| o == f));
    assert_eq!(files, CREATION_ORDER, "every manifest file is created");
    let mut uids: Vec<(String, String)> = Vec::new();
    for file in files {
        for doc in documents(&repo_root().join("examples/kubevirt/objects").join(file)) {
            let mut text = doc.to_string();
            for (old, new) in &uids {
                text = text.replace(old.as_str(), new);
            }
            let mut object: DynamicObject = serde_json::from_str(&text).unwrap();
            let kind = object.types.clone().expect("a kind").kind;
            let api = api_of(client, &object);
            let old_uid = object.metadata.uid.take();
            object.metadata.creation_timestamp = None;
            let status = object.data.get("status").cloned();
            let name = object.metadata.name.clone().expect("name");
            let mut created = None;
            for _ in 0..100 {
                match api.create(&PostParams::default(), &object).await {
                    Ok(o) => {
                        created = Some(o);
                        break;
                    }
                    // The CRD may not be served yet.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            let created = created.unwrap_or_else(|| panic!("create {kind} {name}"));
            if let (Some(old), Some(new)) = (old_uid, created.metadata.uid.clone()) {
                uids.push((old, new));
            }
            if let Some(status) = status.filter(|_| with_status_subresource.contains(&kind)) {
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": status })),
                )
                .await
                .unwrap_or_else(|e| panic!("status of {kind} {name}: {e}"));
            }
        }
    }
}

/// The example config, rewired for a test: free ports, the test's plugin dir, a file exporter,
/// and either the cluster (`kubeconfig`) or the objects on disk.
fn example_config(kubeconfig: Option<&Path>, prometheus_port: u16) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples/kubevirt/periscope.toml")).unwrap();
    for needle in [
        "listen = \"127.0.0.1:9464\"",
        "[kubernetes]",
        "config = { listen = \"127.0.0.1:9100\" }",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    let input = match kubeconfig {
        Some(path) => format!("[kubernetes]\nkubeconfig = \"{}\"\n", path.display()),
        None => format!(
            "[[sources.files]]\npath = \"{}\"\ninterval = \"200ms\"\n",
            repo_root().join("examples/kubevirt/objects").display()
        ),
    };
    text.replace(
        "listen = \"127.0.0.1:9464\"",
        "listen = \"{listen}\"\nplugin_dirs = [\"plugins\"]\nflush_interval = \"50ms\"",
    )
    .replace("[kubernetes]", &input)
    .replace(
        "config = { listen = \"127.0.0.1:9100\" }",
        &format!("config = {{ listen = \"127.0.0.1:{prometheus_port}\" }}"),
    ) + "\n[[exporters]]\nname = \"files\"\nplugin = \"file\"\nbatch = { max_wait = \"10ms\" }\nconfig = { path = \"out/metrics.ndjson\", fsync = \"never\" }\n"
}

/// The current samples by family name, from the file exporter's output.
fn by_family(dir: &Path) -> BTreeMap<String, BTreeSet<StateSample>> {
    let records = read_ndjson(&dir.join("out/metrics.ndjson"));
    let family_of: BTreeMap<String, String> = records
        .iter()
        .filter_map(|r| {
            Some((
                r["metric"].as_str()?.to_owned(),
                r["family"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut out: BTreeMap<String, BTreeSet<StateSample>> = BTreeMap::new();
    for sample in ndjson_state(&records).into_values().flatten() {
        let family = family_of
            .get(&sample.0)
            .cloned()
            .unwrap_or_else(|| sample.0.clone());
        out.entry(family).or_default().insert(sample);
    }
    out
}

/// The metrics the example's README lists in one section's table (`## {heading}`).
fn documented(heading: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("examples/kubevirt/README.md")).unwrap();
    let section = readme
        .split(&format!("## {heading}"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"))
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// The families the example's README lists: the controller's, then the example's own.
fn documented_families() -> BTreeSet<String> {
    let controller = documented("Parity with kubevirt-observability-controller");
    assert_eq!(controller.len(), 26, "{controller:?}");
    let own = documented("Beyond the controller");
    controller.into_iter().chain(own).collect()
}

/// Whether the cluster run's current samples of `metric` for the object `id` include one with
/// the label `name` set to `value`.
fn has_label(dir: &Path, id: &str, metric: &str, name: &str, value: &str) -> bool {
    let state = ndjson_state(&read_ndjson(&dir.join("out/metrics.ndjson")));
    let pair = format!("{name:?}:{value:?}");
    state.get(id).is_some_and(|samples| {
        samples
            .iter()
            .any(|(m, labels, _)| m == metric && labels.contains(&pair))
    })
}

/// The current value of `metric` for the object `id` whose labels include `name` = `value`.
fn value_of(dir: &Path, id: &str, metric: &str, name: &str, value: &str) -> Option<f64> {
    let state = ndjson_state(&read_ndjson(&dir.join("out/metrics.ndjson")));
    let pair = format!("{name:?}:{value:?}");
    state.get(id)?.iter().find_map(|(m, labels, v)| {
        (m == metric && labels.contains(&pair)).then(|| v.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubevirt_example_produces_its_documented_metrics_from_the_cluster() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    create_example(&client).await;

    let start = |kubeconfig: Option<&Path>| {
        let dir = tempfile::tempdir().unwrap();
        plugin_dir(&dir.path().join("plugins"), &["file", "prometheus"]);
        let port = free_port();
        let mut host = Host::start(dir.path(), &example_config(kubeconfig, port));
        host.wait_ready(Duration::from_secs(30));
        (dir, host, port)
    };
    let (cluster_dir, cluster_host, prometheus_port) = start(Some(cp.kubeconfig_path()));
    let (disk_dir, disk_host, _) = start(None);

    let documented = documented_families();
    assert!(documented.len() >= 30, "{documented:?}");
    assert!(documented.contains("kubevirt_vmi_phase_count"));
    // Names as Prometheus shows them: family names, and sample names (`kubevirt_vmi_info` is the
    // `_info` sample of the info family `kubevirt_vmi`).
    let names = |dir: &Path| -> BTreeSet<String> {
        by_family(dir)
            .into_iter()
            .flat_map(|(family, samples)| {
                std::iter::once(family).chain(samples.into_iter().map(|s| s.0))
            })
            .collect()
    };
    let complete = |dir: &Path| documented.is_subset(&names(dir));
    assert!(
        wait_until(Duration::from_secs(30), || complete(cluster_dir.path())
            && complete(disk_dir.path())),
        "missing families: {:?}\n{}",
        documented
            .difference(&names(cluster_dir.path()))
            .collect::<Vec<_>>(),
        cluster_host.log()
    );

    // The same objects give the same series and values, from the cluster as from disk.
    let comparable = |dir: &Path| -> BTreeMap<String, BTreeSet<StateSample>> {
        by_family(dir)
            .into_iter()
            .filter(|(family, _)| !CREATION_DEPENDENT.contains(&family.as_str()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || comparable(cluster_dir.path())
            == comparable(disk_dir.path())),
        "cluster and disk differ:\ncluster: {:#?}\ndisk: {:#?}",
        comparable(cluster_dir.path()),
        comparable(disk_dir.path())
    );
    let phase_count: f64 = comparable(cluster_dir.path())["kubevirt_vmi_phase_count"]
        .iter()
        .map(|(_, _, v)| v.parse::<f64>().unwrap())
        .sum();
    assert_eq!(phase_count, 14.0);
    for family in CREATION_DEPENDENT {
        assert!(
            by_family(cluster_dir.path()).contains_key(family),
            "{family}"
        );
    }

    // The Prometheus page of the cluster run passes promtool's lint.
    let url = format!("http://127.0.0.1:{prometheus_port}/metrics");
    let page = || http_get(&url).map(|(_, page)| page).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || page()
            .contains("kubevirt_vmi_phase_count{")),
        "{}\n{}",
        page(),
        cluster_host.log()
    );
    let page = page();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: install it with `bash tests/prometheus/install.sh`");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // KubeVirt's own name `kubevirt_vmi_phase_count` trips promtool's naming lint (a gauge ending in
    // `_count`); the example keeps KubeVirt's name on purpose (see its README). Nothing else may.
    let kubevirt_name = "kubevirt_vmi_phase_count non-histogram and non-summary metrics should not have \"_count\" suffix";
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty() && *l != kubevirt_name)
        .collect();
    assert!(problems.is_empty(), "promtool check metrics:\n{report}");
    assert!(
        report.contains(kubevirt_name) || out.status.success(),
        "{report}"
    );

    // Custom resources followed through update and delete: one VMI changes phase, one goes away
    // with every series it had; the phase count follows both.
    let vmi = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
    ));
    let vmis: Vec<DynamicObject> = Api::<DynamicObject>::all_with(client.clone(), &vmi)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let (first, second) = (&vmis[0], &vmis[1]);
    let (first_ns, first_name) = (
        first.metadata.namespace.clone().unwrap(),
        first.metadata.name.clone().unwrap(),
    );
    let (second_ns, second_name) = (
        second.metadata.namespace.clone().unwrap(),
        second.metadata.name.clone().unwrap(),
    );
    let mut changed = second.clone();
    changed.data["status"]["phase"] = "Failed".into();
    Api::<DynamicObject>::namespaced_with(client.clone(), &second_ns, &vmi)
        .replace(&second_name, &PostParams::default(), &changed)
        .await
        .expect("update a VMI");
    Api::<DynamicObject>::namespaced_with(client.clone(), &first_ns, &vmi)
        .delete(&first_name, &Default::default())
        .await
        .expect("delete a VMI");
    let first_id = format!("kubevirt.io/v1/VirtualMachineInstance/{first_ns}/{first_name}");
    let second_id = format!("kubevirt.io/v1/VirtualMachineInstance/{second_ns}/{second_name}");
    let followed = || {
        let state = ndjson_state(&read_ndjson(&cluster_dir.path().join("out/metrics.ndjson")));
        let count: f64 = by_family(cluster_dir.path())
            .get("kubevirt_vmi_phase_count")
            .map(|s| {
                s.iter()
                    .map(|(_, _, v)| v.parse::<f64>().unwrap_or(0.0))
                    .sum()
            })
            .unwrap_or(0.0);
        let second_failed = state.get(&second_id).is_some_and(|samples| {
            samples.iter().any(|(m, labels, _)| {
                m == "kubevirt_vmi_info" && labels.contains("\"phase\":\"failed\"")
            })
        });
        !state.contains_key(&first_id) && second_failed && count == 13.0
    };
    assert!(
        wait_until(Duration::from_secs(20), followed),
        "{}",
        cluster_host.log()
    );

    // Join targets change after the fact, and the series that read them follow.
    let dir = cluster_dir.path();
    let vmi_id =
        |ns: &str, name: &str| format!("kubevirt.io/v1/VirtualMachineInstance/{ns}/{name}");
    let vm_id = |ns: &str, name: &str| format!("kubevirt.io/v1/VirtualMachine/{ns}/{name}");
    // A claim is resized: the disk's size is the new request.
    let gib = 1024.0 * 1024.0 * 1024.0;
    let disk = "kubevirt_vm_disk_allocated_size_bytes";
    assert_eq!(
        value_of(dir, &vm_id("prod", "web-1"), disk, "device", "data"),
        Some(50.0 * gib)
    );
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "prod")
        .patch(
            "web-1-data",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"resources": {"requests": {"storage": "60Gi"}}}
            })),
        )
        .await
        .expect("resize the claim");
    assert!(
        wait_until(Duration::from_secs(20), || value_of(
            dir,
            &vm_id("prod", "web-1"),
            disk,
            "device",
            "data"
        ) == Some(60.0 * gib)),
        "{}",
        cluster_host.log()
    );
    // An instance type is deleted: the VMs and VMIs naming it show `<other>`.
    let cluster_instancetype = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterInstancetype",
    ));
    assert!(has_label(
        dir,
        &vm_id("prod", "db-1"),
        "kubevirt_vm_info",
        "instance_type",
        "u1.2xlarge"
    ));
    Api::<DynamicObject>::all_with(client.clone(), &cluster_instancetype)
        .delete("u1.2xlarge", &Default::default())
        .await
        .expect("delete an instance type");
    let other = || {
        has_label(
            dir,
            &vm_id("prod", "db-1"),
            "kubevirt_vm_info",
            "instance_type",
            "<other>",
        ) && has_label(
            dir,
            &vm_id("prod", "db-2"),
            "kubevirt_vm_info",
            "instance_type",
            "<other>",
        ) && has_label(
            dir,
            &vmi_id("prod", "db-1"),
            "kubevirt_vmi_info",
            "instance_type",
            "<other>",
        )
    };
    assert!(
        wait_until(Duration::from_secs(20), other),
        "{}",
        cluster_host.log()
    );
    // web-3's launcher Pod on its new node starts running and the one on the old node goes:
    // `vmi_pod` moves to it.
    assert!(has_label(
        dir,
        &vmi_id("prod", "web-3"),
        "kubevirt_vmi_info",
        "vmi_pod",
        ""
    ));
    let pods = Api::<Pod>::namespaced(client.clone(), "prod");
    pods.patch_status(
        "virt-launcher-web-3-bbbbb",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("run the new launcher Pod");
    let now = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("virt-launcher-web-3-aaaaa", &now)
        .await
        .expect("delete the old launcher Pod");
    pods.delete("virt-launcher-web-1-x2f9k", &now)
        .await
        .expect("delete web-1's launcher Pod");
    let moved = || {
        has_label(
            dir,
            &vmi_id("prod", "web-3"),
            "kubevirt_vmi_info",
            "vmi_pod",
            "virt-launcher-web-3-bbbbb",
        ) && has_label(
            dir,
            &vmi_id("prod", "web-1"),
            "kubevirt_vmi_info",
            "vmi_pod",
            "",
        )
    };
    assert!(
        wait_until(Duration::from_secs(20), moved),
        "{}",
        cluster_host.log()
    );
    drop((disk_host, cluster_host));
}

/// Each rule's `group/name`, health and last error, as `/api/v1/rules` reports them.
type RuleHealth = Vec<(String, String, String)>;

/// The state of each of Prometheus' alerting rules (`inactive`, `pending` or `firing`) and, for
/// every rule, its group, health and last error, from `/api/v1/rules`.
fn rules_of(prometheus: &Prometheus) -> (BTreeMap<String, String>, RuleHealth) {
    let url = format!("http://{}/api/v1/rules", prometheus.addr);
    let (status, body) = http_get(&url).expect("GET /api/v1/rules");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("rules JSON");
    let mut alerts = BTreeMap::new();
    let mut health = Vec::new();
    for group in json["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            if rule["type"] == "alerting" {
                alerts.insert(
                    name.clone(),
                    rule["state"].as_str().unwrap_or_default().to_owned(),
                );
            }
            health.push((
                format!("{}/{name}", group["name"].as_str().unwrap_or_default()),
                rule["health"].as_str().unwrap_or_default().to_owned(),
                rule["lastError"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    (alerts, health)
}

#[test]
fn a_real_prometheus_loads_the_rules_and_evaluates_them_over_the_example() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "prometheus"]);
    let port = free_port();
    let mut host = Host::start(dir.path(), &example_config(None, port));
    host.wait_ready(Duration::from_secs(30));
    let rules = repo_root().join("examples/kubevirt/prometheus-rules.yaml");
    let prometheus = Prometheus::start_with_rules(([127, 0, 0, 1], port).into(), &[&rules]);

    // Every rule of both groups is evaluated without an error.
    let mut last = Vec::new();
    let healthy = wait_until(Duration::from_secs(30), || {
        last = rules_of(&prometheus).1;
        last.len() == 6
            && last
                .iter()
                .all(|(_, health, error)| health == "ok" && error.is_empty())
    });
    assert!(healthy, "rules: {last:?}\n{}", prometheus.log());
    let groups: BTreeSet<&str> = last
        .iter()
        .filter_map(|(rule, _, _)| rule.split('/').next())
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from(["kubevirt.alerts", "kubevirt.rules"])
    );

    // The recording rule counts the example's VMs by namespace.
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for vm in documents(&repo_root().join("examples/kubevirt/objects/virtualmachines.yaml")) {
        let namespace = vm["metadata"]["namespace"].as_str().unwrap().to_owned();
        *want.entry(namespace).or_default() += 1.0;
    }
    assert_eq!(want.len(), 3, "{want:?}");
    let by_namespace = |series: &[periscope_tests::prometheus::Series]| -> BTreeMap<String, f64> {
        series
            .iter()
            .map(|(labels, value)| (labels["namespace"].clone(), *value))
            .collect()
    };
    prometheus.wait_for(
        "kubevirt_number_of_vms",
        Duration::from_secs(30),
        |series| by_namespace(series) == want,
    );

    // What the objects call for, as Prometheus sees it at once: lab-1 runs with LiveMigrate and
    // is not migratable (VMCannotBeEvicted, `for: 1m`), web-2 and lab-1 run outdated launchers
    // (OutdatedVirtualMachineInstanceWorkloads, `for: 24h`), batch-1 is starting on node-2
    // (VirtualMachineStuckOnNode, `for: 5m`). No VMI migrated 12 times, and every VM in an
    // unhealthy status has a VMI, so the two other alerts stay inactive.
    let mut alerts = BTreeMap::new();
    let want_active = [
        ("VMCannotBeEvicted", Some("lab-1")),
        ("OutdatedVirtualMachineInstanceWorkloads", None),
        ("VirtualMachineStuckOnNode", Some("batch-1")),
    ];
    let evaluated = wait_until(Duration::from_secs(30), || {
        alerts = rules_of(&prometheus).0;
        want_active.iter().all(|(alert, _)| {
            matches!(
                alerts.get(*alert).map(String::as_str),
                Some("pending" | "firing")
            )
        })
    });
    assert!(evaluated, "alerts: {alerts:?}");
    assert_eq!(
        alerts["OutdatedVirtualMachineInstanceWorkloads"], "pending",
        "{alerts:?}"
    );
    for alert in [
        "KubeVirtVMIExcessiveMigrations",
        "VirtualMachineStuckInUnhealthyState",
    ] {
        assert_eq!(alerts[alert], "inactive", "{alert}: {alerts:?}");
    }
    for (alert, vm) in want_active {
        let series = prometheus.query(&format!("ALERTS{{alertname=\"{alert}\"}}"));
        assert_eq!(series.len(), 1, "{alert}: {series:?}");
        if let Some(vm) = vm {
            assert_eq!(
                series[0].0.get("name").map(String::as_str),
                Some(vm),
                "{alert}: {series:?}"
            );
        }
    }
    drop(host);
}
