//! The Elasticsearch exporter end to end: a real host process over offline manifests, a real
//! Elasticsearch 8.19 node (`tests/search-node`) or OpenSearch 2.19 node (`tests/opensearch-node`),
//! and the file exporter beside it as the witness of what was produced.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{demo_config, write_configmap};
use periscope_tests::pki::Ca;
use periscope_tests::search_node::{Distribution, SearchNode};
use periscope_tests::tls_proxy::{Credentials, TlsProxy};
use periscope_tests::{Host, plugin_dir, read_ndjson, wait_until};
use serde_json::{Value, json};

/// The file exporter, the witness.
const FILES: &str = r#"[[exporters]]
name = "files"
plugin = "file"
batch = { max_wait = "10ms" }
config = { path = "out/samples.ndjson" }
"#;

/// The exporter under test, writing to `url` with `extra` config keys.
fn search_exporter(url: &str, extra: &str) -> String {
    search_exporter_queued(url, "", extra)
}

/// [`search_exporter`] with a `queue = …` line (empty for the default memory queue).
fn search_exporter_queued(url: &str, queue: &str, extra: &str) -> String {
    format!(
        r#"[[exporters]]
name = "search"
plugin = "elasticsearch"
batch = {{ max_wait = "10ms" }}
retry = {{ initial = "100ms", max = "1s" }}
{queue}
config = {{ url = "{url}", number_of_replicas = 0, timeout = "5s"{extra} }}
"#
    )
}

/// The exporter's two modes, and where a test reads what each wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No `index` or `data_stream` key: daily indices `periscope-%Y.%m.%d`, as configs written
    /// before data streams get.
    Index,
    /// `data_stream = { dataset = "periscope.kubevirt", namespace = "default" }`.
    DataStream,
}

impl Mode {
    /// The exporter's `config` keys choosing the mode.
    fn keys(self) -> &'static str {
        match self {
            Mode::Index => "",
            Mode::DataStream => {
                r#", data_stream = { dataset = "periscope.kubevirt", namespace = "default" }"#
            }
        }
    }

    /// What to read: the indices or the data stream.
    fn target(self) -> &'static str {
        match self {
            Mode::Index => "periscope-*",
            Mode::DataStream => "metrics-periscope.kubevirt-default",
        }
    }
}

/// A sample or removal, as both exporters can describe it: op, source id, metric, labels, time.
type Key = (String, String, String, String, String);

/// What the file exporter wrote: every distinct sample (source, metric, labels, timestamp) and
/// every removed source. Removals carry the export time, which differs between exporters, so they
/// are keyed by source only.
fn produced(records: &[Value]) -> BTreeSet<Key> {
    records
        .iter()
        .filter_map(|r| match r["op"].as_str() {
            Some("replace") if r.get("metric").is_some() => Some((
                "replace".to_owned(),
                r["source"]["id"].as_str()?.to_owned(),
                r["metric"].as_str()?.to_owned(),
                r["labels"].to_string(),
                r["ts"].to_string(),
            )),
            Some("remove") => Some(remove_key(r["source"]["id"].as_str()?)),
            _ => None,
        })
        .collect()
}

fn remove_key(source: &str) -> Key {
    let empty = String::new;
    ("remove".into(), source.into(), empty(), empty(), empty())
}

/// The same keys from the indexed documents.
fn indexed(docs: &[Value]) -> Vec<Key> {
    docs.iter()
        .map(|d| {
            let source = d["source"]["id"].as_str().unwrap_or_default();
            if d["op"] == "remove" {
                return remove_key(source);
            }
            let ts = d["@timestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(|| panic!("bad @timestamp in {d}"))
                .as_millisecond();
            (
                "replace".to_owned(),
                source.to_owned(),
                d["metric"].as_str().unwrap_or_default().to_owned(),
                d["labels"].to_string(),
                ts.to_string(),
            )
        })
        .collect()
}

#[test]
fn samples_reach_the_node_and_an_outage_loses_and_duplicates_nothing() {
    outage_loses_and_duplicates_nothing(Distribution::Elasticsearch, Mode::Index);
}

#[test]
fn in_a_data_stream_samples_reach_the_node_and_an_outage_loses_and_duplicates_nothing() {
    outage_loses_and_duplicates_nothing(Distribution::Elasticsearch, Mode::DataStream);
}

#[test]
fn on_opensearch_samples_reach_daily_indices_and_an_outage_loses_and_duplicates_nothing() {
    outage_loses_and_duplicates_nothing(Distribution::OpenSearch, Mode::Index);
}

#[test]
fn on_opensearch_samples_reach_a_data_stream_and_an_outage_loses_and_duplicates_nothing() {
    outage_loses_and_duplicates_nothing(Distribution::OpenSearch, Mode::DataStream);
}

/// The mappings the templates gave, read from what `mode` wrote.
fn assert_mappings(node: &SearchNode, mode: Mode) {
    let (_, mapping) = node.request("GET", &format!("/{}/_mapping", mode.target()), None);
    let (index_name, index) = mapping.as_object().unwrap().iter().next().unwrap();
    let properties = &index["mappings"]["properties"];
    assert_eq!(properties["value"]["type"], "double");
    assert_eq!(properties["metric"]["type"], "keyword");
    match (node.distribution(), mode) {
        (Distribution::Elasticsearch, Mode::Index) => {
            assert_eq!(properties["labels"]["type"], "flattened")
        }
        (Distribution::OpenSearch, Mode::Index) => {
            assert_eq!(properties["labels"]["type"], "flat_object")
        }
        (Distribution::OpenSearch, Mode::DataStream) => {
            // A backing index of a plain data stream: no time series mode, labels one field.
            assert!(
                index_name.starts_with(".ds-metrics-periscope.kubevirt-default-"),
                "{index_name}"
            );
            let (_, settings) = node.request("GET", &format!("/{index_name}/_settings"), None);
            assert_eq!(
                settings[index_name]["settings"]["index"].get("mode"),
                None,
                "{settings}"
            );
            assert_eq!(properties["labels"]["type"], "flat_object");
            assert_eq!(properties["counter"]["type"], "double");
            let (status, stream) =
                node.request("GET", &format!("/_data_stream/{}", mode.target()), None);
            assert_eq!(status, 200, "{stream}");
            assert_eq!(
                stream["data_streams"][0]["template"],
                "periscope-metrics-periscope.kubevirt"
            );
        }
        (Distribution::Elasticsearch, Mode::DataStream) => {
            // A backing index of the data stream, in time series mode.
            assert!(
                index_name.starts_with(".ds-metrics-periscope.kubevirt-default-"),
                "{index_name}"
            );
            let (_, settings) = node.request("GET", &format!("/{index_name}/_settings"), None);
            assert_eq!(
                settings[index_name]["settings"]["index"]["mode"], "time_series",
                "{settings}"
            );
            assert_eq!(properties["labels"]["type"], "passthrough");
            // Each label is a keyword dimension of its own, beside the metric and the source.
            let name = &properties["labels"]["properties"]["name"];
            assert_eq!(name["type"], "keyword", "{properties}");
            assert_eq!(name["time_series_dimension"], true);
            assert_eq!(properties["metric"]["time_series_dimension"], true);
            assert_eq!(
                properties["source"]["properties"]["id"]["time_series_dimension"],
                true
            );
            assert_eq!(properties["value"]["time_series_metric"], "gauge");
            assert_eq!(properties["counter"]["time_series_metric"], "counter");
        }
    }
}

fn outage_loses_and_duplicates_nothing(distribution: Distribution, mode: Mode) {
    let target = mode.target();
    let mut node = SearchNode::start_distribution(distribution);
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    let config = demo_config(&format!(
        "{FILES}\n{}",
        search_exporter(&node.url(), mode.keys())
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));

    // The first samples are searchable, with every field.
    let query_a = json!({"bool": {"filter": [
        {"term": {"source.name": "a"}}, {"term": {"metric": "demo_value"}}]}});
    assert!(
        wait_until(Duration::from_secs(20), || node
            .count(target, Some(query_a.clone()))
            > 0),
        "nothing indexed:\n{}",
        host.log()
    );
    let doc = &node.search(target, query_a)[0];
    assert_eq!(doc["op"], "replace");
    assert_eq!(doc["family"], "demo_value");
    assert_eq!(doc["type"], "gauge");
    assert_eq!(doc["value"], 1.0);
    assert_eq!(doc["labels"]["name"], "a");
    assert_eq!(
        doc["source"],
        json!({"kind": "object", "id": "v1/ConfigMap/demo/a", "api_version": "v1",
               "object_kind": "ConfigMap", "namespace": "demo", "name": "a", "uid": "uid-a"})
    );
    assert!(doc["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The templates gave the index its mappings.
    assert_mappings(&node, mode);

    // The node goes away; the manifests change meanwhile: new values, a new object, a deletion.
    node.stop();
    let retries = "periscope_exporter_retries_total{exporter=\"search\"}";
    let retried_before = host.metric(retries);
    write_configmap(dir.path(), "a", 3.0);
    write_configmap(dir.path(), "c", 5.0);
    std::thread::sleep(Duration::from_millis(400));
    write_configmap(dir.path(), "b", 4.0);
    std::thread::sleep(Duration::from_millis(400));
    std::fs::remove_file(dir.path().join("manifests/b.yaml")).unwrap();
    let out = dir.path().join("out/samples.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || produced(&read_ndjson(&out))
            .contains(&remove_key("v1/ConfigMap/demo/b"))),
        "the file exporter did not see the deletion:\n{}",
        host.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(retries)
            > retried_before),
        "the exporter did not retry while the node was down:\n{}",
        host.metrics()
    );

    // The node is back: everything arrives, nothing twice.
    node.start_again();
    let expected = produced(&read_ndjson(&out));
    assert!(expected.len() >= 6, "{expected:?}");
    assert!(
        wait_until(Duration::from_secs(30), || node.count(target, None)
            >= expected.len() as u64),
        "not everything arrived: {} of {}:\n{}",
        node.count(target, None),
        expected.len(),
        host.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    // Nothing new was produced meanwhile (the manifests did not change).
    assert_eq!(produced(&read_ndjson(&out)), expected);
    assert_eq!(node.count(target, None), expected.len() as u64);
    let docs = node.search(target, json!({"match_all": {}}));
    let keys = indexed(&docs);
    let distinct: BTreeSet<Key> = keys.iter().cloned().collect();
    assert_eq!(distinct.len(), keys.len(), "duplicates: {keys:?}");
    assert_eq!(distinct, expected);
    let c = node.search(target, json!({"term": {"source.name": "c"}}));
    assert_eq!(c[0]["value"], 5.0);
    // b's removal is one document; in a data stream, a marker sample.
    let removed = node.search(target, json!({"term": {"op": "remove"}}));
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["source"]["name"], "b");
    if mode == Mode::DataStream {
        assert_eq!(removed[0]["metric"], "periscope_source_removed");
        assert_eq!(removed[0]["value"], 1.0);
    }
    assert!(host.stop().success());
}

#[test]
fn a_host_killed_while_the_node_is_down_replays_its_disk_queue_exactly_once() {
    killed_host_replays_exactly_once(Distribution::Elasticsearch, Mode::Index);
}

#[test]
fn a_host_killed_while_the_node_is_down_replays_its_disk_queue_into_a_data_stream_exactly_once() {
    killed_host_replays_exactly_once(Distribution::Elasticsearch, Mode::DataStream);
}

#[test]
fn on_opensearch_a_host_killed_while_the_node_is_down_replays_into_a_data_stream_exactly_once() {
    killed_host_replays_exactly_once(Distribution::OpenSearch, Mode::DataStream);
}

fn killed_host_replays_exactly_once(distribution: Distribution, mode: Mode) {
    let target = mode.target();
    let mut node = SearchNode::start_distribution(distribution);
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    let queue = r#"queue = { type = "disk", path = "queue/search", fsync = "always" }"#;
    let config = demo_config(&format!(
        "{FILES}\n{}",
        search_exporter_queued(&node.url(), queue, mode.keys())
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let out = dir.path().join("out/samples.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || node.count(target, None) >= 2),
        "the first documents were not indexed:\n{}",
        host.log()
    );

    // The node goes away; new documents are produced and pile up in the disk queue.
    node.stop();
    write_configmap(dir.path(), "a", 3.0);
    std::thread::sleep(Duration::from_millis(400));
    write_configmap(dir.path(), "c", 5.0);
    std::thread::sleep(Duration::from_millis(400));
    write_configmap(dir.path(), "b", 4.0);
    std::thread::sleep(Duration::from_millis(400));
    std::fs::remove_file(dir.path().join("manifests/b.yaml")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    write_configmap(dir.path(), "a", 6.0);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let produced = produced(&read_ndjson(&out));
            produced.contains(&remove_key("v1/ConfigMap/demo/b"))
                && read_ndjson(&out)
                    .iter()
                    .any(|r| r["source"]["name"] == "a" && r["value"] == 6.0)
        }),
        "the file exporter did not see every change:\n{}",
        host.log()
    );
    // The batch being retried was taken from the queue (it stays on disk until delivered); the
    // later ones wait in the queue, as the self-metrics say.
    let queued = "periscope_exporter_queued_samples{exporter=\"search\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(queued) >= 1.0),
        "nothing is queued for the exporter:\n{}",
        host.metrics()
    );
    let retries = "periscope_exporter_retries_total{exporter=\"search\"}";
    assert!(host.metric(retries) >= 1.0, "{}", host.metrics());
    // Let the intake write whatever the last flush produced, then crash.
    std::thread::sleep(Duration::from_millis(500));
    host.kill();
    let produced_by_the_crashed_run = produced(&read_ndjson(&out));

    // The node comes back, then a new host with the same config and queue directory.
    node.start_again();
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    // The replay's log line may come just after the host is ready (seen once under load).
    assert!(
        wait_until(Duration::from_secs(10), || host.log().contains("replaying")),
        "{}",
        host.log()
    );
    // The new run reads a = 6 and c = 5 again (new timestamps, so new documents, witnessed by the
    // file exporter too); b = 4 and b's removal can only come from the replayed queue.
    let expected_at_least = produced_by_the_crashed_run.len() + 2;
    assert!(
        wait_until(Duration::from_secs(10), || produced(&read_ndjson(&out))
            .len()
            >= expected_at_least),
        "the new run produced nothing:\n{}",
        host.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            node.count(target, None) >= produced(&read_ndjson(&out)).len() as u64
        }),
        "not everything arrived: {} of {}:\n{}",
        node.count(target, None),
        produced(&read_ndjson(&out)).len(),
        host.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(queued) == 0.0),
        "{}",
        host.metrics()
    );
    std::thread::sleep(Duration::from_secs(1));
    let expected = produced(&read_ndjson(&out));
    assert!(expected.is_superset(&produced_by_the_crashed_run));
    assert_eq!(node.count(target, None), expected.len() as u64);
    let keys = indexed(&node.search(target, json!({"match_all": {}})));
    let distinct: BTreeSet<Key> = keys.iter().cloned().collect();
    assert_eq!(distinct.len(), keys.len(), "duplicates: {keys:?}");
    assert_eq!(distinct, expected);
    let b = node.search(
        target,
        json!({"bool": {"filter": [{"term": {"source.name": "b"}}, {"term": {"value": 4.0}}]}}),
    );
    assert_eq!(
        b.len(),
        1,
        "b = 4 was produced only by the crashed run: {b:?}"
    );
    assert!(distinct.contains(&remove_key("v1/ConfigMap/demo/b")));
    assert!(host.stop().success());
}

#[test]
fn a_sample_sent_twice_into_a_data_stream_is_stored_once_and_counted_as_sent() {
    sent_twice_is_stored_once(Distribution::Elasticsearch);
}

#[test]
fn on_opensearch_a_sample_sent_twice_into_a_data_stream_is_stored_once_and_counted_as_sent() {
    sent_twice_is_stored_once(Distribution::OpenSearch);
}

fn sent_twice_is_stored_once(distribution: Distribution) {
    let node = SearchNode::start_distribution(distribution);
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    // Two exporters get the same batches, so each sample is sent twice, with the same timestamp
    // and dimensions, into one data stream: whichever comes second meets the first copy.
    let twin = search_exporter(&node.url(), Mode::DataStream.keys())
        .replace("name = \"search\"", "name = \"twin\"");
    let config = demo_config(&format!(
        "{FILES}\n{}\n{twin}",
        search_exporter(&node.url(), Mode::DataStream.keys())
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let out = dir.path().join("out/samples.ndjson");
    let sent = |exporter: &str| {
        host.metric(&format!(
            "periscope_exporter_sent_samples_total{{exporter=\"{exporter}\"}}"
        ))
    };
    assert!(
        wait_until(Duration::from_secs(30), || sent("search") >= 2.0
            && sent("twin") >= 2.0),
        "{}",
        host.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let expected = produced(&read_ndjson(&out));
    assert_eq!(expected.len(), 2, "{expected:?}");
    let target = Mode::DataStream.target();
    let keys = indexed(&node.search(target, json!({"match_all": {}})));
    assert_eq!(keys.len(), 2, "duplicates: {keys:?}");
    assert_eq!(keys.into_iter().collect::<BTreeSet<Key>>(), expected);
    // Both exporters count both samples as sent: the second copy is no error.
    assert_eq!(sent("search"), 2.0, "{}", host.metrics());
    assert_eq!(sent("twin"), 2.0, "{}", host.metrics());
    for exporter in ["search", "twin"] {
        assert_eq!(
            host.metric(&format!(
                "periscope_exporter_rejected_samples_total{{exporter=\"{exporter}\"}}"
            )),
            0.0
        );
    }
    assert!(!dir.path().join("dead-letter/twin.ndjson").exists());
    assert!(!dir.path().join("dead-letter/search.ndjson").exists());
    assert!(host.stop().success());
}

#[test]
fn a_retention_becomes_the_data_streams_lifecycle() {
    let node = SearchNode::start();
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    let keys = r#", data_stream = { dataset = "periscope.kubevirt", retention = "30d" }"#;
    let config = demo_config(&search_exporter(&node.url(), keys));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let target = Mode::DataStream.target();
    assert!(
        wait_until(Duration::from_secs(20), || node.count(target, None) == 1),
        "{}",
        host.log()
    );
    // The data stream took its lifecycle from the index template. (Enforcing it is the
    // data-streams module's work, which the test node lacks: tests/search-node/README.md.)
    let (status, state) = node.request(
        "GET",
        &format!("/_cluster/state/metadata/{target}?filter_path=metadata.data_stream"),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let stream = &state["metadata"]["data_stream"]["data_stream"][target];
    assert_eq!(stream["index_mode"], "time_series", "{state}");
    assert_eq!(stream["lifecycle"]["data_retention"], "30d", "{state}");
    assert!(host.stop().success());
}

#[test]
fn in_a_data_stream_a_label_over_the_term_limit_dead_letters_only_its_sample() {
    let node = SearchNode::start();
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    // Both in one manifest: one read, one batch. A label is a keyword dimension, whose value
    // Lucene indexes as one term of at most 32766 bytes: "long" carries 40 000.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let configmap = |name: &str, note: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: demo\n  uid: uid-{name}\ndata:\n  value: \"1\"\n  note: \"{note}\"\n"
        )
    };
    std::fs::write(
        manifests.join("both.yaml"),
        format!(
            "{}---\n{}",
            configmap("short", "fine"),
            configmap("long", &"x".repeat(40_000))
        ),
    )
    .unwrap();
    let config = demo_config(&search_exporter(&node.url(), Mode::DataStream.keys())).replace(
        r#"labels = { name = "metadata.name" }"#,
        r#"labels = { name = "metadata.name", note = "data.note" }"#,
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let rejected = "periscope_exporter_rejected_samples_total{exporter=\"search\"}";
    assert!(
        wait_until(Duration::from_secs(20), || host.metric(rejected) >= 1.0),
        "nothing counted as rejected:\n{}",
        host.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let target = Mode::DataStream.target();
    let docs = node.search(target, json!({"match_all": {}}));
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["labels"]["note"], "fine");
    let lines = read_ndjson(&dir.path().join("dead-letter/search.ndjson"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["source"], "v1/ConfigMap/demo/long");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rejected by Elasticsearch: HTTP 400"),
        "{reason}"
    );
    assert!(
        reason.contains("v1/ConfigMap/demo/long demo_value"),
        "{reason}"
    );
    assert_eq!(
        host.metric("periscope_exporter_sent_samples_total{exporter=\"search\"}"),
        1.0
    );
    assert_eq!(host.metric(rejected), 1.0);
    assert!(host.stop().success());
}

#[test]
fn a_mapping_conflict_dead_letters_only_the_conflicting_document() {
    mapping_conflict_dead_letters_only_its_document(Distribution::Elasticsearch);
}

#[test]
fn on_opensearch_a_mapping_conflict_dead_letters_only_the_conflicting_document() {
    mapping_conflict_dead_letters_only_its_document(Distribution::OpenSearch);
}

fn mapping_conflict_dead_letters_only_its_document(distribution: Distribution) {
    let node = SearchNode::start_distribution(distribution);
    // An index where the label `name` must be a number: ConfigMap "7" fits, "bad" does not.
    let (status, answer) = node.request(
        "PUT",
        "/conflict",
        Some(&json!({"settings": {"number_of_replicas": 0},
            "mappings": {"properties": {"labels": {"properties": {"name": {"type": "long"}}}}}})),
    );
    assert_eq!(status, 200, "{answer}");
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    // Both in one manifest: one read, one batch. The name "7" is quoted to stay a string in YAML.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let configmap = |name: &str, value: f64| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{name}\"\n  namespace: demo\n  uid: uid-{name}\ndata:\n  value: \"{value}\"\n"
        )
    };
    std::fs::write(
        manifests.join("both.yaml"),
        format!("{}---\n{}", configmap("7", 1.0), configmap("bad", 2.0)),
    )
    .unwrap();
    let config = demo_config(&search_exporter(
        &node.url(),
        ", index = \"conflict\", template = false",
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));

    // The other document of the batch is indexed.
    assert!(
        wait_until(Duration::from_secs(20), || node
            .count("conflict", Some(json!({"term": {"source.name": "7"}})))
            == 1),
        "{}",
        host.log()
    );
    let dead = dir.path().join("dead-letter/search.ndjson");
    let rejected = "periscope_exporter_rejected_samples_total{exporter=\"search\"}";
    let sent = "periscope_exporter_sent_samples_total{exporter=\"search\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(rejected) >= 1.0),
        "nothing counted as rejected:\n{}",
        host.log()
    );
    // Nothing else is on its way (the manifest does not change): the counts are final.
    std::thread::sleep(Duration::from_secs(1));
    // Exactly the refused sample is dead-lettered, with the node's reason; the indexed one is not.
    let lines = read_ndjson(&dead);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let bad = &lines[0];
    assert_eq!(bad["source"], "v1/ConfigMap/demo/bad");
    assert_eq!(bad["op"], "replace");
    assert_eq!(bad["metric"], "demo_value");
    assert_eq!(bad["labels"]["name"], "bad");
    assert_eq!(bad["value"], 2.0);
    let reason = bad["reason"].as_str().unwrap();
    // Each names the error its own way.
    let expected = match distribution {
        Distribution::Elasticsearch => {
            "rejected by Elasticsearch: HTTP 400: document_parsing_exception"
        }
        Distribution::OpenSearch => "rejected by OpenSearch: HTTP 400: mapper_parsing_exception",
    };
    assert!(reason.starts_with(expected), "{reason}");
    assert!(
        reason.contains("v1/ConfigMap/demo/bad demo_value"),
        "{reason}"
    );
    assert!(!reason.contains("demo/7"), "{reason}");
    // Both documents went in one export; one sample is counted as rejected, the other as sent.
    let exports = "periscope_exporter_exports_total{exporter=\"search\"}";
    assert_eq!(host.metric(exports), 1.0, "{}", host.metrics());
    assert_eq!(host.metric(rejected), 1.0, "{}", host.metrics());
    assert_eq!(host.metric(sent), 1.0, "{}", host.metrics());
    assert!(
        host.log()
            .contains("items rejected; written to the dead-letter file"),
        "{}",
        host.log()
    );
    assert_eq!(
        node.count("conflict", Some(json!({"term": {"source.name": "bad"}}))),
        0
    );
    assert!(host.stop().success());
}

/// Basic credentials the TLS proxy accepts.
fn basic(password: &str) -> Credentials {
    Credentials::Basic {
        username: "periscope".into(),
        password: password.into(),
    }
}

/// The exporter's `config` keys for `credentials` and a TLS connection that trusts `ca_file`: the
/// basic password from a file written into `dir`, the API key inline (both are taken).
fn tls_and_auth_keys(dir: &Path, ca_file: &Path, credentials: &Credentials) -> String {
    let auth = match credentials {
        Credentials::Basic { username, password } => {
            let file = dir.join("es-password");
            std::fs::write(&file, format!("{password}\n")).unwrap();
            format!(
                "username = \"{username}\", password_file = \"{}\"",
                file.display()
            )
        }
        Credentials::ApiKey(key) => format!("api_key = \"{key}\""),
    };
    format!(
        ", tls = {{ ca_file = \"{}\" }}, auth = {{ {auth} }}",
        ca_file.display()
    )
}

/// The `periscope_exporter_health` series of the exporter under test in `state`.
fn health(state: &str) -> String {
    format!("periscope_exporter_health{{exporter=\"search\",state=\"{state}\"}}")
}

#[test]
fn documents_arrive_over_tls_with_basic_auth_and_with_an_api_key() {
    documents_arrive_over_tls(Distribution::Elasticsearch);
}

#[test]
fn on_opensearch_documents_arrive_over_tls_with_basic_auth_and_with_an_api_key() {
    documents_arrive_over_tls(Distribution::OpenSearch);
}

fn documents_arrive_over_tls(distribution: Distribution) {
    let node = SearchNode::start_distribution(distribution);
    let api_key = base64_of("periscope-key-id:periscope-key-secret");
    for (case, credentials) in [
        ("basic", basic("s3cret")),
        ("api-key", Credentials::ApiKey(api_key)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let proxy = TlsProxy::start(node.addr(), &credentials, dir.path());
        plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
        write_configmap(dir.path(), "a", 1.0);
        let index = format!("tls-{case}");
        let config = demo_config(&search_exporter(
            &proxy.url(),
            &format!(
                ", index = \"{index}\"{}",
                tls_and_auth_keys(dir.path(), proxy.ca_file(), &credentials)
            ),
        ));
        let mut host = Host::start(dir.path(), &config);
        host.wait_ready(Duration::from_secs(20));
        assert!(
            wait_until(Duration::from_secs(20), || node.count(&index, None) == 1),
            "{case}: nothing arrived through the proxy:\n{}",
            host.log()
        );
        // The template went through the proxy too, with the same credentials.
        let (status, _) = node.request("GET", &format!("/_index_template/periscope-{index}"), None);
        assert_eq!(status, 200, "{case}: no index template");
        assert_eq!(proxy.unauthorized(), 0, "{case}");
        assert!(proxy.forwarded() >= 2, "{case}: template and _bulk");
        // The node may have stored the document before the host has the exporter's answer.
        assert!(
            wait_until(Duration::from_secs(10), || host.metric(&health("healthy"))
                == 1.0),
            "{case}: {}",
            host.metrics()
        );
        assert!(host.stop().success());
    }
}

#[test]
fn wrong_credentials_are_a_clear_error_and_the_documents_wait_until_accepted() {
    let node = SearchNode::start();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TlsProxy::start(node.addr(), &basic("right"), dir.path());
    plugin_dir(&dir.path().join("plugins"), &["file", "elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    let config = demo_config(&format!(
        "{FILES}\n{}",
        search_exporter(
            &proxy.url(),
            &format!(
                ", index = \"auth\"{}",
                tls_and_auth_keys(dir.path(), proxy.ca_file(), &basic("wrong"))
            ),
        )
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));

    // Refused: a clear line in the log, and the self-metrics say so; nothing is sent or dropped.
    assert!(
        wait_until(Duration::from_secs(20), || host
            .log()
            .contains("check the credentials")),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("check the credentials"))
        .unwrap();
    assert!(line.contains("HTTP 401"), "{line}");
    assert!(line.contains("security_exception"), "{line}");
    assert!(line.contains(&proxy.url()), "{line}");
    assert!(
        wait_until(Duration::from_secs(10), || host
            .metric(&health("unhealthy"))
            == 1.0),
        "{}",
        host.metrics()
    );
    let sent = "periscope_exporter_sent_samples_total{exporter=\"search\"}";
    let retries = "periscope_exporter_retries_total{exporter=\"search\"}";
    assert!(host.metric(retries) >= 1.0, "{}", host.metrics());
    assert_eq!(host.metric(sent), 0.0);
    assert_eq!(
        host.metric(
            "periscope_exporter_dropped_samples_total{exporter=\"search\",reason=\"shutdown\"}"
        ),
        0.0
    );
    assert!(proxy.unauthorized() >= 1);
    assert_eq!(node.count("auth", None), 0);

    // The cluster side accepts those credentials now: at the next retry everything arrives.
    proxy.accept(&basic("wrong"));
    let out = dir.path().join("out/samples.ndjson");
    let expected = produced(&read_ndjson(&out));
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert!(
        wait_until(Duration::from_secs(60), || node.count("auth", None) >= 2),
        "nothing arrived once the credentials were accepted:\n{}",
        host.log()
    );
    let keys = indexed(&node.search("auth", json!({"match_all": {}})));
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<Key>>(), expected);
    assert_eq!(keys.len(), expected.len(), "duplicates: {keys:?}");
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(&health("healthy"))
            == 1.0),
        "{}",
        host.metrics()
    );
    assert_eq!(host.metric(sent), 2.0);
    assert!(host.stop().success());
}

#[test]
fn an_unknown_ca_is_a_clear_error_and_the_documents_arrive_once_the_config_is_right() {
    let node = SearchNode::start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = basic("s3cret");
    let proxy = TlsProxy::start(node.addr(), &credentials, dir.path());
    let other_ca = dir.path().join("other-ca.pem");
    Ca::generate("not-the-proxys-ca").write_pem(&other_ca);
    plugin_dir(&dir.path().join("plugins"), &["file", "elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    let queue = r#"queue = { type = "disk", path = "queue/search", fsync = "always" }"#;
    let config = |ca_file: &Path| {
        demo_config(&format!(
            "{FILES}\n{}",
            search_exporter_queued(
                &proxy.url(),
                queue,
                &format!(
                    ", index = \"ca\"{}",
                    tls_and_auth_keys(dir.path(), ca_file, &credentials)
                ),
            )
        ))
    };

    // First run: the exporter trusts another CA. It says so, keeps retrying, sends nothing.
    let mut host = Host::start(dir.path(), &config(&other_ca));
    host.wait_ready(Duration::from_secs(20));
    let retries = "periscope_exporter_retries_total{exporter=\"search\"}";
    assert!(
        wait_until(Duration::from_secs(20), || host.metric(retries) >= 1.0),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("export will be retried"))
        .unwrap_or_else(|| panic!("no retry line:\n{log}"));
    assert!(line.contains("certificate"), "{line}");
    assert!(line.contains("ca_file"), "{line}");
    assert!(
        wait_until(Duration::from_secs(10), || host
            .metric(&health("unhealthy"))
            == 1.0),
        "{}",
        host.metrics()
    );
    assert_eq!(
        host.metric("periscope_exporter_sent_samples_total{exporter=\"search\"}"),
        0.0
    );
    assert_eq!(
        proxy.forwarded() + proxy.unauthorized(),
        0,
        "no request got through TLS"
    );
    write_configmap(dir.path(), "a", 2.0);
    let out = dir.path().join("out/samples.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || produced(&read_ndjson(&out))
            .len()
            >= 2),
        "{}",
        host.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    // Stopped with documents undelivered: they stay in the disk queue.
    assert!(host.stop().success(), "{}", host.log());
    assert_eq!(node.count("ca", None), 0);

    // The operator fixes `ca_file` and starts the host again: the queue replays, nothing is lost.
    let mut host = Host::start(dir.path(), &config(proxy.ca_file()));
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(30), || {
            node.count("ca", None) >= produced(&read_ndjson(&out)).len() as u64
        }),
        "{}",
        host.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let expected = produced(&read_ndjson(&out));
    let keys = indexed(&node.search("ca", json!({"match_all": {}})));
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<Key>>(), expected);
    assert_eq!(keys.len(), expected.len(), "duplicates: {keys:?}");
    // a = 1 only ever existed in the first run: it came from the replayed queue.
    assert!(
        node.search("ca", json!({"term": {"value": 1.0}})).len() == 1,
        "{keys:?}"
    );
    assert_eq!(host.metric(&health("healthy")), 1.0, "{}", host.metrics());
    assert!(host.stop().success());
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Starts a host whose exporter writes into a data stream with `keys` on `node`, and waits until
/// its log holds `expected`: a lifecycle option the node cannot carry out.
fn lifecycle_refused(node: &SearchNode, keys: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    let config = demo_config(&search_exporter(&node.url(), keys));
    let mut host = Host::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(20), || expected
            .iter()
            .all(|e| host.log().contains(e))),
        "{}",
        host.log()
    );
    // Nothing was written: the data stream was not even created.
    assert_eq!(node.count(Mode::DataStream.target(), None), 0);
    host.stop();
}

#[test]
fn an_ilm_policy_goes_into_the_template_and_a_node_without_ilm_says_so() {
    // ILM is x-pack: the test node has none (tests/search-node/README.md), so the template that
    // names the policy is refused, and the exporter says what that means.
    let node = SearchNode::start();
    lifecycle_refused(
        &node,
        r#", data_stream = { dataset = "periscope.kubevirt", policy = "metrics-90d" }"#,
        &[
            "`data_stream.policy` on Elasticsearch is an ILM policy (`index.lifecycle.name`), \
             and the node has no ILM",
            "unknown setting [index.lifecycle.name]",
        ],
    );
    // The component template carrying it was refused; nothing half-installed is left.
    let (status, _) = node.request(
        "GET",
        "/_component_template/periscope-metrics-periscope.kubevirt@mappings",
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn on_opensearch_a_retention_is_an_ism_policy_and_a_node_without_ism_says_so() {
    let node = SearchNode::start_distribution(Distribution::OpenSearch);
    lifecycle_refused(
        &node,
        r#", data_stream = { dataset = "periscope.kubevirt", retention = "30d" }"#,
        &[
            "`data_stream.retention` on OpenSearch is an ISM policy, and the node has no Index \
             State Management plugin",
            "no handler found for uri [/_plugins/_ism/policies/periscope-metrics-periscope.kubevirt] and method [PUT]",
        ],
    );
    lifecycle_refused(
        &node,
        r#", data_stream = { dataset = "periscope.kubevirt", policy = "metrics-90d" }"#,
        &[
            "`data_stream.policy` on OpenSearch is an ISM policy",
            "unknown setting [index.plugins.index_state_management.policy_id]",
        ],
    );
}

#[test]
fn without_the_template_privilege_the_exporter_names_it_and_writes_once_the_templates_exist() {
    let node = SearchNode::start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = basic("s3cret");
    let proxy = TlsProxy::start(node.addr(), &credentials, dir.path());
    // The exporter's user may write, but not install templates.
    proxy.forbid("PUT", "_template/");
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    write_configmap(dir.path(), "a", 1.0);
    let keys = format!(
        "{}{}",
        Mode::DataStream.keys(),
        tls_and_auth_keys(dir.path(), proxy.ca_file(), &credentials)
    );
    let config = demo_config(&search_exporter(&proxy.url(), &keys));

    // No template yet: the exporter says which privilege it lacks, and the data waits.
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || host
            .metric(&health("unhealthy"))
            == 1.0),
        "{}",
        host.metrics()
    );
    let log = host.log();
    assert!(
        log.contains(
            "cannot install _component_template/periscope-metrics-periscope.kubevirt@mappings: \
             the credentials lack the cluster privilege `manage_index_templates`"
        ),
        "{log}"
    );
    assert!(
        log.contains("action [cluster:admin/component_template/put] is unauthorized"),
        "{log}"
    );
    assert_eq!(node.count(Mode::DataStream.target(), None), 0);
    assert!(proxy.refused() >= 1);
    assert!(host.stop().success());

    // An administrator installs the templates (here: an exporter with the privilege, writing
    // straight to the node into another namespace of the same dataset).
    let admin_dir = tempfile::tempdir().unwrap();
    plugin_dir(&admin_dir.path().join("plugins"), &["elasticsearch"]);
    write_configmap(admin_dir.path(), "admin", 1.0);
    let admin_keys = r#", data_stream = { dataset = "periscope.kubevirt", namespace = "admin" }"#;
    let mut admin = Host::start(
        admin_dir.path(),
        &demo_config(&search_exporter(&node.url(), admin_keys)),
    );
    admin.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || node
            .count("metrics-periscope.kubevirt-admin", None)
            == 1),
        "{}",
        admin.log()
    );
    assert!(admin.stop().success());

    // Now the writer without the privilege checks the templates, finds them and writes.
    let refused_before = proxy.refused();
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || node
            .count(Mode::DataStream.target(), None)
            >= 1),
        "{}",
        host.log()
    );
    assert_eq!(
        proxy.refused(),
        refused_before + 2,
        "both PUTs were refused"
    );
    assert!(
        host.log().contains("using the one already installed"),
        "{}",
        host.log()
    );
    // The node may have stored the documents before the host has the exporter's answer.
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(&health("healthy"))
            == 1.0),
        "{}",
        host.metrics()
    );
    assert!(host.stop().success());
}

/// A query of `docs/search-queries/`, for the demo metric instead of KubeVirt's.
fn documented_query(file: &str) -> Value {
    let path = periscope_tests::repo_root()
        .join("docs/search-queries")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text.replace("kubevirt_vmi_info", "demo_value"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_documented_queries_answer_on_elasticsearch() {
    documented_queries_answer(Distribution::Elasticsearch);
}

#[test]
fn the_documented_queries_answer_on_opensearch() {
    documented_queries_answer(Distribution::OpenSearch);
}

/// Runs the queries of `docs/elasticsearch.md` against what the exporter wrote into a data stream:
/// three objects in two phases, one of them removed.
fn documented_queries_answer(distribution: Distribution) {
    let node = SearchNode::start_distribution(distribution);
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["elasticsearch"]);
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let configmap = |name: &str, phase: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: demo\n  uid: uid-{name}\ndata:\n  value: \"1\"\n  phase: {phase}\n"
        )
    };
    std::fs::write(
        manifests.join("all.yaml"),
        format!(
            "{}---\n{}---\n{}",
            configmap("a", "Running"),
            configmap("b", "Running"),
            configmap("c", "Pending")
        ),
    )
    .unwrap();
    std::fs::write(manifests.join("d.yaml"), configmap("d", "Failed")).unwrap();
    let config = demo_config(&search_exporter(&node.url(), Mode::DataStream.keys())).replace(
        r#"labels = { name = "metadata.name" }"#,
        r#"labels = { name = "metadata.name", phase = "data.phase" }"#,
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let target = Mode::DataStream.target();
    assert!(
        wait_until(Duration::from_secs(20), || node.count(target, None) >= 4),
        "{}",
        host.log()
    );
    std::fs::remove_file(manifests.join("d.yaml")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || node
            .count(target, Some(json!({"term": {"op": "remove"}})))
            == 1),
        "{}",
        host.log()
    );
    let search = |file: &str| {
        node.request(
            "POST",
            &format!("/{target}/_search"),
            Some(&documented_query(file)),
        )
    };

    // The phase count over time: objects per phase in each minute (the most seen in any).
    let (status, answer) = search("phase-count-over-time.json");
    assert_eq!(status, 200, "{answer}");
    let mut most = std::collections::BTreeMap::<String, u64>::new();
    for minute in answer["aggregations"]["over_time"]["buckets"]
        .as_array()
        .unwrap()
    {
        for phase in minute["phase"]["buckets"].as_array().unwrap() {
            let n = phase["objects"]["value"].as_u64().unwrap();
            let entry = most
                .entry(phase["key"].as_str().unwrap().to_owned())
                .or_default();
            *entry = (*entry).max(n);
        }
    }
    assert_eq!(most.get("Running"), Some(&2), "{answer}");
    assert_eq!(most.get("Pending"), Some(&1), "{answer}");
    assert_eq!(most.get("Failed"), Some(&1), "{answer}");

    // The latest value of every series.
    let (status, answer) = search("latest-value-per-series.json");
    assert_eq!(status, 200, "{answer}");
    let series = answer["aggregations"]["series"]["buckets"]
        .as_array()
        .unwrap();
    assert_eq!(series.len(), 4, "{answer}");
    for bucket in series {
        let latest = &bucket["latest"]["hits"]["hits"][0]["_source"];
        assert_eq!(latest["value"], 1.0, "{bucket}");
        assert!(latest["labels"]["phase"].is_string(), "{bucket}");
    }

    // The removed sources.
    let (status, answer) = search("removed-sources.json");
    assert_eq!(status, 200, "{answer}");
    let hits = answer["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{answer}");
    assert_eq!(hits[0]["_source"]["source"]["name"], "d");
    assert!(host.stop().success());
}
