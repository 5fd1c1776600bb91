//! CEL expressions end to end, offline: a metric value, a label and a filter written as
//! expressions show in the file exporter's output, a failing expression is counted (by entry and
//! metric) and omits its series, and `periscope check` refuses an expression that does not parse at its line and column.

mod common;

use std::time::Duration;

use common::write_configmap;
use periscope_tests::{Host, periscope, plugin_dir, read_ndjson, wait_until};
use serde_json::Value;

const CONFIG: &str = r#"[host]
listen = "{listen}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"

[[sources.files]]
path = "manifests"
interval = "100ms"

[[resources]]
version = "v1"
kind = "ConfigMap"
prefix = "demo"
where = "object.metadata.name.startsWith('keep')"
labels = { name = "metadata.name", upper = { expr = "object.metadata.name.upperAscii()" } }

  [[resources.metrics]]
  name = "doubled"
  type = "gauge"
  expr = "double(object.data.value) * 2.0"

[[exporters]]
name = "files"
plugin = "file"
config = { path = "out.ndjson" }
"#;

/// The last value of `metric` for ConfigMap `name`, with its labels.
fn last(records: &[Value], metric: &str, name: &str) -> Option<(f64, Value)> {
    records
        .iter()
        .rev()
        .find(|r| r["op"] == "replace" && r["metric"] == metric && r["labels"]["name"] == name)
        .map(|r| (r["value"].as_f64().unwrap_or(f64::NAN), r["labels"].clone()))
}

#[test]
fn expressions_give_values_labels_and_filters_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    write_configmap(dir.path(), "keep-a", 3.0);
    write_configmap(dir.path(), "drop-b", 5.0);
    // Kept by the filter, but `double()` of text that is no number fails: no series, one error.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep-broken\n  namespace: demo\ndata:\n  value: \"lots\"\n";
    std::fs::write(dir.path().join("manifests/keep-broken.yaml"), broken).unwrap();
    let mut host = Host::start(dir.path(), CONFIG);
    host.wait_ready(Duration::from_secs(20));

    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || last(
            &read_ndjson(&out),
            "demo_doubled",
            "keep-a"
        )
        .is_some()),
        "no expression metric:\n{}",
        host.log()
    );
    let records = read_ndjson(&out);
    let (value, labels) = last(&records, "demo_doubled", "keep-a").unwrap();
    assert_eq!(value, 6.0);
    assert_eq!(labels["upper"], "KEEP-A");
    assert_eq!(last(&records, "demo_doubled", "drop-b"), None);
    assert_eq!(last(&records, "demo_doubled", "keep-broken"), None);
    let errors = "periscope_input_errors_total{input=\"files:manifests\",kind=\"value\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(errors) >= 1.0),
        "{}",
        host.metrics()
    );
    assert!(
        host.log().contains("double(object.data.value) * 2.0"),
        "{}",
        host.log()
    );
}

#[test]
fn check_refuses_an_expression_that_does_not_parse_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let config = CONFIG
        .replace("{listen}", "127.0.0.1:1")
        .replace("* 2.0\"", "* \"");
    std::fs::write(dir.path().join("bad.toml"), &config).unwrap();
    let (status, _, stderr) = periscope(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = config
        .lines()
        .position(|l| l.contains("expr = \"double"))
        .unwrap()
        + 1;
    // `  expr = "double(object.data.value) * "`: the end of the text, inside the quotes.
    let column = "  expr = \"double(object.data.value) * ".len() + 1;
    let expected = format!("bad.toml:{line}:{column}: `resources[0].metrics[0].expr`");
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "expected {expected}:\n{stderr}"
    );
}

const LABELS_CONFIG: &str = r#"[host]
listen = "{listen}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"

[[sources.files]]
path = "manifests"
interval = "100ms"

[[resources]]
version = "v1"
kind = "ConfigMap"
prefix = "demo"
labels = { name = "metadata.name" }

  [[resources.metrics]]
  name = "labels"
  type = "info"
  labels_from = { path = "metadata.labels", allow = ["app\\.kubernetes\\.io/.*", "app[-_.]kubernetes[-_.]io/part.*"] }

  [[resources.aggregates]]
  name = "big_count"
  type = "count"
  where = "int(object.data.value) > 2"
  by = { team = { expr = "object.metadata.labels['team'].upperAscii()" } }

[[exporters]]
name = "files"
plugin = "file"
config = { path = "out.ndjson" }
"#;

#[test]
fn labels_from_and_aggregate_expressions_work_offline_and_collisions_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    for (name, value) in [("a", 3), ("b", 1), ("c", 5)] {
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    \
             app.kubernetes.io/name: web-{name}\n    app.kubernetes.io/partOf: shop\n    \
             app_kubernetes_io/partOf: other\n    team: blue\n    other: left-out\n\
             data:\n  value: \"{value}\"\n"
        );
        std::fs::write(dir.path().join(format!("manifests/{name}.yaml")), manifest).unwrap();
    }
    let mut host = Host::start(dir.path(), LABELS_CONFIG);
    host.wait_ready(Duration::from_secs(20));
    let out = dir.path().join("out.ndjson");
    let count = |records: &[Value]| {
        records
            .iter()
            .rev()
            .find(|r| r["op"] == "replace" && r["metric"] == "demo_big_count")
            .map(|r| (r["value"].as_f64().unwrap_or(f64::NAN), r["labels"].clone()))
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let records = read_ndjson(&out);
            last(&records, "demo_labels_info", "c").is_some() && count(&records).is_some()
        }),
        "no labels or count:\n{}",
        host.log()
    );
    let records = read_ndjson(&out);
    let (_, labels) = last(&records, "demo_labels_info", "a").unwrap();
    assert_eq!(
        labels,
        serde_json::json!({
            "name": "a",
            "label_app_kubernetes_io_name": "web-a",
            "label_app_kubernetes_io_part_of": "shop",
        })
    );
    let (value, labels) = count(&records).unwrap();
    assert_eq!((value, labels), (2.0, serde_json::json!({"team": "BLUE"})));
    // `app_kubernetes_io/partOf` lost its name to `app.kubernetes.io/partOf`, once per object.
    let collisions =
        "periscope_label_collisions_total{metric=\"demo_labels\",resource=\"ConfigMap\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(collisions) >= 3.0),
        "{}",
        host.metrics()
    );
}

#[test]
fn check_refuses_a_bad_allow_pattern_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = LABELS_CONFIG
        .replace("{listen}", "127.0.0.1:1")
        .replace("io/part.*\"", "io/part(\"");
    std::fs::write(dir.path().join("bad.toml"), &config).unwrap();
    let (status, _, stderr) = periscope(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    let text = config.lines().find(|l| l.contains("labels_from")).unwrap();
    let line = config
        .lines()
        .position(|l| l.contains("labels_from"))
        .unwrap()
        + 1;
    let column = text.find("\"app[-_.]").unwrap() + 1;
    let expected =
        format!("bad.toml:{line}:{column}: `resources[0].metrics[0].labels_from.allow[1]`");
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "expected {expected}:\n{stderr}"
    );
}
