//! Aggregates and derived metrics through the whole pipeline: compile, apply, remove, pull.

use std::collections::BTreeMap;

use periscope_plugin_api::batch::{FamilyKind, SourceKind, Update};
use serde_json::{Value, json};

use crate::event::SourceUpdate;
use crate::objects::tests::{apply_at, key};
use crate::objects::{CompileError, ObjectPipeline, Secrets};

use crate::config::test_resources as resources;

const VMI: &str = r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
prefix = "kubevirt_vmi"
labels = { name = "metadata.name" }
"#;

fn vmi_with(tables: &str) -> ObjectPipeline {
    ObjectPipeline::compile(&resources(&format!("{VMI}{tables}")), Secrets::Refused).unwrap()
}

fn errors(tables: &str) -> Vec<CompileError> {
    ObjectPipeline::compile(&resources(&format!("{VMI}{tables}")), Secrets::Refused).unwrap_err()
}

fn keys(errors: &[CompileError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

fn vmi(name: &str, phase: &str, node: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "uid": format!("uid-{name}"),
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": "web"},
        },
        "spec": {"domain": {"cpu": {"cores": 2}}},
        "status": {"phase": phase, "nodeName": node},
    })
}

/// Every sample of the sources pulled, by source id: metric name with labels (`name{a="b"}`)
/// to value.
fn pulled(pipeline: &ObjectPipeline, now_ms: i64) -> BTreeMap<String, BTreeMap<String, f64>> {
    pipeline
        .derived_updates(now_ms)
        .iter()
        .map(|update| (update.source_id().to_owned(), written(update)))
        .collect()
}

fn written(update: &SourceUpdate) -> BTreeMap<String, f64> {
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            (
                format!("{}{{{}}}", s.metric_name(), labels.join(",")),
                s.value(),
            )
        })
        .collect()
}

fn series(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

const PHASE_COUNT: &str = r#"
[[resources.aggregates]]
name = "phase_count"
type = "count"
by = { phase = "status.phase", node = "status.nodeName" }
"#;

#[test]
fn count_is_one_aggregate_source_with_a_sample_per_group() {
    let pipeline = vmi_with(PHASE_COUNT);
    assert!(pipeline.has_derived());
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("c", "Pending", ""), 0).unwrap();
    let updates = pipeline.derived_updates(5);
    assert_eq!(updates.len(), 1);
    let Update::Replace { source, samples } = updates[0].update() else {
        panic!("expected a replace");
    };
    assert_eq!(source.kind, SourceKind::Aggregate);
    assert_eq!(source.id, "aggregate:kubevirt_vmi_phase_count");
    assert_eq!(source.name, "kubevirt_vmi_phase_count");
    let first = samples.iter().next().unwrap();
    assert_eq!(first.family().kind, FamilyKind::Gauge);
    assert_eq!(first.timestamp_ms(), 5);
    assert_eq!(
        first.family().help,
        "Number of VirtualMachineInstance (kubevirt.io/v1) by node, phase."
    );
    assert_eq!(
        written(&updates[0]),
        series(&[
            ("kubevirt_vmi_phase_count{node=\"\",phase=\"Pending\"}", 1.0),
            (
                "kubevirt_vmi_phase_count{node=\"n1\",phase=\"Running\"}",
                2.0
            ),
        ])
    );
}

#[test]
fn counts_stay_exact_through_updates_deletes_and_relists() {
    let pipeline = vmi_with(PHASE_COUNT);
    for name in ["a", "b", "c"] {
        apply_at(&pipeline, &vmi(name, "Pending", ""), 0).unwrap();
    }
    pipeline.derived_updates(0);
    // b is scheduled, c deleted, and a relist applies everything again.
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    pipeline.remove(&key(&vmi("c", "Pending", ""))).unwrap();
    apply_at(&pipeline, &vmi("a", "Pending", ""), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    assert_eq!(
        pulled(&pipeline, 1)["aggregate:kubevirt_vmi_phase_count"],
        series(&[
            ("kubevirt_vmi_phase_count{node=\"\",phase=\"Pending\"}", 1.0),
            (
                "kubevirt_vmi_phase_count{node=\"n1\",phase=\"Running\"}",
                1.0
            ),
        ])
    );
    // The last object of a group gone, the group is gone: no zero series.
    pipeline.remove(&key(&vmi("a", "", ""))).unwrap();
    assert_eq!(
        pulled(&pipeline, 2)["aggregate:kubevirt_vmi_phase_count"],
        series(&[(
            "kubevirt_vmi_phase_count{node=\"n1\",phase=\"Running\"}",
            1.0
        )])
    );
}

#[test]
fn only_families_that_changed_are_sent_again() {
    let pipeline = vmi_with(&format!(
        "{PHASE_COUNT}\n[[resources.aggregates]]\nname = \"cores\"\ntype = \"sum\"\npath = \"spec.domain.cpu.cores\"\n"
    ));
    assert_eq!(pulled(&pipeline, 0).len(), 2, "every family is sent once");
    assert!(pulled(&pipeline, 1).is_empty());
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    assert_eq!(pulled(&pipeline, 2).len(), 2);
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    assert!(pulled(&pipeline, 3).is_empty(), "the same object again");
}

#[test]
fn an_aggregate_without_labels_is_zero_when_nothing_counts() {
    let pipeline = vmi_with(
        r#"
[[resources.aggregates]]
name = "running"
type = "count"
where = { path = "status.phase", in = ["Scheduled", "Running"] }
"#,
    );
    let id = "aggregate:kubevirt_vmi_running";
    assert_eq!(
        pulled(&pipeline, 0)[id],
        series(&[("kubevirt_vmi_running{}", 0.0)])
    );
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Scheduled", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("c", "Pending", "n1"), 0).unwrap();
    assert_eq!(
        pulled(&pipeline, 1)[id],
        series(&[("kubevirt_vmi_running{}", 2.0)])
    );
    apply_at(&pipeline, &vmi("a", "Succeeded", "n1"), 0).unwrap();
    pipeline.remove(&key(&vmi("b", "", ""))).unwrap();
    assert_eq!(
        pulled(&pipeline, 2)[id],
        series(&[("kubevirt_vmi_running{}", 0.0)])
    );
}

#[test]
fn not_in_keeps_everything_else_including_a_missing_value() {
    let pipeline = vmi_with(
        r#"
[[resources.aggregates]]
name = "unset"
type = "count"
where = { path = "status.phase", not_in = ["Pending", "Running"] }
"#,
    );
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    let mut no_phase = vmi("b", "", "");
    no_phase["status"] = json!({});
    apply_at(&pipeline, &no_phase, 0).unwrap();
    assert_eq!(
        pulled(&pipeline, 0)["aggregate:kubevirt_vmi_unset"],
        series(&[("kubevirt_vmi_unset{}", 1.0)])
    );
}

#[test]
fn sums_follow_updates_and_report_values_that_are_not_numbers() {
    let pipeline = vmi_with(
        r#"
[[resources.aggregates]]
name = "cpu_cores"
type = "sum"
path = "spec.domain.cpu.cores"
unit = "cores"
by = { node = "status.nodeName" }
"#,
    );
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    let mut big = vmi("b", "Running", "n1");
    big["spec"]["domain"]["cpu"]["cores"] = json!("500m");
    apply_at(&pipeline, &big, 0).unwrap();
    let id = "aggregate:kubevirt_vmi_cpu_cores";
    assert_eq!(
        pulled(&pipeline, 0)[id],
        series(&[("kubevirt_vmi_cpu_cores{node=\"n1\"}", 2.5)])
    );
    big["spec"]["domain"]["cpu"]["cores"] = json!("many");
    let (_, problems) = apply_at(&pipeline, &big, 0).unwrap();
    assert_eq!(
        problems,
        ["kubevirt_vmi_cpu_cores: spec.domain.cpu.cores: \"many\" is not a number"]
    );
    assert_eq!(
        pulled(&pipeline, 1)[id],
        series(&[("kubevirt_vmi_cpu_cores{node=\"n1\"}", 2.0)])
    );
}

#[test]
fn an_object_no_longer_selected_leaves_the_aggregate() {
    let pipeline = ObjectPipeline::compile(
        &resources(&format!("{VMI}label_selector = \"app=web\"\n{PHASE_COUNT}")),
        Secrets::Refused,
    )
    .unwrap();
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    let mut relabelled = vmi("a", "Running", "n1");
    relabelled["metadata"]["labels"]["app"] = json!("db");
    assert!(apply_at(&pipeline, &relabelled, 0).is_none());
    assert!(pulled(&pipeline, 0)["aggregate:kubevirt_vmi_phase_count"].is_empty());
}

#[test]
fn an_entry_with_only_aggregates_gives_objects_an_empty_replace() {
    let pipeline = vmi_with(PHASE_COUNT);
    let (update, _) = apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    assert!(written(&update).is_empty());
    assert_eq!(
        update.source_id(),
        "kubevirt.io/v1/VirtualMachineInstance/prod/a"
    );
}

#[test]
fn inputs_can_apply_concurrently() {
    let pipeline = vmi_with(PHASE_COUNT);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let pipeline = &pipeline;
            scope.spawn(move || {
                for i in 0..250 {
                    let name = format!("vm-{t}-{i}");
                    apply_at(pipeline, &vmi(&name, "Running", "n1"), 0).unwrap();
                }
            });
        }
    });
    assert_eq!(
        pulled(&pipeline, 0)["aggregate:kubevirt_vmi_phase_count"],
        series(&[(
            "kubevirt_vmi_phase_count{node=\"n1\",phase=\"Running\"}",
            1000.0
        )])
    );
}

#[test]
fn transitions_count_changes_between_observations() {
    let pipeline = vmi_with(
        r#"
[[resources.derived]]
name = "phase_transitions_total"
type = "transitions"
path = "status.phase"
by = { node = "status.nodeName" }
"#,
    );
    let id = "aggregate:kubevirt_vmi_phase_transitions";
    apply_at(&pipeline, &vmi("a", "Pending", ""), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    assert!(
        pulled(&pipeline, 0)[id].is_empty(),
        "first sightings count nothing"
    );
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Succeeded", "n1"), 0).unwrap();
    pipeline.remove(&key(&vmi("b", "", ""))).unwrap();
    let updates = pipeline.derived_updates(1);
    let Update::Replace { samples, .. } = updates[0].update() else {
        panic!("expected a replace");
    };
    assert_eq!(
        samples.iter().next().unwrap().family().kind,
        FamilyKind::Counter
    );
    assert_eq!(
        written(&updates[0]),
        series(&[
            (
                "kubevirt_vmi_phase_transitions_total{node=\"n1\",from=\"Pending\",to=\"Running\"}",
                1.0
            ),
            (
                "kubevirt_vmi_phase_transitions_total{node=\"n1\",from=\"Running\",to=\"Succeeded\"}",
                1.0
            ),
        ])
    );
    // Deleted and seen again: a first sighting, and the counters never go down.
    apply_at(&pipeline, &vmi("b", "Failed", "n1"), 0).unwrap();
    assert!(pulled(&pipeline, 2).is_empty());
}

const FROM_CREATION: &str = r#"
[[resources.derived]]
name = "phase_transition_time_from_creation_seconds"
type = "duration_histogram"
each = "status.phaseTransitionTimestamps[*]"
start = "$.metadata.creationTimestamp"
end = "phaseTransitionTimestamp"
by = { phase = "phase" }
buckets = [1, 10, 60]
"#;

fn with_transitions(name: &str, transitions: &[(&str, &str)]) -> Value {
    let mut object = vmi(name, transitions.last().map_or("", |t| t.0), "n1");
    object["status"]["phaseTransitionTimestamps"] = transitions
        .iter()
        .map(|(phase, at)| json!({"phase": phase, "phaseTransitionTimestamp": at}))
        .collect();
    object
}

#[test]
fn duration_histograms_count_each_transition_once() {
    let pipeline = vmi_with(FROM_CREATION);
    let pending = [("Pending", "2024-05-01T10:00:00.5Z")];
    let running = [
        ("Pending", "2024-05-01T10:00:00.5Z"),
        ("Running", "2024-05-01T10:00:30Z"),
    ];
    apply_at(&pipeline, &with_transitions("a", &pending), 0).unwrap();
    apply_at(&pipeline, &with_transitions("a", &running), 0).unwrap();
    apply_at(&pipeline, &with_transitions("a", &running), 0).unwrap();
    // Deleted and relisted: still counted once.
    pipeline.remove(&key(&with_transitions("a", &[]))).unwrap();
    apply_at(&pipeline, &with_transitions("a", &running), 0).unwrap();
    apply_at(&pipeline, &with_transitions("b", &running[1..]), 0).unwrap();
    let updates = pipeline.derived_updates(7);
    let Update::Replace { samples, .. } = updates[0].update() else {
        panic!("expected a replace");
    };
    let family = samples.iter().next().unwrap().family();
    assert_eq!(family.kind, FamilyKind::Histogram);
    assert_eq!(family.unit, "seconds");
    let p = "kubevirt_vmi_phase_transition_time_from_creation_seconds";
    let expected: Vec<(String, f64)> = [
        ("_bucket{phase=\"Pending\",le=\"1\"}", 1.0),
        ("_bucket{phase=\"Pending\",le=\"10\"}", 1.0),
        ("_bucket{phase=\"Pending\",le=\"60\"}", 1.0),
        ("_bucket{phase=\"Pending\",le=\"+Inf\"}", 1.0),
        ("_sum{phase=\"Pending\"}", 0.5),
        ("_count{phase=\"Pending\"}", 1.0),
        ("_bucket{phase=\"Running\",le=\"1\"}", 0.0),
        ("_bucket{phase=\"Running\",le=\"10\"}", 0.0),
        ("_bucket{phase=\"Running\",le=\"60\"}", 2.0),
        ("_bucket{phase=\"Running\",le=\"+Inf\"}", 2.0),
        ("_sum{phase=\"Running\"}", 60.0),
        ("_count{phase=\"Running\"}", 2.0),
    ]
    .iter()
    .map(|(s, v)| (format!("{p}{s}"), *v))
    .collect();
    let written: Vec<(String, f64)> = samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            (
                format!("{}{{{}}}", s.metric_name(), labels.join(",")),
                s.value(),
            )
        })
        .collect();
    assert_eq!(
        written, expected,
        "in order: buckets ascending, then sum and count"
    );
}

#[test]
fn ages_are_refreshed_for_every_known_object() {
    let pipeline = vmi_with(
        r#"
[[resources.derived]]
name = "age_seconds"
type = "age"
path = "metadata.creationTimestamp"
refresh = "10s"
"#,
    );
    let id = "aggregate:kubevirt_vmi_age_seconds";
    let created_ms = 1_714_557_600_000;
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    assert_eq!(
        pulled(&pipeline, created_ms + 5_000)[id],
        series(&[("kubevirt_vmi_age_seconds{name=\"a\"}", 5.0)])
    );
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    assert!(
        pulled(&pipeline, created_ms + 9_000).is_empty(),
        "not before the refresh"
    );
    pipeline.remove(&key(&vmi("a", "", ""))).unwrap();
    assert_eq!(
        pulled(&pipeline, created_ms + 15_000)[id],
        series(&[("kubevirt_vmi_age_seconds{name=\"b\"}", 15.0)])
    );
    assert_eq!(
        pulled(&pipeline, created_ms + 25_000)[id],
        series(&[("kubevirt_vmi_age_seconds{name=\"b\"}", 25.0)])
    );
}

#[test]
fn pipelines_without_aggregates_have_nothing_to_pull() {
    let pipeline = vmi_with(
        "[[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npath = \"status.restarts\"\n",
    );
    assert!(!pipeline.has_derived());
    assert!(pipeline.derived_updates(0).is_empty());
}

// Compile errors.

#[test]
fn keys_a_type_does_not_allow_or_needs_are_errors() {
    let errors = errors(
        r#"
[[resources.aggregates]]
name = "a"
type = "count"
path = "status.x"
convert = "number"

[[resources.aggregates]]
name = "b"
type = "sum"

[[resources.derived]]
name = "c"
type = "transitions"
buckets = [1]

[[resources.derived]]
name = "d"
type = "duration_histogram"
path = "status.x"

[[resources.derived]]
name = "e"
type = "age"
path = "metadata.creationTimestamp"
start = "x"
"#,
    );
    assert_eq!(
        keys(&errors),
        [
            "resources[0].aggregates[0].path",
            "resources[0].aggregates[0].convert",
            "resources[0].aggregates[1].path",
            "resources[0].derived[0].buckets",
            "resources[0].derived[0].path",
            "resources[0].derived[1].path",
            "resources[0].derived[1].start",
            "resources[0].derived[1].end",
            "resources[0].derived[1].buckets",
            "resources[0].derived[2].start",
        ]
    );
    assert_eq!(errors[2].message, "a sum aggregate needs a `path`");
}

#[test]
fn buckets_must_be_ascending_and_finite() {
    let text = |buckets: &str| {
        format!(
            "[[resources.derived]]\nname = \"h\"\ntype = \"duration_histogram\"\nstart = \"a\"\nend = \"b\"\nbuckets = {buckets}\n"
        )
    };
    for (buckets, message) in [
        ("[]", "at least one bucket"),
        ("[1, 5, 5]", "5 comes after 5"),
        ("[10, 1]", "1 comes after 10"),
        ("[1, inf]", "not a finite number"),
    ] {
        let source = format!("{VMI}{}", text(buckets));
        let errors = ObjectPipeline::compile(&resources(&source), Secrets::Refused).unwrap_err();
        assert_eq!(
            keys(&errors),
            ["resources[0].derived[0].buckets"],
            "{buckets}"
        );
        assert!(
            errors[0].message.contains(message),
            "{buckets}: {}",
            errors[0]
        );
        let span = errors[0].span.clone().unwrap();
        assert_eq!(&source[span], buckets);
    }
}

#[test]
fn bad_paths_filters_and_labels_are_named_by_key() {
    let errors = errors(
        r#"
[[resources.aggregates]]
name = "a"
type = "count"
by = { phase = "status..phase", "bad-label" = "x" }
where = { path = "status.phase", in = ["A"], not_in = ["B"] }

[[resources.aggregates]]
name = "b"
type = "count"
where = { path = "status[", in = [] }

[[resources.derived]]
name = "t"
type = "transitions"
path = "status.phase"
by = { to = "x" }

[[resources.derived]]
name = "h"
type = "duration_histogram"
start = "$metadata"
end = "b"
buckets = [1]
by = { le = "x" }

[[resources.derived]]
name = "g"
type = "age"
path = "metadata.creationTimestamp"
by = { name = "x" }
refresh = "0s"
"#,
    );
    assert_eq!(
        keys(&errors),
        [
            "resources[0].aggregates[0].by.bad-label",
            "resources[0].aggregates[0].by.phase",
            "resources[0].aggregates[0].where",
            "resources[0].aggregates[1].where.path",
            "resources[0].aggregates[1].where.in",
            "resources[0].derived[0].by.to",
            "resources[0].derived[1].by.le",
            "resources[0].derived[1].start",
            "resources[0].derived[2].by.name",
            "resources[0].derived[2].refresh",
        ]
    );
}

#[test]
fn an_aggregate_family_must_have_a_name_of_its_own() {
    let errors = errors(
        r#"
[[resources.metrics]]
name = "phase_count"
type = "gauge"
path = "status.x"

[[resources.aggregates]]
name = "phase_count"
type = "count"

[[resources.derived]]
name = "moves_total"
type = "transitions"
path = "status.phase"

[[resources.derived]]
name = "moves"
type = "age"
path = "metadata.creationTimestamp"

[[resources.derived]]
name = "bad name"
type = "age"
path = "metadata.creationTimestamp"
"#,
    );
    assert_eq!(
        keys(&errors),
        [
            "resources[0].aggregates[0].name",
            "resources[0].derived[1].name",
            "resources[0].derived[2].name",
        ]
    );
    assert!(
        errors[0]
            .message
            .contains("already defined by resources[0].metrics[0].name"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_entry_with_only_aggregates_is_fine_and_one_with_nothing_is_not() {
    assert!(
        ObjectPipeline::compile(&resources(&format!("{VMI}{PHASE_COUNT}")), Secrets::Refused)
            .is_ok()
    );
    let errors = errors("");
    assert_eq!(keys(&errors), ["resources[0].metrics"]);
}

#[test]
fn aggregates_take_expressions_for_the_sum_the_groups_and_the_filter() {
    let pipeline = vmi_with(
        r#"
[[resources.aggregates]]
name = "cores"
type = "sum"
path = { expr = "object.spec.domain.cpu.cores * 2" }
by = { node = { expr = "object.status.nodeName.upperAscii()" } }
where = "object.status.phase != 'Pending'"
"#,
    );
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("b", "Running", "n1"), 0).unwrap();
    apply_at(&pipeline, &vmi("c", "Pending", "n2"), 0).unwrap();
    let mut broken = vmi("d", "Running", "n2");
    broken["spec"]["domain"]["cpu"]["cores"] = json!("two");
    let (_, problems) = pipeline.apply(&key(&broken), &broken, 0).expect("selected");
    assert_eq!(problems.expressions.len(), 1, "{problems:?}");
    assert_eq!(problems.expressions[0].metric, "kubevirt_vmi_cores");
    assert_eq!(
        pulled(&pipeline, 1)["aggregate:kubevirt_vmi_cores"],
        series(&[("kubevirt_vmi_cores{node=\"N1\"}", 8.0)])
    );
}

#[test]
fn derived_metrics_take_expressions_for_their_values_times_and_labels() {
    let pipeline = vmi_with(
        r#"
[[resources.derived]]
name = "phase_transitions_total"
type = "transitions"
path = { expr = "object.status.phase.lowerAscii()" }

[[resources.derived]]
name = "running_seconds"
type = "duration_histogram"
each = "status.phaseTransitionTimestamps[*]"
start = { expr = "object.metadata.creationTimestamp" }
end = { expr = "timestamp(item.phaseTransitionTimestamp) + duration('1s')" }
by = { phase = { expr = "item.phase.lowerAscii()" } }
buckets = [10, 60]

[[resources.derived]]
name = "age_seconds"
type = "age"
path = { expr = "object.metadata.creationTimestamp" }
"#,
    );
    let running = [
        ("Pending", "2024-05-01T10:00:00Z"),
        ("Running", "2024-05-01T10:00:29Z"),
    ];
    apply_at(&pipeline, &with_transitions("a", &running[..1]), 0).unwrap();
    apply_at(&pipeline, &with_transitions("a", &running), 0).unwrap();
    let created_ms = 1_714_557_600_000;
    let pulled = pulled(&pipeline, created_ms + 2_000);
    assert_eq!(
        pulled["aggregate:kubevirt_vmi_phase_transitions"],
        series(&[(
            "kubevirt_vmi_phase_transitions_total{from=\"pending\",to=\"running\"}",
            1.0
        )])
    );
    let histogram = &pulled["aggregate:kubevirt_vmi_running_seconds"];
    assert_eq!(
        histogram["kubevirt_vmi_running_seconds_sum{phase=\"running\"}"],
        30.0
    );
    assert_eq!(
        histogram["kubevirt_vmi_running_seconds_sum{phase=\"pending\"}"],
        1.0
    );
    assert_eq!(
        pulled["aggregate:kubevirt_vmi_age_seconds"],
        series(&[("kubevirt_vmi_age_seconds{name=\"a\"}", 2.0)])
    );
}

#[test]
fn a_failing_transition_expression_keeps_the_last_value() {
    let pipeline = vmi_with(
        r#"
[[resources.derived]]
name = "phase_transitions_total"
type = "transitions"
path = { expr = "object.status.phase" }
"#,
    );
    apply_at(&pipeline, &vmi("a", "Pending", ""), 0).unwrap();
    let mut broken = vmi("a", "Pending", "");
    broken["status"] = json!({});
    let (_, problems) = pipeline.apply(&key(&broken), &broken, 0).unwrap();
    assert_eq!(problems.expressions.len(), 1, "{problems:?}");
    apply_at(&pipeline, &vmi("a", "Running", ""), 0).unwrap();
    assert_eq!(
        pulled(&pipeline, 1)["aggregate:kubevirt_vmi_phase_transitions"],
        series(&[(
            "kubevirt_vmi_phase_transitions_total{from=\"Pending\",to=\"Running\"}",
            1.0
        )])
    );
}

#[test]
fn entry_labels_written_as_expressions_reach_ages() {
    let text = r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
labels = { name = { expr = "object.metadata.name + '!'" } }

[[resources.derived]]
name = "age_seconds"
type = "age"
path = "metadata.creationTimestamp"
"#;
    let pipeline = ObjectPipeline::compile(&resources(text), Secrets::Refused).unwrap();
    apply_at(&pipeline, &vmi("a", "Running", "n1"), 0).unwrap();
    let created_ms = 1_714_557_600_000;
    assert_eq!(
        pulled(&pipeline, created_ms + 1_000)["aggregate:age_seconds"],
        series(&[("age_seconds{name=\"a!\"}", 1.0)])
    );
}

#[test]
fn bad_expressions_in_aggregates_and_derived_metrics_are_named_by_key() {
    let errors = errors(
        r#"
[[resources.aggregates]]
name = "c"
type = "count"
by = { node = { expr = "object.status.(" } }
where = "item.phase == 'x'"

[[resources.derived]]
name = "t"
type = "transitions"
path = { expr = "object." }
"#,
    );
    assert_eq!(
        keys(&errors),
        [
            "resources[0].aggregates[0].by.node",
            "resources[0].aggregates[0].where",
            "resources[0].derived[0].path",
        ]
    );
    assert!(
        errors[1].message.contains("unknown variable `item`"),
        "{errors:?}"
    );
}
