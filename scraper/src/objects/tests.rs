use periscope_plugin_api::batch::{FamilyKind, SourceKind, Suffix, Update};
use serde_json::{Value, json};

use super::*;

use crate::config::test_resources as resources;

/// The key of a test object, which has one.
pub(super) fn key(object: &Value) -> ObjectKey {
    ObjectKey::of(object).expect("a test object has apiVersion, kind and name")
}

/// Applies a test object with its key.
pub(super) fn apply_at(
    pipeline: &ObjectPipeline,
    object: &Value,
    now_ms: i64,
) -> Option<(SourceUpdate, Vec<String>)> {
    pipeline
        .apply(&key(object), object, now_ms)
        .map(|(update, mut problems)| {
            let expressions = problems.expressions.into_iter().map(|f| f.message);
            problems.messages.extend(expressions);
            (update, problems.messages)
        })
}

fn pipeline(text: &str) -> ObjectPipeline {
    ObjectPipeline::compile(&resources(text), Secrets::Refused).unwrap()
}

fn errors(text: &str) -> Vec<CompileError> {
    ObjectPipeline::compile(&resources(text), Secrets::Refused).unwrap_err()
}

/// One sample, written out: metric name, labels, value.
type Written = (String, Vec<(String, String)>, f64);

fn written(update: &SourceUpdate) -> Vec<Written> {
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    samples
        .iter()
        .map(|s| {
            let labels = s
                .labels()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            (s.metric_name(), labels, s.value())
        })
        .collect()
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Written {
    let labels = labels
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    (name.to_owned(), labels, value)
}

fn apply(pipeline: &ObjectPipeline, object: &Value) -> (Vec<Written>, Vec<String>) {
    let (update, problems) = apply_at(pipeline, object, 1_000).unwrap();
    (written(&update), problems)
}

fn vmi() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": "vm1",
            "namespace": "prod",
            "uid": "uid-1",
            "labels": {"app": "web"},
        },
        "status": {
            "phase": "Running",
            "nodeName": "node-1",
            "memory": "2Gi",
            "restarts": 3,
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Paused", "status": "False"},
            ],
            "interfaces": [
                {"name": "eth0", "ipAddress": "10.0.0.1", "mtu": 1500},
                {"name": "eth1", "ipAddress": "10.0.0.2", "mtu": 9000},
            ],
        },
    })
}

const VMI: &str = r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
prefix = "kubevirt_vmi"
labels = { name = "metadata.name", node = "status.nodeName" }
"#;

fn vmi_with(metrics: &str) -> ObjectPipeline {
    pipeline(&format!("{VMI}{metrics}"))
}

#[test]
fn gauge_reads_a_quantity_with_the_entry_labels() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "memory_bytes"
type = "gauge"
path = "status.memory"
unit = "bytes"
"#,
    );
    let (update, problems) = apply_at(&pipeline, &vmi(), 1_234).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let Update::Replace { source, samples } = update.update() else {
        panic!("expected a replace");
    };
    let sample = samples.iter().next().unwrap();
    assert_eq!(sample.metric_name(), "kubevirt_vmi_memory_bytes");
    assert_eq!(sample.family().kind, FamilyKind::Gauge);
    assert_eq!(sample.family().unit, "bytes");
    assert_eq!(
        sample.family().help,
        "Field `status.memory` of VirtualMachineInstance (kubevirt.io/v1)."
    );
    assert_eq!(sample.value(), 2_147_483_648.0);
    assert_eq!(sample.timestamp_ms(), 1_234);
    assert_eq!(
        sample.labels().collect::<Vec<_>>(),
        [("name", "vm1"), ("node", "node-1")]
    );
    assert_eq!(source.kind, SourceKind::Object);
    assert_eq!(source.id, "kubevirt.io/v1/VirtualMachineInstance/prod/vm1");
    assert_eq!(source.api_version, "kubevirt.io/v1");
    assert_eq!(source.object_kind, "VirtualMachineInstance");
    assert_eq!(source.namespace, "prod");
    assert_eq!(source.name, "vm1");
    assert_eq!(source.uid, "uid-1");
}

#[test]
fn ready_gauge_comes_from_a_condition_selector() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "ready"
type = "gauge"
path = "status.conditions[type=Ready].status"
"#,
    );
    let (samples, _) = apply(&pipeline, &vmi());
    assert_eq!(
        samples,
        [sample(
            "kubevirt_vmi_ready",
            &[("name", "vm1"), ("node", "node-1")],
            1.0
        )]
    );
}

#[test]
fn counter_family_drops_total_and_samples_add_it_back() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "restarts_total"
type = "counter"
path = "status.restarts"
"#,
    );
    let (update, _) = apply_at(&pipeline, &vmi(), 0).unwrap();
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    let sample = samples.iter().next().unwrap();
    assert_eq!(sample.family().name, "kubevirt_vmi_restarts");
    assert_eq!(sample.family().kind, FamilyKind::Counter);
    assert_eq!(sample.suffix(), Suffix::Total);
    assert_eq!(sample.metric_name(), "kubevirt_vmi_restarts_total");
    assert_eq!(sample.value(), 3.0);
}

#[test]
fn info_is_one_with_its_labels() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "info"
type = "info"
labels = { phase = "status.phase", app = 'metadata.labels["app"]' }
"#,
    );
    let (update, _) = apply_at(&pipeline, &vmi(), 0).unwrap();
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    let first = samples.iter().next().unwrap();
    assert_eq!(first.family().name, "kubevirt_vmi");
    assert_eq!(first.family().kind, FamilyKind::Info);
    assert_eq!(first.suffix(), Suffix::Info);
    assert_eq!(
        written(&update),
        [sample(
            "kubevirt_vmi_info",
            &[
                ("name", "vm1"),
                ("node", "node-1"),
                ("app", "web"),
                ("phase", "Running")
            ],
            1.0
        )]
    );
}

#[test]
fn stateset_writes_one_sample_per_state() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "phase"
type = "stateset"
path = "status.phase"
states = ["Pending", "Running"]
"#,
    );
    let (update, problems) = apply_at(&pipeline, &vmi(), 0).unwrap();
    assert!(problems.is_empty());
    let Update::Replace { samples, .. } = update.update() else {
        panic!("expected a replace");
    };
    assert_eq!(
        samples.iter().next().unwrap().family().kind,
        FamilyKind::StateSet
    );
    let common = [("name", "vm1"), ("node", "node-1")];
    assert_eq!(
        written(&update),
        [
            sample(
                "kubevirt_vmi_phase",
                &[common[0], common[1], ("kubevirt_vmi_phase", "Pending")],
                0.0
            ),
            sample(
                "kubevirt_vmi_phase",
                &[common[0], common[1], ("kubevirt_vmi_phase", "Running")],
                1.0
            ),
        ]
    );
}

#[test]
fn stateset_with_an_unknown_state_is_all_zero_and_a_problem() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "phase"
type = "stateset"
path = "status.phase"
states = ["Pending", "Failed"]
label = "phase"
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    let values: Vec<_> = samples.iter().map(|s| (s.1[2].1.as_str(), s.2)).collect();
    assert_eq!(values, [("Pending", 0.0), ("Failed", 0.0)]);
    assert_eq!(samples[0].1[2].0, "phase");
    assert_eq!(
        problems,
        [
            "kubevirt_vmi_phase: status.phase: \"Running\" is not one of the states [\"Pending\", \"Failed\"]"
        ]
    );
}

#[test]
fn each_writes_one_sample_per_item_with_item_relative_paths() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "interface_mtu"
type = "gauge"
each = "status.interfaces[*]"
path = "mtu"
labels = { interface = "name", ip = "ipAddress" }

[[resources.metrics]]
name = "interface_info"
type = "info"
each = "status.interfaces[*].name"
labels = { interface = "." }
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(problems.is_empty());
    let common = [("name", "vm1"), ("node", "node-1")];
    assert_eq!(
        samples,
        [
            sample(
                "kubevirt_vmi_interface_mtu",
                &[
                    common[0],
                    common[1],
                    ("interface", "eth0"),
                    ("ip", "10.0.0.1")
                ],
                1500.0
            ),
            sample(
                "kubevirt_vmi_interface_mtu",
                &[
                    common[0],
                    common[1],
                    ("interface", "eth1"),
                    ("ip", "10.0.0.2")
                ],
                9000.0
            ),
            sample(
                "kubevirt_vmi_interface_info",
                &[common[0], common[1], ("interface", "eth0")],
                1.0
            ),
            sample(
                "kubevirt_vmi_interface_info",
                &[common[0], common[1], ("interface", "eth1")],
                1.0
            ),
        ]
    );
}

#[test]
fn missing_values_use_the_default_or_write_nothing() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "with_default"
type = "gauge"
path = "status.nothing"
default = -1

[[resources.metrics]]
name = "without_default"
type = "gauge"
path = "status.nothing"
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(problems.is_empty());
    assert_eq!(
        samples,
        [sample(
            "kubevirt_vmi_with_default",
            &[("name", "vm1"), ("node", "node-1")],
            -1.0
        )]
    );
}

#[test]
fn value_map_is_tried_before_conversion() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "running"
type = "gauge"
path = "status.phase"
value_map = { Running = 1, Paused = 0.5 }

[[resources.metrics]]
name = "ready"
type = "gauge"
path = "status.conditions[type=Ready].status"
value_map = { Running = 7 }
"#,
    );
    let (samples, _) = apply(&pipeline, &vmi());
    let values: Vec<_> = samples.iter().map(|s| (s.0.as_str(), s.2)).collect();
    assert_eq!(
        values,
        [("kubevirt_vmi_running", 1.0), ("kubevirt_vmi_ready", 1.0)]
    );
}

#[test]
fn a_value_that_is_not_a_number_is_a_problem_and_no_sample() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "memory"
type = "gauge"
path = "status.memory"

[[resources.metrics]]
name = "restarts"
type = "gauge"
path = "status.restarts"
"#,
    );
    let mut object = vmi();
    object["status"]["memory"] = json!("lots");
    let (samples, problems) = apply(&pipeline, &object);
    assert_eq!(
        problems,
        ["kubevirt_vmi_memory: status.memory: \"lots\" is not a number"]
    );
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].0, "kubevirt_vmi_restarts");
}

#[test]
fn a_value_path_reaching_several_values_asks_for_each() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "mtu"
type = "gauge"
path = "status.interfaces[*].mtu"
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(samples.is_empty());
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("kubevirt_vmi_mtu: status.interfaces[*].mtu: reached 2 values")
    );
    assert!(problems[0].contains("use `each`"));
}

#[test]
fn label_paths_join_several_values_and_leave_missing_ones_empty() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "info"
type = "info"
labels = { ips = "status.interfaces[*].ipAddress", missing = "status.nope", mtu = "status.interfaces[0].mtu", conditions = "status.conditions[type=Ready]" }
"#,
    );
    let (samples, _) = apply(&pipeline, &vmi());
    let labels: Vec<(&str, &str)> = samples[0]
        .1
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("name", "vm1"),
            ("node", "node-1"),
            ("conditions", r#"{"status":"True","type":"Ready"}"#),
            ("ips", "10.0.0.1,10.0.0.2"),
            ("missing", ""),
            ("mtu", "1500"),
        ]
    );
}

#[test]
fn objects_of_other_kinds_are_not_applied() {
    let pipeline = vmi_with(
        "[[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npath = \"status.restarts\"\n",
    );
    let mut object = vmi();
    object["kind"] = json!("VirtualMachine");
    assert!(apply_at(&pipeline, &object, 0).is_none());
    assert!(pipeline.remove(&key(&object)).is_none());
    object["kind"] = json!("VirtualMachineInstance");
    object["apiVersion"] = json!("kubevirt.io/v1alpha3");
    assert!(apply_at(&pipeline, &object, 0).is_none());
}

#[test]
fn namespaces_and_selectors_narrow_the_objects() {
    let entry = |extra: &str| {
        pipeline(&format!(
            "[[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachineInstance\"\n{extra}\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npath = \"status.restarts\"\n"
        ))
    };
    let selected = |extra: &str| apply_at(&entry(extra), &vmi(), 0).is_some();
    assert!(selected("namespaces = [\"dev\", \"prod\"]"));
    assert!(!selected("namespaces = [\"dev\"]"));
    assert!(selected("label_selector = \"app in (web, db)\""));
    assert!(!selected("label_selector = \"app=db\""));
    assert!(selected("field_selector = \"metadata.name=vm1\""));
    assert!(!selected("field_selector = \"metadata.namespace!=prod\""));
}

#[test]
fn every_matching_entry_writes_into_the_same_replace() {
    let pipeline = pipeline(
        r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
  [[resources.metrics]]
  name = "a"
  type = "gauge"
  path = "status.restarts"

[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
label_selector = "app=web"
  [[resources.metrics]]
  name = "b"
  type = "gauge"
  path = "status.restarts"
"#,
    );
    let (samples, _) = apply(&pipeline, &vmi());
    let names: Vec<_> = samples.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn cluster_scoped_objects_have_an_empty_namespace_in_their_id() {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
    assert_eq!(key(&node).source_id(), "v1/Node//node-1");
    assert_eq!(ObjectKey::of(&json!({"kind": "Node"})), None);
}

#[test]
fn remove_ignores_selectors_so_deselected_objects_can_be_removed() {
    let pipeline = pipeline(
        "[[resources]]\ngroup = \"kubevirt.io\"\nversion = \"v1\"\nkind = \"VirtualMachineInstance\"\n\
         label_selector = \"app=db\"\n\
         [[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npath = \"status.restarts\"\n",
    );
    assert!(apply_at(&pipeline, &vmi(), 0).is_none());
    let removal = pipeline.remove(&key(&vmi())).unwrap();
    assert!(removal.is_remove());
    assert_eq!(
        removal.source_id(),
        "kubevirt.io/v1/VirtualMachineInstance/prod/vm1"
    );
    assert_eq!(removal.update().source().uid, "uid-1");
}

// Compile errors.

fn keys(errors: &[CompileError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn a_bad_path_is_named_by_key_and_span() {
    let text = format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\npath = \"status..phase\"\n"
    );
    let errors = errors(&text);
    assert_eq!(keys(&errors), ["resources[0].metrics[0].path"]);
    let span = errors[0].span.clone().unwrap();
    assert_eq!(&text[span], "\"status..phase\"");
    assert!(
        errors[0].message.contains("at character 8"),
        "{}",
        errors[0]
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let errors = errors(
        r#"
[[resources]]
version = "v1"
kind = "Node"
prefix = "node"
labels = { "bad-label" = "metadata.name", __reserved = "metadata.name" }
label_selector = "role in (a"
field_selector = "status.phase=Running"

  [[resources.metrics]]
  name = "9lives"
  type = "gauge"
  path = "status.x"

  [[resources.metrics]]
  name = "ok"
  type = "gauge"
  path = "status[x"
  each = "status[*"
"#,
    );
    let mut keys = keys(&errors);
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "resources[0].field_selector",
            "resources[0].label_selector",
            "resources[0].labels.__reserved",
            "resources[0].labels.bad-label",
            "resources[0].metrics[1].each",
            "resources[0].metrics[1].path",
        ]
    );
}

#[test]
fn invalid_metric_names_and_prefixes_are_errors() {
    let errors = errors(
        "[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
         [[resources.metrics]]\nname = \"bad-name\"\ntype = \"gauge\"\npath = \"a\"\n\
         [[resources]]\nversion = \"v1\"\nkind = \"Pod\"\nprefix = \"1pod\"\n\
         [[resources.metrics]]\nname = \"fine\"\ntype = \"gauge\"\npath = \"a\"\n",
    );
    assert_eq!(
        keys(&errors),
        ["resources[0].metrics[0].name", "resources[1].prefix"]
    );
}

#[test]
fn a_family_with_two_types_across_entries_is_an_error() {
    let errors = errors(
        "[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n\
         [[resources.metrics]]\nname = \"things\"\ntype = \"gauge\"\npath = \"a\"\n\
         [[resources]]\nversion = \"v1\"\nkind = \"Pod\"\n\
         [[resources.metrics]]\nname = \"things_total\"\ntype = \"counter\"\npath = \"a\"\n\
         [[resources]]\nversion = \"v1\"\nkind = \"Service\"\n\
         [[resources.metrics]]\nname = \"things\"\ntype = \"gauge\"\npath = \"a\"\n",
    );
    assert_eq!(keys(&errors), ["resources[1].metrics[0].name"]);
    assert!(
        errors[0]
            .message
            .contains("is a gauge in resources[0].metrics[0].name but a counter here"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_family_defined_twice_in_one_entry_is_an_error() {
    let errors = errors(&format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"counter\"\npath = \"a\"\n\
         [[resources.metrics]]\nname = \"x_total\"\ntype = \"counter\"\npath = \"a\"\n"
    ));
    assert_eq!(keys(&errors), ["resources[0].metrics[1].name"]);
}

#[test]
fn keys_a_metric_type_does_not_allow_are_errors() {
    let errors = errors(&format!(
        "{VMI}[[resources.metrics]]\nname = \"info\"\ntype = \"info\"\npath = \"a\"\ndefault = 1\n\
         [[resources.metrics]]\nname = \"phase\"\ntype = \"stateset\"\npath = \"a\"\nstates = [\"A\"]\nconvert = \"number\"\nunit = \"x\"\n\
         [[resources.metrics]]\nname = \"g\"\ntype = \"gauge\"\npath = \"a\"\nstates = [\"A\"]\nlabel = \"l\"\n"
    ));
    assert_eq!(
        keys(&errors),
        [
            "resources[0].metrics[0].path",
            "resources[0].metrics[0].default",
            "resources[0].metrics[1].unit",
            "resources[0].metrics[1].convert",
            "resources[0].metrics[2].states",
            "resources[0].metrics[2].label",
        ]
    );
    assert_eq!(errors[0].message, "`path` is not allowed for a info metric");
}

#[test]
fn keys_a_metric_type_needs_are_errors_when_missing() {
    let errors = errors(&format!(
        "{VMI}[[resources.metrics]]\nname = \"g\"\ntype = \"gauge\"\n\
         [[resources.metrics]]\nname = \"s\"\ntype = \"stateset\"\n\
         [[resources.metrics]]\nname = \"e\"\ntype = \"stateset\"\npath = \"a\"\nstates = []\n\
         [[resources.metrics]]\nname = \"d\"\ntype = \"stateset\"\npath = \"a\"\nstates = [\"A\", \"A\"]\n"
    ));
    assert_eq!(
        keys(&errors),
        [
            "resources[0].metrics[0].path",
            "resources[0].metrics[1].path",
            "resources[0].metrics[1].states",
            "resources[0].metrics[2].states",
            "resources[0].metrics[3].states",
        ]
    );
}

#[test]
fn a_metric_label_may_not_repeat_an_entry_label_or_the_state_label() {
    let errors = errors(&format!(
        "{VMI}[[resources.metrics]]\nname = \"i\"\ntype = \"info\"\nlabels = {{ node = \"a\" }}\n\
         [[resources.metrics]]\nname = \"s\"\ntype = \"stateset\"\npath = \"a\"\nstates = [\"A\"]\nlabel = \"state\"\nlabels = {{ state = \"b\" }}\n"
    ));
    assert_eq!(
        keys(&errors),
        [
            "resources[0].metrics[0].labels.node",
            "resources[0].metrics[1].labels.state",
        ]
    );
}

#[test]
fn an_entry_without_metrics_is_an_error() {
    let errors = errors("[[resources]]\nversion = \"v1\"\nkind = \"Node\"\n");
    assert_eq!(keys(&errors), ["resources[0].metrics"]);
}

#[test]
fn an_expression_gives_a_value_with_the_same_conversions_as_a_path() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "ready"
type = "gauge"
expr = "object.status.conditions.filter(c, c.type == 'Ready' && c.status == 'True').size() > 0 ? 1 : 0"

[[resources.metrics]]
name = "memory_bytes"
type = "gauge"
expr = "object.status.memory"

[[resources.metrics]]
name = "phase_running"
type = "gauge"
expr = "object.status.phase"
value_map = { Running = 1 }

[[resources.metrics]]
name = "interface_mtu"
type = "gauge"
each = "status.interfaces[*]"
expr = "item.mtu * 2 + size(object.status.interfaces)"
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(problems.is_empty(), "{problems:?}");
    let values: Vec<(String, f64)> = samples.into_iter().map(|(n, _, v)| (n, v)).collect();
    assert_eq!(
        values,
        [
            ("kubevirt_vmi_ready".to_owned(), 1.0),
            ("kubevirt_vmi_memory_bytes".to_owned(), 2_147_483_648.0),
            ("kubevirt_vmi_phase_running".to_owned(), 1.0),
            ("kubevirt_vmi_interface_mtu".to_owned(), 3002.0),
            ("kubevirt_vmi_interface_mtu".to_owned(), 18002.0),
        ]
    );
}

#[test]
fn labels_may_be_expressions_beside_paths() {
    let pipeline = pipeline(
        r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
labels = { name = "metadata.name", interfaces = { expr = "size(object.status.interfaces)" } }

[[resources.metrics]]
name = "mtu"
type = "gauge"
each = "status.interfaces[*]"
path = "mtu"
labels = { nic = { expr = "item.name.upperAscii()" } }
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        samples[0],
        sample(
            "mtu",
            &[("interfaces", "2"), ("name", "vm1"), ("nic", "ETH0")],
            1500.0
        )
    );
}

#[test]
fn where_filters_objects_and_items() {
    let config = |filter: &str| {
        format!(
            r#"
[[resources]]
group = "kubevirt.io"
version = "v1"
kind = "VirtualMachineInstance"
where = "{filter}"

[[resources.metrics]]
name = "mtu"
type = "gauge"
each = "status.interfaces[*]"
path = "mtu"
where = "item.mtu > 2000"
labels = {{ nic = "name" }}
"#
        )
    };
    let kept = pipeline(&config("object.metadata.namespace.startsWith('prod')"));
    let (samples, problems) = apply(&kept, &vmi());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(samples, [sample("mtu", &[("nic", "eth1")], 9000.0)]);
    let dropped = pipeline(&config("object.metadata.namespace == 'dev'"));
    let (samples, problems) = apply(&dropped, &vmi());
    assert!(problems.is_empty() && samples.is_empty(), "{samples:?}");
}

#[test]
fn a_failing_expression_is_a_problem_and_omits_its_series_only() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "missing"
type = "gauge"
expr = "object.status.nope + 1"

[[resources.metrics]]
name = "bad_label"
type = "gauge"
path = "status.restarts"
labels = { x = { expr = "1 / 0" } }

[[resources.metrics]]
name = "not_a_bool"
type = "gauge"
path = "status.restarts"
where = "object.status.phase"

[[resources.metrics]]
name = "restarts"
type = "gauge"
path = "status.restarts"
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    let names: Vec<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["kubevirt_vmi_restarts"]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("kubevirt_vmi_missing: object.status.nope + 1: expression failed"),
        "{problems:?}"
    );
    assert!(problems[2].contains("must give a boolean"), "{problems:?}");
}

#[test]
fn a_bad_expression_is_an_error_at_its_position() {
    let text = format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\nexpr = \"object.a +\"\n\
         [[resources.metrics]]\nname = \"y\"\ntype = \"gauge\"\npath = \"a\"\nexpr = \"1\"\n\
         [[resources.metrics]]\nname = \"z\"\ntype = \"info\"\nlabels = {{ l = {{ expr = \"(\" }} }}\n"
    );
    let errors = errors(&text);
    assert_eq!(
        keys(&errors),
        [
            "resources[0].metrics[0].expr",
            "resources[0].metrics[1].expr",
            "resources[0].metrics[2].labels.l",
        ]
    );
    let span = errors[0].span.clone().unwrap();
    // The end of `object.a +`, inside the quotes.
    assert_eq!(&text[span.start - 10..span.start], "object.a +");
    assert!(errors[0].message.contains("does not parse"), "{errors:?}");
    assert!(errors[1].message.contains("not both"), "{errors:?}");
}

#[test]
fn expressions_are_refused_on_secrets() {
    let text = "[[resources]]\nversion = \"v1\"\nkind = \"Secret\"\n\
                [[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\nexpr = \"size(object.data)\"\n";
    let errors = ObjectPipeline::compile(&resources(text), Secrets::Allowed).unwrap_err();
    assert_eq!(keys(&errors), ["resources[0].metrics[0].expr"]);
}

#[test]
fn failing_expressions_are_reported_by_entry_and_metric() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "missing"
type = "gauge"
expr = "object.status.nope"

[[resources.metrics]]
name = "walk"
type = "gauge"
expr = "object.status.interfaces.all(a, object.status.interfaces.all(b, a.mtu > 0)) ? 1 : 0"
"#,
    );
    let object = vmi();
    let (_, problems) = pipeline.apply(&key(&object), &object, 1_000).unwrap();
    assert_eq!(
        problems.expressions,
        [ExpressionFailure {
            resource: "VirtualMachineInstance".to_owned(),
            metric: "kubevirt_vmi_missing".to_owned(),
            too_costly: false,
            message:
                "kubevirt_vmi_missing: object.status.nope: expression failed: No such key: nope"
                    .to_owned(),
        }]
    );
    assert!(problems.messages.is_empty(), "{problems:?}");
    // 1001 interfaces, comprehensions two deep: over a million steps, refused.
    let mut big = vmi();
    big["status"]["interfaces"] = (0..1001).map(|i| json!({"mtu": i})).collect();
    let (_, problems) = pipeline.apply(&key(&big), &big, 1_000).unwrap();
    assert_eq!(problems.expressions.len(), 2, "{problems:?}");
    assert!(problems.expressions[1].too_costly);
    assert_eq!(problems.expressions[1].metric, "kubevirt_vmi_walk");
    assert!(
        problems.expressions[1]
            .message
            .contains("expression refused"),
        "{problems:?}"
    );
}

#[test]
fn labels_from_makes_a_map_labels_after_the_configured_ones() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "labels"
type = "info"
labels = { label_app = "metadata.name" }
labels_from = { path = "metadata.labels", allow = ["app", "kubevirt.io/.*"] }
"#,
    );
    let mut object = vmi();
    object["metadata"]["labels"] = json!({
        "app": "web",
        "kubevirt.io/vmName": "vm1",
        "kubevirt_io/vmName": "other",
        "other": "left-out",
    });
    let (update, problems) = pipeline.apply(&key(&object), &object, 1_000).unwrap();
    assert_eq!(
        written(&update),
        [sample(
            "kubevirt_vmi_labels_info",
            &[
                ("name", "vm1"),
                ("node", "node-1"),
                ("label_app", "vm1"),
                ("label_kubevirt_io_vm_name", "vm1"),
            ],
            1.0
        )]
    );
    // `app` lost to the configured `label_app`, `kubevirt_io/vmName` to `kubevirt.io/vmName`.
    let collisions = LabelCollisions {
        resource: "VirtualMachineInstance".to_owned(),
        metric: "kubevirt_vmi_labels".to_owned(),
        count: 2,
    };
    assert_eq!(problems.collisions, [collisions]);
    let counted = pipeline.stats().snapshot().label_collisions;
    let key = (
        "VirtualMachineInstance".to_owned(),
        "kubevirt_vmi_labels".to_owned(),
    );
    assert_eq!(counted[&key], 2);
}

#[test]
fn labels_from_reads_each_item_inside_each() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "interface_mtu"
type = "gauge"
each = "status.interfaces[*]"
path = "mtu"
labels_from = { path = "tags", prefix = "tag_" }
"#,
    );
    let mut object = vmi();
    object["status"]["interfaces"][0]["tags"] = json!({"Role": "uplink"});
    let (samples, problems) = apply(&pipeline, &object);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        samples,
        [
            sample(
                "kubevirt_vmi_interface_mtu",
                &[("name", "vm1"), ("node", "node-1"), ("tag_role", "uplink")],
                1500.0
            ),
            sample(
                "kubevirt_vmi_interface_mtu",
                &[("name", "vm1"), ("node", "node-1")],
                9000.0
            ),
        ]
    );
}

#[test]
fn labels_from_with_a_bad_pattern_or_prefix_is_an_error_at_its_place() {
    let text = format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n\
         labels_from = {{ path = \"metadata.labels\", prefix = \"9_\", allow = [\"ok\", \"a(\"] }}\n"
    );
    let errors = errors(&text);
    assert_eq!(
        keys(&errors),
        [
            "resources[0].metrics[0].labels_from.prefix",
            "resources[0].metrics[0].labels_from.allow[1]",
        ]
    );
    let span = errors[1].span.clone().unwrap();
    assert_eq!(&text[span], "\"a(\"");
    assert!(
        errors[1].message.contains("regular expression"),
        "{errors:?}"
    );
}

#[test]
fn labels_from_merge_paths_are_checked_at_their_place() {
    let text = format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"info\"\n\
         labels_from = {{ path = \"metadata.labels\", merge = [\"spec.template.metadata.labels\", \"@nowhere.metadata.labels\"] }}\n"
    );
    let errors = errors(&text);
    assert_eq!(
        keys(&errors),
        ["resources[0].metrics[0].labels_from.merge[1]"]
    );
    let span = errors[0].span.clone().unwrap();
    assert_eq!(&text[span], "\"@nowhere.metadata.labels\"");
}

#[test]
fn a_stateset_takes_its_state_from_an_expression() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "ready"
type = "stateset"
expr = "object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True') ? 'ready' : 'not_ready'"
states = ["ready", "not_ready"]
"#,
    );
    let (samples, problems) = apply(&pipeline, &vmi());
    assert!(problems.is_empty(), "{problems:?}");
    let common = [("name", "vm1"), ("node", "node-1")];
    let with = |state: &'static str| {
        let mut labels = common.to_vec();
        labels.push(("kubevirt_vmi_ready", state));
        labels
    };
    assert_eq!(
        samples,
        [
            sample("kubevirt_vmi_ready", &with("ready"), 1.0),
            sample("kubevirt_vmi_ready", &with("not_ready"), 0.0),
        ]
    );
}

const CAPPED: &str = r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
max_series = 3
labels = { name = "metadata.name" }

  [[resources.metrics]]
  name = "cm_info"
  type = "info"
"#;

fn configmap(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"team": name}},
    })
}

fn limited(pipeline: &ObjectPipeline, reason: &str) -> u64 {
    let key = (
        "resources[0]".to_owned(),
        "cm".to_owned(),
        reason.to_owned(),
    );
    pipeline
        .stats()
        .snapshot()
        .series_limited
        .get(&key)
        .copied()
        .unwrap_or(0)
}

fn entry_series(pipeline: &ObjectPipeline) -> u64 {
    pipeline.stats().snapshot().series["resources[0]"]
}

#[test]
fn max_series_holds_back_the_newest_series_and_gives_them_back_when_room_is_made() {
    let pipeline = pipeline(CAPPED);
    assert!(pipeline.has_derived(), "retries need the host to pull");
    let mut written_count = 0;
    for name in ["a", "b", "c", "d", "e"] {
        let (samples, problems) = apply(&pipeline, &configmap(name));
        assert!(problems.is_empty(), "{problems:?}");
        written_count += samples.len();
    }
    assert_eq!(written_count, 3, "a, b and c fit; d and e are the newest");
    assert_eq!(limited(&pipeline, "max_series"), 2);
    assert_eq!(entry_series(&pipeline), 3);
    // Applied again unchanged: an object keeps what it holds, the others still wait.
    assert_eq!(apply(&pipeline, &configmap("a")).0.len(), 1);
    assert_eq!(apply(&pipeline, &configmap("e")).0.len(), 0);
    assert_eq!(limited(&pipeline, "max_series"), 3);
    // b goes away: the oldest waiting object, d, comes back at the next pull; e still waits.
    pipeline.remove(&key(&configmap("b"))).unwrap();
    let back: Vec<Vec<Written>> = pipeline
        .derived_updates(2_000)
        .iter()
        .map(written)
        .collect();
    assert_eq!(
        back,
        [vec![sample("cm_info", &[("name", "d")], 1.0)]],
        "only d fits"
    );
    assert!(
        pipeline.derived_updates(3_000).is_empty(),
        "nothing freed since"
    );
    assert_eq!(entry_series(&pipeline), 3);
    pipeline.remove(&key(&configmap("a"))).unwrap();
    pipeline.remove(&key(&configmap("c"))).unwrap();
    let back: Vec<Vec<Written>> = pipeline
        .derived_updates(4_000)
        .iter()
        .map(written)
        .collect();
    assert_eq!(back, [vec![sample("cm_info", &[("name", "e")], 1.0)]]);
    assert_eq!(entry_series(&pipeline), 2);
}

#[test]
fn max_values_holds_back_series_bringing_a_new_value_of_a_label() {
    let text = CAPPED.replace("max_series = 3", "max_values = 2");
    let pipeline = pipeline(&text);
    let counts: Vec<usize> = ["a", "b", "c", "a"]
        .iter()
        .map(|name| apply(&pipeline, &configmap(name)).0.len())
        .collect();
    assert_eq!(counts, [1, 1, 0, 1], "`name` takes two values: a and b");
    assert_eq!(limited(&pipeline, "max_values"), 1);
    pipeline.remove(&key(&configmap("a"))).unwrap();
    let back: Vec<Vec<Written>> = pipeline.derived_updates(1).iter().map(written).collect();
    assert_eq!(back, [vec![sample("cm_info", &[("name", "c")], 1.0)]]);
}

#[test]
fn an_object_no_longer_selected_gives_its_series_back() {
    let text = CAPPED.replace(
        "max_series = 3",
        "max_series = 1\nlabel_selector = \"team!=x\"",
    );
    let pipeline = pipeline(&text);
    assert_eq!(apply(&pipeline, &configmap("a")).0.len(), 1);
    assert_eq!(apply(&pipeline, &configmap("b")).0.len(), 0);
    let mut moved = configmap("a");
    moved["metadata"]["labels"]["team"] = json!("x");
    assert!(apply_at(&pipeline, &moved, 0).is_none());
    let back: Vec<Vec<Written>> = pipeline.derived_updates(1).iter().map(written).collect();
    assert_eq!(back, [vec![sample("cm_info", &[("name", "b")], 1.0)]]);
}

#[test]
fn caps_must_be_at_least_one() {
    let text = CAPPED.replace("max_series = 3", "max_series = 0\nmax_values = 0");
    let errors = errors(&text);
    assert_eq!(
        keys(&errors),
        ["resources[0].max_series", "resources[0].max_values"]
    );
    assert_eq!(&text[errors[0].span.clone().unwrap()], "0");
}

#[test]
fn each_key_labels_each_item_of_a_map_with_its_key() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "sub_ready"
type = "gauge"
each = "status.sub[*]"
each_key = "type"
path = "ready"
"#,
    );
    let mut object = vmi();
    object["status"]["sub"] = json!({"type-b": {"ready": 4}, "type-a": {"ready": 2}});
    let (samples, problems) = apply(&pipeline, &object);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        samples,
        [
            sample(
                "kubevirt_vmi_sub_ready",
                &[("name", "vm1"), ("node", "node-1"), ("type", "type-a")],
                2.0
            ),
            sample(
                "kubevirt_vmi_sub_ready",
                &[("name", "vm1"), ("node", "node-1"), ("type", "type-b")],
                4.0
            ),
        ]
    );
}

#[test]
fn each_key_needs_an_each_ending_in_a_wildcard_and_a_free_label_name() {
    let text = format!(
        "{VMI}[[resources.metrics]]\nname = \"x\"\ntype = \"gauge\"\neach = \"status.sub\"\n\
         each_key = \"type\"\npath = \"ready\"\n\
         [[resources.metrics]]\nname = \"y\"\ntype = \"gauge\"\neach = \"status.sub[*]\"\n\
         each_key = \"node\"\npath = \"ready\"\n"
    );
    assert_eq!(
        keys(&errors(&text)),
        [
            "resources[0].metrics[0].each_key",
            "resources[0].metrics[1].each_key",
        ]
    );
}

#[test]
fn labels_from_with_sanitized_names_keeps_case_and_leaves_out_names_that_cannot_be() {
    let pipeline = vmi_with(
        r#"
[[resources.metrics]]
name = "labels"
type = "info"
labels_from = { path = "metadata.labels", prefix = "", names = "sanitized" }
"#,
    );
    let mut object = vmi();
    object["metadata"]["labels"] = json!({"app.kubernetes.io/managedBy": "me", "9lives": "x"});
    let (samples, problems) = apply(&pipeline, &object);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        samples,
        [sample(
            "kubevirt_vmi_labels_info",
            &[
                ("name", "vm1"),
                ("node", "node-1"),
                ("app_kubernetes_io_managedBy", "me")
            ],
            1.0
        )]
    );
}
