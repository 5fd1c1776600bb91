//! Unit tests across the modules: a batch in, a page (or pushed series) out.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use periscope_plugin_api::config::parse;
use periscope_plugin_api::{
    Batch, BatchBuilder, Context, Export, Exporter, Family, FamilyKind, Health, Source, SourceKind,
    Suffix,
};
use prost::Message as _;

use crate::block::LineOptions;
use crate::format::Format;
use crate::remote_write::WriteRequest;
use crate::render::render;
use crate::state::{Ingest, Item, Options, STALE_NAN, State};
use crate::stats::{Stats, StatsDelta};
use crate::{PrometheusExporter, RemoteWriteExporter};

const OM: Format = Format::OpenMetrics { v0_0_1: false };

fn family(name: &'static str, kind: FamilyKind) -> Family<'static> {
    Family {
        name,
        help: "Help \"quoted\" \\ and\nnewline.",
        unit: "",
        kind,
    }
}

/// One VM: a gauge, a counter, an info and a state set.
fn vm_batch(name: &str, phase: &str) -> Batch {
    let mut b = BatchBuilder::new();
    let memory = b.family(Family {
        unit: "bytes",
        ..family("vm_memory_bytes", FamilyKind::Gauge)
    });
    let restarts = b.family(family("vm_restarts", FamilyKind::Counter));
    let info = b.family(family("vm", FamilyKind::Info));
    let phase_family = b.family(family("vm_phase", FamilyKind::StateSet));
    let id = format!("default/{name}");
    let mut r = b.replace(Source::new(SourceKind::Object, &id));
    r.sample(memory, Suffix::None, 2048.0, 1000)
        .label("name", name);
    r.sample(restarts, Suffix::Total, 3.0, 1000)
        .label("name", name);
    r.sample(info, Suffix::Info, 1.0, 1000)
        .label("name", name)
        .label("os", "fedora");
    for state in ["Running", "Pending"] {
        r.sample(
            phase_family,
            Suffix::None,
            if state == phase { 1.0 } else { 0.0 },
            1000,
        )
        .label("name", name)
        .label("vm_phase", state);
    }
    b.build()
}

fn apply(state: &mut State, options: &Options, batch: &Batch) -> StatsDelta {
    let mut ingest = Ingest::new(options, false, 0);
    state.apply(batch, &mut ingest);
    ingest.finish().0
}

/// The page without the exporter's own metrics.
fn page(state: &State, format: Format) -> String {
    let mut out = Vec::new();
    render(state, format, &Stats::default(), &mut out);
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .filter(|l| !l.contains("periscope_prometheus_exporter_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_text_format_has_one_header_per_family_and_gauges_for_info_and_stateset() {
    let mut state = State::default();
    let options = Options::default();
    apply(&mut state, &options, &vm_batch("a", "Running"));
    apply(&mut state, &options, &vm_batch("b", "Pending"));
    let help = "Help \"quoted\" \\\\ and\\nnewline.";
    let expected = format!(
        "# HELP vm_info {help}
# TYPE vm_info gauge
vm_info{{name=\"a\",os=\"fedora\"}} 1
vm_info{{name=\"b\",os=\"fedora\"}} 1
# HELP vm_memory_bytes {help}
# TYPE vm_memory_bytes gauge
vm_memory_bytes{{name=\"a\"}} 2048
vm_memory_bytes{{name=\"b\"}} 2048
# HELP vm_phase {help}
# TYPE vm_phase gauge
vm_phase{{name=\"a\",vm_phase=\"Running\"}} 1
vm_phase{{name=\"a\",vm_phase=\"Pending\"}} 0
vm_phase{{name=\"b\",vm_phase=\"Running\"}} 0
vm_phase{{name=\"b\",vm_phase=\"Pending\"}} 1
# HELP vm_restarts_total {help}
# TYPE vm_restarts_total counter
vm_restarts_total{{name=\"a\"}} 3
vm_restarts_total{{name=\"b\"}} 3
"
    );
    assert_eq!(page(&state, Format::Text), expected);
}

#[test]
fn openmetrics_keeps_its_types_names_counters_without_total_and_ends_with_eof() {
    let mut state = State::default();
    apply(&mut state, &Options::default(), &vm_batch("a", "Running"));
    let text = page(&state, OM);
    let help = "Help \\\"quoted\\\" \\\\ and\\nnewline.";
    assert!(
        text.starts_with(&format!("# TYPE vm info\n# HELP vm {help}\nvm_info{{")),
        "{text}"
    );
    assert!(text.contains("# TYPE vm_memory_bytes gauge\n# UNIT vm_memory_bytes bytes\n"));
    assert!(text.contains("# TYPE vm_phase stateset\n"));
    assert!(text.contains("# TYPE vm_restarts counter\n# HELP vm_restarts "));
    assert!(text.contains("\nvm_restarts_total{name=\"a\"} 3\n"));
    assert!(text.ends_with("# EOF\n"));
    assert!(!page(&state, Format::Text).contains("# EOF"));
}

#[test]
fn an_openmetrics_stateset_without_its_label_is_a_gauge() {
    let mut b = BatchBuilder::new();
    let f = b.family(family("vm_status_phase", FamilyKind::StateSet));
    let i = b.family(family("vm_odd", FamilyKind::Info));
    let mut r = b.replace(Source::new(SourceKind::Object, "x"));
    r.sample(f, Suffix::None, 1.0, 0).label("phase", "Running");
    r.sample(i, Suffix::Info, 2.0, 0);
    let mut state = State::default();
    apply(&mut state, &Options::default(), &b.build());
    let text = page(&state, OM);
    assert!(text.contains("# TYPE vm_status_phase gauge\n"), "{text}");
    assert!(text.contains("# TYPE vm_odd_info gauge\n"), "{text}");
}

#[test]
fn weird_names_and_values_are_sanitized_escaped_and_counted() {
    let mut b = BatchBuilder::new();
    let f = b.family(family("kube.node-ready", FamilyKind::Gauge));
    let mut r = b.replace(Source::new(SourceKind::Object, "x"));
    r.sample(f, Suffix::None, f64::NAN, 0)
        .label("app.kubernetes.io/name", "a\"b\\c\nd")
        .label("app_kubernetes_io_name", "dup")
        .label("ok", "ünï");
    let mut state = State::default();
    let delta = apply(&mut state, &Options::default(), &b.build());
    assert_eq!(
        page(&state, Format::Text).lines().last().unwrap(),
        "kube_node_ready{app_kubernetes_io_name=\"a\\\"b\\\\c\\nd\",ok=\"ünï\"} NaN"
    );
    assert_eq!(delta.invalid_metric_names, 1);
    assert_eq!(delta.invalid_label_names, 1);
    assert_eq!(delta.duplicate_labels, 1);
}

#[test]
fn limits_drop_and_cut_and_count_but_never_fail() {
    let options = Options {
        max_series_per_family: Some(3),
        line: LineOptions {
            max_label_value_length: Some(4),
            const_labels: vec![],
        },
        ..Options::default()
    };
    let batch = |source: &str, n: usize| {
        let mut b = BatchBuilder::new();
        let f = b.family(family("g", FamilyKind::Gauge));
        let mut r = b.replace(Source::new(SourceKind::Object, source));
        for i in 0..n {
            r.sample(f, Suffix::None, i as f64, 0)
                .label("i", &i.to_string())
                .label("long", "abcdefgh");
        }
        b.build()
    };
    let mut state = State::default();
    let delta = apply(&mut state, &options, &batch("a", 2));
    assert_eq!(delta.truncated_label_values, 2);
    let delta = apply(&mut state, &options, &batch("b", 5));
    assert_eq!(delta.series_over_limit, 4);
    assert_eq!(state.series_count(), 3);
    assert!(page(&state, Format::Text).contains("g{i=\"0\",long=\"abcd\"} 0\n"));
    // Replacing a source frees its series for the family's budget.
    let delta = apply(&mut state, &options, &batch("a", 0));
    assert_eq!(delta.series_over_limit, 0);
    let delta = apply(&mut state, &options, &batch("b", 5));
    assert_eq!(delta.series_over_limit, 2);
    assert_eq!(state.series_count(), 3);
}

#[test]
fn prefix_and_constant_labels_apply_and_a_samples_own_label_wins() {
    let options = Options {
        metric_prefix: "p_".into(),
        line: LineOptions {
            max_label_value_length: None,
            const_labels: vec![
                ("cluster".into(), "lab".into()),
                ("name".into(), "c".into()),
            ],
        },
        ..Options::default()
    };
    let mut state = State::default();
    apply(&mut state, &options, &vm_batch("a", "Running"));
    let text = page(&state, Format::Text);
    assert!(
        text.contains("p_vm_memory_bytes{name=\"a\",cluster=\"lab\"} 2048\n"),
        "{text}"
    );
}

#[test]
fn replace_swaps_a_sources_series_and_remove_drops_them() {
    let options = Options::default();
    let mut state = State::default();
    apply(&mut state, &options, &vm_batch("a", "Running"));
    apply(&mut state, &options, &vm_batch("b", "Running"));
    let mut b = BatchBuilder::new();
    let f = b.family(family("vm_memory_bytes", FamilyKind::Gauge));
    b.replace(Source::new(SourceKind::Object, "default/a"))
        .sample(f, Suffix::None, 1.0, 0)
        .label("name", "a");
    b.remove(Source::new(SourceKind::Object, "default/b"));
    apply(&mut state, &options, &b.build());
    assert_eq!(
        page(&state, Format::Text)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["vm_memory_bytes{name=\"a\"} 1"]
    );
    assert_eq!(state.source_count(), 1);
    assert_eq!(state.series_count(), 1);
}

#[test]
fn removing_a_source_pushes_stale_markers_for_its_last_series() {
    let options = Options::default();
    let mut state = State::default();
    let mut ingest = Ingest::new(&options, true, 5000);
    state.apply(&vm_batch("a", "Running"), &mut ingest);
    let (_, pushed) = ingest.finish();
    assert_eq!(pushed.len(), 5);
    let memory = &pushed[0].series;
    assert_eq!(memory.labels[0].name, "__name__");
    assert_eq!(memory.labels[0].value, "vm_memory_bytes");
    assert_eq!(
        (memory.samples[0].value, memory.samples[0].timestamp),
        (2048.0, 1000)
    );
    assert_eq!(
        pushed.iter().map(|p| p.item).collect::<Vec<_>>(),
        (0..5)
            .map(|sample| Item::Sample { update: 0, sample })
            .collect::<Vec<_>>()
    );

    let mut b = BatchBuilder::new();
    b.remove(Source::new(SourceKind::Object, "default/a"));
    let mut ingest = Ingest::new(&options, true, 5000);
    state.apply(&b.build(), &mut ingest);
    let (_, stale) = ingest.finish();
    assert_eq!(stale.len(), 5);
    assert!(stale.iter().all(|p| p.item == Item::Removal { update: 0 }
        && p.series.samples[0].value.to_bits() == STALE_NAN
        && p.series.samples[0].timestamp == 5000));
}

#[test]
fn a_replace_that_drops_series_pushes_stale_markers_that_stand_for_no_item() {
    let options = Options::default();
    let mut state = State::default();
    apply(&mut state, &options, &vm_batch("a", "Running"));
    let mut b = BatchBuilder::new();
    let f = b.family(family("vm_memory_bytes", FamilyKind::Gauge));
    b.replace(Source::new(SourceKind::Object, "default/a"))
        .sample(f, Suffix::None, 1.0, 7)
        .label("name", "a");
    let mut ingest = Ingest::new(&options, true, 5000);
    state.apply(&b.build(), &mut ingest);
    let (_, pushed) = ingest.finish();
    let items: Vec<_> = pushed.iter().map(|p| p.item).collect();
    assert_eq!(
        items[0],
        Item::Sample {
            update: 0,
            sample: 0
        }
    );
    assert_eq!(items[1..], [Item::Vanished; 4]);
}

#[test]
fn series_over_the_limit_are_not_pushed_and_items_keep_their_sample_positions() {
    let options = Options {
        max_series_per_family: Some(1),
        ..Options::default()
    };
    let mut b = BatchBuilder::new();
    let f = b.family(family("g", FamilyKind::Gauge));
    let mut r = b.replace(Source::new(SourceKind::Object, "x"));
    r.sample(f, Suffix::None, 1.0, 0).label("i", "0");
    r.sample(f, Suffix::None, 2.0, 0).label("i", "1");
    let g = r.family(family("h", FamilyKind::Gauge));
    r.sample(g, Suffix::None, 3.0, 0);
    let mut ingest = Ingest::new(&options, true, 0);
    State::default().apply(&b.build(), &mut ingest);
    let (delta, pushed) = ingest.finish();
    assert_eq!(delta.series_over_limit, 1);
    assert_eq!(
        pushed.iter().map(|p| p.item).collect::<Vec<_>>(),
        [
            Item::Sample {
                update: 0,
                sample: 0
            },
            Item::Sample {
                update: 0,
                sample: 2
            }
        ]
    );
}

/// A remote-write receiver on a loopback port that answers request after request with the next
/// status of a script (then 200) and keeps every request it got: fault injection for the push.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<WriteRequest>>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.to_vec()));
        let kept = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (kept, script) = (kept.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &kept, &script));
            }
        });
        Receiver { url, received }
    }

    /// The first sample value of every request received, in order.
    fn values(&self) -> Vec<f64> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.timeseries[0].samples[0].value)
            .collect()
    }
}

fn serve(stream: std::net::TcpStream, kept: &Mutex<Vec<WriteRequest>>, script: &Mutex<Vec<u16>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        kept.lock()
            .unwrap()
            .push(WriteRequest::decode(&raw[..]).unwrap());
        let status = {
            let mut script = script.lock().unwrap();
            if script.is_empty() {
                200
            } else {
                script.remove(0)
            }
        };
        let message = format!("scripted {status}");
        write!(
            writer,
            "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nretry-after: 0\r\n\r\n{message}",
            message.len()
        )
        .unwrap();
    }
}

fn remote_writer(url: &str) -> RemoteWriteExporter {
    let config = parse(&format!(
        "url = \"{url}\"\nmax_samples_per_request = 1\ntimeout = \"5s\""
    ))
    .unwrap();
    RemoteWriteExporter::new(config, Context { exporter: "t" }).unwrap()
}

/// Sources `a` (values 1, 2) and `b` (values 3, 4): four series, one request each.
fn two_sources() -> Batch {
    let mut b = BatchBuilder::new();
    let f = b.family(family("g", FamilyKind::Gauge));
    for (source, values) in [("a", [1.0, 2.0]), ("b", [3.0, 4.0])] {
        let mut r = b.replace(Source::new(SourceKind::Object, source));
        for value in values {
            r.sample(f, Suffix::None, value, 1000)
                .label("source", source)
                .label("v", &value.to_string());
        }
    }
    b.build()
}

#[test]
fn a_refused_request_names_its_items_and_a_retry_sends_only_what_is_left() {
    // Request 2 is refused for good, request 3 fails for now, then everything is taken.
    let receiver = Receiver::start(&[200, 400, 503]);
    let mut exporter = remote_writer(&receiver.url);
    let batch = two_sources();
    let first = exporter.export(&batch).unwrap();
    assert!(matches!(first, Export::Retry { .. }), "{first:?}");
    assert!(matches!(exporter.health(), Health::Degraded(r) if r.contains("503")));
    assert_eq!(receiver.values(), [1.0, 2.0, 3.0]);

    let second = exporter.export(&batch).unwrap();
    let Export::RejectItems { items } = second else {
        panic!("expected refused items, got {second:?}");
    };
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].update, items[0].sample), (0, Some(1)));
    assert!(
        items[0].reason.contains("HTTP 400: scripted 400"),
        "{items:?}"
    );
    // The stored request 1 and the refused request 2 were not sent again.
    assert_eq!(receiver.values(), [1.0, 2.0, 3.0, 3.0, 4.0]);

    // The batch counts as applied: removing `a` marks both its series stale, the refused one too.
    let mut b = BatchBuilder::new();
    b.remove(Source::new(SourceKind::Object, "a"));
    assert_eq!(exporter.export(&b.build()).unwrap(), Export::Ok);
    assert_eq!(exporter.health(), Health::Healthy);
    let received = receiver.received.lock().unwrap();
    assert_eq!(received.len(), 7);
    assert!(
        received[5..]
            .iter()
            .all(|r| r.timeseries[0].samples[0].value.to_bits() == STALE_NAN)
    );
}

#[test]
fn a_refused_removal_is_named_once_as_its_whole_update() {
    let receiver = Receiver::start(&[200, 200, 200, 200, 400, 400]);
    let mut exporter = remote_writer(&receiver.url);
    assert_eq!(exporter.export(&two_sources()).unwrap(), Export::Ok);
    let mut b = BatchBuilder::new();
    b.remove(Source::new(SourceKind::Object, "b"));
    b.remove(Source::new(SourceKind::Object, "a"));
    let result = exporter.export(&b.build()).unwrap();
    let Export::RejectItems { items } = result else {
        panic!("expected refused items, got {result:?}");
    };
    assert_eq!(
        items
            .iter()
            .map(|i| (i.update, i.sample))
            .collect::<Vec<_>>(),
        [(0, None)]
    );
    assert_eq!(receiver.values().len(), 8);
}

#[test]
fn another_batch_after_a_retry_starts_from_the_last_applied_state() {
    let receiver = Receiver::start(&[200, 503]);
    let mut exporter = remote_writer(&receiver.url);
    assert!(matches!(
        exporter.export(&two_sources()).unwrap(),
        Export::Retry { .. }
    ));
    // Another batch than the one retried: all of it goes out, from the last applied state
    // (where `a` and `b` are unknown, so no stale markers for them).
    assert_eq!(
        exporter.export(&vm_batch("c", "Running")).unwrap(),
        Export::Ok
    );
    assert_eq!(receiver.values(), [1.0, 2.0, 2048.0, 3.0, 1.0, 1.0, 0.0]);
}

#[test]
fn a_receiver_that_is_down_asks_for_a_retry() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens on `port` any more: the push fails to connect.
    let mut exporter = remote_writer(&format!("http://127.0.0.1:{port}/api/v1/write"));
    let result = exporter.export(&vm_batch("a", "Running")).unwrap();
    assert!(matches!(result, Export::Retry { .. }), "{result:?}");
    assert!(matches!(exporter.health(), Health::Degraded(_)));
}

fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.call().unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut body)
        .unwrap();
    (response.status().as_u16(), headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_server_negotiates_format_and_gzip_and_checks_credentials() {
    let config =
        parse("listen = \"127.0.0.1:0\"\npath = \"/m\"\nauth = { token = \"t0k\" }").unwrap();
    let mut exporter = PrometheusExporter::new(config, Context { exporter: "t" }).unwrap();
    assert_eq!(
        exporter.export(&vm_batch("a", "Running")).unwrap(),
        Export::Ok
    );
    let url = format!("http://{}/m", exporter.local_addr());
    let auth = ("Authorization", "Bearer t0k");

    let (status, headers, _) = get(&url, &[]);
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(get(&url, &[("Authorization", "Bearer nope")]).0, 401);
    assert_eq!(get(&format!("{url}x"), &[auth]).0, 404);

    let (status, headers, body) = get(&url, &[auth]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("vm_restarts_total{name=\"a\"} 3\n"));
    assert!(text.contains("periscope_prometheus_exporter_scrapes_total{format=\"text\"} 1\n"));

    let (status, headers, body) = get(
        &url,
        &[
            auth,
            (
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            ),
            ("Accept-Encoding", "gzip"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("# TYPE vm_restarts counter\n"));
    assert!(text.ends_with("# EOF\n"));
    exporter.shutdown().unwrap();
}

#[test]
fn a_busy_address_fails_new_with_the_address() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let config = parse(&format!("listen = \"{addr}\"")).unwrap();
    let err = PrometheusExporter::new(config, Context { exporter: "t" }).unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn stats_render_in_both_formats() {
    let stats = Arc::new(Stats::default());
    let mut text = Vec::new();
    stats.render(Format::Text, &mut text);
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("# TYPE periscope_prometheus_exporter_exports_total counter\n"));
    let mut om = Vec::new();
    stats.render(OM, &mut om);
    let om = String::from_utf8(om).unwrap();
    assert!(om.contains("# TYPE periscope_prometheus_exporter_exports counter\n"));
    assert!(om.contains("periscope_prometheus_exporter_exports_total 0\n"));
}
