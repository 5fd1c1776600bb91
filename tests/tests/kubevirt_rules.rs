//! The KubeVirt example's Prometheus rules (`examples/kubevirt/prometheus-rules.yaml`): promtool
//! accepts them, their unit tests (each alert firing and not firing) pass, and every metric they
//! read is one the example's config produces.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use periscope_tests::prometheus::binary;
use periscope_tests::repo_root;

fn example() -> PathBuf {
    repo_root().join("examples/kubevirt")
}

/// Runs `promtool` with `args` in the example's directory and asserts it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(binary("promtool"))
        .args(args)
        .current_dir(example())
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{report}");
    report
}

#[test]
fn promtool_accepts_the_rules() {
    let report = promtool(&["check", "rules", "prometheus-rules.yaml"]);
    assert!(report.contains("SUCCESS: 6 rules found"), "{report}");
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_unit_tests_say() {
    let tests = std::fs::read_to_string(example().join("prometheus-rules.test.yaml")).unwrap();
    for alert in [
        "VMCannotBeEvicted",
        "KubeVirtVMIExcessiveMigrations",
        "OutdatedVirtualMachineInstanceWorkloads",
        "VirtualMachineStuckInUnhealthyState",
        "VirtualMachineStuckOnNode",
    ] {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(cases >= 2, "{alert} is tested firing and not firing");
    }
    let report = promtool(&["test", "rules", "prometheus-rules.test.yaml"]);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn the_rules_read_only_metrics_the_example_produces() {
    let rules = std::fs::read_to_string(example().join("prometheus-rules.yaml")).unwrap();
    let config = std::fs::read_to_string(example().join("periscope.toml")).unwrap();
    let read: BTreeSet<&str> = rules
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|word| word.starts_with("kubevirt_"))
        .collect();
    let recorded = ["kubevirt_number_of_vms"];
    for metric in read.iter().filter(|m| !recorded.contains(m)) {
        // A metric is the entry's prefix and the metric's name (an info metric adds `_info`).
        let (prefix, name) = if let Some(name) = metric.strip_prefix("kubevirt_vmi_") {
            ("kubevirt_vmi", name)
        } else {
            let name = metric
                .strip_prefix("kubevirt_vm_")
                .expect("a VM or VMI metric");
            ("kubevirt_vm", name)
        };
        assert!(
            config.contains(&format!("prefix = \"{prefix}\"")),
            "{prefix}"
        );
        assert!(
            config.contains(&format!("name = \"{name}\"")),
            "{metric} is not produced by periscope.toml"
        );
    }
    assert!(read.len() >= 10, "{read:?}");
}
