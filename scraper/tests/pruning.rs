//! Pruning changes no sample: every example config applied to its objects whole and pruned to
//! what the config reads ([`ObjectPipeline::reads`], as watches and the offline input prune them)
//! gives the same updates, series for series, aggregates and derived metrics included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use periscope_plugin_api::batch::Update;
use periscope_scraper::SourceUpdate;
use periscope_scraper::config::ResourceConfig;
use periscope_scraper::objects::{ObjectKey, ObjectPipeline, Secrets};
use serde::Deserialize;
use serde_json::Value;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The `[[resources]]` of an example config.
fn resources(config: &Path) -> Vec<ResourceConfig> {
    #[derive(Deserialize)]
    struct Example {
        resources: Vec<ResourceConfig>,
    }
    let text = std::fs::read_to_string(config).expect("the example config");
    let example: Example = periscope_plugin_api::config::parse(&text).expect("the example parses");
    example.resources
}

/// Every object of the YAML and JSON files in `dir`, lists opened.
fn objects(dir: &Path) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the objects directory")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("an objects file");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("a YAML document");
            open(value, &mut out);
        }
    }
    out
}

fn open(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|item| open(item, out)),
        Value::Object(mut map) if map.get("items").is_some_and(Value::is_array) => {
            if let Some(Value::Array(items)) = map.remove("items") {
                items.into_iter().for_each(|item| open(item, out));
            }
        }
        Value::Null => {}
        other => out.push(other),
    }
}

/// The samples of an update as `name{labels} value` lines, or `remove <id>`.
fn lines(update: &SourceUpdate) -> Vec<String> {
    match update.update() {
        Update::Replace { source, samples } => samples
            .iter()
            .map(|sample| {
                let labels: Vec<String> = sample
                    .labels()
                    .map(|(name, value)| format!("{name}={value:?}"))
                    .collect();
                format!(
                    "{} {}{{{}}} {}",
                    source.id,
                    sample.metric_name(),
                    labels.join(","),
                    sample.value()
                )
            })
            .collect(),
        Update::Remove { source } => vec![format!("remove {}", source.id)],
    }
}

/// What a pipeline gives for `objects`, each pruned by `prune` first: every update of a second
/// round of applying them (the first fills what joins find), then the derived sources.
fn run(
    resources: &[ResourceConfig],
    objects: &[Value],
    prune: bool,
) -> (BTreeMap<String, Vec<String>>, usize) {
    let pipeline =
        ObjectPipeline::compile(resources, Secrets::Refused).expect("the config compiles");
    let now_ms = 1_767_225_600_000;
    let mut out = BTreeMap::new();
    let mut bytes = 0;
    for round in 0..2 {
        for object in objects {
            let key = ObjectKey::of(object).expect("an object with a key");
            let pruned = pipeline
                .reads(key.api_version(), key.kind())
                .filter(|_| prune)
                .map(|keep| keep.pruned(object));
            let object = pruned.as_ref().unwrap_or(object);
            if round == 1 {
                bytes += serde_json::to_vec(object).expect("JSON").len();
            }
            if let Some((update, problems)) = pipeline.apply(&key, object, now_ms)
                && round == 1
            {
                let mut seen = lines(&update);
                seen.extend(problems.messages);
                seen.extend(problems.expressions.into_iter().map(|f| f.message));
                out.insert(key.source_id().to_owned(), seen);
            }
        }
    }
    for update in pipeline.derived_updates(now_ms) {
        out.insert(update.source_id().to_owned(), lines(&update));
    }
    (out, bytes)
}

/// Asserts that pruning changes nothing for `config` over `objects`; returns the whole and the
/// pruned size of the objects as JSON.
fn same_samples(config: &Path, objects: &[Value]) -> (usize, usize) {
    let resources = resources(config);
    let (whole, whole_bytes) = run(&resources, objects, false);
    let (pruned, pruned_bytes) = run(&resources, objects, true);
    assert!(!whole.is_empty(), "{}: no samples at all", config.display());
    for (id, lines) in &whole {
        assert_eq!(
            pruned.get(id),
            Some(lines),
            "{}: source {id}",
            config.display()
        );
    }
    assert_eq!(whole.len(), pruned.len(), "{}", config.display());
    println!(
        "{}: {} sources, objects {whole_bytes} bytes whole, {pruned_bytes} pruned",
        config.display(),
        whole.len()
    );
    (whole_bytes, pruned_bytes)
}

#[test]
fn the_kubevirt_example_gives_the_same_series_from_pruned_objects() {
    let example = examples().join("kubevirt");
    let objects = objects(&example.join("objects"));
    let (whole, pruned) = same_samples(&example.join("periscope.toml"), &objects);
    assert!(pruned < whole, "{pruned} of {whole} bytes");
}

#[test]
fn the_quickstart_gives_the_same_series_from_pruned_objects() {
    let example = examples().join("quickstart");
    let objects = objects(&example.join("manifests"));
    let (whole, pruned) = same_samples(&example.join("periscope.toml"), &objects);
    assert!(pruned < whole, "{pruned} of {whole} bytes");
}
#[test]
fn a_kind_only_joins_read_keeps_what_the_joins_read() {
    let example = examples().join("kubevirt");
    let pipeline = ObjectPipeline::compile(
        &resources(&example.join("periscope.toml")),
        Secrets::Refused,
    )
    .expect("the example compiles");
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "virt-launcher-a", "namespace": "prod", "uid": "p1",
            "labels": {"kubevirt.io/created-by": "v1", "kubevirt.io": "virt-launcher"},
            "annotations": {"big": "x"},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "compute"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    });
    let keep = pipeline.reads("v1", "Pod").expect("joins read Pods");
    assert_eq!(
        keep.pruned(&pod),
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "virt-launcher-a", "namespace": "prod", "uid": "p1",
                "labels": {"kubevirt.io/created-by": "v1"},
            },
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running"},
        })
    );
    assert!(pipeline.reads("v1", "Secret").is_none());
}
