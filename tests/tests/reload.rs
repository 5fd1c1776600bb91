//! Config reloads in the real host process: triggered by a file change, a ConfigMap-style
//! `..data` symlink swap, `SIGHUP` and `POST /-/reload`; a bad config changes nothing and says so;
//! an unchanged exporter keeps its disk queue across reloads; a real Prometheus server scraping
//! the page through a run of reloads never sees a failed scrape or a stale series.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{demo_config, distinct_in_order, recorded_values, write_configmap};
use periscope_tests::{
    Host, free_port, http_get, http_post, metric_value, plugin_dir, read_ndjson, wait_until,
};

const SUCCESS: &str = "periscope_config_reloads_total{result=\"success\"}";
const FAILURE: &str = "periscope_config_reloads_total{result=\"failure\"}";
const LAST_OK: &str = "periscope_config_last_reload_successful";

/// A page exporter on `page`, with the reload route on.
fn page_config(page: SocketAddr) -> String {
    demo_config(&format!(
        "[[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\nbatch = {{ max_wait = \"0s\" }}\n\
         config = {{ listen = \"{page}\" }}\n"
    ))
    .replace(
        "shutdown_timeout = \"5s\"",
        "shutdown_timeout = \"5s\"\nreload_endpoint = true",
    )
}

fn page(page: SocketAddr) -> String {
    http_get(&format!("http://{page}/metrics"))
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn write(dir: &Path, name: &str, text: &str, listen: SocketAddr) {
    std::fs::write(
        dir.join(name),
        text.replace("{listen}", &listen.to_string()),
    )
    .unwrap();
}

/// A host in a new directory with ConfigMap `a` = 1 and a page exporter, once the page shows it:
/// the directory, the host, the page's address and the config it runs.
fn start_with_page() -> (tempfile::TempDir, Host, SocketAddr, String) {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    write_configmap(dir.path(), "a", 1.0);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = page_config(page_addr);
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), || page(page_addr)
            .contains("demo_value{name=\"a\"} 1")),
        "{}",
        page(page_addr)
    );
    (dir, host, page_addr, config)
}

#[test]
fn a_changed_metric_applies_live_and_a_bad_config_changes_nothing() {
    let (dir, mut host, page_addr, config) = start_with_page();
    let pid = host.pid();
    assert_eq!(host.metric(LAST_OK), 1.0);
    let hash_before = host
        .metrics()
        .lines()
        .find(|l| l.starts_with("periscope_config_hash{"))
        .map(str::to_owned)
        .expect("periscope_config_hash on the self-metrics page");

    // A renamed metric, picked up from the file change: the old series goes, the new one comes.
    let renamed = config.replace("name = \"value\"", "name = \"renamed\"");
    write(dir.path(), "periscope.toml", &renamed, host.addr);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let text = page(page_addr);
            text.contains("demo_renamed{name=\"a\"} 1") && !text.contains("demo_value{")
        }),
        "{}\n{}",
        page(page_addr),
        host.log()
    );
    assert_eq!(host.metric(SUCCESS), 1.0, "{}", host.log());
    assert_eq!(host.pid(), pid, "the same process");
    assert!(
        !host.metrics().contains(&hash_before),
        "the hash follows the config"
    );

    // A broken path: refused at its line, nothing changes, the metrics say so.
    let broken = renamed.replace("path = \"data.value\"", "path = \"data.value[\"");
    write(dir.path(), "periscope.toml", &broken, host.addr);
    assert!(
        wait_until(Duration::from_secs(15), || host.metric(FAILURE) >= 1.0),
        "{}",
        host.log()
    );
    assert_eq!(host.metric(LAST_OK), 0.0);
    assert!(
        host.log().contains("config reload refused"),
        "{}",
        host.log()
    );
    write_configmap(dir.path(), "a", 2.0);
    assert!(
        wait_until(Duration::from_secs(10), || page(page_addr)
            .contains("demo_renamed{name=\"a\"} 2")),
        "the old config goes on:\n{}",
        page(page_addr)
    );
    // POST /-/reload answers with the same problem, at its file and line.
    let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("periscope.toml:"), "{body}");
    assert!(body.contains("`resources[0].metrics[0].path`"), "{body}");

    // Fixed again: applied, and a POST with nothing changed is a success that changes nothing.
    write(dir.path(), "periscope.toml", &renamed, host.addr);
    assert!(
        wait_until(Duration::from_secs(15), || host.metric(LAST_OK) == 1.0),
        "{}",
        host.log()
    );
    let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
    assert_eq!((status, body.as_str()), (200, "config reloaded\n"));
    assert!(host.stop().success());
}

#[test]
fn a_prometheus_server_scraping_through_reloads_sees_every_change_and_no_failed_scrape() {
    let (dir, mut host, page_addr, config) = start_with_page();
    let prometheus = periscope_tests::prometheus::Prometheus::start(Some(page_addr), false);
    let one =
        |series: &[periscope_tests::prometheus::Series]| series.len() == 1 && series[0].1 == 1.0;
    prometheus.wait_for("demo_value{name=\"a\"}", Duration::from_secs(30), one);
    let renamed = config.replace("name = \"value\"", "name = \"renamed\"");
    // Back and forth, each reload through POST /-/reload while Prometheus scrapes every second:
    // each time the new name is scraped and the old one is marked stale (gone from an instant
    // query at once, not after five minutes).
    let reloads = 6;
    for i in 0..reloads {
        let (text, now, before) = if i % 2 == 0 {
            (&renamed, "demo_renamed", "demo_value")
        } else {
            (&config, "demo_value", "demo_renamed")
        };
        write(dir.path(), "periscope.toml", text, host.addr);
        let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
        assert_eq!(status, 200, "{body}\n{}", host.log());
        prometheus.wait_for(
            &format!("{now}{{name=\"a\"}}"),
            Duration::from_secs(20),
            one,
        );
        prometheus.wait_for(
            &format!("{before}{{name=\"a\"}}"),
            Duration::from_secs(20),
            |s| s.is_empty(),
        );
    }
    assert_eq!(host.metric(SUCCESS), f64::from(reloads), "{}", host.log());
    // Every scrape of the run succeeded, and there were many.
    let window = "[10m]";
    let scrapes = prometheus.query(&format!("count_over_time(up{{job=\"periscope\"}}{window})"));
    let failed = prometheus.query(&format!("min_over_time(up{{job=\"periscope\"}}{window})"));
    assert!(scrapes.first().is_some_and(|s| s.1 >= 5.0), "{scrapes:?}");
    assert_eq!(failed.first().map(|s| s.1), Some(1.0), "{failed:?}");
    assert!(host.stop().success());
}

#[test]
fn a_setting_that_cannot_change_live_refuses_the_whole_reload() {
    let (dir, mut host, page_addr, config) = start_with_page();
    let other: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let moved = config
        .replace("{listen}", &other.to_string())
        .replace("name = \"value\"", "name = \"renamed\"");
    std::fs::write(dir.path().join("periscope.toml"), moved).unwrap();
    let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("`host.listen` cannot change while the host runs"),
        "{body}"
    );
    assert!(page(page_addr).contains("demo_value{name=\"a\"} 1"));
    assert!(!page(page_addr).contains("demo_renamed"));
    assert!(host.stop().success());
}

#[test]
fn a_configmap_symlink_swap_reloads_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    write_configmap(dir.path(), "a", 1.0);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = page_config(page_addr).replace("{listen}", &listen.to_string());
    // What kubelet mounts: the files behind `..data`, a link per key.
    let mount = dir.path().join("config");
    std::fs::create_dir_all(mount.join("..2026_11_29_1")).unwrap();
    std::fs::write(mount.join("..2026_11_29_1/periscope.toml"), &config).unwrap();
    std::os::unix::fs::symlink("..2026_11_29_1", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/periscope.toml", mount.join("periscope.toml")).unwrap();
    let mut host = Host::spawn(dir.path(), listen, &["--config", "config/periscope.toml"]);
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), || page(page_addr)
            .contains("demo_value{name=\"a\"}")),
        "{}",
        page(page_addr)
    );

    // kubelet's update: a new directory, a new link, renamed over `..data`, the old one removed.
    let renamed = config.replace("name = \"value\"", "name = \"renamed\"");
    std::fs::create_dir_all(mount.join("..2026_11_29_2")).unwrap();
    std::fs::write(mount.join("..2026_11_29_2/periscope.toml"), renamed).unwrap();
    std::os::unix::fs::symlink("..2026_11_29_2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_11_29_1")).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || page(page_addr)
            .contains("demo_renamed{name=\"a\"}")),
        "{}\n{}",
        page(page_addr),
        host.log()
    );
    // Let any late event come in: still one reload.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(host.metric(SUCCESS), 1.0, "{}", host.log());
    assert_eq!(host.metric(FAILURE), 0.0, "{}", host.log());

    // SIGHUP reloads too (nothing changed: a success that changes nothing).
    let pid = nix::unistd::Pid::from_raw(host.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(SUCCESS) == 2.0),
        "{}",
        host.log()
    );
    assert!(host.stop().success());
}

#[test]
fn an_unchanged_exporter_keeps_its_disk_queue_across_20_reloads_and_delivers_it_all() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["chaos", "prometheus"]);
    write_configmap(dir.path(), "a", 0.0);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The chaos exporter's target is down (for its first million calls); its queue is on disk.
    let chaos = |target: &str| {
        format!(
            "[[exporters]]\nname = \"chaos\"\nplugin = \"chaos\"\nbatch = {{ max_wait = \"10ms\" }}\n\
             retry = {{ initial = \"20ms\", max = \"50ms\" }}\n\
             queue = {{ type = \"disk\", path = \"queue\", fsync = \"never\" }}\n\
             config = {{ record = \"record.ndjson\"{target} }}\n"
        )
    };
    let down = ", retry_through_call = 1000000";
    let config = |revision: usize, target: &str| {
        page_config(page_addr).replace(
            "[[exporters]]\nname = \"page\"",
            &format!("{}[[exporters]]\nname = \"page\"", chaos(target)),
        ) + &format!("# revision {revision}\n")
    };
    let mut host = Host::start(dir.path(), &config(0, down));
    host.wait_ready(Duration::from_secs(20));
    let reload = |host: &Host, revision: usize, target: &'static str| {
        write(
            dir.path(),
            "periscope.toml",
            &config(revision, target),
            host.addr,
        );
        let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
        assert_eq!(status, 200, "{body}\n{}", host.log());
    };
    for value in 1..=20 {
        write_configmap(dir.path(), "a", f64::from(value));
        assert!(
            wait_until(Duration::from_secs(10), || page(page_addr)
                .contains(&format!("demo_value{{name=\"a\"}} {value}"))),
            "{}",
            page(page_addr)
        );
        reload(&host, value as usize, down);
    }
    // Each change is applied once; a POST or file event finding it applied is a success too.
    assert!(host.metric(SUCCESS) >= 20.0, "{}", host.log());
    assert!(
        read_ndjson(&dir.path().join("record.ndjson")).is_empty(),
        "the target was down all along"
    );
    assert_eq!(
        host.metric("periscope_exporter_restarts_total{exporter=\"chaos\"}"),
        0.0,
        "the exporter was never replaced:\n{}",
        host.log()
    );
    // The target comes back (a changed exporter config: the worker is replaced and the new one
    // replays the queue).
    reload(&host, 21, "");
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || recorded_values(
            &read_ndjson(&record),
            "a"
        )
        .contains(&20.0)),
        "{}",
        host.log()
    );
    let a = distinct_in_order(&recorded_values(&read_ndjson(&record), "a"));
    let expected: Vec<f64> = (0..=20).map(f64::from).collect();
    assert_eq!(a, expected, "every value, once, in order");
    assert_eq!(
        metric_value(
            &host.metrics(),
            "periscope_exporter_dropped_samples_total{exporter=\"chaos\",reason=\"shutdown\"}"
        )
        .unwrap_or(0.0),
        0.0
    );
    assert!(host.stop().success());
}

/// How many LISTs of ConfigMaps the apiserver has answered, from its own metrics.
async fn configmap_lists(client: &kube::Client) -> f64 {
    let request = hyper::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(request)
        .await
        .expect("apiserver metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains("verb=\"LIST\"") && l.contains("resource=\"configmaps\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_metric_on_a_watched_kind_applies_without_a_new_list_unless_it_reads_what_was_dropped()
 {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, PostParams};
    use periscope_tests::controlplane::{ControlPlane, kube_client};

    let cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("reload".to_owned());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), "reload");
    // `PERISCOPE_RELOAD_OBJECTS` ConfigMaps (200 by default), 64 requests in flight.
    let n: usize = std::env::var("PERISCOPE_RELOAD_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let configmaps = configmaps.clone();
        creating.spawn(async move {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("cm-{i:05}"));
            cm.data = Some([("value".to_owned(), i.to_string())].into());
            configmaps
                .create(&PostParams::default(), &cm)
                .await
                .unwrap();
            drop(permit);
        });
    }
    while let Some(created) = creating.join_next().await {
        created.unwrap();
    }
    let patience = Duration::from_secs(20 + n as u64 / 100);

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    let page_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = format!(
        r#"[host]
listen = "{{listen}}"
plugin_dirs = ["plugins"]
flush_interval = "50ms"
reload_endpoint = true

[kubernetes]
kubeconfig = "{kubeconfig}"

[[resources]]
version = "v1"
kind = "ConfigMap"
namespaces = ["reload"]
prefix = "demo"
labels = {{ name = "metadata.name" }}

  [[resources.metrics]]
  name = "value"
  type = "gauge"
  path = "data.value"

  [[resources.aggregates]]
  name = "count"
  type = "count"

[[exporters]]
name = "page"
plugin = "prometheus"
batch = {{ max_wait = "0s" }}
config = {{ listen = "{page_addr}" }}
"#,
        kubeconfig = cp.kubeconfig_path().display()
    );
    let dir_path = dir.path().to_owned();
    let mut host = tokio::task::spawn_blocking(move || {
        let mut host = Host::start(&dir_path, &config);
        host.wait_ready(Duration::from_secs(30));
        host
    })
    .await
    .unwrap();
    let series = |text: &str, metric: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{name=")))
            .count()
    };
    let settled = |metric: &'static str| {
        move || {
            let text = page(page_addr);
            series(&text, metric) == n && metric_value(&text, "demo_count") == Some(n as f64)
        }
    };
    assert!(
        wait_until(patience, settled("demo_value")),
        "{}",
        page(page_addr)
    );
    let lists_before = configmap_lists(&client).await;
    assert!(lists_before >= 1.0, "the watch listed once");
    // The watch holds every object, pruned: a served ConfigMap with its managed fields is about
    // 450 bytes of JSON; its key and `data.value` are about 150, which LZ4 hardly shrinks.
    let watch = "watch=\"kubernetes:v1/ConfigMap@reload\"";
    let held = |metric: &str| metric_value(&page(host.addr), &format!("{metric}{{{watch}}}"));
    assert!(
        wait_until(patience, || held("periscope_watch_objects")
            == Some(n as f64)),
        "{}",
        page(host.addr)
    );
    let bytes = held("periscope_watch_held_bytes").unwrap_or_default();
    eprintln!("{n} objects held in {bytes} bytes");
    assert!(
        bytes > 0.0 && bytes < 200.0 * n as f64,
        "{bytes} bytes held for {n} objects"
    );

    // Rename the metric and count only some of the objects: a new pipeline, the same watch.
    let text = std::fs::read_to_string(dir.path().join("periscope.toml")).unwrap();
    let renamed = text.replace("name = \"value\"", "name = \"renamed\"");
    std::fs::write(dir.path().join("periscope.toml"), renamed).unwrap();
    let addr = host.addr;
    let reloading = std::time::Instant::now();
    let (status, body) =
        tokio::task::spawn_blocking(move || http_post(&format!("http://{addr}/-/reload")).unwrap())
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}\n{}", host.log());
    // While the watch applies its objects again, the aggregate never shows a half-filled count.
    let mut counts = Vec::new();
    assert!(
        wait_until(patience, || {
            let text = page(page_addr);
            counts.extend(metric_value(&text, "demo_count"));
            settled("demo_renamed")() && series(&text, "demo_value") == 0
        }),
        "{}\n{}",
        page(page_addr),
        host.log()
    );
    eprintln!(
        "{n} objects: the page showed every renamed series {:?} after POST /-/reload",
        reloading.elapsed()
    );
    assert!(
        counts.iter().all(|c| *c == n as f64),
        "demo_count during the reload: {counts:?}"
    );
    assert_eq!(
        configmap_lists(&client).await,
        lists_before,
        "no new list for a changed metric:\n{}",
        host.log()
    );

    // A metric that reads `metadata.managedFields`, which the watch pruned from the objects it
    // holds (no entry read it): this reload lists the objects again, once.
    let text = std::fs::read_to_string(dir.path().join("periscope.toml")).unwrap();
    let managed = text.replace(
        "  [[resources.aggregates]]",
        "  [[resources.metrics]]\n  name = \"manager\"\n  type = \"info\"\n  \
         labels = { manager = \"metadata.managedFields[0].manager\" }\n\n  [[resources.aggregates]]",
    );
    std::fs::write(dir.path().join("periscope.toml"), managed).unwrap();
    let (status, body) =
        tokio::task::spawn_blocking(move || http_post(&format!("http://{addr}/-/reload")).unwrap())
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}\n{}", host.log());
    let managers = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("demo_manager_info{") && !l.contains("manager=\"\""))
            .filter(|l| l.contains("manager=\""))
            .count()
    };
    assert!(
        wait_until(patience, || managers(&page(page_addr)) == n),
        "{}\n{}",
        page(page_addr),
        host.log()
    );
    assert_eq!(
        configmap_lists(&client).await,
        lists_before + 1.0,
        "one new list for what the held objects lack:\n{}",
        host.log()
    );
    assert!(host.stop().success());
}

#[test]
fn a_plugin_file_replaced_on_disk_is_loaded_as_a_new_library_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&dir.path().join("plugins"), &["chaos"]);
    write_configmap(dir.path(), "a", 1.0);
    // The library's call counter rejects its first export: a new library rejects one again.
    let config = demo_config(
        "[[exporters]]\nname = \"chaos\"\nplugin = \"chaos\"\nbatch = { max_wait = \"10ms\" }\n\
         config = { record = \"record.ndjson\", reject_on_calls = [1] }\n",
    )
    .replace(
        "shutdown_timeout = \"5s\"",
        "shutdown_timeout = \"5s\"\nreload_endpoint = true",
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let rejected = "periscope_exporter_rejected_samples_total{exporter=\"chaos\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(rejected) == 1.0),
        "{}",
        host.log()
    );
    let info = |host: &Host| {
        host.metrics()
            .lines()
            .find(|l| l.starts_with("periscope_exporter_info{exporter=\"chaos\""))
            .map(str::to_owned)
    };
    assert!(
        wait_until(Duration::from_secs(10), || info(&host).is_some()),
        "{}",
        host.metrics()
    );
    let file = plugins.join(periscope_tests::plugin_file("chaos"));
    let (_, inspect, _) =
        periscope_tests::periscope(&["plugins", "inspect", file.to_str().unwrap()], dir.path());
    let sha256 = inspect
        .lines()
        .find_map(|l| l.strip_prefix("sha256:"))
        .map(str::trim)
        .expect("periscope plugins inspect prints the sha256")
        .to_owned();
    assert!(
        info(&host)
            .unwrap()
            .contains(&format!("sha256=\"{sha256}\"")),
        "{}",
        info(&host).unwrap()
    );

    // A nothing-changed reload keeps the library (no second rejection)…
    let reload = |host: &Host| {
        let (status, body) = http_post(&format!("http://{}/-/reload", host.addr)).unwrap();
        assert_eq!(status, 200, "{body}");
    };
    reload(&host);
    // …a new file in its place (a new inode, as a package upgrade writes it) is a new library.
    let staged = plugins.join("staged.tmp");
    std::fs::copy(&file, &staged).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    reload(&host);
    write_configmap(dir.path(), "a", 2.0);
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(rejected) == 2.0),
        "the new library counts its calls from 1 again:\n{}",
        host.log()
    );
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || recorded_values(
            &read_ndjson(&record),
            "a"
        )
        .contains(&2.0)),
        "{}",
        host.log()
    );
    assert!(host.stop().success());
}
