//! Endpoint scraping end to end: real HTTP endpoints served from this process on loopback
//! (`periscope_tests::endpoint_server`), scraped by the real host, written by the file exporter.
//! Static targets in text, OpenMetrics and JSON; bad answers counted without harm to the other
//! targets; timeouts and size caps; credentials and mutual TLS; and targets discovered from Pods
//! and EndpointSlices in the real kube-apiserver (`tests/controlplane`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use periscope_tests::endpoint_server::{EndpointServer, Page, Tls};
use periscope_tests::pki::Ca;
use periscope_tests::{Host, ndjson_state, plugin_dir, read_ndjson, wait_until};
use serde_json::Value;

/// One sample of the current output: its source, metric name, labels and value (as JSON text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    source: String,
    metric: String,
    labels: BTreeMap<String, String>,
    value: String,
}

/// The current state of the file exporter's output, flattened.
fn seen(dir: &Path) -> BTreeSet<Seen> {
    ndjson_state(&read_ndjson(&dir.join("out/metrics.ndjson")))
        .into_iter()
        .flat_map(|(source, samples)| {
            samples.into_iter().map(move |(metric, labels, value)| {
                let labels: BTreeMap<String, String> = serde_json::from_str::<Value>(&labels)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                Seen {
                    source: source.clone(),
                    metric,
                    labels,
                    value,
                }
            })
        })
        .collect()
}

/// The value of the first sample named `metric` whose labels include every pair of `labels`.
fn value(dir: &Path, metric: &str, labels: &[(&str, &str)]) -> Option<String> {
    seen(dir)
        .into_iter()
        .find(|s| {
            s.metric == metric
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn wait_value(host: &Host, dir: &Path, metric: &str, labels: &[(&str, &str)], want: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || value(dir, metric, labels)
            .as_deref()
            == Some(want)),
        "{metric}{labels:?} never became {want}; it is {:?}\noutput: {:#?}\n{}",
        value(dir, metric, labels),
        seen(dir),
        host.log()
    );
}

fn host_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    dir
}

/// A host config with the file exporter and `more` (the `[[endpoints]]`, maybe `[kubernetes]`).
fn config(more: &str) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"

{more}

[[exporters]]
name = "files"
plugin = "file"
batch = {{ max_wait = "10ms" }}
config = {{ path = "out/metrics.ndjson", fsync = "never" }}
"#
    )
}

const TEXT_PAGE: &str = "# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code=\"200\",job=\"inner\"} 1027
http_requests_total{code=\"500\"} 3
# HELP request_seconds Request latency.
# TYPE request_seconds histogram
request_seconds_bucket{le=\"0.1\"} 5
request_seconds_bucket{le=\"+Inf\"} 7
request_seconds_sum 1.5
request_seconds_count 7
# TYPE go_goroutines gauge
go_goroutines 12
";

const OPENMETRICS_PAGE: &str = "# TYPE vm_memory_used_bytes gauge
# UNIT vm_memory_used_bytes bytes
# HELP vm_memory_used_bytes Memory used by the guest.
vm_memory_used_bytes{vm=\"a\"} 1.5e9
# TYPE vm_migrations counter
vm_migrations_total{vm=\"a\"} 2
vm_migrations_created{vm=\"a\"} 1.7e9
# TYPE vm_phase stateset
vm_phase{vm=\"a\",vm_phase=\"Running\"} 1
vm_phase{vm=\"a\",vm_phase=\"Paused\"} 0
# EOF
";

#[test]
fn text_openmetrics_and_json_targets_are_scraped_with_target_labels_and_series() {
    let server = EndpointServer::start();
    server.set("/text", Page::text(TEXT_PAGE));
    server.set("/om", Page::openmetrics(OPENMETRICS_PAGE));
    server.set(
        "/stats",
        Page::ok(
            "application/json",
            r#"{"vms": [{"name": "a", "cpu": {"seconds": 12.5}}, {"name": "b", "cpu": {"seconds": 3}}], "healthy": true}"#,
        ),
    );
    let dir = host_dir();
    let more = format!(
        r#"[[endpoints]]
name = "app"
urls = ["{text}", "{om}"]
interval = "200ms"
timeout = "150ms"
drop = ["go_.*"]
labels = {{ cluster = "lab" }}

[[endpoints]]
name = "stats"
urls = ["{stats}"]
format = "json"
interval = "200ms"
timeout = "150ms"
prefix = "stats"

  [[endpoints.metrics]]
  name = "vm_cpu_seconds"
  type = "counter"
  each = "vms[*]"
  path = "cpu.seconds"
  labels = {{ vm = "name" }}

  [[endpoints.metrics]]
  name = "healthy"
  type = "gauge"
  path = "healthy"
"#,
        text = server.url("/text"),
        om = server.url("/om"),
        stats = server.url("/stats"),
    );
    let mut host = Host::start(dir.path(), &config(&more));
    host.wait_ready(Duration::from_secs(20));
    let d = dir.path();
    let instance = server.addr().to_string();
    let target = [
        ("job", "app"),
        ("instance", instance.as_str()),
        ("cluster", "lab"),
    ];

    // Text: a counter with its samples' names, the scraped `job` renamed, histograms kept whole.
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels: Vec<(&str, &str)> = target.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    wait_value(
        &host,
        d,
        "http_requests_total",
        &with(&[("code", "200"), ("exported_job", "inner")]),
        "1027.0",
    );
    wait_value(
        &host,
        d,
        "http_requests_total",
        &with(&[("code", "500")]),
        "3.0",
    );
    wait_value(
        &host,
        d,
        "request_seconds_bucket",
        &with(&[("le", "+Inf")]),
        "7.0",
    );
    wait_value(&host, d, "request_seconds_count", &target, "7.0");
    // OpenMetrics: unit, `_created`, stateset.
    wait_value(
        &host,
        d,
        "vm_memory_used_bytes",
        &with(&[("vm", "a")]),
        "1500000000.0",
    );
    wait_value(
        &host,
        d,
        "vm_migrations_total",
        &with(&[("vm", "a")]),
        "2.0",
    );
    wait_value(
        &host,
        d,
        "vm_migrations_created",
        &with(&[("vm", "a")]),
        "1700000000.0",
    );
    wait_value(
        &host,
        d,
        "vm_phase",
        &with(&[("vm_phase", "Running")]),
        "1.0",
    );
    // JSON with the object path language.
    let stats = [("job", "stats"), ("instance", instance.as_str())];
    let with_stats = |vm: &'static str| {
        let mut labels: Vec<(&str, &str)> = stats.to_vec();
        labels.push(("vm", vm));
        labels
    };
    wait_value(
        &host,
        d,
        "stats_vm_cpu_seconds_total",
        &with_stats("a"),
        "12.5",
    );
    wait_value(
        &host,
        d,
        "stats_vm_cpu_seconds_total",
        &with_stats("b"),
        "3.0",
    );
    wait_value(&host, d, "stats_healthy", &stats, "1.0");
    // Every target has Prometheus' own series.
    for job in ["app", "stats"] {
        let labels = [("job", job), ("instance", instance.as_str())];
        wait_value(&host, d, "up", &labels, "1.0");
        assert!(value(d, "scrape_duration_seconds", &labels).is_some());
    }
    let text_source = format!("endpoint:app:{}", server.url("/text"));
    let scraped = |metric: &str| {
        seen(d)
            .into_iter()
            .find(|s| s.source == text_source && s.metric == metric)
            .map(|s| s.value)
    };
    assert_eq!(scraped("scrape_samples_scraped").as_deref(), Some("7.0"));
    assert_eq!(
        scraped("scrape_samples_post_metric_relabeling").as_deref(),
        Some("6.0")
    );
    // `drop` took the Go runtime series out.
    assert!(value(d, "go_goroutines", &[]).is_none(), "{:#?}", seen(d));
    // The target's samples carry the entry's `Accept` header; OpenMetrics is preferred.
    let accept = server.hits("/text")[0].accept.clone().unwrap_or_default();
    assert!(
        accept.starts_with("application/openmetrics-text"),
        "{accept}"
    );

    // A changed page is followed; a failing target keeps only its series, with up 0.
    server.set("/text", Page::text(&TEXT_PAGE.replace("1027", "1100")));
    wait_value(
        &host,
        d,
        "http_requests_total",
        &with(&[("code", "200")]),
        "1100.0",
    );
    server.set(
        "/om",
        Page {
            status: 503,
            ..Page::openmetrics("")
        },
    );
    let om_source = format!("endpoint:app:{}", server.url("/om"));
    assert!(
        wait_until(Duration::from_secs(10), || {
            let samples: Vec<Seen> = seen(d)
                .into_iter()
                .filter(|s| s.source == om_source)
                .collect();
            samples.iter().any(|s| s.metric == "up" && s.value == "0.0")
                && !samples.iter().any(|s| s.metric == "vm_memory_used_bytes")
        }),
        "the failing target kept its samples: {:#?}",
        seen(d)
    );
    assert!(
        host.metric("periscope_input_errors_total{input=\"endpoints:app\",kind=\"scrape\"}") >= 1.0
    );
    assert!(host.log().contains("HTTP status 503"), "{}", host.log());
    // The other target of the entry is untouched.
    assert_eq!(scraped("up").as_deref(), Some("1.0"));
    assert_eq!(host.stop().code(), Some(0), "{}", host.log());
}

#[test]
fn bad_answers_are_counted_per_target_and_never_harm_the_others() {
    let server = EndpointServer::start();
    let good = "# TYPE ok gauge\nok 1\n";
    server.set("/good", Page::text(good));
    server.set("/html", Page::ok("text/html", "<html>oops</html>"));
    server.set("/truncated", Page::openmetrics("# TYPE x gauge\nx 1\n"));
    server.set(
        "/utf8",
        Page::ok(
            "text/plain; version=0.0.4",
            b"x{a=\"\xff\xfe\"} 1\n".to_vec(),
        ),
    );
    server.set("/malformed", Page::text("x{a=\"1\" 1\n"));
    server.set(
        "/values",
        Page::text("# TYPE v gauge\nv{k=\"nan\"} NaN\nv{k=\"inf\"} +Inf\nv{k=\"ninf\"} -Inf\n"),
    );
    server.set(
        "/duplicates",
        Page::text("# TYPE d gauge\nd{a=\"1\"} 1\nd{a=\"1\"} 2\nd{a=\"2\"} 3\n"),
    );
    server.set("/json", Page::ok("application/json", "{\"a\": [1, 2"));
    let paths = [
        "/good",
        "/html",
        "/truncated",
        "/utf8",
        "/malformed",
        "/values",
        "/duplicates",
    ];
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}\"", server.url(p)))
        .collect();
    let dir = host_dir();
    let more = format!(
        r#"[[endpoints]]
name = "mixed"
urls = [{urls}]
interval = "200ms"
timeout = "150ms"

[[endpoints]]
name = "broken-json"
urls = ["{json}"]
format = "json"
interval = "200ms"
timeout = "150ms"

  [[endpoints.metrics]]
  name = "a"
  type = "gauge"
  path = "a[0]"
"#,
        urls = urls.join(", "),
        json = server.url("/json"),
    );
    let mut host = Host::start(dir.path(), &config(&more));
    host.wait_ready(Duration::from_secs(20));
    let d = dir.path();
    let up = |path: &str| {
        let source = format!("endpoint:mixed:{}", server.url(path));
        seen(d)
            .into_iter()
            .find(|s| s.source == source && s.metric == "up")
            .map(|s| s.value)
    };
    assert!(
        wait_until(Duration::from_secs(20), || paths
            .iter()
            .all(|p| up(p).is_some())),
        "not every target reported: {:#?}\n{}",
        seen(d),
        host.log()
    );
    for path in ["/good", "/values", "/duplicates"] {
        assert_eq!(up(path).as_deref(), Some("1.0"), "{path}\n{}", host.log());
    }
    for path in ["/html", "/truncated", "/utf8", "/malformed"] {
        assert_eq!(up(path).as_deref(), Some("0.0"), "{path}\n{}", host.log());
    }
    wait_value(&host, d, "up", &[("job", "broken-json")], "0.0");
    // NaN and infinities are values like any other (as in Prometheus).
    assert_eq!(value(d, "v", &[("k", "nan")]).as_deref(), Some("NaN"));
    assert_eq!(value(d, "v", &[("k", "inf")]).as_deref(), Some("+Inf"));
    assert_eq!(value(d, "v", &[("k", "ninf")]).as_deref(), Some("-Inf"));
    // Duplicates: the first of each series is kept, the drop is counted.
    assert_eq!(value(d, "d", &[("a", "1")]).as_deref(), Some("1.0"));
    assert_eq!(value(d, "d", &[("a", "2")]).as_deref(), Some("3.0"));
    let log = host.log();
    for needle in [
        "unsupported content type \"text/html\"",
        "malformed OpenMetrics page",
        "malformed Prometheus text page",
        "duplicate series dropped",
        "malformed JSON",
    ] {
        assert!(log.contains(needle), "the log lacks {needle:?}:\n{log}");
    }
    // Errors are counted, and keep being counted: the targets are still scraped.
    // Failed scrapes, and duplicate series dropped from pages that are read.
    let count = |kind: &str| {
        host.metric(&format!(
            "periscope_input_errors_total{{input=\"endpoints:mixed\",kind=\"{kind}\"}}"
        ))
    };
    assert!(count("scrape") >= 1.0 && count("value") >= 1.0);
    let errors = || count("scrape") + count("value");
    let before = errors();
    assert!(before >= 5.0, "{before}");
    assert!(wait_until(Duration::from_secs(5), || errors() >= before + 5.0));
    assert_eq!(value(d, "ok", &[]).as_deref(), Some("1.0"));
    assert_eq!(host.stop().code(), Some(0), "{}", host.log());
}

#[test]
fn slow_and_huge_targets_hit_their_limits_while_the_others_keep_their_interval() {
    let server = EndpointServer::start();
    server.set("/steady", Page::text("# TYPE steady gauge\nsteady 1\n"));
    server.set(
        "/slow",
        Page::text("# TYPE slow gauge\nslow 1\n").delayed(Duration::from_secs(5)),
    );
    let mut huge = String::from("# TYPE huge gauge\n");
    while huge.len() < 3 << 20 {
        huge.push_str(&format!("huge{{i=\"{}\"}} 1\n", huge.len()));
    }
    server.set("/huge", Page::text(&huge));
    let mut many = String::from("# TYPE many gauge\n");
    for i in 0..2000 {
        many.push_str(&format!("many{{i=\"{i}\"}} 1\n"));
    }
    server.set("/many", Page::text(&many));
    let dir = host_dir();
    let more = format!(
        r#"[[endpoints]]
name = "limits"
urls = ["{steady}", "{slow}", "{huge}", "{many}"]
interval = "500ms"
timeout = "300ms"
max_response_bytes = "1MiB"
max_samples = 1000
"#,
        steady = server.url("/steady"),
        slow = server.url("/slow"),
        huge = server.url("/huge"),
        many = server.url("/many"),
    );
    let mut host = Host::start(dir.path(), &config(&more));
    host.wait_ready(Duration::from_secs(20));
    let d = dir.path();
    let sample = |path: &str, metric: &str| {
        let source = format!("endpoint:limits:{}", server.url(path));
        seen(d)
            .into_iter()
            .find(|s| s.source == source && s.metric == metric)
            .map(|s| s.value.parse::<f64>().unwrap_or(f64::NAN))
    };
    assert!(
        wait_until(Duration::from_secs(20), || ["/slow", "/huge", "/many"]
            .iter()
            .all(|p| sample(p, "up") == Some(0.0))),
        "limits not enforced: {:#?}\n{}",
        seen(d),
        host.log()
    );
    // The slow target was cut at the timeout.
    let took = sample("/slow", "scrape_duration_seconds").unwrap();
    assert!((0.25..1.0).contains(&took), "the slow scrape took {took}s");
    std::thread::sleep(Duration::from_secs(4));
    let log = host.log();
    assert!(log.contains("timed out after 300ms"), "{log}");
    assert!(log.contains("larger than max_response_bytes"), "{log}");
    assert!(
        log.contains("more samples than max_samples (1000)"),
        "{log}"
    );
    // Meanwhile the steady target kept its rhythm: one scrape every 500 ms.
    let hits = server.hits("/steady");
    assert!(
        hits.len() >= 8,
        "only {} scrapes of the steady target",
        hits.len()
    );
    for pair in hits.windows(2).skip(1) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap > Duration::from_millis(350) && gap < Duration::from_millis(650),
            "a gap of {gap:?} between scrapes of the steady target"
        );
    }
    assert_eq!(sample("/steady", "up"), Some(1.0));
    assert_eq!(host.stop().code(), Some(0), "{}", host.log());
}

#[test]
fn bearer_token_basic_auth_and_mutual_tls_are_sent() {
    let ca = Ca::generate("periscope-endpoint-test-ca");
    let server = ca.server_certificate("endpoint");
    let client = ca.client_certificate("periscope");
    let plain = EndpointServer::start();
    plain.set(
        "/bearer",
        Page::text("# TYPE b gauge\nb 1\n").requiring("Bearer s3cret"),
    );
    plain.set(
        "/basic",
        Page::text("# TYPE c gauge\nc 1\n").requiring("Basic dXNlcjpwYXNz"),
    );
    let mtls = EndpointServer::start_tls(Tls {
        cert_pem: server.cert_pem.clone(),
        key_pem: server.key_pem.clone(),
        client_ca_pem: Some(ca.pem().to_owned()),
    });
    mtls.set("/metrics", Page::text("# TYPE t gauge\nt 1\n"));
    let dir = host_dir();
    let d = dir.path();
    for (name, text) in [
        ("token", "s3cret\n"),
        ("password", "pass\n"),
        ("ca.pem", ca.pem()),
        ("client.pem", client.cert_pem.as_str()),
        ("client.key", client.key_pem.as_str()),
    ] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let more = format!(
        r#"[[endpoints]]
name = "bearer"
urls = ["{bearer}"]
interval = "200ms"
timeout = "150ms"
auth = {{ token_file = "token" }}

[[endpoints]]
name = "basic"
urls = ["{basic}"]
interval = "200ms"
timeout = "150ms"
auth = {{ username = "user", password_file = "password" }}

[[endpoints]]
name = "mtls"
urls = ["{tls}"]
interval = "200ms"
timeout = "150ms"
tls = {{ ca_file = "ca.pem", cert_file = "client.pem", key_file = "client.key" }}

[[endpoints]]
name = "no-client-cert"
urls = ["{tls}"]
interval = "200ms"
timeout = "150ms"
tls = {{ ca_file = "ca.pem" }}
"#,
        bearer = plain.url("/bearer"),
        basic = plain.url("/basic"),
        tls = mtls.url("/metrics"),
    );
    let mut host = Host::start(d, &config(&more));
    host.wait_ready(Duration::from_secs(20));
    wait_value(&host, d, "b", &[("job", "bearer")], "1.0");
    wait_value(&host, d, "c", &[("job", "basic")], "1.0");
    wait_value(&host, d, "t", &[("job", "mtls")], "1.0");
    wait_value(&host, d, "up", &[("job", "no-client-cert")], "0.0");
    // A rotated token is read at the next scrape; the wrong one is refused and counted.
    std::fs::write(d.join("token"), "wrong").unwrap();
    wait_value(&host, d, "up", &[("job", "bearer")], "0.0");
    assert!(host.log().contains("HTTP status 401"), "{}", host.log());
    std::fs::write(d.join("token"), "s3cret").unwrap();
    wait_value(&host, d, "up", &[("job", "bearer")], "1.0");
    assert_eq!(host.stop().code(), Some(0), "{}", host.log());
}

mod discovered {
    //! Targets discovered through the real kube-apiserver.

    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use periscope_tests::controlplane::{ControlPlane, kube_client};

    const NS: &str = "apps";

    async fn namespace(client: &kube::Client) {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    /// Creates pod `name` (label `app`) with a container port `metrics` on `port`, then sets its
    /// status through the status subresource: Running with `ip`, or Pending without one.
    async fn pod(client: &kube::Client, name: &str, app: &str, port: u16, ip: Option<&str>) {
        let api = Api::<Pod>::namespaced(client.clone(), NS);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "main", "image": "example.invalid/app",
                                "ports": [{"name": "metrics", "containerPort": port}]}]
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        let status = match ip {
            Some(ip) => {
                serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
            }
            None => serde_json::json!({"status": {"phase": "Pending"}}),
        };
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("set pod status");
    }

    fn sources(dir: &Path) -> BTreeSet<String> {
        seen(dir).into_iter().map(|s| s.source).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_become_targets_and_leave_with_their_objects() {
        let cp = ControlPlane::start();
        let client = kube_client(cp.kubeconfig_path()).await;
        namespace(&client).await;
        let servers: Vec<EndpointServer> = (0..3).map(|_| EndpointServer::start()).collect();
        for (i, server) in servers.iter().enumerate() {
            server.set(
                "/metrics",
                Page::text(&format!("# TYPE work gauge\nwork {i}\n")),
            );
        }
        pod(
            &client,
            "web-0",
            "web",
            servers[0].addr().port(),
            Some("127.0.0.1"),
        )
        .await;
        pod(&client, "web-1", "web", servers[1].addr().port(), None).await;
        pod(
            &client,
            "db-0",
            "db",
            servers[2].addr().port(),
            Some("127.0.0.1"),
        )
        .await;

        let dir = host_dir();
        let d = dir.path();
        let more = format!(
            r#"[kubernetes]
kubeconfig = "{kubeconfig}"

[[endpoints]]
name = "web"
interval = "200ms"
timeout = "150ms"

  [endpoints.kubernetes]
  role = "pod"
  namespaces = ["{NS}"]
  label_selector = "app=web"
  port = "metrics"
  labels = {{ node = "spec.nodeName" }}
"#,
            kubeconfig = cp.kubeconfig_path().display()
        );
        let mut host = Host::start(d, &config(&more));
        host.wait_ready(Duration::from_secs(30));
        let labels = |pod: &'static str| {
            [
                ("job", "web"),
                ("namespace", NS),
                ("pod", pod),
                ("node", "node-1"),
            ]
        };
        // The running pod is a target; the pending one (no IP) and the other app are not.
        wait_value(&host, d, "work", &labels("web-0"), "0.0");
        let url = |i: usize| {
            format!(
                "endpoint:web:http://127.0.0.1:{}/metrics",
                servers[i].addr().port()
            )
        };
        assert_eq!(sources(d), BTreeSet::from([url(0)]), "{:#?}", seen(d));
        assert!(
            servers[2].hits("/metrics").is_empty(),
            "the db pod was scraped"
        );

        // The pending pod gets its IP: a new target.
        Api::<Pod>::namespaced(client.clone(), NS)
            .patch_status(
                "web-1",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})),
            )
            .await
            .unwrap();
        wait_value(&host, d, "work", &labels("web-1"), "1.0");

        // A deleted pod's target goes, with its samples.
        Api::<Pod>::namespaced(client.clone(), NS)
            .delete(
                "web-0",
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || sources(d)
                == BTreeSet::from([url(1)])),
            "web-0 was not removed: {:#?}\n{}",
            sources(d),
            host.log()
        );
        let scrapes = servers[0].hits("/metrics").len();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            servers[0].hits("/metrics").len(),
            scrapes,
            "web-0 is still scraped"
        );
        assert_eq!(host.stop().code(), Some(0), "{}", host.log());
    }

    /// This machine's outgoing IPv4 address: EndpointSlices may not point at loopback.
    fn own_address() -> std::net::IpAddr {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        // No packet is sent: connecting a UDP socket only picks the route and source address.
        socket
            .connect("192.0.2.200:9")
            .or_else(|_| socket.connect("10.255.255.1:9"))
            .expect(
                "EndpointSlices may not point at 127.0.0.0/8, so this test serves on the machine's \
                 own non-loopback address; this machine has no route to find one",
            );
        let ip = socket.local_addr().unwrap().ip();
        assert!(
            !ip.is_loopback() && !ip.is_unspecified(),
            "no non-loopback address: {ip}"
        );
        ip
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpointslice_addresses_become_targets() {
        let cp = ControlPlane::start();
        let client = kube_client(cp.kubeconfig_path()).await;
        namespace(&client).await;
        let ip = own_address();
        let server = EndpointServer::start_on(ip, None);
        server.set("/metrics", Page::text("# TYPE svc_up gauge\nsvc_up 1\n"));
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), NS);
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-x1", "labels": {"kubernetes.io/service-name": "api"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true},
                           "targetRef": {"kind": "Pod", "namespace": NS, "name": "api-0"}}],
            "ports": [{"name": "metrics", "port": server.addr().port(), "protocol": "TCP"}]
        }))
        .unwrap();
        slices
            .create(&PostParams::default(), &slice)
            .await
            .expect("create slice");

        let dir = host_dir();
        let d = dir.path();
        let more = format!(
            r#"[kubernetes]
kubeconfig = "{kubeconfig}"

[[endpoints]]
name = "api"
interval = "200ms"
timeout = "150ms"

  [endpoints.kubernetes]
  role = "endpointslice"
  label_selector = "kubernetes.io/service-name=api"
  port = "metrics"
"#,
            kubeconfig = cp.kubeconfig_path().display()
        );
        let mut host = Host::start(d, &config(&more));
        host.wait_ready(Duration::from_secs(30));
        let instance = server.addr().to_string();
        wait_value(
            &host,
            d,
            "svc_up",
            &[
                ("job", "api"),
                ("instance", &instance),
                ("namespace", NS),
                ("service", "api"),
                ("pod", "api-0"),
            ],
            "1.0",
        );
        slices
            .delete("api-x1", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || sources(d).is_empty()),
            "the slice's target was not removed: {:#?}\n{}",
            sources(d),
            host.log()
        );
        assert_eq!(host.stop().code(), Some(0), "{}", host.log());
    }
}
