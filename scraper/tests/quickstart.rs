//! The quick-start manifests (`examples/quickstart/manifests`) read through the offline input, as
//! the default `periscope run` does, and the metrics a KubeVirt user would want from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::batch::{FamilyKind, Update};
use periscope_plugin_api::config::Duration as ConfigDuration;
use periscope_scraper::Event;
use periscope_scraper::config::{FilesConfig, ResourceConfig};
use periscope_scraper::files::FilesSource;
use periscope_scraper::objects::{ObjectPipeline, Secrets, SharedPipeline};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[resources]]
version = "v1"
kind = "Node"
prefix = "kube_node"
labels = { node = "metadata.name" }

  [[resources.metrics]]
  name = "status_capacity_cpu_cores"
  type = "gauge"
  path = "status.capacity.cpu"

  [[resources.metrics]]
  name = "status_capacity_memory_bytes"
  type = "gauge"
  unit = "bytes"
  path = "status.capacity.memory"

  [[resources.metrics]]
  name = "status_capacity_kvm_devices"
  type = "gauge"
  path = 'status.capacity["devices.kubevirt.io/kvm"]'

  [[resources.metrics]]
  name = "status_ready"
  type = "gauge"
  path = "status.conditions[type=Ready].status"

[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
prefix = "kubevirt_vmi"
labels = { namespace = "metadata.namespace", name = "metadata.name" }

  [[resources.metrics]]
  name = "status_phase"
  type = "stateset"
  label = "phase"
  path = "status.phase"
  states = ["Pending", "Scheduling", "Scheduled", "Running", "Succeeded", "Failed", "Unknown"]

  [[resources.metrics]]
  name = "info"
  type = "info"
  labels = { node = "status.nodeName", os = 'metadata.annotations["vm.kubevirt.io/os"]', guest_os = "status.guestOSInfo.id" }

  [[resources.metrics]]
  name = "ready"
  type = "gauge"
  path = "status.conditions[type=Ready].status"

  [[resources.metrics]]
  name = "memory_guest_current_bytes"
  type = "gauge"
  unit = "bytes"
  path = "status.memory.guestCurrent"

  [[resources.metrics]]
  name = "running_since_seconds"
  type = "gauge"
  unit = "seconds"
  path = "status.phaseTransitionTimestamps[phase=Running].phaseTransitionTimestamp"

  [[resources.metrics]]
  name = "interface_info"
  type = "info"
  each = "status.interfaces[*]"
  labels = { interface = "name", ip = "ipAddress" }

[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachine"
prefix = "kubevirt_vm"
labels = { namespace = "metadata.namespace", name = "metadata.name" }

  [[resources.metrics]]
  name = "ready"
  type = "gauge"
  path = "status.ready"

  [[resources.metrics]]
  name = "printable_status"
  type = "stateset"
  label = "status"
  path = "status.printableStatus"
  states = ["Running", "Stopped", "Paused"]
"#;

#[derive(Deserialize)]
struct Config {
    resources: Vec<ResourceConfig>,
}

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/manifests")
}

/// Every sample read from the manifests, keyed by metric name and labels (`name{a="x",b="y"}`),
/// with the family kinds by family name.
struct Read {
    samples: BTreeMap<String, f64>,
    kinds: BTreeMap<String, FamilyKind>,
    sources: Vec<String>,
    errors: Vec<String>,
}

async fn read(config_text: &str) -> Read {
    let config: Config =
        periscope_plugin_api::config::parse(config_text).expect("the config parses");
    let pipeline = Arc::new(
        ObjectPipeline::compile(&config.resources, Secrets::Refused).expect("the config compiles"),
    );
    let files = FilesConfig {
        path: manifests().to_string_lossy().into_owned(),
        interval: ConfigDuration(Duration::from_secs(60)),
        max_file_bytes: periscope_plugin_api::config::ByteSize(16 << 20),
    };
    let (sender, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        FilesSource::new(&files, SharedPipeline::fixed(pipeline)).run(sender, shutdown.clone()),
    );
    let mut read = Read {
        samples: BTreeMap::new(),
        kinds: BTreeMap::new(),
        sources: Vec::new(),
        errors: Vec::new(),
    };
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5s")
            .expect("the source is still running");
        match event {
            Event::Synced { .. } => break,
            Event::Error { message, .. } => read.errors.push(message),
            Event::Expression { failure, .. } => read.errors.push(failure.message),
            Event::Update(update) => {
                let Update::Replace { source, samples } = update.update() else {
                    panic!("a first read only replaces");
                };
                read.sources.push(source.id.to_owned());
                for sample in samples.iter() {
                    let labels: Vec<String> = sample
                        .labels()
                        .map(|(name, value)| format!("{name}={value:?}"))
                        .collect();
                    let key = format!("{}{{{}}}", sample.metric_name(), labels.join(","));
                    read.samples.insert(key, sample.value());
                    read.kinds
                        .insert(sample.family().name.to_owned(), sample.family().kind);
                }
            }
            other => panic!("the files input sends no {other:?}"),
        }
    }
    shutdown.cancel();
    task.await.expect("the source stops cleanly");
    read
}

/// The samples whose key starts with `prefix`, as `(key, value)`.
fn with_prefix<'r>(read: &'r Read, prefix: &str) -> Vec<(&'r str, f64)> {
    read.samples
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, value)| (key.as_str(), *value))
        .collect()
}

#[tokio::test]
async fn every_object_of_the_manifests_becomes_a_source() {
    let read = read(CONFIG).await;
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let mut sources = read.sources.clone();
    sources.sort();
    assert_eq!(
        sources,
        [
            "kubevirt.io/v1/VirtualMachine/databases/windows-db",
            "kubevirt.io/v1/VirtualMachine/default/fedora-web",
            "kubevirt.io/v1/VirtualMachine/default/rhel-batch",
            "kubevirt.io/v1/VirtualMachineInstance/databases/windows-db",
            "kubevirt.io/v1/VirtualMachineInstance/default/cirros-test",
            "kubevirt.io/v1/VirtualMachineInstance/default/fedora-web",
            "v1/Node//node-1",
            "v1/Node//node-2",
        ]
    );
}

#[tokio::test]
async fn node_capacity_quantities_become_numbers() {
    let read = read(CONFIG).await;
    assert_eq!(
        with_prefix(&read, "kube_node_status_capacity"),
        [
            ("kube_node_status_capacity_cpu_cores{node=\"node-1\"}", 16.0),
            ("kube_node_status_capacity_cpu_cores{node=\"node-2\"}", 8.0),
            (
                "kube_node_status_capacity_kvm_devices{node=\"node-1\"}",
                1000.0
            ),
            (
                "kube_node_status_capacity_kvm_devices{node=\"node-2\"}",
                1000.0
            ),
            (
                "kube_node_status_capacity_memory_bytes{node=\"node-1\"}",
                67_431_555_072.0
            ),
            (
                "kube_node_status_capacity_memory_bytes{node=\"node-2\"}",
                34_359_738_368.0
            ),
        ]
    );
}

#[tokio::test]
async fn ready_gauges_come_from_the_ready_condition() {
    let read = read(CONFIG).await;
    assert_eq!(
        with_prefix(&read, "kube_node_status_ready"),
        [
            ("kube_node_status_ready{node=\"node-1\"}", 1.0),
            ("kube_node_status_ready{node=\"node-2\"}", 0.0),
        ]
    );
    assert_eq!(
        with_prefix(&read, "kubevirt_vmi_ready"),
        [
            (
                "kubevirt_vmi_ready{name=\"cirros-test\",namespace=\"default\"}",
                0.0
            ),
            (
                "kubevirt_vmi_ready{name=\"fedora-web\",namespace=\"default\"}",
                1.0
            ),
            (
                "kubevirt_vmi_ready{name=\"windows-db\",namespace=\"databases\"}",
                0.0
            ),
        ]
    );
    assert_eq!(
        with_prefix(&read, "kubevirt_vm_ready"),
        [
            (
                "kubevirt_vm_ready{name=\"fedora-web\",namespace=\"default\"}",
                1.0
            ),
            (
                "kubevirt_vm_ready{name=\"rhel-batch\",namespace=\"default\"}",
                0.0
            ),
            (
                "kubevirt_vm_ready{name=\"windows-db\",namespace=\"databases\"}",
                0.0
            ),
        ]
    );
}

#[tokio::test]
async fn vmi_phases_are_a_stateset() {
    let read = read(CONFIG).await;
    assert_eq!(
        read.kinds["kubevirt_vmi_status_phase"],
        FamilyKind::StateSet
    );
    let current: Vec<_> = with_prefix(&read, "kubevirt_vmi_status_phase")
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        current,
        [
            "kubevirt_vmi_status_phase{name=\"cirros-test\",namespace=\"default\",phase=\"Scheduling\"}",
            "kubevirt_vmi_status_phase{name=\"fedora-web\",namespace=\"default\",phase=\"Running\"}",
            "kubevirt_vmi_status_phase{name=\"windows-db\",namespace=\"databases\",phase=\"Running\"}",
        ]
    );
    // Seven states for each of the three VMIs.
    assert_eq!(with_prefix(&read, "kubevirt_vmi_status_phase").len(), 21);
}

#[tokio::test]
async fn vmi_info_carries_node_and_os() {
    let read = read(CONFIG).await;
    assert_eq!(read.kinds["kubevirt_vmi"], FamilyKind::Info);
    assert_eq!(
        with_prefix(&read, "kubevirt_vmi_info"),
        [
            (
                "kubevirt_vmi_info{name=\"cirros-test\",namespace=\"default\",guest_os=\"\",node=\"\",os=\"cirros\"}",
                1.0
            ),
            (
                "kubevirt_vmi_info{name=\"fedora-web\",namespace=\"default\",guest_os=\"fedora\",node=\"node-1\",os=\"fedora\"}",
                1.0
            ),
            (
                "kubevirt_vmi_info{name=\"windows-db\",namespace=\"databases\",guest_os=\"mswindows\",node=\"node-2\",os=\"windows2k22\"}",
                1.0
            ),
        ]
    );
}

#[tokio::test]
async fn each_interface_gets_its_own_sample() {
    let read = read(CONFIG).await;
    assert_eq!(
        with_prefix(&read, "kubevirt_vmi_interface_info"),
        [
            (
                "kubevirt_vmi_interface_info{name=\"fedora-web\",namespace=\"default\",interface=\"default\",ip=\"10.244.1.23\"}",
                1.0
            ),
            (
                "kubevirt_vmi_interface_info{name=\"windows-db\",namespace=\"databases\",interface=\"default\",ip=\"10.244.2.41\"}",
                1.0
            ),
        ]
    );
}

#[tokio::test]
async fn quantities_and_timestamps_of_vmis_are_converted() {
    let read = read(CONFIG).await;
    assert_eq!(
        with_prefix(&read, "kubevirt_vmi_memory_guest_current_bytes"),
        [
            (
                "kubevirt_vmi_memory_guest_current_bytes{name=\"fedora-web\",namespace=\"default\"}",
                2_147_483_648.0
            ),
            (
                "kubevirt_vmi_memory_guest_current_bytes{name=\"windows-db\",namespace=\"databases\"}",
                17_179_869_184.0
            ),
        ]
    );
    // cirros-test is not running yet: no sample.
    assert_eq!(
        with_prefix(&read, "kubevirt_vmi_running_since_seconds"),
        [
            (
                "kubevirt_vmi_running_since_seconds{name=\"fedora-web\",namespace=\"default\"}",
                1_749_545_987.5
            ),
            (
                "kubevirt_vmi_running_since_seconds{name=\"windows-db\",namespace=\"databases\"}",
                1_749_478_898.0
            ),
        ]
    );
}

#[tokio::test]
async fn vm_printable_status_is_a_stateset() {
    let read = read(CONFIG).await;
    let current: Vec<_> = with_prefix(&read, "kubevirt_vm_printable_status")
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        current,
        [
            "kubevirt_vm_printable_status{name=\"fedora-web\",namespace=\"default\",status=\"Running\"}",
            "kubevirt_vm_printable_status{name=\"rhel-batch\",namespace=\"default\",status=\"Stopped\"}",
            "kubevirt_vm_printable_status{name=\"windows-db\",namespace=\"databases\",status=\"Paused\"}",
        ]
    );
}

/// The quick-start config shipped with the binary reads the same manifests without a problem.
#[tokio::test]
async fn the_shipped_quickstart_config_reads_the_manifests_cleanly() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/periscope.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let read = read(&text).await;
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert_eq!(read.sources.len(), 8);
}
