//! The Elasticsearch exporter end to end: documents per second, host CPU per 1 000 documents and
//! store size per million samples (after a force-merge to one segment), through a release build
//! of the real host into a real Elasticsearch 8.19 node (`tests/search-node`), in index mode and
//! in data-stream (time series) mode on the same input, and into a real OpenSearch 2.19 node
//! (`tests/opensearch-node`) in data-stream mode (a plain data stream there), each on a fresh
//! node.
//!
//! Run:
//!
//! ```sh
//! cargo build --release -p periscope-core -p periscope-exporter-elasticsearch
//! cargo bench -p periscope-tests --bench elasticsearch
//! cargo bench -p periscope-tests --bench elasticsearch -- opensearch   # only the cases so named
//! ```
//!
//! The host reads `OBJECTS` manifests from disk, each an object with `SERIES` entries that become
//! one gauge sample each, so every round produces `OBJECTS × SERIES` documents (200 000). The first
//! round is the start-up read; each later round rewrites every manifest with new values. A round
//! lasts from the first manifest written (or the host's start) until the host's
//! `periscope_exporter_sent_samples_total` says the node acknowledged every document of the
//! round; at the end `_count` must equal every document produced, none twice.
//!
//! Host CPU is the user + system time of the `periscope` process alone (`/proc/<pid>/stat`), the
//! JVM excluded: it covers reading and parsing the manifests, the pipeline, merging, encoding the
//! bulk requests and HTTP. The node's CPU is printed beside it for scale. Both share the machine,
//! so the node's indexing speed bounds documents per second; the load average is printed too.
//!
//! `PERISCOPE_BIN_DIR` chooses the host build (default: `target/release`); `SEARCH_NODE_HEAP`
//! the node's heap (default 512m).

use std::path::Path;
use std::time::{Duration, Instant};

use periscope_tests::search_node::{Distribution, SearchNode};
use periscope_tests::{Host, cpu_seconds, plugin_dir, repo_root, wait_until};

/// Objects (manifest files).
const OBJECTS: usize = 200;
/// Series per object: samples, so documents, per object and round.
const SERIES: usize = 1_000;
/// Rounds after the start-up read.
const ROUNDS: usize = 3;
/// Documents per round.
const DOCUMENTS: u64 = (OBJECTS * SERIES) as u64;

const SENT: &str = "periscope_exporter_sent_samples_total{exporter=\"search\"}";

/// The exporter's two modes, each measured on a node of its own.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `index = "bench-%Y.%m.%d"`: daily indices, a `flattened` labels field.
    Index,
    /// `data_stream = { dataset = "bench" }`: a time series data stream.
    DataStream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Index => "index",
            Mode::DataStream => "data stream",
        }
    }

    /// The exporter's `config` keys choosing the mode.
    fn keys(self) -> &'static str {
        match self {
            Mode::Index => r#"index = "bench-%Y.%m.%d""#,
            Mode::DataStream => r#"data_stream = { dataset = "bench" }"#,
        }
    }

    /// What the mode writes into.
    fn target(self) -> &'static str {
        match self {
            Mode::Index => "bench-*",
            Mode::DataStream => "metrics-bench-default",
        }
    }
}

/// What one mode measured.
struct Measured {
    /// Median documents per second of the change rounds.
    per_second: f64,
    /// Median host CPU seconds per 1k documents of the change rounds.
    cpu_per_1k: f64,
    /// Primary store bytes after a force-merge to one segment.
    store_bytes: u64,
    /// Documents counted.
    documents: u64,
}

// Unsafe: `set_var` is unsafe since edition 2024; the harness reads the directory from the
// environment, and this sets it before any other thread exists.
#[allow(unsafe_code)]
fn main() {
    if std::env::var_os("PERISCOPE_BIN_DIR").is_none() {
        // SAFETY: no other thread runs yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("PERISCOPE_BIN_DIR", repo_root().join("target/release")) };
    }
    println!(
        "Elasticsearch exporter, end to end: {} host → real Elasticsearch 8.19 / OpenSearch 2.19 \
         node on 127.0.0.1 (1 shard, 0 replicas), index mode and data-stream mode on the same input",
        std::env::var("PERISCOPE_BIN_DIR").unwrap_or_default()
    );
    println!(
        "{DOCUMENTS} documents per round ({OBJECTS} objects × {SERIES} series, labels namespace, \
         name, series), batch limits at their defaults (10 000 samples, 8 MiB)"
    );
    // Arguments that are not flags (cargo passes `--bench`) choose the cases by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases = [
        (Distribution::Elasticsearch, Mode::Index),
        (Distribution::Elasticsearch, Mode::DataStream),
        (Distribution::OpenSearch, Mode::DataStream),
    ];
    let results: Vec<(String, Measured)> = cases
        .into_iter()
        .map(|(distribution, mode)| (case_name(distribution, mode), distribution, mode))
        .filter(|(name, _, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .map(|(name, distribution, mode)| (name, measure(distribution, mode)))
        .collect();
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>17} {:>14} {:>22}",
        "case", "documents", "docs/s", "host CPU s/1k", "store bytes", "bytes/1M samples"
    );
    for (name, m) in &results {
        println!(
            "{:<26} {:>10} {:>10.0} {:>17.4} {:>14} {:>22.0}",
            name,
            m.documents,
            m.per_second,
            m.cpu_per_1k,
            m.store_bytes,
            m.store_bytes as f64 / m.documents as f64 * 1e6
        );
    }
    if let [(_, index), (_, stream), ..] = &results[..] {
        println!(
            "store size, index mode / data-stream mode: {:.2}",
            index.store_bytes as f64 / stream.store_bytes as f64
        );
    }
}

/// `elasticsearch index`, `opensearch data stream`, …
fn case_name(distribution: Distribution, mode: Mode) -> String {
    let product = match distribution {
        Distribution::Elasticsearch => "elasticsearch",
        Distribution::OpenSearch => "opensearch",
    };
    format!("{product} {}", mode.name())
}

/// Runs every round in `mode` on a node of `distribution` of its own, then force-merges and reads
/// the store size.
fn measure(distribution: Distribution, mode: Mode) -> Measured {
    let node = SearchNode::start_distribution(distribution);
    let dir = tempfile::tempdir().expect("temp dir");
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    write_manifests(dir.path(), 0);

    println!();
    println!("case: {} ({})", case_name(distribution, mode), mode.keys());
    println!("load average before: {}", loadavg());
    println!(
        "{:<8} {:>10} {:>8} {:>10} {:>11} {:>17} {:>11}",
        "round", "documents", "seconds", "docs/s", "host CPU s", "host CPU s/1k", "node CPU s"
    );

    let started = Instant::now();
    let node_cpu = || node.pid().and_then(cpu_seconds).unwrap_or(f64::NAN);
    let node_before = node_cpu();
    let mut host = Host::start(dir.path(), &config(&node.url(), mode));
    let pid = host.pid().expect("the host runs");
    let mut rounds = Vec::new();
    let first = wait_for_sent(&host, DOCUMENTS);
    rounds.push(report(
        "start-up",
        started.elapsed(),
        cpu_seconds(pid).unwrap_or(f64::NAN),
        node_cpu() - node_before,
    ));
    assert!(first, "the start-up round did not arrive:\n{}", host.log());

    for round in 1..=ROUNDS {
        let host_before = cpu_seconds(pid).unwrap_or(f64::NAN);
        let node_before = node_cpu();
        let started = Instant::now();
        write_manifests(dir.path(), round);
        let arrived = wait_for_sent(&host, DOCUMENTS * (round as u64 + 1));
        rounds.push(report(
            &round.to_string(),
            started.elapsed(),
            cpu_seconds(pid).unwrap_or(f64::NAN) - host_before,
            node_cpu() - node_before,
        ));
        assert!(arrived, "round {round} did not arrive:\n{}", host.log());
    }

    let changes: Vec<&(f64, f64)> = rounds.iter().skip(1).collect();
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let per_second = median(changes.iter().map(|r| r.0).collect());
    let cpu_per_1k = median(changes.iter().map(|r| r.1).collect());
    println!(
        "median of the change rounds: {per_second:.0} docs/s, {cpu_per_1k:.4} host CPU s per 1k documents"
    );
    println!("load average after: {}", loadavg());

    let produced = DOCUMENTS * (ROUNDS as u64 + 1);
    let target = mode.target();
    let indexed = node.count(target, None);
    assert_eq!(
        indexed, produced,
        "_count must equal every document produced, none twice"
    );
    println!("_count = {indexed}: every document produced is indexed once");
    assert!(host.stop().success(), "{}", host.log());

    // One segment per shard, so the size compares what each mode stores, not merge timing.
    let (status, answer) = node.request_within(
        "POST",
        &format!("/{target}/_forcemerge?max_num_segments=1"),
        None,
        Duration::from_secs(1800),
    );
    assert_eq!(status, 200, "_forcemerge: {answer}");
    node.request("POST", &format!("/{target}/_refresh"), None);
    let (status, stats) = node.request("GET", &format!("/{target}/_stats/store,docs"), None);
    assert_eq!(status, 200, "_stats: {stats}");
    let primaries = &stats["_all"]["primaries"];
    let store_bytes = primaries["store"]["size_in_bytes"]
        .as_u64()
        .expect("store size");
    println!(
        "after _forcemerge to 1 segment: store {store_bytes} bytes, {:.1} bytes per sample, \
         docs.count {}",
        store_bytes as f64 / produced as f64,
        primaries["docs"]["count"]
    );
    Measured {
        per_second,
        cpu_per_1k,
        store_bytes,
        documents: indexed,
    }
}

/// Waits (up to 10 minutes) until the host says `total` samples were acknowledged.
fn wait_for_sent(host: &Host, total: u64) -> bool {
    wait_until(Duration::from_secs(600), || {
        std::thread::sleep(Duration::from_millis(200));
        host.metric(SENT) >= total as f64
    })
}

/// Prints one round; its documents per second and host CPU seconds per 1k documents.
fn report(round: &str, took: Duration, host_cpu: f64, node_cpu: f64) -> (f64, f64) {
    let seconds = took.as_secs_f64();
    let per_second = DOCUMENTS as f64 / seconds;
    let per_1k = host_cpu / (DOCUMENTS as f64 / 1000.0);
    println!(
        "{round:<8} {DOCUMENTS:>10} {seconds:>8.2} {per_second:>10.0} {host_cpu:>11.2} {per_1k:>17.4} {node_cpu:>11.2}"
    );
    (per_second, per_1k)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// Writes every manifest with the values of `round` (write, then rename: never half a file).
fn write_manifests(dir: &Path, round: usize) {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifests dir");
    for object in 0..OBJECTS {
        let series: Vec<serde_json::Value> = (0..SERIES)
            .map(|i| serde_json::json!({"name": format!("s{i:04}"), "value": (round * SERIES + i) as f64}))
            .collect();
        let manifest = serde_json::json!({
            "apiVersion": "bench.periscope.dev/v1",
            "kind": "Load",
            "metadata": {"name": format!("load-{object:03}"), "namespace": "bench", "uid": format!("uid-{object:03}")},
            "spec": {"series": series},
        });
        let tmp = manifests.join(format!(".load-{object:03}.tmp"));
        std::fs::write(&tmp, manifest.to_string()).expect("write manifest");
        std::fs::rename(&tmp, manifests.join(format!("load-{object:03}.json")))
            .expect("rename manifest");
    }
}

fn config(url: &str, mode: Mode) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "200ms"
shutdown_timeout = "30s"

[[sources.files]]
path = "manifests"
interval = "500ms"

[[resources]]
group = "bench.periscope.dev"
version = "v1"
kind = "Load"
prefix = "bench"
labels = {{ namespace = "metadata.namespace", name = "metadata.name" }}

  [[resources.metrics]]
  name = "value"
  type = "gauge"
  each = "spec.series[*]"
  path = "value"
  labels = {{ series = "name" }}

[[exporters]]
name = "search"
plugin = "elasticsearch"
retry = {{ initial = "100ms", max = "2s" }}
config = {{ url = "{url}", {keys}, number_of_replicas = 0, timeout = "60s" }}
"#,
        keys = mode.keys()
    )
}
