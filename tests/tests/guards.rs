//! Caps under real load: a flood of ConfigMaps on a real kube-apiserver under `max_objects` and
//! `max_series` (the host's resident memory measured, the counters exact, the series back after
//! a reload lifting the caps), a label with very many distinct values under `max_values`,
//! read offline, an endpoint answering a million series under its own and an exporter's
//! `max_series` and a million values of one label under its `max_values`, and a host over its
//! `memory_limit` ignoring new objects and new endpoint series while staying healthy and ready.
//!
//! The endpoint's size is `PERISCOPE_FLOOD_SERIES` (a million by default). The flood's size is
//! `PERISCOPE_FLOOD_OBJECTS` (20,000 by default: about a minute of creating
//! on the project's 2-core machines, where etcd and the apiserver share the cores with the test).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use periscope_tests::controlplane::{ControlPlane, kube_client};
use periscope_tests::{Host, plugin_dir, wait_until};

const NS: &str = "flood";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// How many ConfigMaps the flood creates.
fn flood_size() -> usize {
    std::env::var("PERISCOPE_FLOOD_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

/// Creates `count` ConfigMaps `cm-<i>` in `flood`, 64 requests in flight.
async fn flood(client: &kube::Client, count: usize) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(NS),
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let api = api.clone();
        tasks.spawn(async move {
            let cm = ConfigMap {
                metadata: meta(&format!("cm-{i}")),
                data: Some([("value".to_owned(), i.to_string())].into()),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create configmap");
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("create task");
    }
}

/// A config watching the flood's ConfigMaps, one `flood_info{name}` series each.
fn config(kubeconfig: &Path, caps: &str) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "100ms"

[kubernetes]
kubeconfig = "{kubeconfig}"

[[resources]]
version = "v1"
kind = "ConfigMap"
namespaces = ["{NS}"]
prefix = "flood"
labels = {{ name = "metadata.name" }}
{caps}

  [[resources.metrics]]
  name = "info"
  type = "info"

[[exporters]]
name = "files"
plugin = "file"
batch = {{ max_wait = "100ms" }}
config = {{ path = "out/metrics.ndjson", fsync = "never", max_bytes = "1GiB" }}
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// The resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory process `pid` ever had, in bytes.
fn peak_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// The size on line `field` of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a size in kB");
    kib * 1024
}

const WATCH: &str = "kubernetes:v1/ConfigMap@flood";
/// The resident memory the capped host must stay under (measured: 54 MiB with 20,000 ConfigMaps
/// under caps of 2,000 objects and 1,000 series, 92 MiB with 100,000 under 10,000 and 5,000).
const RSS_BOUND: u64 = 160 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_under_max_objects_and_max_series_keeps_the_host_small_and_counts_exactly() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    let count = flood_size();
    let started = Instant::now();
    flood(&client, count).await;
    eprintln!("created {count} ConfigMaps in {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    // A tenth of the flood taken in, half of that written: 2,000 and 1,000 by default.
    let (max_objects, max_series) = (count / 10, count / 20);
    let caps = format!("max_objects = {max_objects}\nmax_series = {max_series}");
    let mut host = Host::start(dir.path(), &config(cp.kubeconfig_path(), &caps));
    host.wait_ready(Duration::from_secs(120));
    let ignored = format!(
        "periscope_watch_objects_ignored_total{{reason=\"max_objects\",watch=\"{WATCH}\"}}"
    );
    let limited = "periscope_series_limited_total{entry=\"resources[0]\",metric=\"flood\",reason=\"max_series\"}";
    let series = "periscope_entry_series{entry=\"resources[0]\"}";
    let expected_ignored = (count - max_objects) as f64;
    let expected_limited = (max_objects - max_series) as f64;
    // Listing takes up to about two milliseconds per object on a busy 2-core machine.
    let listing = Duration::from_secs(60 + count as u64 / 500);
    assert!(
        wait_until(listing, || {
            host.metric(&ignored) == expected_ignored
                && host.metric(limited) == expected_limited
                && host.metric(series) == max_series as f64
        }),
        "ignored {} (expected {expected_ignored}), limited {} (expected {expected_limited}), series {}\n{}",
        host.metric(&ignored),
        host.metric(limited),
        host.metric(series),
        host.metrics()
    );
    let rss = resident_bytes(host.pid().expect("running"));
    eprintln!(
        "capped host: {} MiB resident with {count} ConfigMaps, {max_objects} taken in, {max_series} series",
        rss >> 20
    );
    assert!(
        rss < RSS_BOUND,
        "{} MiB resident, over the {} MiB bound",
        rss >> 20,
        RSS_BOUND >> 20
    );
    assert!(
        host.log().contains("ignoring new objects"),
        "{}",
        host.log()
    );

    // The caps lifted by a reload (SIGHUP): the watch with the new `max_objects` lists again and
    // every ConfigMap's series is written; what was counted stays counted.
    let lifted = format!("max_objects = {}\nmax_series = {}", count + 1, count + 1);
    std::fs::write(
        dir.path().join("periscope.toml"),
        config(cp.kubeconfig_path(), &lifted).replace("{listen}", &host.addr.to_string()),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(host.pid().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        wait_until(listing, || host.metric(series) == count as f64),
        "series {} of {count}\n{}",
        host.metric(series),
        host.metrics()
    );
    assert_eq!(
        host.metric("periscope_config_last_reload_successful"),
        1.0,
        "{}",
        host.log()
    );
    assert_eq!(host.metric(&ignored), expected_ignored);
    assert_eq!(host.metric(limited), expected_limited);
    let rss = resident_bytes(host.pid().expect("running"));
    eprintln!(
        "uncapped host: {} MiB resident with {count} ConfigMaps",
        rss >> 20
    );
    assert!(host.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_memory_limit_the_host_ignores_new_objects_and_stays_healthy_and_ready() {
    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    flood(&client, 0).await;
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    // An endpoint whose ten series are all new while admission is closed.
    let server = periscope_tests::endpoint_server::EndpointServer::start();
    let page: String = (0..10)
        .map(|i| format!("flood_series{{i=\"{i}\"}} 1\n"))
        .collect();
    server.set(
        "/metrics",
        periscope_tests::endpoint_server::Page::text(&page),
    );
    let endpoint = format!(
        "[[endpoints]]\nname = \"late\"\nurls = [\"{}\"]\ninterval = \"1s\"\ntimeout = \"1s\"\n",
        server.url("/metrics")
    );
    // 16 MiB, the smallest limit allowed, is below what the host holds at rest.
    let config = config(cp.kubeconfig_path(), "").replace(
        "flush_interval = \"100ms\"",
        "flush_interval = \"100ms\"\nmemory_limit = \"16MiB\"",
    ) + &endpoint;
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || host
            .log()
            .contains("memory near the limit")),
        "{}",
        host.log()
    );
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    for i in 0..20 {
        let cm = ConfigMap {
            metadata: meta(&format!("late-{i}")),
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let ignored = format!(
        "periscope_watch_objects_ignored_total{{reason=\"memory_limit\",watch=\"{WATCH}\"}}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || host.metric(&ignored) == 20.0),
        "{}",
        host.metrics()
    );
    // The endpoint's target writes its report (`up` and the `scrape_*` series), not its page.
    let left_out = "periscope_series_limited_total{entry=\"endpoints[0]\",metric=\"flood_series\",reason=\"memory_limit\"}";
    assert!(
        wait_until(Duration::from_secs(20), || host.metric(left_out) >= 20.0),
        "{}",
        host.metrics()
    );
    assert_eq!(host.metric(left_out) % 10.0, 0.0, "ten per scrape");
    let written = dir.path().join("out/metrics.ndjson");
    // The names of the series the file holds for the target, once it holds the target.
    let target = || {
        let text = std::fs::read_to_string(&written).unwrap_or_default();
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let state = periscope_tests::ndjson_state(&records);
        let names = state
            .into_values()
            .find(|samples| samples.iter().any(|s| s.0 == "up"));
        names.map(|samples| samples.into_iter().map(|s| s.0).collect::<Vec<_>>())
    };
    assert!(
        wait_until(Duration::from_secs(20), || target().is_some()),
        "no target in the file"
    );
    let names = target().unwrap_or_default();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!names.iter().any(|n| n == "flood_series"), "{names:?}");
    assert_eq!(host.metric("periscope_sources"), 1.0, "the target only");
    for path in ["healthz", "readyz"] {
        let (status, body) = periscope_tests::http_get(&format!("http://{}/{path}", host.addr))
            .expect("the host answers");
        assert_eq!(status, 200, "/{path}: {body}");
    }
    assert!(host.stop().success());
}

#[test]
fn a_label_with_very_many_values_is_held_under_max_values() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    // One object listing 200,000 items, each its own value of label `id`.
    let items = 200_000;
    let list: Vec<String> = (0..items).map(|i| format!("{{\"id\":\"i{i}\"}}")).collect();
    let object = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\",\"namespace\":\"ns\"}},\"items\":[{}]}}",
        list.join(",")
    );
    std::fs::write(dir.path().join("manifests/big.json"), object).unwrap();
    let config = r#"[host]
listen = "{listen}"
plugin_dirs = ["plugins"]
flush_interval = "100ms"

[[sources.files]]
path = "manifests"
interval = "1h"
max_file_bytes = "64MiB"

[[resources]]
version = "v1"
kind = "ConfigMap"
max_values = 1000

  [[resources.metrics]]
  name = "item"
  type = "info"
  each = "items[*]"
  labels = { id = "id" }

[[exporters]]
name = "files"
plugin = "file"
config = { path = "out.ndjson", max_bytes = "1GiB" }
"#;
    let mut host = Host::start(dir.path(), config);
    host.wait_ready(Duration::from_secs(120));
    let limited = "periscope_series_limited_total{entry=\"resources[0]\",metric=\"item\",reason=\"max_values\"}";
    let series = "periscope_entry_series{entry=\"resources[0]\"}";
    assert!(
        wait_until(Duration::from_secs(60), || host.metric(limited)
            == (items - 1000) as f64
            && host.metric(series) == 1000.0),
        "limited {}, series {}\n{}",
        host.metric(limited),
        host.metric(series),
        host.metrics()
    );
    let pid = host.pid().expect("running");
    eprintln!(
        "{items} values under max_values = 1000: {} MiB resident, {} MiB at most",
        resident_bytes(pid) >> 20,
        peak_bytes(pid) >> 20
    );
    assert!(host.stop().success());
}

#[test]
fn an_endpoint_answering_a_million_series_is_held_under_the_exporter_max_series() {
    let series = flood_series();
    // The target's four report series come first; the page's beyond 10,000 are left out.
    let cap = Cap::new(
        "exporter:files",
        "max_series",
        10_000,
        series - (10_000 - 4),
    );
    series_held(series, &cap, "", "max_series = 10000");
}

#[test]
fn an_endpoint_answering_a_million_series_is_held_under_its_own_max_series() {
    let series = flood_series();
    let cap = Cap::new("endpoints[0]", "max_series", 10_000, series - (10_000 - 4));
    series_held(series, &cap, "max_series = 10000", "");
}

#[test]
fn an_endpoint_label_with_a_million_values_is_held_under_its_max_values() {
    let series = flood_series();
    // The page's label `i` takes 1,000 values; job and instance one each, as in the report.
    let cap = Cap::new("endpoints[0]", "max_values", 1_000 + 4, series - 1_000);
    series_held(series, &cap, "max_values = 1000", "");
}

/// How many series the flooding endpoint answers, each with its own value of label `i`:
/// `PERISCOPE_FLOOD_SERIES`, a million by default.
fn flood_series() -> usize {
    std::env::var("PERISCOPE_FLOOD_SERIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// What a cap over the flooding endpoint is expected to do.
struct Cap {
    /// Which entry counts what it leaves out.
    entry: &'static str,
    /// The `reason` label.
    reason: &'static str,
    /// The series written, the target's report included.
    held: usize,
    /// The page's series left out at each scrape.
    left_out: usize,
}

impl Cap {
    fn new(entry: &'static str, reason: &'static str, held: usize, left_out: usize) -> Cap {
        Cap {
            entry,
            reason,
            held,
            left_out,
        }
    }
}

/// One endpoint answering `series` series, a cap on the endpoint entry or on the exporter.
fn series_held(series: usize, cap: &Cap, endpoint_cap: &str, exporter_cap: &str) {
    let mut page = String::with_capacity(series * 32);
    page.push_str("# TYPE flood_series gauge\n");
    for i in 0..series {
        page.push_str(&format!("flood_series{{i=\"{i}\"}} 1\n"));
    }
    let server = periscope_tests::endpoint_server::EndpointServer::start();
    server.set(
        "/metrics",
        periscope_tests::endpoint_server::Page::text(&page),
    );
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    let config = format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "100ms"

[[endpoints]]
name = "flood"
urls = ["{url}"]
interval = "30s"
timeout = "25s"
max_samples = 0
max_response_bytes = "256MiB"
{endpoint_cap}

[[exporters]]
name = "files"
plugin = "file"
{exporter_cap}
config = {{ path = "out.ndjson", max_bytes = "1GiB" }}
"#,
        url = server.url("/metrics")
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(120));
    let (entry, reason) = (cap.entry, cap.reason);
    let limited = format!(
        "periscope_series_limited_total{{entry=\"{entry}\",metric=\"flood_series\",reason=\"{reason}\"}}"
    );
    let held = format!("periscope_entry_series{{entry=\"{entry}\"}}");
    // Every scrape replaces the target's series (new timestamps): each leaves out the same.
    let exact = |limited: f64| limited > 0.0 && limited % cap.left_out as f64 == 0.0;
    assert!(
        wait_until(Duration::from_secs(180), || exact(host.metric(&limited))
            && host.metric(&held) == cap.held as f64),
        "limited {}, held {}\n{}",
        host.metric(&limited),
        host.metric(&held),
        host.log()
    );
    let written = || {
        // The exporter may be writing a line: only whole lines count.
        let text = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap_or_default();
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let state = periscope_tests::ndjson_state(&records);
        state.values().map(|samples| samples.len()).sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || written() == cap.held),
        "the file exporter holds {} series, not {}",
        written(),
        cap.held
    );
    let pid = host.pid().expect("running");
    eprintln!(
        "{series} series from one endpoint, {entry} held at {} by {reason}: {} MiB resident, {} MiB at most",
        cap.held,
        resident_bytes(pid) >> 20,
        peak_bytes(pid) >> 20
    );
    assert!(host.stop().success());
}
