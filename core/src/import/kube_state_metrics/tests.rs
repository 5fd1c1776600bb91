use super::*;
use crate::config::ConfigText;

/// Converts `yaml`, then has the TOML pass `periscope check`'s checks.
fn converted(yaml: &str) -> String {
    let toml = convert("crs.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = crate::check::check(&ConfigText::one("out.toml", &toml)) {
        panic!("{e}\n{toml}");
    }
    toml
}

const FOO: &str = r#"
kind: CustomResourceStateMetrics
spec:
  resources:
    - groupVersionKind:
        group: myteam.io
        kind: "Foo"
        version: "v1"
      labelsFromPath:
        name: [metadata, name]
      commonLabels:
        crd_type: "foo"
      metrics:
        - name: "uptime"
          help: "Foo uptime"
          each:
            type: Gauge
            gauge:
              path: [status, uptime]
              nilIsZero: true
        - name: "ready_count"
          help: "Foo conditions"
          each:
            type: Gauge
            gauge:
              path: [status, conditions]
              labelsFromPath:
                type: ["type"]
              valueFrom: ["status"]
        - name: "status_phase"
          help: "Foo phase"
          each:
            type: StateSet
            stateSet:
              labelName: phase
              path: [status, phase]
              list: [Pending, Bar, Baz]
        - name: "version_info"
          help: "Foo version"
          labelsFromPath:
            exported_namespace: [metadata, namespace]
          each:
            type: Info
            info:
              labelsFromPath:
                version: [spec, version]
        - name: "ready"
          help: "Ready condition"
          each:
            type: Gauge
            gauge:
              path: [status, conditions, "[type=Ready]"]
              valueFrom: [status]
"#;

#[test]
fn the_doc_examples_convert_to_a_config_that_checks() {
    let toml = converted(FOO);
    for line in [
        "prefix = \"kube_customresource\"",
        "path = \"status.uptime\"",
        "default = 0",
        "each = \"status.conditions[*]\"",
        "labels = { type = \"type\" }",
        "path = 'status.conditions[type=\"Ready\"].status'",
        "each = \"status.phase\"",
        "states = [\"Pending\", \"Bar\", \"Baz\"]",
        "label = \"phase\"",
        "type = \"info\"",
        "exported_namespace = \"metadata.namespace\"",
        "customresource_kind = { expr = '\"Foo\"' }",
        "# spec.resources[0].metrics[1] (line 21)",
    ] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
}

#[test]
fn an_empty_prefix_leaves_names_bare_and_helm_values_are_read() {
    let yaml = r#"
replicas: 1
customResourceState:
  enabled: true
  config:
    kind: CustomResourceStateMetrics
    spec:
      resources:
        - groupVersionKind: { group: g.io, version: v1, kind: Bar }
          metricNamePrefix: ""
          metrics:
            - name: replicas
              each:
                type: gauge
                gauge: { path: [spec, replicas] }
"#;
    let toml = converted(yaml);
    assert!(!toml.contains("prefix ="), "{toml}");
    assert!(
        toml.contains("customResourceState.config.spec.resources[0]"),
        "{toml}"
    );
}

#[test]
fn an_unknown_key_is_an_error_at_its_line() {
    let yaml = "kind: CustomResourceStateMetrics\nspec:\n  resources:\n    - groupVersionKind: { version: v1, kind: A }\n      metrics:\n        - name: x\n          each:\n            type: Gauge\n            gauge:\n              path: [a]\n              valuFrom: [b]\n";
    let err = convert("crs.yaml", yaml).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("crs.yaml:11:"), "{text}");
    assert!(text.contains("unknown field `valuFrom`"), "{text}");
}

#[test]
fn constructs_without_an_equivalent_are_errors_naming_their_line() {
    let yaml = r#"kind: CustomResourceStateMetrics
spec:
  resources:
    - groupVersionKind: { group: g.io, version: "*", kind: A }
      labelsFromPath:
        "*": [metadata, labels]
        "lorem_*": [metadata, annotations]
      metrics:
        - name: sub
          each:
            type: Info
            info:
              path: [status, sub]
              labelFromKey: type
              labelsFromPath: { ready: [ready] }
        - name: plain
          each:
            type: Gauge
            gauge: { path: [spec, x] }
"#;
    let err = convert("crs.yaml", yaml).unwrap_err();
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains(":4:") && lines[0].contains("groupVersionKind.version"),
        "{err}"
    );
    assert!(
        lines[1].contains(":7:") && lines[1].contains("labelsFromPath.lorem_*"),
        "{err}"
    );
    assert!(
        lines[2].contains(":14:") && lines[2].contains("info.labelFromKey"),
        "{err}"
    );
}

#[test]
fn a_malformed_file_names_its_line() {
    let err = convert("crs.yaml", "spec:\n  resources: [\n").unwrap_err();
    assert!(err.problems[0].line > 0, "{err}");
}

#[test]
fn label_from_key_walks_the_map_with_each_key() {
    let yaml = r#"
spec:
  resources:
    - groupVersionKind: { group: g.io, version: v1, kind: A }
      metrics:
        - name: sub
          each:
            type: Gauge
            gauge:
              path: [status, sub]
              labelFromKey: type
              labelsFromPath: { active: [active] }
              valueFrom: [ready]
"#;
    let toml = converted(yaml);
    for line in [
        "each = \"status.sub[*]\"",
        "each_key = \"type\"",
        "path = \"ready\"",
        "labels = { active = \"active\" }",
    ] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
}

#[test]
fn a_star_label_becomes_labels_from_with_sanitized_names() {
    let yaml = r#"
spec:
  resources:
    - groupVersionKind: { group: g.io, version: v1, kind: A }
      labelsFromPath:
        "*": [metadata, labels]
      metrics:
        - name: x
          each:
            type: Gauge
            gauge: { path: [spec, items], valueFrom: [v] }
"#;
    let toml = converted(yaml);
    assert!(
        toml.contains(
            r#"labels_from = { path = "$.metadata.labels", prefix = "", names = "sanitized" }"#
        ),
        "{toml}"
    );
}

#[test]
fn wheres_read_only_the_fields_they_test_and_only_where_kube_state_metrics_needs_them() {
    let yaml = r#"
kind: CustomResourceStateMetrics
spec:
  resources:
    - groupVersionKind: { group: kubevirt.io, version: v1, kind: VirtualMachineInstance }
      metrics:
        - name: info
          help: what it is
          each:
            type: Info
            info:
              labelsFromPath:
                phase: [status, phase]
                vm: [metadata, labels, kubevirt.io/vm]
        - name: named_info
          help: one label is on every object
          each:
            type: Info
            info:
              labelsFromPath:
                vm_name: [metadata, name]
                os: [metadata, annotations, os]
        - name: vnic_info
          help: per interface
          each:
            type: Info
            info:
              path: [status, interfaces]
              labelsFromPath:
                interface: [name]
        - name: status_phase
          help: the phase
          each:
            type: StateSet
            stateSet:
              labelName: phase
              path: [status, phase]
              list: [Pending, Running]
"#;
    let toml = converted(yaml);
    for line in [
        r#"where = 'object.?status.?phase.orValue(null) != null || object.?metadata.?labels[?"kubevirt.io/vm"].orValue(null) != null'"#,
        r#"where = "item.?name.orValue(null) != null""#,
        r#"where = "type(item) == string""#,
    ] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
    // `metadata.name` is on every object: the family needs no `where`.
    let named = toml
        .split("[[resources.metrics]]")
        .find(|metric| metric.contains("name = \"named_info\""))
        .expect("named_info is converted");
    assert!(!named.contains("where"), "{named}");
}
