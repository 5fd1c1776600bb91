//! The KubeVirt example (`examples/kubevirt`): its `[[resources]]` run over its objects through the
//! offline input, and the metrics its README documents, with their exact values.

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
    ]
    .into_iter()
    .collect();
    let count: BTreeMap<String, f64> = count.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(count, expected);
    assert_eq!(count.values().sum::<f64>(), 12.0);
}

#[tokio::test]
async fn migration_counts_follow_kubevirt_phase_groups() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    for (name, value) in [
        ("kubevirt_vmi_migrations_in_pending_phase", 1.0),
        ("kubevirt_vmi_migrations_in_scheduling_phase", 1.0),
        ("kubevirt_vmi_migrations_in_running_phase", 4.0),
        ("kubevirt_vmi_migrations_in_unset_phase", 1.0),
    ] {
        assert_eq!(metrics.of(name), expected(&[("", value)]), "{name}");
    }
    assert_eq!(
        metrics.of("kubevirt_vmi_migration_succeeded"),
        expected(&[(r#"namespace="prod",vmi="db-2",vmim="mig-db-2""#, 1.0)])
    );
    assert_eq!(
        metrics.of("kubevirt_vmi_migration_failed"),
        expected(&[(r#"namespace="ci",vmi="ci-1",vmim="mig-ci-1""#, 1.0)])
    );
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
async fn info_metrics_carry_kubevirt_label_names() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let vmi_info = metrics.of("kubevirt_vmi_info");
    assert_eq!(vmi_info.len(), 12);
    assert_eq!(
        vmi_info[r#"name="db-1",namespace="prod",node="node-2",flavor="large",guest_os_arch="x86_64",guest_os_kernel_release="20348",guest_os_machine="pc-q35-rhel9.4.0",guest_os_name="Microsoft Windows Server 2022 Datacenter",guest_os_version_id="2022",instance_type="u1.2xlarge",os="windows2k22",phase="Running",preference="windows.2k22",workload="server""#],
        1.0
    );
    let vm_info = metrics.of("kubevirt_vm_info");
    assert_eq!(vm_info.len(), 13);
    assert_eq!(
        vm_info[r#"name="db-2",namespace="prod",flavor="large",instance_type="u1.2xlarge",os="windows2k22",preference="windows.2k22",status="Migrating",workload="server""#],
        1.0
    );
    let statuses = metrics.of("kubevirt_vm_printable_status");
    let current: BTreeMap<&str, f64> = statuses.into_iter().filter(|(_, v)| *v == 1.0).collect();
    assert_eq!(current.len(), 13, "one current status per VM");
    assert_eq!(
        current
            .keys()
            .filter(|k| k.ends_with(r#"status="Running""#))
            .count(),
        4
    );
    assert_eq!(
        metrics.of("kubevirt_vm_create_date_timestamp_seconds")[r#"name="archive-1",namespace="dev""#],
        parse_timestamp("2026-11-20T09:59:30Z").unwrap()
    );
}

#[tokio::test]
async fn migration_times_come_from_the_vmi_migration_state() {
    let metrics = read(pipeline(), &example().join("objects")).await;
    let time = |at: &str| parse_timestamp(at).unwrap();
    assert_eq!(
        metrics.of("kubevirt_vmi_migration_start_time_seconds"),
        expected(&[
            (
                r#"name="db-1",namespace="prod",node="node-2""#,
                time("2026-11-20T09:20:00Z")
            ),
            (
                r#"name="db-2",namespace="prod",node="node-3""#,
                time("2026-11-20T09:30:00Z")
            ),
        ])
    );
    assert_eq!(
        metrics.of("kubevirt_vmi_migration_end_time_seconds"),
        expected(&[(
            r#"name="db-2",namespace="prod",node="node-3""#,
            time("2026-11-20T09:30:42Z")
        )])
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
    while removed < 9 {
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
