//! The Helm chart (`deploy/helm/periscope`) with the real `helm` and the real apiserver: it lints
//! and renders for the default values and for sharded, monitoring, persistence and extra-plugin
//! values (`tests/helm/values/`); every rendered object is applied server-side, so a schema error
//! fails; its RBAC is what `periscope rbac` prints for its config; `deploy/manifests/` is the
//! default render; and Periscope, with a token of the chart's ServiceAccount and the chart's
//! config, serves the watched objects while the apiserver refuses it a kind the chart did not grant.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use periscope_tests::controlplane::{ControlPlane, create_all, kube_client, service_account_token};
use periscope_tests::helm::{self, RELEASE};
use periscope_tests::{Host, http_get, periscope, plugin_dir, repo_root, wait_until};
use serde_json::Value;

/// A values file of `tests/helm/values/`.
fn values(name: &str) -> PathBuf {
    repo_root().join("tests/helm/values").join(name)
}

/// The value sets every test renders: a name (`values-<name>` is the namespace it is applied in)
/// and its files.
fn cases() -> Vec<(&'static str, Vec<PathBuf>)> {
    vec![
        ("default", vec![]),
        ("sharded", vec![values("sharded.yaml")]),
        ("monitoring", vec![values("monitoring.yaml")]),
        ("persistence", vec![values("persistence.yaml")]),
        ("extra-plugin", vec![values("extra-plugin.yaml")]),
    ]
}

fn paths(files: &[PathBuf]) -> Vec<&Path> {
    files.iter().map(PathBuf::as_path).collect()
}

/// The config the chart mounts: `periscope.toml` of its ConfigMap.
fn chart_config(objects: &[DynamicObject]) -> String {
    helm::find(objects, "ConfigMap", Some(RELEASE)).data["data"]["periscope.toml"]
        .as_str()
        .expect("the ConfigMap holds periscope.toml")
        .to_owned()
}

/// Checks that `periscope check` accepts the chart's config, with the built plugins.
fn assert_config_checks(case: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&dir.path().join("plugins"), &["prometheus", "file"]);
    let text = helm::local_config(config, &plugins, &dir.path().join("kubeconfig"), 9465)
        .replace("{listen}", "127.0.0.1:9464");
    std::fs::write(dir.path().join("periscope.toml"), text).unwrap();
    let (status, stdout, stderr) = periscope(&["check", "--config", "periscope.toml"], dir.path());
    assert!(
        status.success() && stdout.contains("config ok"),
        "{case}: periscope check refuses the chart's config:\n{stderr}"
    );
}

/// Checks the PrometheusRule's rules with `promtool check rules`.
fn assert_rules_check(rule: &DynamicObject) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&rule.data["spec"]).expect("the rules as JSON, which is YAML"),
    )
    .unwrap();
    let out = std::process::Command::new(periscope_tests::prometheus::binary("promtool"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool refuses the chart's PrometheusRule:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The objects `periscope rbac` prints for `config`, for ServiceAccount `namespace/name`.
fn periscope_rbac(config: &str, name: &str, namespace: &str) -> Vec<DynamicObject> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("periscope.toml"), config).unwrap();
    let (status, yaml, stderr) = periscope(
        &[
            "rbac",
            "--config",
            "periscope.toml",
            "--name",
            name,
            "--namespace",
            namespace,
        ],
        dir.path(),
    );
    assert!(status.success(), "periscope rbac failed: {stderr}");
    helm::objects(&yaml)
}

/// Checks that the chart's ClusterRole, ServiceAccount and ClusterRoleBinding are those
/// `periscope rbac` prints for the chart's own config.
fn assert_rbac_is_what_periscope_prints(case: &str, namespace: &str, chart: &[DynamicObject]) {
    let printed = periscope_rbac(&chart_config(chart), RELEASE, namespace);
    let role = |objects: &[DynamicObject]| helm::find(objects, "ClusterRole", None).data.clone();
    assert_eq!(
        role(chart)["rules"],
        role(&printed)["rules"],
        "{case}: the chart's ClusterRole rules differ from `periscope rbac`"
    );
    for kind in ["ClusterRole", "ServiceAccount", "ClusterRoleBinding"] {
        let ours = helm::find(chart, kind, None);
        let theirs = helm::find(&printed, kind, None);
        assert_eq!(ours.metadata.name, theirs.metadata.name, "{case}: {kind}");
        assert_eq!(
            ours.metadata.namespace, theirs.metadata.namespace,
            "{case}: {kind}"
        );
    }
    let binding =
        |objects: &[DynamicObject]| helm::find(objects, "ClusterRoleBinding", None).data.clone();
    assert_eq!(
        binding(chart)["roleRef"],
        binding(&printed)["roleRef"],
        "{case}"
    );
    assert_eq!(
        binding(chart)["subjects"],
        binding(&printed)["subjects"],
        "{case}"
    );
}

/// Checks the pod template every workload shares: non-root, read-only, no privileges, probes.
fn assert_pod_is_locked_down(case: &str, workload: &DynamicObject) {
    let pod = &workload.data["spec"]["template"]["spec"];
    let security = &pod["securityContext"];
    assert_eq!(security["runAsUser"], 65532, "{case}");
    assert_eq!(security["runAsNonRoot"], true, "{case}");
    assert_eq!(
        security["seccompProfile"]["type"], "RuntimeDefault",
        "{case}"
    );
    let containers = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["initContainers"].as_array().into_iter().flatten());
    for container in containers {
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{case}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{case}");
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    }
    let main = &pod["containers"][0];
    assert_eq!(
        main["startupProbe"]["httpGet"]["path"], "/healthz",
        "{case}"
    );
    assert_eq!(
        main["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{case}"
    );
    assert_eq!(
        main["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{case}"
    );
    assert!(
        workload.data["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .is_some_and(|sum| sum.len() == 64),
        "{case}: no checksum/config annotation"
    );
}

#[test]
fn the_manifests_are_the_chart_rendered_with_default_values() {
    let rendered = helm::template("monitoring", &[]).expect("helm template");
    let file = repo_root().join("deploy/manifests/periscope.yaml");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == rendered,
        "{} is not the chart rendered with default values; regenerate it with \
         `bash deploy/manifests/render.sh`",
        file.display()
    );
}

#[test]
fn the_pods_checksum_changes_with_the_config_not_with_other_values() {
    let checksum = |files: &[&Path]| {
        let objects = helm::objects(&helm::template("monitoring", files).expect("helm template"));
        helm::find(&objects, "Deployment", Some(RELEASE)).data["spec"]["template"]["metadata"]
            ["annotations"]["checksum/config"]
            .clone()
    };
    let default = checksum(&[]);
    assert_ne!(default, checksum(&[&values("persistence.yaml")]));
    assert_eq!(default, checksum(&[&values("monitoring.yaml")]));
}

#[test]
fn an_extra_plugin_the_config_does_not_pin_is_refused() {
    let error = helm::template("monitoring", &[&values("extra-plugin-unpinned.yaml")])
        .expect_err("an unpinned plugin renders");
    assert!(
        error.contains("extraPlugins: csv: the config pins no exporter with sha256"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_values_set_lints_renders_and_is_accepted_by_the_apiserver() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    helm::install_operator_crds(&admin).await;

    for (case, files) in cases() {
        let namespace = format!("values-{case}");
        helm::lint(&paths(&files));
        let rendered = helm::template(&namespace, &paths(&files))
            .unwrap_or_else(|e| panic!("helm template {case}: {e}"));
        let objects = helm::objects(&rendered);
        let kinds = helm::kinds(&objects);

        // What each values set is for.
        let workload = match case {
            "sharded" => {
                let set = helm::find(&objects, "StatefulSet", Some(RELEASE));
                assert_eq!(set.data["spec"]["replicas"], 3);
                assert!(
                    set.data["spec"]["template"]["spec"]["containers"][0]["args"]
                        .as_array()
                        .is_some_and(|args| args.contains(&Value::from("--shard-from-hostname")))
                );
                assert_eq!(
                    set.data["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
                    "data"
                );
                let role = helm::find(&objects, "Role", None);
                assert_eq!(
                    role.data["rules"],
                    serde_json::json!([{
                        "apiGroups": ["apps"], "resources": ["statefulsets"],
                        "resourceNames": [RELEASE], "verbs": ["get"],
                    }])
                );
                assert!(!kinds.contains(&"Deployment".to_owned()), "{kinds:?}");
                set
            }
            _ => helm::find(&objects, "Deployment", Some(RELEASE)),
        };
        assert_pod_is_locked_down(case, workload);
        for kind in [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Service",
            "PodDisruptionBudget",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{case}: no {kind}");
        }
        let monitors = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
        for kind in monitors {
            assert_eq!(
                kinds.iter().any(|k| k == kind),
                case == "monitoring",
                "{case}: {kind}"
            );
        }
        match case {
            "persistence" => {
                helm::find(&objects, "PersistentVolumeClaim", Some(RELEASE));
                assert_eq!(workload.data["spec"]["strategy"]["type"], "Recreate");
            }
            "extra-plugin" => {
                let pod = &workload.data["spec"]["template"]["spec"];
                assert_eq!(pod["initContainers"][0]["name"], "plugin-csv");
                assert_eq!(
                    pod["initContainers"][0]["image"],
                    "registry.example/periscope-csv:1.0.0"
                );
            }
            _ => {}
        }
        assert_rbac_is_what_periscope_prints(case, &namespace, &objects);
        // The extra plugin exists only in its (example) image.
        if case != "extra-plugin" {
            assert_config_checks(case, &chart_config(&objects));
        }
        if case == "monitoring" {
            assert_rules_check(helm::find(&objects, "PrometheusRule", None));
        }

        // The apiserver takes every object as rendered.
        create_all(
            &admin,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}"),
        )
        .await;
        if let Err(e) = helm::apply_all(&admin, &objects).await {
            panic!("{case}: the apiserver refused the chart: {e}");
        }
    }

    // The apiserver checks what it is given: a misplaced field in a ServiceMonitor is refused.
    let rendered = helm::template("values-monitoring", &[&values("monitoring.yaml")]).unwrap();
    let mut monitor = helm::find(&helm::objects(&rendered), "ServiceMonitor", None).clone();
    monitor.data["spec"]["endpoints"][0]["intervall"] = Value::from("30s");
    let refused = helm::apply_all(&admin, &[monitor]).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("intervall")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_charts_service_account_periscope_serves_objects_and_is_refused_the_rest() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    let namespace = "monitoring";
    let objects = helm::objects(&helm::template(namespace, &[]).expect("helm template"));
    create_all(
        &admin,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n---\n\
                  apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo"
        ),
    )
    .await;
    helm::apply_all(&admin, &objects)
        .await
        .expect("apply the chart");
    // A Deployment to watch; the chart's own Deployment is one too.
    create_all(
        &admin,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n\
         spec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    \
         metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          \
         image: registry.example/web:1",
    )
    .await;

    // The chart's config, reaching the cluster with a token of the chart's ServiceAccount (a pod's
    // in-cluster identity) and listening on loopback.
    let dir = tempfile::tempdir().unwrap();
    let token = service_account_token(&admin, namespace, RELEASE).await;
    let kubeconfig = dir.path().join("token.kubeconfig");
    cp.token_kubeconfig(&token, &kubeconfig);
    let plugins = plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_port = periscope_tests::free_port();
    let config = helm::local_config(&chart_config(&objects), &plugins, &kubeconfig, page_port);
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(60));

    let page = format!("http://127.0.0.1:{page_port}/metrics");
    let shows = |body: &str, metric: &str, name: &str, value: &str| {
        body.lines().any(|line| {
            line.starts_with(&format!("{metric}{{"))
                && line.contains(&format!("name=\"{name}\""))
                && line.ends_with(&format!(" {value}"))
        })
    };
    let served = wait_until(Duration::from_secs(30), || {
        http_get(&page).is_ok_and(|(status, body)| {
            status == 200
                && shows(&body, "periscope_deployment_spec_replicas", "web", "3")
                && shows(&body, "periscope_deployment_spec_replicas", RELEASE, "1")
                && body.contains("periscope_deployment_count{namespace=\"demo\"} 1")
        })
    });
    assert!(
        served,
        "the page never showed the Deployments: {:?}\n{}",
        http_get(&page),
        host.log()
    );

    // The binding grants exactly the config's kinds: a ConfigMap is refused to the same token.
    let account = kube_client(&kubeconfig).await;
    let refused = Api::<ConfigMap>::all(account.clone())
        .list(&ListParams::default())
        .await
        .expect_err("the chart's ServiceAccount may list ConfigMaps");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused:?}"
    );
}
