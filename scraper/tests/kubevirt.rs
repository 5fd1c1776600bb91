//! The KubeVirt example (`examples/kubevirt`): its `[[resources]]` run over its objects through the
//! offline input, and every series of kubevirt-observability-controller's 26 object metrics, and
//! of the example's own, with their exact values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::batch::{FamilyKind, SourceKind, Update};
use periscope_plugin_api::config::Duration as ConfigDuration;
use periscope_scraper::config::{FilesConfig, ResourceConfig};
use periscope_scraper::files::FilesSource;
use periscope_scraper::objects::{ObjectPipeline, Secrets, SharedPipeline};
use periscope_scraper::value::parse_timestamp;
use periscope_scraper::{Event, SourceUpdate};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// KubeVirt's phase transition buckets.
const BUCKETS: [&str; 18] = [
    "0.5", "1", "2", "5", "10", "20", "30", "40", "50", "60", "90", "120", "180", "300", "600",
    "1200", "1800", "3600",
];

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kubevirt")
}

/// The example's `[[resources]]`; its `[kubernetes]` table is left out, the objects are read
/// from disk instead.
fn pipeline() -> Arc<ObjectPipeline> {
    #[derive(Deserialize)]
    struct Example {
        resources: Vec<ResourceConfig>,
    }
    let text =
        std::fs::read_to_string(example().join("periscope.toml")).expect("the example config");
    let example: Example = periscope_plugin_api::config::parse(&text).expect("the example parses");
    Arc::new(
        ObjectPipeline::compile(&example.resources, Secrets::Refused)
            .expect("the example compiles"),
    )
}

/// Every sample by `name{label="value",…}` (labels in the order written), and what else was
/// seen.
#[derive(Default)]
struct Metrics {
    samples: BTreeMap<String, f64>,
    /// The samples by metric name, then by their labels in name order.
    families: BTreeMap<String, BTreeMap<String, f64>>,
    kinds: BTreeMap<String, FamilyKind>,
    aggregate_sources: Vec<String>,
    errors: Vec<String>,
}

impl Metrics {
    fn add(&mut self, update: &SourceUpdate) {
        let Update::Replace { source, samples } = update.update() else {
            return;
        };
        if source.kind == SourceKind::Aggregate {
            self.aggregate_sources.push(source.id.to_owned());
        }
        for sample in samples.iter() {
            let labels: Vec<String> = sample
                .labels()
                .map(|(name, value)| format!("{name}={value:?}"))
                .collect();
            let key = format!("{}{{{}}}", sample.metric_name(), labels.join(","));
            self.samples.insert(key, sample.value());
            let mut sorted = labels;
            sorted.sort();
            self.families
                .entry(sample.metric_name().to_owned())
                .or_default()
                .insert(sorted.join(","), sample.value());
            self.kinds
                .insert(sample.family().name.to_owned(), sample.family().kind);
        }
    }

    /// The samples of one metric name (`name{` prefix), keyed by their labels.
    fn of(&self, name: &str) -> BTreeMap<&str, f64> {
        let prefix = format!("{name}{{");
        self.samples
            .iter()
            .filter_map(|(key, value)| {
                let labels = key.strip_prefix(&prefix)?.strip_suffix('}')?;
                Some((labels, *value))
            })
            .collect()
    }
}

/// Reads `objects` once through the offline input and pulls the aggregate and derived sources.
async fn read(pipeline: Arc<ObjectPipeline>, objects: &Path) -> Metrics {
    let mut metrics = Metrics::default();
    let files = FilesConfig {
        path: objects.to_string_lossy().into_owned(),
        interval: ConfigDuration(Duration::from_secs(60)),
        max_file_bytes: periscope_plugin_api::config::ByteSize(16 << 20),
    };
    let (sender, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        FilesSource::new(&files, SharedPipeline::fixed(pipeline.clone()))
            .run(sender, shutdown.clone()),
    );
    loop {
        match events.recv().await.expect("the input runs until synced") {
            Event::Synced { .. } => break,
            Event::Error { message, .. } => metrics.errors.push(message),
            Event::Expression { failure, .. } => metrics.errors.push(failure.message),
            Event::Update(update) => metrics.add(&update),
            other => panic!("the files input sends no {other:?}"),
        }
    }
    shutdown.cancel();
    task.await.expect("the input stops cleanly");
    for update in pipeline.derived_updates(0) {
        metrics.add(&update);
    }
    metrics
}

fn expected(pairs: &[(&'static str, f64)]) -> BTreeMap<&'static str, f64> {
    pairs.iter().copied().collect()
}

#[tokio::test]
async fn vmi_phase_count_counts_by_phase_node_and_annotations() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    assert!(metrics.errors.is_empty(), "{:?}", metrics.errors);
    assert_eq!(metrics.kinds["kubevirt_vmi_phase_count"], FamilyKind::Gauge);
    let fedora = r#"flavor="small",instance_type="u1.medium""#;
    let windows = r#"flavor="large",instance_type="u1.2xlarge""#;
    let rhel = r#"flavor="medium",instance_type="u1.large""#;
    let count = metrics.of("kubevirt_vmi_phase_count");
    let expected: BTreeMap<String, f64> = [
        (format!(r#"{fedora},node="node-1",os="fedora",phase="Running",preference="fedora",workload="server""#), 2.0),
        (format!(r#"{fedora},node="node-2",os="fedora",phase="Running",preference="fedora",workload="server""#), 1.0),
        (format!(r#"{windows},node="node-2",os="windows2k22",phase="Running",preference="windows.2k22",workload="server""#), 1.0),
        (format!(r#"{windows},node="node-3",os="windows2k22",phase="Running",preference="windows.2k22",workload="server""#), 1.0),
        (format!(r#"{rhel},node="node-3",os="rhel9",phase="Succeeded",preference="rhel.9",workload="server""#), 1.0),
        (format!(r#"{rhel},node="node-1",os="rhel9",phase="Failed",preference="rhel.9",workload="server""#), 1.0),
        (format!(r#"{rhel},node="node-2",os="rhel9",phase="Scheduled",preference="rhel.9",workload="highperformance""#), 1.0),
        (format!(r#"{rhel},node="",os="rhel9",phase="Scheduling",preference="rhel.9",workload="highperformance""#), 1.0),
        (r#"flavor="tiny",instance_type="",node="",os="fedora",phase="Pending",preference="",workload="desktop""#.to_owned(), 1.0),
        (r#"flavor="medium",instance_type="u1.large",node="node-3",os="windows11",phase="Running",preference="windows.11",workload="desktop""#.to_owned(), 1.0),
        (r#"flavor="small",instance_type="",node="node-2",os="fedora",phase="Unknown",preference="",workload="desktop""#.to_owned(), 1.0),
        (r#"flavor="",instance_type="u1.large",node="node-1",os="",phase="Running",preference="",workload="""#.to_owned(), 1.0),
        (r#"flavor="",instance_type="u1.nano",node="node-2",os="",phase="Scheduled",preference="windows.11",workload="""#.to_owned(), 1.0),
    ]
    .into_iter()
    .collect();
    let count: BTreeMap<String, f64> = count.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(count, expected);
    assert_eq!(count.values().sum::<f64>(), 14.0);
}

/// The samples of a histogram for one phase: cumulative bucket counts (KubeVirt's buckets, then
/// `+Inf`), sum and count.
fn histogram(metrics: &Metrics, family: &str, phase: &str) -> (Vec<f64>, f64, f64) {
    let buckets = metrics.of(&format!("{family}_bucket"));
    let mut counts: Vec<f64> = BUCKETS
        .iter()
        .map(|le| buckets[format!(r#"phase="{phase}",le="{le}""#).as_str()])
        .collect();
    counts.push(buckets[format!(r#"phase="{phase}",le="+Inf""#).as_str()]);
    let labels = format!(r#"phase="{phase}""#);
    let sum = metrics.of(&format!("{family}_sum"))[labels.as_str()];
    let count = metrics.of(&format!("{family}_count"))[labels.as_str()];
    (counts, sum, count)
}

#[tokio::test]
async fn phase_transition_histograms_have_exact_buckets_sums_and_counts() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let vmi = "kubevirt_vmi_phase_transition_time_from_creation_seconds";
    assert_eq!(metrics.kinds[vmi], FamilyKind::Histogram);
    #[rustfmt::skip]
    let cases: [(&str, [u8; 18], f64, f64); 7] = [
        ("Pending",    [9, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12], 6.0, 12.0),
        ("Scheduling", [0, 6, 9, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11], 16.0, 11.0),
        ("Scheduled",  [0, 0, 0, 2, 6, 8, 8, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10], 155.0, 10.0),
        ("Running",    [0, 0, 0, 0, 2, 6, 7, 7, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9], 211.0, 9.0),
        ("Succeeded",  [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], 600.0, 1.0),
        ("Failed",     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], 95.0, 1.0),
        ("Unknown",    [0; 18], 4000.0, 1.0),
    ];
    for (phase, buckets, sum, count) in cases {
        let mut expected: Vec<f64> = buckets.iter().map(|b| f64::from(*b)).collect();
        expected.push(count);
        assert_eq!(
            histogram(&metrics, vmi, phase),
            (expected, sum, count),
            "{phase}"
        );
    }
    assert_eq!(metrics.of(&format!("{vmi}_count")).len(), 7);

    let vmim = "kubevirt_vmi_migration_phase_transition_time_from_creation_seconds";
    #[rustfmt::skip]
    let cases: [(&str, usize, f64, f64); 8] = [
        // (phase, index of the first bucket holding them all, sum, count)
        ("Pending", 0, 2.0, 8.0),
        ("Scheduling", 0, 3.5, 7.0),
        ("Scheduled", 2, 12.0, 6.0),
        ("PreparingTarget", 3, 15.0, 5.0),
        ("TargetReady", 3, 16.0, 4.0),
        ("Running", 3, 15.0, 3.0),
        ("Failed", 5, 20.0, 1.0),
        ("Succeeded", 8, 42.0, 1.0),
    ];
    for (phase, first, sum, count) in cases {
        let mut expected: Vec<f64> = (0..18)
            .map(|i| if i < first { 0.0 } else { count })
            .collect();
        expected.push(count);
        assert_eq!(
            histogram(&metrics, vmim, phase),
            (expected, sum, count),
            "{phase}"
        );
    }
}

#[tokio::test]
async fn the_printable_status_is_a_state_set_beside_kubevirts_metrics() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let statuses = metrics.of("kubevirt_vm_printable_status");
    let current: BTreeMap<&str, f64> = statuses.into_iter().filter(|(_, v)| *v == 1.0).collect();
    // lab-2 has no status yet: every state is 0.
    assert_eq!(current.len(), 14, "one current status per VM with a status");
    assert_eq!(
        current
            .keys()
            .filter(|k| k.ends_with(r#"status="Running""#))
            .count(),
        4
    );
}

#[tokio::test]
async fn every_aggregate_and_derived_family_is_its_own_source() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let mut sources = metrics.aggregate_sources.clone();
    sources.sort();
    assert_eq!(
        sources,
        [
            "aggregate:kubevirt_vmi_migration_failed",
            "aggregate:kubevirt_vmi_migration_phase_transition_time_from_creation_seconds",
            "aggregate:kubevirt_vmi_migration_succeeded",
            "aggregate:kubevirt_vmi_migrations_in_pending_phase",
            "aggregate:kubevirt_vmi_migrations_in_running_phase",
            "aggregate:kubevirt_vmi_migrations_in_scheduling_phase",
            "aggregate:kubevirt_vmi_migrations_in_unset_phase",
            "aggregate:kubevirt_vmi_number_of_outdated",
            "aggregate:kubevirt_vmi_phase_count",
            "aggregate:kubevirt_vmi_phase_transition_time_from_creation_seconds",
            "aggregate:kubevirt_vmi_phase_transitions",
        ]
    );
    // One read shows every object once: no phase has changed yet.
    assert!(
        metrics
            .of("kubevirt_vmi_phase_transitions_total")
            .is_empty()
    );
}

#[tokio::test]
async fn objects_vanishing_from_disk_leave_the_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "virtualmachineinstances.yaml",
        "virtualmachineinstancemigrations.yaml",
    ] {
        std::fs::copy(example().join("objects").join(file), dir.path().join(file)).unwrap();
    }
    let pipeline = pipeline();
    let files = FilesConfig {
        path: dir.path().to_string_lossy().into_owned(),
        interval: ConfigDuration(Duration::from_millis(20)),
        max_file_bytes: periscope_plugin_api::config::ByteSize(16 << 20),
    };
    let (sender, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        FilesSource::new(&files, SharedPipeline::fixed(pipeline.clone()))
            .run(sender, shutdown.clone()),
    );
    while !matches!(events.recv().await.unwrap(), Event::Synced { .. }) {}
    let mut before = Metrics::default();
    for update in pipeline.derived_updates(0) {
        before.add(&update);
    }
    assert_eq!(
        before.of("kubevirt_vmi_migrations_in_running_phase"),
        expected(&[("", 4.0)])
    );

    std::fs::remove_file(dir.path().join("virtualmachineinstancemigrations.yaml")).unwrap();
    let mut removed = 0;
    while removed < 10 {
        if let Event::Update(update) = events.recv().await.unwrap()
            && update.is_remove()
        {
            removed += 1;
        }
    }
    shutdown.cancel();
    task.await.unwrap();
    let mut after = Metrics::default();
    for update in pipeline.derived_updates(1) {
        after.add(&update);
    }
    assert_eq!(
        after.of("kubevirt_vmi_migrations_in_running_phase"),
        expected(&[("", 0.0)])
    );
    assert!(after.of("kubevirt_vmi_migration_succeeded").is_empty());
    assert!(
        !after
            .samples
            .keys()
            .any(|k| k.starts_with("kubevirt_vmi_phase_count")),
        "VMIs did not change, so neither did their count"
    );
    // Histograms keep what they counted: observations are not taken back.
    assert!(
        after
            .of("kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_count")
            .is_empty()
    );
}

// --- The 26 metrics of kubevirt-observability-controller ----------------------------------------
//
// Every series of every one of the controller's object metrics, written from the rules of its
// documentation (`kubevirt-observability-metrics.md`) and the example objects.

/// Label pairs in name order, `name="value"` joined by `,`: the key of [`family`].
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort();
    let written: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    written.join(",")
}

/// The samples of one metric name, keyed by their labels in name order.
fn family(metrics: &Metrics, name: &str) -> BTreeMap<String, f64> {
    metrics.families.get(name).cloned().unwrap_or_default()
}

/// Unix seconds of an RFC 3339 time.
fn at(time: &str) -> f64 {
    parse_timestamp(time).expect("an RFC 3339 time")
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The example's VMIs: namespace, name, node.
const VMIS: [(&str, &str, &str); 14] = [
    ("prod", "web-1", "node-1"),
    ("prod", "web-2", "node-1"),
    ("prod", "web-3", "node-2"),
    ("prod", "db-1", "node-2"),
    ("prod", "db-2", "node-3"),
    ("ci", "ci-1", "node-3"),
    ("ci", "ci-2", "node-1"),
    ("ci", "batch-1", "node-2"),
    ("ci", "batch-2", ""),
    ("dev", "pending-1", ""),
    ("dev", "dev-1", "node-3"),
    ("dev", "dev-2", "node-2"),
    ("dev", "lab-1", "node-1"),
    ("dev", "lab-2", "node-2"),
];

/// A VMI's `kubevirt_vmi_info` labels: name, phase, os/workload/flavor, instance_type,
/// preference, guest OS (kernel release, machine type, arch, name, version), evictable, outdated,
/// vmi_pod.
type VmiInfoRow = (
    &'static str,
    &'static str,
    [&'static str; 3],
    &'static str,
    &'static str,
    [&'static str; 5],
    &'static str,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn vmi_info_joins_instance_types_preferences_and_launcher_pods() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    assert!(metrics.errors.is_empty(), "{:?}", metrics.errors);
    let fedora = [
        "6.8.5-301.fc40.x86_64",
        "pc-q35-rhel9.4.0",
        "x86_64",
        "Fedora Linux",
        "40",
    ];
    let windows = [
        "20348",
        "pc-q35-rhel9.4.0",
        "x86_64",
        "Microsoft Windows Server 2022 Datacenter",
        "2022",
    ];
    let win11 = [
        "22631",
        "pc-q35-rhel9.4.0",
        "x86_64",
        "Microsoft Windows 11 Pro",
        "11",
    ];
    let none = [""; 5];
    // name, phase, os, workload, flavor, instance_type, preference, guest OS (kernel release,
    // machine type, arch, name, version), evictable, outdated, vmi_pod.
    #[rustfmt::skip]
    let rows: [VmiInfoRow; 14] = [
        // A vendor label kubevirt.io or redhat.com shows the name; example.com, none, or a
        // missing object shows `<other>`. Only Running launcher Pods on the VMI's node count.
        ("web-1", "running", ["fedora", "server", "small"], "u1.medium", "fedora", fedora, "true", "false", "virt-launcher-web-1-x2f9k"),
        ("web-2", "running", ["fedora", "server", "small"], "u1.medium", "fedora", fedora, "true", "true", ""),
        ("web-3", "running", ["fedora", "server", "small"], "u1.medium", "fedora", fedora, "true", "false", ""),
        ("db-1", "running", ["windows2k22", "server", "large"], "u1.2xlarge", "<other>", windows, "true", "false", ""),
        ("db-2", "running", ["windows2k22", "server", "large"], "u1.2xlarge", "<other>", windows, "true", "false", "virt-launcher-db-2-target"),
        ("ci-1", "succeeded", ["rhel9", "server", "medium"], "<other>", "rhel.9", none, "true", "false", ""),
        ("ci-2", "failed", ["rhel9", "server", "medium"], "<other>", "rhel.9", none, "true", "false", ""),
        ("batch-1", "scheduled", ["rhel9", "highperformance", "medium"], "<other>", "rhel.9", none, "true", "false", ""),
        ("batch-2", "scheduling", ["rhel9", "highperformance", "medium"], "<other>", "rhel.9", none, "true", "false", ""),
        ("pending-1", "pending", ["fedora", "desktop", "tiny"], "", "", none, "true", "false", ""),
        ("dev-1", "running", ["windows11", "desktop", "medium"], "<other>", "<other>", win11, "true", "false", ""),
        ("dev-2", "unknown", ["fedora", "desktop", "small"], "", "", none, "true", "false", ""),
        // The namespaced annotations win over the cluster one; a live-migrate strategy without a
        // LiveMigratable condition (lab-1) or with one that is False (lab-2) is not evictable.
        ("lab-1", "running", ["", "", ""], "custom", "<other>", none, "false", "true", "virt-launcher-lab-1-k8s7d"),
        ("lab-2", "scheduled", ["", "", ""], "<other>", "<other>", none, "false", "false", ""),
    ];
    let expected: BTreeMap<String, f64> = rows
        .iter()
        .zip(VMIS)
        .map(|(row, (namespace, name, node))| {
            let (
                vmi,
                phase,
                [os, workload, flavor],
                instance_type,
                preference,
                guest,
                evictable,
                outdated,
                pod,
            ) = *row;
            assert_eq!(vmi, name);
            let key = labels(&[
                ("namespace", namespace),
                ("name", name),
                ("node", node),
                ("phase", phase),
                ("os", os),
                ("workload", workload),
                ("flavor", flavor),
                ("instance_type", instance_type),
                ("preference", preference),
                ("guest_os_kernel_release", guest[0]),
                ("guest_os_machine", guest[1]),
                ("guest_os_arch", guest[2]),
                ("guest_os_name", guest[3]),
                ("guest_os_version_id", guest[4]),
                ("evictable", evictable),
                ("outdated", outdated),
                ("vmi_pod", pod),
            ]);
            (key, 1.0)
        })
        .collect();
    assert_eq!(family(&metrics, "kubevirt_vmi_info"), expected);
    assert_eq!(metrics.kinds["kubevirt_vmi"], FamilyKind::Info);
}

#[tokio::test]
async fn per_vmi_gauges_follow_eviction_memory_hotplug_and_interfaces() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let non_evictable: BTreeMap<String, f64> = VMIS
        .iter()
        .map(|(namespace, name, node)| {
            let value = if name.starts_with("lab-") { 1.0 } else { 0.0 };
            (
                labels(&[("namespace", namespace), ("name", name), ("node", node)]),
                value,
            )
        })
        .collect();
    assert_eq!(
        family(&metrics, "kubevirt_vmi_non_evictable"),
        non_evictable
    );

    let overhead: BTreeMap<String, f64> = VMIS
        .iter()
        .map(|(namespace, name, _)| {
            let value = if *name == "lab-1" {
                312.0 * 1024.0 * 1024.0
            } else {
                0.0
            };
            (labels(&[("namespace", namespace), ("name", name)]), value)
        })
        .collect();
    assert_eq!(
        family(&metrics, "kubevirt_vmi_launcher_memory_overhead_bytes"),
        overhead
    );

    assert_eq!(
        family(&metrics, "kubevirt_vmi_contains_ephemeral_hotplug_volume"),
        BTreeMap::from([(
            labels(&[
                ("namespace", "dev"),
                ("name", "lab-1"),
                ("volume_name", "hp-disk-1,hp-disk-2")
            ]),
            1.0
        )])
    );

    // Every reported interface with a name, an interface name or an address; the first list
    // entry of lab-1's `ipAddresses` is not read, its MAC-only entry is left out.
    let address = |namespace, name, node, vnic, interface, address, kind| {
        (
            labels(&[
                ("namespace", namespace),
                ("name", name),
                ("node", node),
                ("vnic_name", vnic),
                ("interface_name", interface),
                ("address", address),
                ("type", kind),
            ]),
            1.0,
        )
    };
    let external = "ExternalInterface";
    assert_eq!(
        family(&metrics, "kubevirt_vmi_status_addresses"),
        BTreeMap::from([
            address(
                "prod",
                "web-1",
                "node-1",
                "default",
                "eth0",
                "10.244.1.10",
                external
            ),
            address(
                "prod",
                "web-2",
                "node-1",
                "default",
                "eth0",
                "10.244.1.11",
                external
            ),
            address(
                "prod",
                "web-3",
                "node-2",
                "default",
                "eth0",
                "10.244.2.12",
                external
            ),
            address(
                "prod",
                "db-1",
                "node-2",
                "default",
                "eth0",
                "10.244.2.13",
                external
            ),
            address(
                "prod",
                "db-2",
                "node-3",
                "default",
                "eth0",
                "10.244.3.14",
                external
            ),
            address(
                "dev",
                "dev-1",
                "node-3",
                "default",
                "eth0",
                "10.244.3.15",
                external
            ),
            address(
                "dev",
                "lab-1",
                "node-1",
                "default",
                "eth0",
                "10.244.1.20",
                external
            ),
            address("dev", "lab-1", "node-1", "", "eth1", "", "SystemInterface"),
            address("dev", "lab-1", "node-1", "fast", "", "", "SystemInterface"),
        ])
    );

    // One series per interface on the pod network or a Multus one (no node label); lab-1's
    // `orphan` has no network and is left out, lab-2 has no interfaces.
    let vnic = |namespace, name, vnic, binding_type, binding_name, network, model| {
        (
            labels(&[
                ("namespace", namespace),
                ("name", name),
                ("vnic_name", vnic),
                ("binding_type", binding_type),
                ("binding_name", binding_name),
                ("network", network),
                ("model", model),
            ]),
            1.0,
        )
    };
    let mut expected: BTreeMap<String, f64> = VMIS
        .iter()
        .filter(|(_, name, _)| !name.starts_with("lab-"))
        .map(|(namespace, name, _)| {
            vnic(
                namespace,
                name,
                "default",
                "core",
                "masquerade",
                "pod networking",
                "<none>",
            )
        })
        .collect();
    expected.extend([
        vnic(
            "dev",
            "lab-1",
            "default",
            "core",
            "bridge",
            "pod networking",
            "virtio",
        ),
        vnic(
            "dev",
            "lab-1",
            "vlan10",
            "plugin",
            "passt",
            "dev/vlan10",
            "e1000e",
        ),
        vnic(
            "dev",
            "lab-1",
            "fast",
            "core",
            "sriov",
            "sriov-net",
            "<none>",
        ),
        vnic("dev", "lab-1", "plain", "", "", "plain-net", "<none>"),
    ]);
    assert_eq!(family(&metrics, "kubevirt_vmi_vnic_info"), expected);
}

#[tokio::test]
async fn migration_times_name_their_migration_by_uid_and_say_how_it_ended() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let key = |namespace, name, node, migration| {
        [
            ("namespace", namespace),
            ("name", name),
            ("node", node),
            ("migration_name", migration),
        ]
    };
    assert_eq!(
        family(&metrics, "kubevirt_vmi_migration_start_time_seconds"),
        BTreeMap::from([
            (
                labels(&key("prod", "db-1", "node-2", "mig-db-1")),
                at("2026-11-20T09:20:00Z")
            ),
            (
                labels(&key("prod", "db-2", "node-3", "mig-db-2")),
                at("2026-11-20T09:30:00Z")
            ),
            // Its migration object is gone: the name is empty.
            (
                labels(&key("dev", "lab-1", "node-1", "")),
                at("2026-11-20T11:10:00Z")
            ),
        ])
    );
    let with_status = |pairs: [(&'static str, &'static str); 4], status| {
        let mut all = pairs.to_vec();
        all.push(("status", status));
        labels(&all)
    };
    assert_eq!(
        family(&metrics, "kubevirt_vmi_migration_end_time_seconds"),
        BTreeMap::from([
            (
                with_status(key("prod", "db-2", "node-3", "mig-db-2"), "succeeded"),
                at("2026-11-20T09:30:42Z")
            ),
            (
                with_status(key("dev", "lab-1", "node-1", ""), ""),
                at("2026-11-20T11:10:30Z")
            ),
        ])
    );
}

#[tokio::test]
async fn migration_gauges_count_only_the_controllers_phases() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    // mig-lab-2 is WaitingForSync: in none of the four.
    for (name, value) in [
        ("kubevirt_vmi_migrations_in_pending_phase", 1.0),
        ("kubevirt_vmi_migrations_in_scheduling_phase", 1.0),
        ("kubevirt_vmi_migrations_in_running_phase", 4.0),
        ("kubevirt_vmi_migrations_in_unset_phase", 1.0),
    ] {
        assert_eq!(
            family(&metrics, name),
            BTreeMap::from([(String::new(), value)]),
            "{name}"
        );
    }
    assert_eq!(
        family(&metrics, "kubevirt_vmi_migration_succeeded"),
        BTreeMap::from([(
            labels(&[("vmi", "db-2"), ("vmim", "mig-db-2"), ("namespace", "prod")]),
            1.0
        )])
    );
    assert_eq!(
        family(&metrics, "kubevirt_vmi_migration_failed"),
        BTreeMap::from([(
            labels(&[("vmi", "ci-1"), ("vmim", "mig-ci-1"), ("namespace", "ci")]),
            1.0
        )])
    );
}

/// The example's VMs: namespace, name, creation time, status group of the transition metrics,
/// and the latest transition time of their Ready, Failure and Paused conditions.
const VMS: [(&str, &str, &str, &str, &str); 15] = [
    (
        "prod",
        "web-1",
        "2026-11-20T07:59:30Z",
        "running",
        "2026-11-20T08:00:30Z",
    ),
    (
        "prod",
        "web-2",
        "2026-11-20T08:09:30Z",
        "running",
        "2026-11-20T08:10:30Z",
    ),
    (
        "prod",
        "web-3",
        "2026-11-20T08:19:30Z",
        "running",
        "2026-11-20T08:20:30Z",
    ),
    (
        "prod",
        "db-1",
        "2026-11-20T08:29:30Z",
        "running",
        "2026-11-20T08:30:30Z",
    ),
    (
        "prod",
        "db-2",
        "2026-11-20T08:39:30Z",
        "migrating",
        "2026-11-20T08:40:30Z",
    ),
    (
        "ci",
        "ci-1",
        "2026-11-20T08:49:30Z",
        "non_running",
        "2026-11-20T08:50:30Z",
    ),
    (
        "ci",
        "ci-2",
        "2026-11-20T08:59:30Z",
        "error",
        "2026-11-20T09:01:30Z",
    ),
    (
        "ci",
        "batch-1",
        "2026-11-20T09:09:30Z",
        "starting",
        "2026-11-20T09:10:30Z",
    ),
    (
        "ci",
        "batch-2",
        "2026-11-20T09:19:30Z",
        "starting",
        "2026-11-20T09:20:30Z",
    ),
    (
        "dev",
        "pending-1",
        "2026-11-20T09:29:30Z",
        "error",
        "2026-11-20T09:31:30Z",
    ),
    (
        "dev",
        "dev-1",
        "2026-11-20T09:39:30Z",
        "non_running",
        "2026-11-20T09:54:30Z",
    ),
    (
        "dev",
        "dev-2",
        "2026-11-20T09:49:30Z",
        "error",
        "2026-11-20T09:50:30Z",
    ),
    (
        "dev",
        "archive-1",
        "2026-11-20T09:59:30Z",
        "non_running",
        "2026-11-20T10:00:30Z",
    ),
    // WaitingForReceiver is in no group: `error` here. Its Initialized condition is later, but
    // not one of the three types.
    (
        "dev",
        "lab-1",
        "2026-11-20T10:59:30Z",
        "error",
        "2026-11-20T11:02:00Z",
    ),
    // No conditions: -1.
    ("dev", "lab-2", "2026-11-20T11:04:30Z", "error", ""),
];

#[tokio::test]
async fn vm_info_labels_and_transition_timestamps() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    assert!(metrics.errors.is_empty(), "{:?}", metrics.errors);
    // os, workload, flavor (of the template), machine_type, instance_type, preference, status,
    // status_group.
    #[rustfmt::skip]
    let rows: [[&str; 8]; 15] = [
        ["fedora", "server", "small", "", "u1.medium", "fedora", "running", "running"],
        ["fedora", "server", "small", "", "u1.medium", "fedora", "running", "running"],
        ["fedora", "server", "small", "", "u1.medium", "fedora", "running", "running"],
        ["windows2k22", "server", "large", "", "u1.2xlarge", "<other>", "running", "running"],
        ["windows2k22", "server", "large", "", "u1.2xlarge", "<other>", "migrating", "migrating"],
        ["rhel9", "server", "medium", "", "<other>", "rhel.9", "stopped", "non_running"],
        ["rhel9", "server", "medium", "", "<other>", "rhel.9", "crashloopbackoff", "error"],
        ["rhel9", "highperformance", "medium", "", "<other>", "rhel.9", "starting", "starting"],
        ["rhel9", "highperformance", "medium", "", "<other>", "rhel.9", "starting", "starting"],
        ["fedora", "desktop", "tiny", "", "", "", "errorunschedulable", "error"],
        ["windows11", "desktop", "medium", "", "<other>", "<other>", "paused", "non_running"],
        ["fedora", "desktop", "small", "", "", "", "unknown", "error"],
        ["fedora", "server", "tiny", "", "", "", "stopped", "non_running"],
        // A lower-case kind still names the namespaced instance type.
        ["centos-stream9", "server", "custom", "q35", "custom", "<other>", "waitingforreceiver", "<unknown>"],
        // An instance type without a kind shows nothing; no status at all.
        ["", "", "", "", "", "", "", "<unknown>"],
    ];
    let expected: BTreeMap<String, f64> = rows
        .iter()
        .zip(VMS)
        .map(|(row, (namespace, name, ..))| {
            let names = [
                "os",
                "workload",
                "flavor",
                "machine_type",
                "instance_type",
                "preference",
                "status",
                "status_group",
            ];
            let mut pairs: Vec<(&str, &str)> = names.into_iter().zip(row.iter().copied()).collect();
            pairs.extend([("namespace", namespace), ("name", name)]);
            (labels(&pairs), 1.0)
        })
        .collect();
    assert_eq!(family(&metrics, "kubevirt_vm_info"), expected);

    for group in ["starting", "running", "migrating", "non_running", "error"] {
        let name = format!("kubevirt_vm_{group}_status_last_transition_timestamp_seconds");
        let expected: BTreeMap<String, f64> = VMS
            .iter()
            .map(|(namespace, vm, _, vm_group, latest)| {
                let value = match (*vm_group == group, *latest) {
                    (false, _) => 0.0,
                    (true, "") => -1.0,
                    (true, time) => at(time),
                };
                (labels(&[("namespace", namespace), ("name", vm)]), value)
            })
            .collect();
        assert_eq!(family(&metrics, &name), expected, "{name}");
    }

    let created: BTreeMap<String, f64> = VMS
        .iter()
        .map(|(namespace, name, created, ..)| {
            (
                labels(&[("namespace", namespace), ("name", name)]),
                at(created),
            )
        })
        .collect();
    assert_eq!(
        family(&metrics, "kubevirt_vm_create_date_timestamp_seconds"),
        created
    );
}

#[tokio::test]
async fn vm_labels_merge_the_template_over_the_vm() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let mut expected: BTreeMap<String, f64> = VMS
        .iter()
        .filter(|(_, name, ..)| !["web-1", "lab-1", "lab-2"].contains(name))
        .map(|(namespace, name, ..)| {
            (
                labels(&[
                    ("namespace", namespace),
                    ("name", name),
                    ("label_kubevirt_io_vm", name),
                ]),
                1.0,
            )
        })
        .collect();
    expected.extend([
        // The template's `app` wins; the empty `tier` is written empty, which Prometheus reads
        // as no label (the controller leaves it out).
        (
            labels(&[
                ("namespace", "prod"),
                ("name", "web-1"),
                ("label_app", "web-frontend"),
                ("label_team_example_com_owner", "storefront"),
                ("label_tier", ""),
                ("label_kubevirt_io_vm", "web-1"),
            ]),
            1.0,
        ),
        (
            labels(&[
                ("namespace", "dev"),
                ("name", "lab-1"),
                ("label_app_kubernetes_io_name", "lab"),
                ("label_kubevirt_io_vm", "lab-1"),
                ("label_kubevirt_io_domain", "lab-1"),
            ]),
            1.0,
        ),
    ]);
    assert_eq!(family(&metrics, "kubevirt_vm_labels"), expected);
}

#[tokio::test]
async fn vm_resources_disks_and_vnics() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let request = |namespace, name, resource, unit, source, value| {
        (
            labels(&[
                ("namespace", namespace),
                ("name", name),
                ("resource", resource),
                ("unit", unit),
                ("source", source),
            ]),
            value,
        )
    };
    // A memory request and nothing about CPUs: the domain's memory, three default CPU series,
    // one effective core and the request as effective memory.
    let mut expected: BTreeMap<String, f64> = VMS
        .iter()
        .filter(|(_, name, ..)| !name.starts_with("lab-"))
        .flat_map(|(namespace, name, ..)| {
            let memory = if ["db-1", "db-2", "dev-1"].contains(name) {
                8.0 * GIB
            } else {
                2.0 * GIB
            };
            [
                request(*namespace, *name, "memory", "bytes", "domain", memory),
                request(namespace, name, "cpu", "cores", "default", 1.0),
                request(namespace, name, "cpu", "threads", "default", 1.0),
                request(namespace, name, "cpu", "sockets", "default", 1.0),
                request(namespace, name, "cpu", "cores", "guest_effective", 1.0),
                request(
                    namespace,
                    name,
                    "memory",
                    "bytes",
                    "guest_effective",
                    memory,
                ),
            ]
        })
        .collect();
    expected.extend([
        // A topology of 2 cores × 2 threads (0 sockets left out), 500m requested, a guest
        // memory that wins over the request, huge pages of 2Mi (their size, not a total).
        request("dev", "lab-1", "memory", "bytes", "domain", 3.0 * GIB),
        request("dev", "lab-1", "memory", "bytes", "guest", 4.0 * GIB),
        request(
            "dev",
            "lab-1",
            "memory",
            "bytes",
            "hugepages",
            2.0 * 1024.0 * 1024.0,
        ),
        request("dev", "lab-1", "cpu", "cores", "domain", 2.0),
        request("dev", "lab-1", "cpu", "threads", "domain", 2.0),
        request("dev", "lab-1", "cpu", "cores", "requests", 0.5),
        request("dev", "lab-1", "cpu", "cores", "guest_effective", 4.0),
        request(
            "dev",
            "lab-1",
            "memory",
            "bytes",
            "guest_effective",
            4.0 * GIB,
        ),
        // A CPU request (so no defaults) and memory only as a limit.
        request("dev", "lab-2", "cpu", "cores", "requests", 2.0),
        request("dev", "lab-2", "cpu", "cores", "guest_effective", 1.0),
        request("dev", "lab-2", "memory", "bytes", "guest_effective", GIB),
    ]);
    assert_eq!(family(&metrics, "kubevirt_vm_resource_requests"), expected);

    let limit = |name, resource, unit, value| {
        let pairs = [
            ("namespace", "dev"),
            ("name", name),
            ("resource", resource),
            ("unit", unit),
        ];
        (labels(&pairs), value)
    };
    assert_eq!(
        family(&metrics, "kubevirt_vm_resource_limits"),
        BTreeMap::from([
            limit("lab-1", "memory", "bytes", 6.0 * GIB),
            limit("lab-1", "cpu", "cores", 2.0),
            limit("lab-2", "memory", "bytes", GIB),
        ])
    );

    // The DataVolume template's request wins over the claim's; without a template the claim's
    // request, not its capacity; a volume whose claim does not exist is left out.
    let disk = |name, device, claim, mode, value| {
        let pairs = [
            ("namespace", "prod"),
            ("name", name),
            ("device", device),
            ("persistentvolumeclaim", claim),
            ("volume_mode", mode),
        ];
        (labels(&pairs), value)
    };
    assert_eq!(
        family(&metrics, "kubevirt_vm_disk_allocated_size_bytes"),
        BTreeMap::from([
            disk(
                "web-1",
                "rootdisk",
                "web-1-rootdisk",
                "Filesystem",
                20.0 * GIB
            ),
            disk("web-1", "data", "web-1-data", "Block", 50.0 * GIB),
            disk("db-1", "os", "db-1-os", "Filesystem", 60.0 * GIB),
            disk("db-1", "logs", "db-1-logs", "Filesystem", 10.0 * GIB),
        ])
    );

    // The template's interfaces; `gone` has no network.
    let vnic = |vnic, binding_type, binding_name, network, model| {
        let pairs = [
            ("namespace", "dev"),
            ("name", "lab-1"),
            ("vnic_name", vnic),
            ("binding_type", binding_type),
            ("binding_name", binding_name),
            ("network", network),
            ("model", model),
        ];
        (labels(&pairs), 1.0)
    };
    assert_eq!(
        family(&metrics, "kubevirt_vm_vnic_info"),
        BTreeMap::from([
            vnic("default", "core", "masquerade", "pod networking", "<none>"),
            vnic("vlan10", "plugin", "passt", "dev/vlan10", "virtio"),
        ])
    );
}

#[tokio::test]
async fn the_example_writes_the_controllers_families_and_its_own() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    // The controller's 26, as Prometheus names their samples.
    let controller = [
        "kubevirt_vmi_info",
        "kubevirt_vmi_non_evictable",
        "kubevirt_vmi_status_addresses",
        "kubevirt_vmi_migration_start_time_seconds",
        "kubevirt_vmi_migration_end_time_seconds",
        "kubevirt_vmi_vnic_info",
        "kubevirt_vmi_launcher_memory_overhead_bytes",
        "kubevirt_vmi_contains_ephemeral_hotplug_volume",
        "kubevirt_vmi_migrations_in_pending_phase",
        "kubevirt_vmi_migrations_in_scheduling_phase",
        "kubevirt_vmi_migrations_in_running_phase",
        "kubevirt_vmi_migrations_in_unset_phase",
        "kubevirt_vmi_migration_succeeded",
        "kubevirt_vmi_migration_failed",
        "kubevirt_vm_info",
        "kubevirt_vm_labels",
        "kubevirt_vm_starting_status_last_transition_timestamp_seconds",
        "kubevirt_vm_running_status_last_transition_timestamp_seconds",
        "kubevirt_vm_migrating_status_last_transition_timestamp_seconds",
        "kubevirt_vm_non_running_status_last_transition_timestamp_seconds",
        "kubevirt_vm_error_status_last_transition_timestamp_seconds",
        "kubevirt_vm_resource_requests",
        "kubevirt_vm_resource_limits",
        "kubevirt_vm_disk_allocated_size_bytes",
        "kubevirt_vm_create_date_timestamp_seconds",
        "kubevirt_vm_vnic_info",
    ];
    for name in controller {
        assert!(!metrics.of(name).is_empty(), "{name}");
    }
    assert_eq!(
        family(&metrics, "kubevirt_vmi_number_of_outdated"),
        BTreeMap::from([(String::new(), 2.0)])
    );
    // Only the succeeded snapshot, at its creation time.
    assert_eq!(
        family(&metrics, "kubevirt_vmsnapshot_succeeded_timestamp_seconds"),
        BTreeMap::from([(
            labels(&[
                ("name", "web-1"),
                ("snapshot_name", "web-1-nightly"),
                ("namespace", "prod"),
            ]),
            at("2026-11-20T12:00:05Z")
        )])
    );
}
