//! The Prometheus exporters end to end: the host process with an offline manifests source and the
//! `prometheus` (page) and `prometheus-remote-write` plugins, checked by a real Prometheus server
//! (scrape and remote write), by `promtool check metrics`, and by a strict parser of both
//! exposition formats.
//!
//! Needs Debian's prometheus package: `bash tests/prometheus/install.sh`.

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{demo_config, write_configmap};
use periscope_plugin_api::config::parse;
use periscope_plugin_api::{
    BatchBuilder, Context, Export, Exporter, Family, FamilyKind, Source, SourceKind, Suffix, now_ms,
};
use periscope_prometheus::{PrometheusExporter, RemoteWriteExporter};
use periscope_tests::prometheus::{Prometheus, Series, binary, parse_exposition};
use periscope_tests::tls_proxy::{Credentials, TlsProxy};
use periscope_tests::{Host, free_port, plugin_dir, repo_root, wait_until};

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// An `[[exporters]]` entry of the page plugin (`prometheus`) named `prom`, with `config` as its
/// table's contents.
fn exporter(config: &str) -> String {
    exporter_entry("prom", "prometheus", config)
}

/// An `[[exporters]]` entry of the remote-write plugin named `push`.
fn remote_write_exporter(config: &str) -> String {
    exporter_entry("push", "prometheus-remote-write", config)
}

fn exporter_entry(name: &str, plugin: &str, config: &str) -> String {
    format!(
        "[[exporters]]\nname = \"{name}\"\nplugin = \"{plugin}\"\nbatch = {{ max_samples = 10000, max_wait = \"100ms\" }}\nconfig = {{ {config} }}\n"
    )
}

/// `GET url` with headers: status, response headers (lower-case names), body bytes.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut body)
        .unwrap();
    (response.status().as_u16(), headers, body)
}

/// The page in the text format, OpenMetrics and gzipped OpenMetrics, each checked for its
/// Content-Type and parsed strictly; returns the three parses' text pages.
fn fetch_all_formats(url: &str) -> (String, String) {
    let (status, headers, body) = get(url, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    parse_exposition(&text, false).unwrap_or_else(|e| panic!("text format: {e}\n{text}"));

    let (_, headers, body) = get(url, &[("Accept", OPENMETRICS)]);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = String::from_utf8(body).unwrap();
    parse_exposition(&om, true).unwrap_or_else(|e| panic!("OpenMetrics: {e}\n{om}"));

    let (_, headers, body) = get(url, &[("Accept", OPENMETRICS), ("Accept-Encoding", "gzip")]);
    assert_eq!(headers["content-encoding"], "gzip");
    let mut unzipped = String::new();
    // A single-member reader: the page must be one gzip member, for every client.
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    parse_exposition(&unzipped, true).unwrap_or_else(|e| panic!("gzipped OpenMetrics: {e}"));
    (text, om)
}

fn by_name(series: &[Series]) -> BTreeMap<String, f64> {
    series
        .iter()
        .map(|(labels, value)| (labels["name"].clone(), *value))
        .collect()
}

fn start_host(dir: &Path, config: &str) -> Host {
    plugin_dir(
        &dir.join("plugins"),
        &["prometheus", "prometheus-remote-write"],
    );
    let mut host = Host::start(dir, config);
    host.wait_ready(Duration::from_secs(20));
    host
}

#[test]
fn prometheus_scrapes_the_series_and_removed_sources_go_stale() {
    let dir = tempfile::tempdir().unwrap();
    write_configmap(dir.path(), "alpha", 1.5);
    write_configmap(dir.path(), "beta", 2.0);
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut host = start_host(
        dir.path(),
        &demo_config(&exporter(&format!(
            "listen = \"{listen}\", const_labels = {{ cluster = \"lab\" }}"
        ))),
    );
    let prometheus = Prometheus::start(Some(listen), false);

    let series = prometheus.wait_for("demo_value", Duration::from_secs(30), |r| r.len() == 2);
    assert_eq!(
        by_name(&series),
        BTreeMap::from([("alpha".into(), 1.5), ("beta".into(), 2.0)])
    );
    let (labels, _) = &series[0];
    assert_eq!(labels["job"], "periscope");
    assert_eq!(labels["cluster"], "lab");
    assert_eq!(labels["instance"], listen.to_string());
    // Prometheus 2.42 asks for OpenMetrics first: the scrapes it counted as good were that.
    prometheus.wait_for("up{job=\"periscope\"}", Duration::from_secs(10), |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    let scrapes = prometheus.wait_for(
        "periscope_prometheus_exporter_scrapes_total{format=\"openmetrics\"}",
        Duration::from_secs(10),
        |r| r.len() == 1 && r[0].1 >= 1.0,
    );
    assert!(scrapes[0].1 >= 1.0);

    // An edit shows; a deleted manifest removes its source, whose series go stale at once.
    write_configmap(dir.path(), "alpha", 7.0);
    prometheus.wait_for("demo_value{name=\"alpha\"}", Duration::from_secs(30), |r| {
        r.len() == 1 && r[0].1 == 7.0
    });
    std::fs::remove_file(dir.path().join("manifests/beta.yaml")).unwrap();
    let series = prometheus.wait_for("demo_value", Duration::from_secs(30), |r| r.len() == 1);
    assert_eq!(by_name(&series), BTreeMap::from([("alpha".into(), 7.0)]));
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn remote_write_pushes_samples_and_stale_markers_to_prometheus() {
    let prometheus = Prometheus::start(None, true);
    let dir = tempfile::tempdir().unwrap();
    write_configmap(dir.path(), "alpha", 3.0);
    write_configmap(dir.path(), "beta", 4.0);
    // One sample per request: a batch goes out as several requests.
    let mut host = start_host(
        dir.path(),
        &demo_config(&remote_write_exporter(&format!(
            "url = \"{}\", max_samples_per_request = 1, timeout = \"5s\"",
            prometheus.remote_write_url()
        ))),
    );
    let series = prometheus.wait_for("demo_value", Duration::from_secs(30), |r| r.len() == 2);
    assert_eq!(
        by_name(&series),
        BTreeMap::from([("alpha".into(), 3.0), ("beta".into(), 4.0)])
    );
    assert!(!series[0].0.contains_key("job"), "pushed, not scraped");

    // Removing a source sends stale markers: its series leave the instant query at once.
    std::fs::remove_file(dir.path().join("manifests/beta.yaml")).unwrap();
    let series = prometheus.wait_for("demo_value", Duration::from_secs(30), |r| r.len() == 1);
    assert_eq!(by_name(&series), BTreeMap::from([("alpha".into(), 3.0)]));
    assert!(
        host.metric("periscope_exporter_rejected_samples_total{exporter=\"push\"}") == 0.0,
        "{}",
        host.log()
    );
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn a_receiver_refusing_every_push_never_keeps_a_change_off_the_page() {
    // Prometheus without its remote-write receiver refuses every push with a 4xx, and scrapes.
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let prometheus = Prometheus::start(Some(listen), false);
    let dir = tempfile::tempdir().unwrap();
    write_configmap(dir.path(), "alpha", 1.0);
    let config = format!(
        "{}{}",
        exporter(&format!("listen = \"{listen}\"")),
        remote_write_exporter(&format!(
            "url = \"{}\", timeout = \"5s\"",
            prometheus.remote_write_url()
        ))
    );
    let mut host = start_host(dir.path(), &demo_config(&config));
    prometheus.wait_for("demo_value{name=\"alpha\"}", Duration::from_secs(30), |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    write_configmap(dir.path(), "alpha", 2.0);
    prometheus.wait_for("demo_value{name=\"alpha\"}", Duration::from_secs(30), |r| {
        r.len() == 1 && r[0].1 == 2.0
    });
    // The pushes went to the remote-write exporter's own dead-letter file; the page's has none.
    assert!(
        wait_until(Duration::from_secs(10), || {
            host.metric("periscope_exporter_rejected_samples_total{exporter=\"push\"}") >= 2.0
        }),
        "{}",
        host.log()
    );
    assert_eq!(
        host.metric("periscope_exporter_rejected_samples_total{exporter=\"prom\"}"),
        0.0
    );
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/push.ndjson")).unwrap();
    assert!(dead.contains("demo_value"), "{dead}");
    assert!(!dir.path().join("dead-letter/prom.ndjson").exists());
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn a_partly_refused_batch_names_the_refused_sample_and_the_rest_is_stored() {
    let prometheus = Prometheus::start(None, true);
    let config = parse(&format!(
        "url = \"{}\"\nmax_samples_per_request = 1\ntimeout = \"5s\"",
        prometheus.remote_write_url()
    ))
    .unwrap();
    let mut exporter = RemoteWriteExporter::new(config, Context { exporter: "t" }).unwrap();
    let now = now_ms();
    let batch = |samples: &[(&str, f64, i64)]| {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "partial",
            help: "A gauge.",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        for (series, value, timestamp) in samples {
            b.replace(Source::new(SourceKind::Object, series))
                .sample(f, Suffix::None, *value, *timestamp)
                .label("s", series);
        }
        b.build()
    };
    assert_eq!(
        exporter.export(&batch(&[("x", 1.0, now)])).unwrap(),
        Export::Ok
    );
    // One request per series: `x` a minute older than what Prometheus has is out of order.
    let result = exporter
        .export(&batch(&[
            ("y", 2.0, now),
            ("x", 5.0, now - 60_000),
            ("z", 3.0, now),
        ]))
        .unwrap();
    let Export::RejectItems { items } = result else {
        panic!("expected refused items, got {result:?}");
    };
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((items[0].update, items[0].sample), (1, Some(0)));
    assert!(items[0].reason.contains("HTTP 400"), "{items:?}");
    let series = prometheus.wait_for("partial", Duration::from_secs(10), |r| r.len() == 3);
    let values: BTreeMap<_, _> = series
        .iter()
        .map(|(labels, value)| (labels["s"].clone(), *value))
        .collect();
    assert_eq!(
        values,
        BTreeMap::from([("x".into(), 1.0), ("y".into(), 2.0), ("z".into(), 3.0)])
    );
}

#[test]
fn remote_write_goes_over_tls_with_basic_auth_read_from_a_file() {
    let prometheus = Prometheus::start(None, true);
    let dir = tempfile::tempdir().unwrap();
    // The receiver behind HTTPS with a throwaway CA that demands these credentials.
    let credentials = Credentials::Basic {
        username: "periscope".into(),
        password: "s3cret".into(),
    };
    let proxy = TlsProxy::start(prometheus.addr, &credentials, dir.path());
    let password = dir.path().join("rw-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    write_configmap(dir.path(), "alpha", 3.0);
    let mut host = start_host(
        dir.path(),
        &demo_config(&remote_write_exporter(&format!(
            "url = \"{}/api/v1/write\", timeout = \"5s\", \
             auth = {{ username = \"periscope\", password_file = \"{}\" }}, \
             tls = {{ ca_file = \"{}\" }}",
            proxy.url(),
            password.display(),
            proxy.ca_file().display()
        ))),
    );
    let series = prometheus.wait_for("demo_value", Duration::from_secs(30), |r| r.len() == 1);
    assert_eq!(by_name(&series), BTreeMap::from([("alpha".into(), 3.0)]));
    assert!(proxy.forwarded() >= 1);
    assert_eq!(proxy.unauthorized(), 0, "{}", host.log());
    assert!(host.stop().success(), "{}", host.log());
}

/// The quick-start config with the prometheus exporter beside the file exporter.
fn quickstart_config(listen: SocketAddr) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples/quickstart/periscope.toml")).unwrap();
    let text = text
        .replace(
            "path = \"examples/quickstart/manifests\"",
            "path = \"manifests\"",
        )
        .replace(
            "listen = \"127.0.0.1:9464\"",
            "listen = \"{listen}\"\nplugin_dirs = [\"plugins\"]",
        );
    format!("{text}\n{}", exporter(&format!("listen = \"{listen}\"")))
}

#[test]
fn promtool_and_a_strict_parser_accept_the_quickstart_page() {
    let promtool = binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/quickstart/manifests")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), manifests.join(entry.file_name())).unwrap();
    }
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut host = start_host(dir.path(), &quickstart_config(listen));
    let url = format!("http://{listen}/metrics");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (_, _, body) = get(&url, &[]);
            let text = String::from_utf8_lossy(&body).into_owned();
            text.contains("kubevirt_vmi_info{") && text.contains("kube_node_status_ready{")
        }),
        "no quick-start series on the page:\n{}",
        host.log()
    );
    let (text, om) = fetch_all_formats(&url);

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n{text}"
    );

    // Types per format: info and state set are gauges in 0.0.4; OpenMetrics keeps info.
    assert!(text.contains("# TYPE kubevirt_vmi_info gauge\n"));
    assert!(om.contains("# TYPE kubevirt_vmi info\n"));
    assert!(om.contains("# UNIT kube_node_status_capacity_memory_bytes bytes\n"));
    assert!(text.contains("kubevirt_vmi_status_phase{name=\"fedora-web\",namespace=\"default\",phase=\"Running\"} 1\n"), "{text}");
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn weird_names_and_values_survive_both_formats_and_gzip() {
    let config =
        parse("listen = \"127.0.0.1:0\"\nmetric_prefix = \"t_\"\nmax_label_value_length = 100")
            .unwrap();
    let mut exporter = PrometheusExporter::new(config, Context { exporter: "t" }).unwrap();
    let weird = "quote \" backslash \\ newline \n tab \t unicode ü€ 🚀 braces {}=,";
    let mut b = BatchBuilder::new();
    let gauge = b.family(Family {
        name: "odd.family-name",
        help: "Help with \"quotes\", \\ and a\nnewline.",
        unit: "",
        kind: FamilyKind::Gauge,
    });
    let counter = b.family(Family {
        name: "restarts",
        help: "Restarts.",
        unit: "",
        kind: FamilyKind::Counter,
    });
    let states = b.family(Family {
        name: "state",
        help: "A state set.",
        unit: "",
        kind: FamilyKind::StateSet,
    });
    let mut r = b.replace(Source::new(SourceKind::Object, "weird"));
    r.sample(gauge, Suffix::None, -0.25, 0)
        .label("app.kubernetes.io/name", weird)
        .label("9lives", "x")
        .label("long", &"y".repeat(150));
    r.sample(counter, Suffix::Total, 5.0, 0).label("a", "");
    for (state, value) in [("on", 1.0), ("off", 0.0)] {
        r.sample(states, Suffix::None, value, 0)
            .label("t_state", state);
    }
    assert_eq!(exporter.export(&b.build()).unwrap(), Export::Ok);
    let url = format!("http://{}/metrics", exporter.local_addr());
    let (text, om) = fetch_all_formats(&url);

    for (page, openmetrics) in [(&text, false), (&om, true)] {
        let families = parse_exposition(page, openmetrics).unwrap();
        let odd = families
            .iter()
            .find(|f| f.name == "t_odd_family_name")
            .expect("sanitized family");
        assert_eq!(
            odd.help.as_deref(),
            Some("Help with \"quotes\", \\ and a\nnewline.")
        );
        let (_, labels, value) = &odd.samples[0];
        assert_eq!(labels["app_kubernetes_io_name"], weird);
        assert_eq!(labels["_9lives"], "x");
        assert_eq!(labels["long"], "y".repeat(100));
        assert_eq!(*value, -0.25);
        let restarts = families
            .iter()
            .find(|f| f.kind == "counter" && f.name.starts_with("t_restarts"))
            .unwrap();
        assert_eq!(restarts.samples[0].0, "t_restarts_total");
        // The state label is named after the family: a state set in OpenMetrics.
        let state = families.iter().find(|f| f.name == "t_state").unwrap();
        assert_eq!(state.kind, if openmetrics { "stateset" } else { "gauge" });
    }
    // The sanitized names and the cut value are counted on the same page.
    assert!(
        text.contains("periscope_prometheus_exporter_invalid_names_total{kind=\"metric\"} 1\n")
    );
    assert!(text.contains("periscope_prometheus_exporter_invalid_names_total{kind=\"label\"} 2\n"));
    assert!(text.contains("periscope_prometheus_exporter_label_values_truncated_total 1\n"));
    exporter.shutdown().unwrap();
}

/// A batch of `sources` sources with one `g_value` series each, valued `value`.
fn gauges(sources: usize, value: f64) -> periscope_plugin_api::Batch {
    gauges_of(0..sources, value)
}

/// A batch of the sources numbered `range` with one `g_value` series each, valued `value`.
fn gauges_of(range: std::ops::Range<usize>, value: f64) -> periscope_plugin_api::Batch {
    let mut b = BatchBuilder::new();
    let gauge = b.family(Family {
        name: "value",
        help: "A gauge.",
        unit: "",
        kind: FamilyKind::Gauge,
    });
    for i in range {
        let id = format!("source-{i:05}");
        b.replace(Source::new(SourceKind::Object, &id))
            .sample(gauge, Suffix::None, value, 0)
            .label("name", &id)
            .label("pad", &"x".repeat(i % 97));
    }
    b.build()
}

/// Whether a query answered one value, `value`.
fn count(value: f64) -> impl FnMut(&[Series]) -> bool {
    move |r| r.len() == 1 && r[0].1 == value
}

#[test]
fn prometheus_reads_gzip_pages_made_from_kept_series_and_pieces() {
    let config = parse("listen = \"127.0.0.1:0\"\nmetric_prefix = \"g_\"").unwrap();
    let mut exporter = PrometheusExporter::new(config, Context { exporter: "g" }).unwrap();
    // Large enough for several deflate blocks in the kept part.
    let sources = 3000;
    assert_eq!(exporter.export(&gauges(sources, 1.0)).unwrap(), Export::Ok);
    let prometheus = Prometheus::start(Some(exporter.local_addr()), false);
    prometheus.wait_for(
        "count(g_value == 1)",
        Duration::from_secs(30),
        count(sources as f64),
    );
    // Prometheus asks for gzip: its scrapes of an unchanged state are served from the kept
    // series, each with a fresh end (the scrape counter Prometheus reads keeps rising).
    let reused = exporter.gzip_pages().reused();
    let scraped = prometheus.wait_for(
        "periscope_prometheus_exporter_scrapes_total{format=\"openmetrics\"}",
        Duration::from_secs(10),
        |r| r.len() == 1 && r[0].1 >= 4.0,
    )[0]
    .1;
    prometheus.wait_for(
        "periscope_prometheus_exporter_scrapes_total{format=\"openmetrics\"}",
        Duration::from_secs(10),
        |r| r.len() == 1 && r[0].1 >= scraped + 2.0,
    );
    assert!(exporter.gzip_pages().reused() >= reused + 2);
    assert_eq!(
        exporter.gzip_pages().len(),
        1,
        "one body: the current state's"
    );
    prometheus.wait_for("up", Duration::from_secs(5), |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    // Every series and the page's end, in every scrape: none failed (a bad CRC fails one).
    prometheus.wait_for(
        "min_over_time(scrape_samples_scraped[10s]) == max_over_time(scrape_samples_scraped[10s])",
        Duration::from_secs(10),
        |r| r.len() == 1 && r[0].1 > sources as f64,
    );
    prometheus.wait_for("min_over_time(up[10s])", Duration::from_secs(5), count(1.0));

    // A new state: its body is made once and kept in turn.
    assert_eq!(exporter.export(&gauges(sources, 2.0)).unwrap(), Export::Ok);
    prometheus.wait_for(
        "count(g_value == 2)",
        Duration::from_secs(30),
        count(sources as f64),
    );
    let reused = exporter.gzip_pages().reused();
    wait_until(Duration::from_secs(10), || {
        exporter.gzip_pages().reused() >= reused + 2
    });
    assert!(exporter.gzip_pages().reused() >= reused + 2);
    prometheus.wait_for("min_over_time(up[10s])", Duration::from_secs(5), count(1.0));

    // One source changes: the body is made again from the kept pieces but the one that holds
    // that source (its header's and the other chunks' are reused), and Prometheus reads it whole.
    let compressed = exporter.gzip_pages().compressed();
    assert_eq!(
        exporter.export(&gauges_of(1234..1235, 3.0)).unwrap(),
        Export::Ok
    );
    prometheus.wait_for("count(g_value == 3)", Duration::from_secs(30), count(1.0));
    prometheus.wait_for(
        "count(g_value == 2)",
        Duration::from_secs(5),
        count(sources as f64 - 1.0),
    );
    assert_eq!(exporter.gzip_pages().compressed(), compressed + 1);
    prometheus.wait_for("min_over_time(up[10s])", Duration::from_secs(5), count(1.0));
    exporter.shutdown().unwrap();
}

#[test]
fn https_with_basic_auth_serves_the_page_only_to_the_right_user() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), signing_key.serialize_pem()).unwrap();
    let config = parse(&format!(
        "listen = \"127.0.0.1:0\"\ntls = {{ cert_file = \"{0}/tls.crt\", key_file = \"{0}/tls.key\" }}\nauth = {{ username = \"prom\", password = \"s3cret\" }}",
        dir.path().display()
    ))
    .unwrap();
    let mut exporter = PrometheusExporter::new(config, Context { exporter: "t" }).unwrap();
    let url = format!("https://localhost:{}/metrics", exporter.local_addr().port());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    ureq::tls::Certificate::from_der(cert.der()).to_owned(),
                ])))
                .build(),
        )
        .build()
        .into();
    let status = |auth: Option<&str>| {
        let mut request = agent.get(&url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.call().unwrap().status().as_u16()
    };
    assert_eq!(status(None), 401);
    // base64("prom:wrong") and base64("prom:s3cret").
    assert_eq!(status(Some("Basic cHJvbTp3cm9uZw==")), 401);
    assert_eq!(status(Some("Basic cHJvbTpzM2NyZXQ=")), 200);
    // Plain HTTP on the TLS port gets nothing.
    let plain = format!("http://127.0.0.1:{}/metrics", exporter.local_addr().port());
    assert!(
        periscope_tests::http_get(&plain).is_err()
            || periscope_tests::http_get(&plain).is_ok_and(|(s, _)| s != 200)
    );
    exporter.shutdown().unwrap();
}
