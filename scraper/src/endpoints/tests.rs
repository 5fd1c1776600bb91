//! Unit tests of the endpoint pieces that need no network: config checks, target building from
//! Pods and EndpointSlices, offsets. Scraping itself is tested end to end against real HTTP
//! servers in `tests/tests/endpoints.rs`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::compile;
use super::discovery::{pod_targets, slice_targets};
use crate::config::EndpointConfig;
use crate::objects::ObjectKey;

#[derive(Deserialize)]
struct Doc {
    endpoints: Vec<EndpointConfig>,
}

fn compile_text(text: &str) -> Result<Vec<std::sync::Arc<super::Endpoint>>, Vec<String>> {
    let doc: Doc = periscope_plugin_api::config::parse(text).expect("valid TOML");
    compile(&doc.endpoints).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect()
    })
}

#[test]
fn a_good_entry_compiles() {
    let endpoints = compile_text(
        r#"
[[endpoints]]
name = "app"
urls = ["http://127.0.0.1:9100/metrics"]
keep = ["http_.*"]
drop = ["http_debug_.*"]
labels = { cluster = "lab" }
"#,
    )
    .unwrap();
    let endpoint = &endpoints[0];
    assert_eq!(endpoint.input_name(), "endpoints:app");
    assert!(endpoint.keeps("http_requests_total"));
    assert!(!endpoint.keeps("http_debug_total"), "drop wins");
    assert!(!endpoint.keeps("go_goroutines"), "not kept");
    assert!(
        !endpoint.keeps("xhttp_requests"),
        "patterns match whole names"
    );
    assert_eq!(endpoint.interval, Duration::from_secs(15));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let errors = compile_text(
        r#"
[[endpoints]]
name = "a"
urls = ["ftp://x/metrics", "not a url"]
interval = "1s"
timeout = "2s"
keep = ["("]
labels = { job = "x", "bad-name" = "y" }
metrics = [{ name = "m", type = "gauge", path = "a" }]

[[endpoints]]
name = "a"
format = "json"

[[endpoints]]
name = "b"
urls = ["http://x/"]
auth = { token_file = "/nonexistent/token" }
tls = { cert_file = "/nonexistent/cert.pem" }

  [endpoints.kubernetes]
  role = "pod"
  port = ""
  label_selector = "a in (b"
"#,
    )
    .unwrap_err();
    let has = |key: &str, text: &str| {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(key) && e.contains(text)),
            "no error {key}…{text} in {errors:#?}"
        );
    };
    has("endpoints[0].urls[0]", "only http and https");
    has("endpoints[0].urls[1]", "");
    has("endpoints[0].timeout", "at most the interval");
    has("endpoints[0].keep[0]", "");
    has("endpoints[0].labels.job", "the target's");
    has("endpoints[0].labels.bad-name", "");
    has("endpoints[0].metrics", "for `format = \"json\"`");
    has("endpoints[1].name", "unique");
    has("endpoints[1].urls", "give `urls`");
    has("endpoints[1].metrics", "needs `[[endpoints.metrics]]`");
    has("endpoints[2].auth.token_file", "/nonexistent/token");
    has("endpoints[2].tls.cert_file", "needs `key_file`");
    has("endpoints[2].kubernetes.port", "must not be empty");
    has("endpoints[2].kubernetes.label_selector", "");
}

#[test]
fn credentials_come_from_readable_files_and_are_basic_or_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let entry = |name: &str, auth: &str| {
        format!("[[endpoints]]\nname = \"{name}\"\nurls = [\"http://x/\"]\nauth = {auth}\n")
    };
    let good = entry("a", &format!("{{ token_file = \"{}\" }}", token.display()));
    assert!(compile_text(&good).is_ok());

    let errors = compile_text(&format!(
        "{}{}{}{}",
        entry("inline", "{ token = \"s3cret\" }"),
        entry(
            "key",
            &format!("{{ api_key_file = \"{}\" }}", token.display())
        ),
        entry(
            "both",
            "{ username = \"u\", password_file = \"p\", token_file = \"t\" }"
        ),
        entry(
            "tls",
            "{ token_file = \"/nonexistent/t\" }\ntls = { server_name = \"a\" }"
        ),
    ))
    .unwrap_err();
    let has = |key: &str, text: &str| {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(key) && e.contains(text)),
            "no error {key}…{text} in {errors:#?}"
        );
    };
    has(
        "endpoints[0].auth.token",
        "put the secret in a file and give `token_file`",
    );
    has(
        "endpoints[1].auth.api_key_file",
        "an API key is not taken here",
    );
    has("endpoints[2].auth.token_file", "one kind of credentials");
    has("endpoints[3].auth.token_file", "cannot read /nonexistent/t");
    has(
        "endpoints[3].tls.server_name",
        "not supported for endpoints",
    );
}

#[test]
fn json_metrics_are_checked_like_object_metrics() {
    let errors = compile_text(
        r#"
[[endpoints]]
name = "j"
urls = ["http://x/"]
format = "json"
metrics = [{ name = "bad name", type = "gauge", path = "a[" }]
"#,
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("endpoints[0].metrics[0].name")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("endpoints[0].metrics[0].path")),
        "{errors:#?}"
    );
}

fn discovering(role: &str, port: &str) -> std::sync::Arc<super::Endpoint> {
    compile_text(&format!(
        r#"
[[endpoints]]
name = "d"
  [endpoints.kubernetes]
  role = "{role}"
  port = {port}
  path = "/stats"
  scheme = "https"
  labels = {{ node = "spec.nodeName", pod = "metadata.labels.app" }}
"#
    ))
    .unwrap()
    .remove(0)
}

#[test]
fn a_running_pod_with_an_ip_is_a_target_on_its_named_port() {
    let endpoint = discovering("pod", "\"metrics\"");
    let discovery = endpoint.discovery.as_ref().unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "apps", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [
            {"ports": [{"name": "http", "containerPort": 80}]},
            {"ports": [{"name": "metrics", "containerPort": 9100}]}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3"}
    });
    let key = ObjectKey::of(&pod).unwrap();
    let targets = pod_targets(discovery, &key, &pod);
    assert_eq!(targets.len(), 1);
    let target = &targets[0];
    assert_eq!(target.url.as_str(), "https://10.1.2.3:9100/stats");
    assert_eq!(target.instance, "10.1.2.3:9100");
    // A configured label replaces a fixed one of the same name.
    assert_eq!(
        target.labels,
        [("namespace", "apps"), ("node", "n1"), ("pod", "web")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec()
    );
    assert_eq!(target.object.as_ref().unwrap().uid(), "u1");

    let mut ended = pod.clone();
    ended["status"]["phase"] = json!("Succeeded");
    assert!(pod_targets(discovery, &key, &ended).is_empty());
    let mut no_ip = pod.clone();
    no_ip["status"] = json!({"phase": "Pending"});
    assert!(pod_targets(discovery, &key, &no_ip).is_empty());
    let mut no_port = pod;
    no_port["spec"]["containers"] = json!([]);
    assert!(pod_targets(discovery, &key, &no_port).is_empty());
}

#[test]
fn every_endpoint_of_a_slice_is_a_target_on_the_slice_port() {
    let endpoint = discovering("endpointslice", "8443");
    let discovery = endpoint.discovery.as_ref().unwrap();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "api-x", "namespace": "apps", "uid": "s1",
                     "labels": {"kubernetes.io/service-name": "api"}},
        "ports": [{"name": "web", "port": 80}, {"name": "metrics", "port": 8443}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "api-0"}},
            {"addresses": ["fd00::5"]},
            {"addresses": []}
        ]
    });
    let key = ObjectKey::of(&slice).unwrap();
    let targets = slice_targets(discovery, &key, &slice);
    let urls: Vec<&str> = targets.iter().map(|t| t.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://10.0.0.1:8443/stats",
            "https://[fd00::5]:8443/stats"
        ]
    );
    assert_eq!(targets[1].instance, "[fd00::5]:8443");
    let labels = |t: &super::targets::Target| {
        t.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    // The configured `pod` path (empty here) replaces the pod named by the address.
    assert_eq!(
        labels(&targets[0]),
        ["namespace=apps", "service=api", "node=", "pod="]
    );
    assert_eq!(
        labels(&targets[1]),
        ["namespace=apps", "service=api", "node=", "pod="]
    );
}

/// An update of target `t` with `series` samples of family `m`.
fn update_of(series: usize) -> crate::event::SourceUpdate {
    use periscope_plugin_api::batch::{Family, FamilyKind, Source, SourceKind, Suffix};
    let source = Source::new(SourceKind::Endpoint, "t");
    crate::event::SourceUpdate::replace(source, |writer| {
        let family = writer.family(Family {
            name: "m",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        for i in 0..series {
            writer
                .sample(family, Suffix::None, 1.0, 0)
                .label("i", &i.to_string());
        }
    })
}

#[test]
fn while_admission_is_closed_a_target_writes_no_more_series_than_before() {
    let endpoints = compile_text(
        r#"
[[endpoints]]
name = "app"
urls = ["http://127.0.0.1:9100/metrics"]
"#,
    )
    .unwrap();
    let endpoint = &endpoints[0];
    let admission = crate::admission::Admission::default();
    let count = |update: crate::event::SourceUpdate| update.batch().sample_count();
    assert_eq!(
        count(endpoint.admitted(update_of(10), 6, &admission)),
        10,
        "open"
    );
    admission.set_open(false);
    assert_eq!(count(endpoint.admitted(update_of(10), 6, &admission)), 6);
    assert_eq!(
        count(endpoint.admitted(update_of(5), 6, &admission)),
        5,
        "shrinks"
    );
    assert_eq!(
        count(endpoint.admitted(update_of(10), 0, &admission)),
        super::scrape::REPORT_SERIES,
        "a new target still writes its report"
    );
    let left_out = endpoint.stats().snapshot().series_limited;
    let key = (
        "endpoints[0]".to_owned(),
        "m".to_owned(),
        "memory_limit".to_owned(),
    );
    assert_eq!(left_out.get(&key), Some(&(4 + 6)));
}

#[test]
fn max_values_of_zero_is_refused() {
    let errors = compile_text(
        r#"
[[endpoints]]
name = "app"
urls = ["http://127.0.0.1:9100/metrics"]
max_values = 0
"#,
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("endpoints[0].max_values: must be at least 1")),
        "{errors:?}"
    );
}
