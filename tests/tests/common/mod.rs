//! Fixtures shared by the end-to-end tests: a tiny world of ConfigMaps whose `data.value` becomes
//! the gauge `demo_value{name}`, and a config around one exporter.

#![allow(dead_code)]

use std::path::Path;

/// Writes a ConfigMap manifest `<name>.yaml` with `data.value = value` into `dir/manifests`.
pub fn write_configmap(dir: &Path, name: &str, value: f64) {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: demo\n  uid: uid-{name}\ndata:\n  value: \"{value}\"\n"
    );
    // Write then rename, so the watcher never reads half a file.
    let tmp = manifests.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, manifests.join(format!("{name}.yaml"))).unwrap();
}

/// A config reading `manifests/` every 100 ms into `demo_value{name}`, with the given exporter
/// entries appended (TOML text).
pub fn demo_config(exporters: &str) -> String {
    format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"
shutdown_timeout = "5s"

[[sources.files]]
path = "manifests"
interval = "100ms"

[[resources]]
version = "v1"
kind = "ConfigMap"
prefix = "demo"
labels = {{ name = "metadata.name" }}

  [[resources.metrics]]
  name = "value"
  type = "gauge"
  path = "data.value"

{exporters}
"#
    )
}

/// The values of `demo_value` for ConfigMap `name`, in the order the chaos exporter accepted them.
pub fn recorded_values(record: &[serde_json::Value], name: &str) -> Vec<f64> {
    let id = format!("v1/ConfigMap/demo/{name}");
    record
        .iter()
        .filter(|line| line["op"] == "replace" && line["source"] == id.as_str())
        .flat_map(|line| line["samples"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["metric"] == "demo_value")
        .filter_map(|s| s["value"].as_f64())
        .collect()
}

/// `values` with consecutive repeats collapsed (a resync repeats the current value).
pub fn distinct_in_order(values: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for v in values {
        if out.last() != Some(v) {
            out.push(*v);
        }
    }
    out
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}
