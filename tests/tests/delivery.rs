//! The host's delivery guarantees, shown with the fault-injection exporter (`tests/plugins/chaos`)
//! loaded into the real host process.

mod common;

use std::time::Duration;

use common::{demo_config, distinct_in_order, recorded_values, write_configmap};
use periscope_tests::{Host, http_get, plugin_dir, read_ndjson, wait_until};

const CHAOS: &str = r#"[[exporters]]
name = "chaos"
plugin = "chaos"
batch = { max_wait = "10ms" }
retry = { initial = "20ms", max = "200ms" }
"#;

#[test]
fn panicking_exporter_is_restarted_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    let config = demo_config(&format!(
        "{CHAOS}config = {{ record = \"record.ndjson\", panic_on_calls = [2] }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || !recorded_values(
            &read_ndjson(&record),
            "b"
        )
        .is_empty()),
        "first batch never arrived:\n{}",
        host.log()
    );

    // The next export call (number 2) panics inside the plugin.
    write_configmap(dir.path(), "a", 3.0);
    assert!(
        wait_until(Duration::from_secs(10), || recorded_values(
            &read_ndjson(&record),
            "a"
        )
        .last()
            == Some(&3.0)),
        "the batch that hit the panic was never delivered:\n{}",
        host.log()
    );
    let restarts = "periscope_exporter_restarts_total{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(restarts) == 1.0),
        "{}",
        host.metrics()
    );
    assert!(host.metric("periscope_exporter_retries_total{exporter=\"chaos\"}") >= 1.0);
    assert_eq!(
        host.metric("periscope_exporter_up{exporter=\"chaos\"}"),
        1.0
    );
    assert!(
        host.log().contains("panicked"),
        "the panic is logged:\n{}",
        host.log()
    );

    // The restarted instance got the whole state again (resync), so b is there after the restart too.
    let lines = read_ndjson(&record);
    let after_panic: Vec<_> = lines
        .iter()
        .filter(|l| l["call"].as_u64() > Some(2))
        .cloned()
        .collect();
    assert_eq!(
        recorded_values(&after_panic, "b").last(),
        Some(&2.0),
        "{lines:#?}"
    );
    assert_eq!(distinct_in_order(&recorded_values(&lines, "a")), [1.0, 3.0]);
    assert!(host.stop().success());
}

#[test]
fn exporter_that_retries_for_a_while_receives_every_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    let config = demo_config(&format!(
        "{CHAOS}config = {{ record = \"record.ndjson\", retry_on_calls = [1, 2, 3, 4, 5, 6] }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    for value in [2.0, 3.0, 4.0, 5.0] {
        std::thread::sleep(Duration::from_millis(300));
        write_configmap(dir.path(), "a", value);
    }
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(15), || recorded_values(
            &read_ndjson(&record),
            "a"
        )
        .last()
            == Some(&5.0)),
        "not every batch arrived:\n{}",
        host.log()
    );
    let values = recorded_values(&read_ndjson(&record), "a");
    assert_eq!(
        values,
        [1.0, 2.0, 3.0, 4.0, 5.0],
        "every value once, in order"
    );
    assert!(host.metric("periscope_exporter_retries_total{exporter=\"chaos\"}") >= 6.0);
    assert_eq!(
        host.metric("periscope_exporter_restarts_total{exporter=\"chaos\"}"),
        0.0
    );
    assert!(host.stop().success());
}

#[test]
fn rejected_batch_goes_to_the_dead_letter_file_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 7.0);
    let config = demo_config(&format!(
        "{CHAOS}config = {{ record = \"record.ndjson\", reject_on_calls = [1] }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let dead = dir.path().join("dead-letter/chaos.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || !read_ndjson(&dead).is_empty()),
        "no dead letter:\n{}",
        host.log()
    );
    let lines = read_ndjson(&dead);
    assert_eq!(lines[0]["source"], "v1/ConfigMap/demo/a");
    assert_eq!(lines[0]["metric"], "demo_value");
    assert_eq!(lines[0]["value"], 7.0);
    assert!(lines[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let rejected = "periscope_exporter_rejected_samples_total{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(5), || host.metric(rejected) == 1.0),
        "{}",
        host.metrics()
    );
    assert!(host.stop().success());
}

#[test]
fn an_export_past_its_timeout_makes_the_exporter_unready_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    // The first export takes 2 s; the host's patience is 300 ms.
    let config = demo_config(&format!(
        "{CHAOS}export_timeout = \"300ms\"\nconfig = {{ record = \"record.ndjson\", export_delay_ms = 2000 }}\n"
    ));
    let host = Host::start(dir.path(), &config);
    let readyz = || http_get(&format!("http://{}/readyz", host.addr)).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (status, body) = readyz();
            status == 503 && body.contains("exporter:chaos: an export call has not returned")
        }),
        "the stalled exporter never showed on /readyz: {:?}\n{}",
        readyz(),
        host.log()
    );
    let stalled = "periscope_exporter_stalled_exports_total{exporter=\"chaos\"}";
    assert_eq!(host.metric(stalled), 1.0, "{}", host.metrics());
    assert_eq!(
        host.metric("periscope_exporter_health{exporter=\"chaos\",state=\"unhealthy\"}"),
        1.0
    );
    // The call returns, the batch is delivered, the exporter is ready again.
    assert!(
        wait_until(Duration::from_secs(10), || readyz().0 == 200),
        "{:?}\n{}",
        readyz(),
        host.log()
    );
    let values = recorded_values(&read_ndjson(&dir.path().join("record.ndjson")), "a");
    assert_eq!(values, [1.0]);
    assert_eq!(host.metric(stalled), 1.0, "counted once");
    assert!(host.log().contains("the stalled export call returned"));
}

#[test]
fn shutdown_ends_within_its_timeout_even_when_an_export_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    // Each export takes 10 minutes; shutdown_timeout is 5 s (demo_config).
    let config = demo_config(&format!(
        "{CHAOS}config = {{ record = \"record.ndjson\", export_delay_ms = 600000 }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    host.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?}:\n{}",
        host.log()
    );
    assert!(
        host.log()
            .contains("has not returned by the end of shutdown_timeout"),
        "{}",
        host.log()
    );
}

#[test]
fn shutdown_delivers_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    // Each export takes 300 ms, so updates pile up in the queue.
    let config = demo_config(&format!(
        "{CHAOS}config = {{ record = \"record.ndjson\", export_delay_ms = 300 }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    for value in [2.0, 3.0, 4.0] {
        std::thread::sleep(Duration::from_millis(150));
        write_configmap(dir.path(), "a", value);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(host.stop().success());
    let values = recorded_values(&read_ndjson(&dir.path().join("record.ndjson")), "a");
    assert_eq!(values.last(), Some(&4.0), "{values:?}");
}

#[test]
fn exporter_that_falls_behind_is_resynced_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    for i in 0..20 {
        write_configmap(dir.path(), &format!("cm{i}"), 0.0);
    }
    // A fan-out of one batch, a queue of one batch and a slow exporter: the intake blocks on the
    // full queue, the fan-out overwrites what it has not read, and the worker must resync.
    let config = demo_config(&format!(
        "{}config = {{ record = \"record.ndjson\", export_delay_ms = 500 }}\n",
        CHAOS.replace(
            "batch = {",
            "queue = { type = \"memory\", capacity = 1 }\nbatch = {"
        )
    ))
    .replace(
        "flush_interval = \"50ms\"",
        "flush_interval = \"10ms\"\nfanout_capacity = 1",
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    for round in 1..=5 {
        for i in 0..20 {
            write_configmap(dir.path(), &format!("cm{i}"), f64::from(round));
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    let record = dir.path().join("record.ndjson");
    let converged = || {
        let lines = read_ndjson(&record);
        (0..20).all(|i| recorded_values(&lines, &format!("cm{i}")).last() == Some(&5.0))
    };
    assert!(
        wait_until(Duration::from_secs(30), converged),
        "the exporter did not converge to the final state:\n{}",
        host.log()
    );
    assert!(
        host.metric("periscope_exporter_lagged_batches_total{exporter=\"chaos\"}") > 0.0,
        "{}",
        host.metrics()
    );
    assert!(
        host.metric("periscope_exporter_resyncs_total{exporter=\"chaos\"}") > 0.0,
        "{}",
        host.metrics()
    );
    assert!(host.stop().success());
}

#[test]
fn disk_queue_survives_kill_9_and_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    write_configmap(dir.path(), "b", 2.0);
    let disk = "queue = { type = \"disk\", path = \"queue\", fsync = \"always\" }\n";
    // First run: the exporter refuses everything (its target is "down"), so batches pile up on disk.
    let refusing = demo_config(&format!(
        "{CHAOS}{disk}config = {{ record = \"record.ndjson\", retry_on_calls = [{}] }}\n",
        (1..=1000)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut host = Host::start(dir.path(), &refusing);
    host.wait_ready(Duration::from_secs(20));
    // The first batch is in the delivery thread's hands, being retried; the next waits on disk.
    let retries = "periscope_exporter_retries_total{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(retries) >= 1.0),
        "{}",
        host.metrics()
    );
    write_configmap(dir.path(), "a", 3.0);
    let queued = "periscope_exporter_queued_batches{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(queued) >= 1.0),
        "{}",
        host.metrics()
    );
    host.kill();
    assert!(
        read_ndjson(&dir.path().join("record.ndjson")).is_empty(),
        "nothing was accepted before the crash"
    );

    // Second run: the target is back. What the crashed run queued is replayed first, in order.
    let accepting = demo_config(&format!(
        "{CHAOS}{disk}config = {{ record = \"record.ndjson\" }}\n"
    ));
    let mut host = Host::start(dir.path(), &accepting);
    host.wait_ready(Duration::from_secs(20));
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || recorded_values(
            &read_ndjson(&record),
            "a"
        )
        .contains(&3.0)),
        "{}",
        host.log()
    );
    let a = recorded_values(&read_ndjson(&record), "a");
    // 1 can only come from the replay: this run read a = 3 from its manifests.
    assert_eq!(distinct_in_order(&a), [1.0, 3.0], "{a:?}");
    assert_eq!(
        recorded_values(&read_ndjson(&record), "b").first(),
        Some(&2.0)
    );
    assert!(host.log().contains("replaying"), "{}", host.log());
    assert!(host.stop().success());
}
