//! The chart's harness: the real `helm` (built by `tests/helm/install.sh`), `helm lint` and `helm
//! template` of `deploy/helm/periscope`, the prometheus-operator CRDs, server-side apply of rendered
//! objects, and reading objects out of a rendered text.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

use crate::repo_root;

/// The helm version `tests/helm/install.sh` builds.
pub const HELM_VERSION: &str = "v3.22.0";
/// The prometheus-operator version whose CRDs `tests/helm/install.sh` caches.
pub const OPERATOR_VERSION: &str = "v0.85.0";

/// The release name the tests and `deploy/manifests/` render the chart under.
pub const RELEASE: &str = "periscope";

/// What the test suite's installs are cached under.
fn cache() -> PathBuf {
    std::env::var_os("PERISCOPE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/periscope")))
        .expect("HOME or PERISCOPE_CACHE is set")
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/periscope")
}

/// The helm binary; fails with the install command when it is missing.
pub fn helm_bin() -> PathBuf {
    let bin = cache().join("helm").join(HELM_VERSION).join("bin/helm");
    assert!(
        bin.is_file(),
        "{} is missing: install it with `bash tests/helm/install.sh` (scripts/test-all does)",
        bin.display()
    );
    bin
}

/// The prometheus-operator CRD file for `plural` (`servicemonitors`, …); fails with the install
/// command when it is missing.
pub fn operator_crd(plural: &str) -> String {
    let file = cache()
        .join("prometheus-operator")
        .join(OPERATOR_VERSION)
        .join(format!("crds/monitoring.coreos.com_{plural}.yaml"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install it with `bash tests/helm/install.sh` (scripts/test-all does)",
            file.display()
        )
    })
}

/// Runs helm with `args`; its stdout, or its stderr as the error.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm_bin())
        .args(args)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm lint --strict` of the chart with the values files `values`; fails with helm's output.
pub fn lint(values: &[&Path]) {
    let chart = chart_dir();
    let mut args = vec!["lint", "--strict", chart.to_str().expect("a UTF-8 path")];
    for file in values {
        args.extend(["-f", file.to_str().expect("a UTF-8 path")]);
    }
    if let Err(e) = helm(&args) {
        panic!("helm lint {values:?} failed:\n{e}");
    }
}

/// `helm template` of the chart as release [`RELEASE`] in `namespace`, with the values files
/// `values`: the rendered text, or helm's error.
pub fn template(namespace: &str, values: &[&Path]) -> Result<String, String> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("a UTF-8 path"),
        "--namespace",
        namespace,
    ];
    for file in values {
        args.extend(["-f", file.to_str().expect("a UTF-8 path")]);
    }
    helm(&args)
}

/// The chart's config made to run here: the page on `page_port` and the self-metrics on the
/// harness's `{listen}`, plugins from `plugins`, the cluster through `kubeconfig`, and what the pod
/// writes under `/var/lib/periscope/` relative to the working directory.
pub fn local_config(config: &str, plugins: &Path, kubeconfig: &Path, page_port: u16) -> String {
    config
        .replace(
            "[kubernetes]\n",
            &format!(
                "[kubernetes]\nkubeconfig = {:?}\n",
                kubeconfig.display().to_string()
            ),
        )
        .replace("0.0.0.0:9464", "{listen}")
        .replace("0.0.0.0:9465", &format!("127.0.0.1:{page_port}"))
        .replace(
            "[\"/usr/lib/periscope/plugins\"]",
            &format!("[{:?}]", plugins.display().to_string()),
        )
        .replace("/var/lib/periscope/", "")
}

/// The objects of a multi-document YAML text, skipping documents that hold only comments.
pub fn objects(yaml: &str) -> Vec<DynamicObject> {
    yaml.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|doc| {
            serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("not an object ({e}):\n{doc}"))
        })
        .collect()
}

/// The object of `kind` (and `name`, when given) among `objects`; panics when there is none.
pub fn find<'a>(objects: &'a [DynamicObject], kind: &str, name: Option<&str>) -> &'a DynamicObject {
    objects
        .iter()
        .find(|o| {
            o.types.as_ref().is_some_and(|t| t.kind == kind)
                && name.is_none_or(|n| o.metadata.name.as_deref() == Some(n))
        })
        .unwrap_or_else(|| panic!("no {kind} {name:?} among the rendered objects"))
}

/// The kinds of `objects`, in order.
pub fn kinds(objects: &[DynamicObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            o.types
                .as_ref()
                .map_or_else(String::new, |t| t.kind.clone())
        })
        .collect()
}

/// The API of `object`'s kind, namespaced when it has a namespace.
fn api_for(client: &kube::Client, object: &DynamicObject) -> Api<DynamicObject> {
    let types = object.types.as_ref().expect("apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", &types.api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
    match object.metadata.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side applies every object of `objects` (field manager `periscope-tests`) with strict
/// field validation, so an unknown or misplaced field is refused rather than dropped; the
/// apiserver's refusal, with the object, is the error.
pub async fn apply_all(client: &kube::Client, objects: &[DynamicObject]) -> Result<(), String> {
    let params = PatchParams::apply("periscope-tests")
        .force()
        .validation_strict();
    for object in objects {
        let name = object.metadata.name.as_deref().expect("a name");
        api_for(client, object)
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| format!("applying {:?} {name}: {e}", object.types))?;
    }
    Ok(())
}

/// Installs the prometheus-operator CRDs the chart can use (ServiceMonitor, PodMonitor,
/// PrometheusRule) and waits until the apiserver serves them.
pub async fn install_operator_crds(client: &kube::Client) {
    let plurals = ["servicemonitors", "podmonitors", "prometheusrules"];
    for plural in plurals {
        apply_all(client, &objects(&operator_crd(plural)))
            .await
            .expect("apply a prometheus-operator CRD");
    }
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    for plural in plurals {
        let name = format!("{plural}.monitoring.coreos.com");
        let mut established = false;
        for _ in 0..100 {
            let crd = crds.get(&name).await.expect("read the CRD");
            established = crd.data["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(established, "CRD {name} never became established");
    }
}
