//! The quick start, end to end: the shipped config run as a process over the shipped manifests
//! writes the expected metrics to the NDJSON file; editing a manifest changes them; deleting one
//! removes its sources.

use std::path::Path;
use std::time::Duration;

use periscope_tests::{Host, periscope, plugin_dir, read_ndjson, repo_root, wait_until};
use serde_json::Value;

/// The last record of `metric` whose labels include every pair of `labels`.
fn last<'a>(records: &'a [Value], metric: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    records.iter().rev().find(|r| {
        r["op"] == "replace"
            && r["metric"] == metric
            && labels.iter().all(|(k, v)| r["labels"][*k] == *v)
    })
}

fn value(records: &[Value], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    last(records, metric, labels).and_then(|r| r["value"].as_f64())
}

/// The quick-start config, pointed at copies of its manifests in `dir` and a free port.
fn quickstart_config() -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples/quickstart/periscope.toml")).unwrap();
    assert!(text.contains("path = \"examples/quickstart/manifests\""));
    assert!(text.contains("listen = \"127.0.0.1:9464\""));
    assert!(text.contains("listen = \"127.0.0.1:9465\""));
    let prometheus = format!("listen = \"127.0.0.1:{}\"", periscope_tests::free_port());
    text.replace(
        "path = \"examples/quickstart/manifests\"",
        "path = \"manifests\"",
    )
    .replace(
        "listen = \"127.0.0.1:9464\"",
        "listen = \"{listen}\"\nplugin_dirs = [\"plugins\"]",
    )
    .replace("listen = \"127.0.0.1:9465\"", &prometheus)
}

fn copy_manifests(dir: &Path) {
    let to = dir.join("manifests");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/quickstart/manifests")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn embedded_default_config_checks_out_from_the_repository_root() {
    let (status, stdout, stderr) = periscope(&["check"], &repo_root());
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("config ok: 3 resource(s), 1 input(s), 2 exporter(s)"),
        "{stdout}"
    );
}

#[test]
fn quickstart_writes_kubevirt_metrics_and_follows_manifest_edits() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "prometheus"]);
    copy_manifests(dir.path());
    let mut host = Host::start(dir.path(), &quickstart_config());
    host.wait_ready(Duration::from_secs(20));

    let out = dir.path().join("out/metrics.ndjson");
    let phase = "kubevirt_vmi_status_phase";
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &read_ndjson(&out),
            phase,
            &[("name", "cirros-test"), ("phase", "Scheduling")]
        )
        .is_some()),
        "no VMI phase metrics:\n{}",
        host.log()
    );
    let records = read_ndjson(&out);
    // VMI phases as a state set: one series per phase, 1 for the current one.
    assert_eq!(
        value(
            &records,
            phase,
            &[("name", "fedora-web"), ("phase", "Running")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &records,
            phase,
            &[("name", "fedora-web"), ("phase", "Pending")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &records,
            phase,
            &[("name", "cirros-test"), ("phase", "Scheduling")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &records,
            phase,
            &[("name", "cirros-test"), ("phase", "Running")]
        ),
        Some(0.0)
    );
    // VMI info with node and OS labels.
    let info =
        last(&records, "kubevirt_vmi_info", &[("name", "windows-db")]).expect("windows-db info");
    assert_eq!(info["labels"]["namespace"], "databases");
    assert_eq!(info["labels"]["node"], "node-2");
    assert_eq!(info["labels"]["os"], "windows2k22");
    assert_eq!(info["value"], 1.0);
    assert_eq!(info["type"], "info");
    assert_eq!(info["source"]["object_kind"], "VirtualMachineInstance");
    // Ready from a condition selector; node capacity from a quantity.
    assert_eq!(
        value(&records, "kubevirt_vmi_ready", &[("name", "fedora-web")]),
        Some(1.0)
    );
    assert_eq!(
        value(&records, "kube_node_status_ready", &[("node", "node-1")]),
        Some(1.0)
    );
    assert_eq!(
        value(&records, "kube_node_status_ready", &[("node", "node-2")]),
        Some(0.0)
    );
    assert!(
        value(
            &records,
            "kube_node_status_capacity_memory_bytes",
            &[("node", "node-1")]
        )
        .is_some_and(|v| v > 1e9)
    );
    // VM status as info labels.
    let vm =
        last(&records, "kubevirt_vm_info", &[("name", "windows-db")]).expect("windows-db VM info");
    assert_eq!(vm["labels"]["status"], "Paused");

    // The host's own metrics show the delivery.
    // (The file is written before the host counts the export, so wait for the count.)
    let sent = "periscope_exporter_sent_samples_total{exporter=\"files\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(sent)
            >= records.len() as f64),
        "{}",
        host.metrics()
    );
    let sent_prometheus = "periscope_exporter_sent_samples_total{exporter=\"prometheus\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(sent_prometheus)
            == host.metric(sent)),
        "{}",
        host.metrics()
    );
    assert_eq!(
        host.metric("periscope_input_synced{input=\"files:manifests\"}"),
        1.0
    );
    assert_eq!(host.metric("periscope_sources"), 8.0);
    // The host allocates with jemalloc and reports what it holds: what it asked for fits in
    // the pages the allocator keeps resident.
    let page = host.metrics();
    let bytes = |kind: &str| {
        let series = format!("periscope_allocator_bytes{{kind=\"{kind}\"}}");
        periscope_tests::metric_value(&page, &series).unwrap_or_else(|| panic!("{series}\n{page}"))
    };
    assert!(bytes("allocated") > 0.0, "{page}");
    assert!(bytes("allocated") <= bytes("active"), "{page}");
    assert!(bytes("active") <= bytes("resident"), "{page}");
    for kind in ["mapped", "metadata", "dirty", "retained"] {
        bytes(kind);
    }

    // Editing a manifest: cirros-test gets scheduled and runs.
    let vmis = dir.path().join("manifests/virtualmachineinstances.json");
    let text = std::fs::read_to_string(&vmis).unwrap();
    let mut list: Value = serde_json::from_str(&text).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "cirros-test" {
            item["status"]["phase"] = "Running".into();
            item["status"]["nodeName"] = "node-1".into();
        }
    }
    std::fs::write(&vmis, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &read_ndjson(&out),
            phase,
            &[("name", "cirros-test"), ("phase", "Running")]
        ) == Some(1.0)),
        "the edit did not show:\n{}",
        host.log()
    );
    let records = read_ndjson(&out);
    assert_eq!(
        value(
            &records,
            phase,
            &[("name", "cirros-test"), ("phase", "Scheduling")]
        ),
        Some(0.0)
    );
    assert_eq!(
        last(&records, "kubevirt_vmi_info", &[("name", "cirros-test")]).unwrap()["labels"]["node"],
        "node-1"
    );

    // Deleting a manifest removes its sources: one remove record per VirtualMachine.
    std::fs::remove_file(dir.path().join("manifests/virtualmachines.yaml")).unwrap();
    let removed = |records: &[Value]| -> Vec<String> {
        let mut names: Vec<String> = records
            .iter()
            .filter(|r| r["op"] == "remove" && r["source"]["object_kind"] == "VirtualMachine")
            .filter_map(|r| r["source"]["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    assert!(
        wait_until(Duration::from_secs(10), || removed(&read_ndjson(&out))
            .len()
            == 3),
        "no remove records:\n{}",
        host.log()
    );
    assert_eq!(
        removed(&read_ndjson(&out)),
        ["fedora-web", "rhel-batch", "windows-db"]
    );
    assert!(wait_until(Duration::from_secs(5), || host
        .metric("periscope_sources")
        == 5.0));
    assert!(host.stop().success());
}
