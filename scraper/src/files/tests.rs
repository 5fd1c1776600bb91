use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::batch::Update;
use periscope_plugin_api::config::Duration as ConfigDuration;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ResourceConfig;
use crate::objects::{ObjectPipeline, Secrets, SharedPipeline};

const CONFIG: &str = r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
labels = { name = "metadata.name" }
  [[resources.metrics]]
  name = "value"
  type = "gauge"
  path = "data.value"
"#;

fn pipeline() -> Arc<ObjectPipeline> {
    #[derive(Deserialize)]
    struct Config {
        resources: Vec<ResourceConfig>,
    }
    let config: Config = periscope_plugin_api::config::parse(CONFIG).unwrap();
    Arc::new(ObjectPipeline::compile(&config.resources, Secrets::Refused).unwrap())
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  value: \"{value}\"\n"
    )
}

/// Writes a file the way editors do, all at once, so a read never sees half of it.
fn write(dir: &Path, name: &str, text: &str) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

struct Running {
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start(path: &Path) -> Running {
    let config = FilesConfig {
        path: path.to_string_lossy().into_owned(),
        interval: ConfigDuration(Duration::from_millis(20)),
        max_file_bytes: periscope_plugin_api::config::ByteSize(16 << 20),
    };
    let source = FilesSource::new(&config, SharedPipeline::fixed(pipeline()));
    let (sender, events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source.run(sender, shutdown.clone()));
    Running {
        events,
        shutdown,
        task,
    }
}

impl Running {
    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("an event within 5s")
            .expect("the source is still running")
    }

    /// Every event up to the first `Synced`.
    async fn until_synced(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Event::Synced { .. } => return events,
                event => events.push(event),
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the source stops within 5s")
            .unwrap();
    }
}

/// A short description of an event: `update <name>=<value>`, `remove <name>` or `error <message>`.
fn describe(event: &Event) -> String {
    match event {
        Event::Update(update) => match update.update() {
            Update::Replace { source, samples } => {
                let values: Vec<String> = samples.iter().map(|s| s.value().to_string()).collect();
                format!("update {}={}", source.name, values.join(","))
            }
            Update::Remove { source } => format!("remove {}", source.name),
        },
        Event::Synced { input } => format!("synced {input}"),
        Event::Error { kind, message, .. } => format!("error {} {message}", kind.as_str()),
        Event::Expression { failure, .. } => {
            format!("expression {} {}", failure.resource, failure.metric)
        }
        other => format!("{other:?}"),
    }
}

fn describe_all(events: &[Event]) -> Vec<String> {
    events.iter().map(describe).collect()
}

#[tokio::test]
async fn first_read_sends_every_object_then_synced() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.yaml", &config_map("b", "2"));
    write(
        dir.path(),
        "a.yml",
        &format!("{}---\n{}", config_map("a1", "1"), config_map("a2", "1.5")),
    );
    write(dir.path(), "ignored.txt", &config_map("ignored", "9"));
    let mut running = start(dir.path());
    let events = running.until_synced().await;
    assert_eq!(
        describe_all(&events),
        ["update a1=1", "update a2=1.5", "update b=2"]
    );
    running.stop().await;
}

#[tokio::test]
async fn rereads_send_changes_additions_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &format!("{}---\n{}", config_map("a1", "1"), config_map("a2", "2")),
    );
    write(dir.path(), "b.yaml", &config_map("b", "3"));
    let mut running = start(dir.path());
    assert_eq!(running.until_synced().await.len(), 3);

    write(
        dir.path(),
        "a.yaml",
        &format!("{}---\n{}", config_map("a1", "10"), config_map("a2", "2")),
    );
    assert_eq!(describe(&running.next().await), "update a1=10");

    write(
        dir.path(),
        "c.json",
        r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"value": "4"}}
    ]}"#,
    );
    assert_eq!(describe(&running.next().await), "update c=4");

    write(dir.path(), "a.yaml", &config_map("a1", "10"));
    assert_eq!(describe(&running.next().await), "remove a2");

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let removal = running.next().await;
    assert_eq!(describe(&removal), "remove b");
    let Event::Update(removal) = removal else {
        unreachable!()
    };
    assert_eq!(removal.source_id(), "v1/ConfigMap/default/b");
    running.stop().await;
}

#[tokio::test]
async fn an_object_moved_to_another_file_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &config_map("a", "1"));
    let mut running = start(dir.path());
    running.until_synced().await;

    write(dir.path(), "b.yaml", &config_map("a", "1"));
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    write(dir.path(), "c.yaml", &config_map("c", "1"));
    // The object `a` did not change, so the next event is about `c`.
    assert_eq!(describe(&running.next().await), "update c=1");
    running.stop().await;
}

#[tokio::test]
async fn broken_yaml_is_an_error_and_other_files_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "kind: [unclosed\n");
    write(dir.path(), "b.yaml", &config_map("b", "1"));
    let mut running = start(dir.path());
    let events = describe_all(&running.until_synced().await);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].starts_with("error parse "), "{events:?}");
    assert!(events[0].contains("a.yaml"), "{events:?}");
    assert_eq!(events[1], "update b=1");

    write(dir.path(), "a.yaml", &config_map("a", "5"));
    assert_eq!(describe(&running.next().await), "update a=5");
    running.stop().await;
}

#[tokio::test]
async fn a_file_that_breaks_keeps_its_objects_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &config_map("a", "1"));
    let mut running = start(dir.path());
    running.until_synced().await;

    write(dir.path(), "a.yaml", "data: [half-saved\n");
    let event = describe(&running.next().await);
    assert!(
        event.starts_with("error parse ") && event.contains("a.yaml"),
        "{event}"
    );

    write(dir.path(), "a.yaml", &config_map("a", "2"));
    assert_eq!(describe(&running.next().await), "update a=2");
    running.stop().await;
}

#[tokio::test]
async fn extraction_problems_and_nameless_objects_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &format!("{}---\nkind: ConfigMap\n", config_map("a", "lots")),
    );
    let mut running = start(dir.path());
    let events = describe_all(&running.until_synced().await);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events[0].starts_with("error value ")
            && events[0]
                .ends_with("v1/ConfigMap/default/a: value: data.value: \"lots\" is not a number"),
        "{events:?}"
    );
    assert_eq!(events[1], "update a=");
    assert!(
        events[2].starts_with("error parse ")
            && events[2].contains("object 2: not a Kubernetes object"),
        "{events:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_single_file_can_be_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.yaml", &config_map("one", "1"));
    let path = dir.path().join("one.yaml");
    let config = FilesConfig {
        path: path.to_string_lossy().into_owned(),
        interval: ConfigDuration(Duration::from_millis(20)),
        max_file_bytes: periscope_plugin_api::config::ByteSize(16 << 20),
    };
    let source = FilesSource::new(&config, SharedPipeline::fixed(pipeline()));
    assert_eq!(source.input_name(), format!("files:{}", path.display()));

    let mut running = start(&path);
    assert_eq!(
        describe_all(&running.until_synced().await),
        ["update one=1"]
    );
    running.stop().await;
}

#[tokio::test]
async fn a_missing_path_is_reported_once_and_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(&dir.path().join("nowhere"));
    let events = describe_all(&running.until_synced().await);
    assert_eq!(events.len(), 1);
    assert!(events[0].contains("nowhere"), "{events:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(running.events.try_recv().is_err());
    running.stop().await;
}

/// The `claim_bytes` values in the updates among `events`, in order.
fn claim_bytes(events: &[Event]) -> Vec<Option<f64>> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Update(update) if update.source_id() == "v1/ConfigMap/default/a" => Some(update),
            _ => None,
        })
        .map(|update| match update.update() {
            Update::Replace { samples, .. } => samples.iter().next().map(|s| s.value()),
            _ => None,
        })
        .collect()
}

#[test]
fn offline_joins_find_objects_read_later_and_follow_their_changes() {
    #[derive(Deserialize)]
    struct Config {
        resources: Vec<ResourceConfig>,
    }
    let config: Config = periscope_plugin_api::config::parse(
        r#"
[[resources]]
version = "v1"
kind = "ConfigMap"
[[resources.joins]]
name = "claim"
version = "v1"
kind = "PersistentVolumeClaim"
name_from = "data.claim"
[[resources.metrics]]
name = "claim_bytes"
type = "gauge"
path = "@claim.spec.resources.requests.storage"
"#,
    )
    .unwrap();
    let pipeline = Arc::new(ObjectPipeline::compile(&config.resources, Secrets::Refused).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let claim = |size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: z\n  namespace: default\nspec:\n  resources:\n    requests:\n      storage: {size}\n"
        )
    };
    // The ConfigMap is read first, the claim it joins after it.
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\ndata:\n  claim: z\n",
    );
    write(dir.path(), "z.yaml", &claim("1Ki"));
    let mut scanner = scanner::Scanner::new(
        dir.path().to_owned(),
        16 << 20,
        "files:test".to_owned(),
        pipeline,
    );
    assert_eq!(claim_bytes(&scanner.scan(0)), [None, Some(1024.0)]);
    assert_eq!(claim_bytes(&scanner.scan(0)), []);
    write(dir.path(), "z.yaml", &claim("2Ki"));
    assert_eq!(claim_bytes(&scanner.scan(0)), [Some(2048.0)]);
    std::fs::remove_file(dir.path().join("z.yaml")).unwrap();
    assert_eq!(claim_bytes(&scanner.scan(0)), [None]);
}
