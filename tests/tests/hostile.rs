//! Hostile-but-fair input, each case against the real host process and real files, each bounded
//! in time: what an operator or a peer can send must give a clear error, a count, or be cut — never
//! a panic, a silent stop or unbounded memory.
//!
//! Every case that runs a host records the host's peak resident memory (`VmHWM`) in its output
//! (`cargo test -p periscope-tests --test hostile -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{demo_config, line_of, write_configmap};
use periscope_tests::{Host, periscope, plugin_dir, wait_until};

/// The peak resident memory of process `pid` in KiB (`VmHWM` of `/proc/<pid>/status`).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Prints and returns the host's peak RSS, for the suite's table.
fn report_peak_rss(case: &str, host: &Host) -> u64 {
    let kib = host.pid().and_then(peak_rss_kib).unwrap_or(0);
    println!("peak RSS of the host, {case}: {kib} KiB");
    kib
}

/// Writes `config` as `bad.toml` next to a plugin directory and runs `periscope check` on it; it
/// must exit 1. Its error lines (those starting with the file name).
fn check_refuses(config: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        config.replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let (status, _, stderr) = periscope(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(
        status.code(),
        Some(1),
        "`periscope check` must exit 1:\n{stderr}"
    );
    stderr
        .lines()
        .filter(|l| l.starts_with("bad.toml:"))
        .map(str::to_owned)
        .collect()
}

fn file_exporter(extra: &str) -> String {
    format!(
        "[[exporters]]\nname = \"files\"\nplugin = \"file\"\nconfig = {{ path = \"out.ndjson\" }}\n{extra}\n"
    )
}

#[test]
fn durations_out_of_range_are_refused_with_their_position() {
    let cases = [
        (
            "flush_interval = \"50ms\"",
            "flush_interval = \"0s\"",
            "host.flush_interval",
        ),
        (
            "flush_interval = \"50ms\"",
            "flush_interval = \"1ns\"",
            "host.flush_interval",
        ),
        (
            "shutdown_timeout = \"5s\"",
            "shutdown_timeout = \"400000000000y\"",
            "host.shutdown_timeout",
        ),
    ];
    for (from, to, key) in cases {
        let config = demo_config(&file_exporter("")).replace(from, to);
        let line = line_of(&config, to);
        let errors = check_refuses(&config);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("bad.toml:{line}:1: `{key}`: "))
                    && e.contains("is out of range")),
            "{to}: {errors:?}"
        );
    }
    let config = demo_config(&file_exporter("batch = { max_wait = \"400000000000y\" }"));
    let line = line_of(&config, "max_wait");
    let errors = check_refuses(&config);
    assert!(
        errors.iter().any(|e| e.starts_with(&format!(
            "bad.toml:{line}:11: `exporters[0].batch.max_wait`: "
        ))),
        "{errors:?}"
    );
}

#[test]
fn a_files_path_that_is_a_device_is_refused_by_check() {
    let config =
        demo_config(&file_exporter("")).replace("path = \"manifests\"", "path = \"/dev/zero\"");
    let line = line_of(&config, "/dev/zero");
    let errors = check_refuses(&config);
    assert!(
        errors.iter().any(|e| e
            .starts_with(&format!("bad.toml:{line}:1: `sources.files[0].path`: "))
            && e.contains("neither a regular file nor a directory")),
        "{errors:?}"
    );
}

#[test]
fn devices_fifos_symlink_loops_and_oversized_files_in_a_directory_are_counted_not_read() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    write_configmap(dir.path(), "good", 1.0);
    let manifests = dir.path().join("manifests");
    std::os::unix::fs::symlink("/dev/zero", manifests.join("zero.yaml")).unwrap();
    let fifo = manifests.join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink(manifests.join("b.yaml"), manifests.join("a.yaml")).unwrap();
    std::os::unix::fs::symlink(manifests.join("a.yaml"), manifests.join("b.yaml")).unwrap();
    std::fs::write(manifests.join("big.yaml"), "#".repeat(4096)).unwrap();
    let config = demo_config(&file_exporter("")).replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nmax_file_bytes = \"1KiB\"",
    );

    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let errors = "periscope_input_errors_total{input=\"files:manifests\",kind=\"read\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(errors) >= 5.0),
        "five refused entries (zero, fifo, a, b, big) are counted: {}\n{}",
        host.metric(errors),
        host.log()
    );
    // Reported once each, not at every read.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host.metric(errors), 5.0, "{}", host.log());
    let log = host.log();
    for expected in [
        "a character device",
        "a FIFO",
        "larger than `max_file_bytes`",
    ] {
        assert!(log.contains(expected), "{expected}:\n{log}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(dir.path().join("out.ndjson"))
                .is_ok_and(|t| t.contains("demo_value"))
        }),
        "the good manifest is still exported:\n{}",
        host.log()
    );
    let rss = report_peak_rss("refused entries in a files directory", &host);
    assert!(rss < 200 * 1024, "{rss} KiB");
    let started = Instant::now();
    let status = host.stop();
    assert!(status.success(), "{status}\n{}", host.log());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_disk_queue_with_foreign_entries_and_a_random_ack_starts_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    write_configmap(dir.path(), "good", 1.0);
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(queue.join("00000000000000000099.seg")).unwrap();
    std::fs::write(queue.join("5.seg"), b"junk").unwrap();
    std::fs::write(
        queue.join("ack"),
        [
            0x5a, 0x17, 0xc3, 0x88, 0x01, 0xfe, 0x42, 0x9d, 0x33, 0x10, 0xaa, 0x07, 0x6b, 0xe4,
            0x29, 0xd1,
        ],
    )
    .unwrap();
    let config = demo_config(&file_exporter(
        "queue = { type = \"disk\", path = \"queue\", fsync = \"always\" }",
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(dir.path().join("out.ndjson"))
                .is_ok_and(|t| t.contains("demo_value"))
        }),
        "delivered through the queue:\n{}",
        host.log()
    );
    let log = host.log();
    assert!(
        log.contains("a foreign entry in the disk queue directory"),
        "{log}"
    );
    assert!(log.contains("names no segment present"), "{log}");
    report_peak_rss("foreign entries and a random ack in the disk queue", &host);
    assert!(host.stop().success(), "{}", host.log());
    // Foreign entries are left alone.
    assert!(queue.join("5.seg").is_file());
    assert!(queue.join("00000000000000000099.seg").is_dir());
}

#[test]
fn a_world_writable_plugin_directory_and_non_elf_plugins_are_refused_with_a_reason() {
    use std::os::unix::fs::PermissionsExt as _;
    let config = demo_config(&file_exporter(""));
    let line = line_of(&config, "plugin = \"file\"");
    type Spoil = fn(&std::path::Path);
    let cases: [(&str, Spoil); 3] = [
        (
            "the plugin directory is group- or world-writable",
            |plugins| {
                std::fs::set_permissions(plugins, std::fs::Permissions::from_mode(0o777)).unwrap();
            },
        ),
        ("the file is empty, not an ELF shared library", |plugins| {
            std::fs::write(plugins.join("libperiscope_exporter_file.so"), b"").unwrap();
        }),
        ("not an ELF shared library (no ELF header)", |plugins| {
            std::fs::write(
                plugins.join("libperiscope_exporter_file.so"),
                b"#!/bin/sh\n",
            )
            .unwrap();
        }),
    ];
    for (expected, spoil) in cases {
        let dir = tempfile::tempdir().unwrap();
        let plugins = plugin_dir(&dir.path().join("plugins"), &["file"]);
        spoil(&plugins);
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            config.replace("{listen}", "127.0.0.1:1"),
        )
        .unwrap();
        let (status, _, stderr) = periscope(&["check", "--config", "bad.toml"], dir.path());
        assert_eq!(status.code(), Some(1), "{expected}:\n{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("bad.toml:{line}:")) && l.contains(expected)),
            "{expected}:\n{stderr}"
        );
    }
}

/// A page of `series` gauge series `big{series="…",pod="p"}`.
fn big_page(series: usize) -> Vec<u8> {
    let mut page = String::from("# TYPE big gauge\n");
    for i in 0..series {
        page.push_str(&format!("big{{series=\"{i:07}\",pod=\"p\"}} {i}\n"));
    }
    page.into_bytes()
}

/// Whether the server closed `stream` (an end of stream or a reset) within `within`, reading and
/// discarding whatever it sent before.
fn closed_by_server(stream: &std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read as _;
    let until = Instant::now() + within;
    let mut reader = stream;
    let mut buffer = vec![0u8; 1 << 16];
    while Instant::now() < until {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match reader.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

#[test]
fn clients_that_never_read_a_big_page_or_stay_idle_are_dropped_and_counted() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    // 130 000 series: a page of about 9 MB once the exporter adds `job` and `instance`.
    let upstream = serve_page(big_page(130_000));
    let port = periscope_tests::free_port();
    let config = demo_config(&format!(
        "[[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\n\
         config = {{ listen = \"127.0.0.1:{port}\", write_timeout = \"2s\", idle_timeout = \"1s\" }}\n"
    ))
    .replace(
        "[[resources]]",
        &format!(
            "[[endpoints]]\nname = \"big\"\nurls = [\"http://127.0.0.1:{upstream}/metrics\"]\n\
             interval = \"30s\"\ntimeout = \"10s\"\nmax_samples = 200000\nmax_response_bytes = \"64MiB\"\n\n[[resources]]"
        ),
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let page = format!("http://127.0.0.1:{port}/metrics");
    let mut size = 0;
    assert!(
        wait_until(Duration::from_secs(90), || periscope_tests::http_get(&page)
            .is_ok_and(|(_, body)| {
                size = body.len();
                body.contains("series=\"0129999\"")
            })),
        "the page is served:\n{}",
        host.log()
    );
    assert!(size > 8 << 20, "a page of {size} bytes");

    // 200 clients ask for the page and never read it: those over the cap of 32 are closed at
    // once, the others once `write_timeout` has passed.
    let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = stream.write_all(request.as_bytes());
        clients.push(stream);
    }
    let stats = |reason: &str| {
        let series = format!(
            "periscope_prometheus_exporter_connections_dropped_total{{reason=\"{reason}\"}}"
        );
        let body = periscope_tests::http_get(&page)
            .map(|(_, b)| b)
            .unwrap_or_default();
        periscope_tests::metric_value(&body, &series).unwrap_or(0.0)
    };
    let mut too_slow = 0.0;
    assert!(
        wait_until(Duration::from_secs(15), || {
            too_slow = stats("too_slow");
            too_slow >= 32.0
        }),
        "the 32 clients that took a slot and never read are dropped: {too_slow}\n{}",
        host.log()
    );
    let dropped_after = started.elapsed();
    assert!(
        stats("over_limit") >= 168.0,
        "over the cap: {}",
        stats("over_limit")
    );
    // The server closed every one of them: each reads to an end of stream.
    let open = clients
        .iter()
        .filter(|stream| !closed_by_server(stream, Duration::from_secs(2)))
        .count();
    assert_eq!(open, 0, "{open} of 200 connections are still open");
    drop(clients);
    println!("200 non-reading clients dropped after {dropped_after:?}");

    // A connection that sends nothing, and a kept-alive one after its scrape, are closed after
    // `idle_timeout`.
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.write_all(format!("GET /missing HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = [0u8; 512];
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = kept.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 404"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    let idle_since = Instant::now();
    assert!(closed_by_server(&silent, Duration::from_secs(5)));
    assert!(closed_by_server(&kept, Duration::from_secs(5)));
    let idle_for = idle_since.elapsed();
    assert!(
        idle_for >= Duration::from_millis(800) && idle_for < Duration::from_secs(4),
        "{idle_for:?}"
    );
    assert!(stats("idle") >= 2.0, "{}", stats("idle"));

    let rss = report_peak_rss(
        "200 clients that never read a 9 MB Prometheus page, then idle ones",
        &host,
    );
    // The 32 responses share one copy of the page, held for at most `write_timeout` (each held
    // its own copy before: 420 MB).
    assert!(rss < 200 * 1024, "{rss} KiB");
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn check_asks_the_plugin_what_new_would_refuse() {
    let config = demo_config(
        "[[exporters]]\nname = \"files\"\nplugin = \"file\"\nconfig = { path = \"out.ndjson\", max_bytes = 0 }\n",
    );
    let line = line_of(&config, "max_bytes = 0");
    let errors = check_refuses(&config);
    assert!(
        errors.iter().any(|e| e.starts_with(&format!(
            "bad.toml:{line}:33: `exporters[0].config.max_bytes`: plugin `file` refuses its config:"
        ))),
        "{errors:?}"
    );
}

/// Serves `body` as a Prometheus text page to every connection on a free port, until the test
/// ends; the port.
fn serve_page(body: Vec<u8>) -> u16 {
    serve(body, "text/plain; version=0.0.4")
}

/// Serves `body` as `content_type` to every connection on a free port, until the test ends; the
/// port.
fn serve(body: Vec<u8>, content_type: &'static str) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

/// Starts a host scraping `page` every 2 s with the endpoint lines `extra`, into the file
/// exporter.
fn scrape_page(dir: &std::path::Path, page: Vec<u8>, extra: &str) -> Host {
    plugin_dir(&dir.join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let port = serve_page(page);
    let config = demo_config(&file_exporter("")).replace(
        "[[resources]]",
        &format!(
            "[[endpoints]]\nname = \"big\"\nurls = [\"http://127.0.0.1:{port}/metrics\"]\n\
             interval = \"2s\"\ntimeout = \"2s\"\nmax_response_bytes = \"64MiB\"\n{extra}\n\n[[resources]]"
        ),
    );
    Host::start(dir, &config)
}

/// Waits until `logged` is in the host's log.
fn wait_logged(host: &Host, logged: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || host.log().contains(logged)),
        "{logged}:\n{}",
        host.log()
    );
}

#[test]
fn a_page_over_max_samples_is_cut_while_it_is_parsed_with_or_without_keep() {
    // One million series, about 40 MB.
    let page = big_page(1_000_000);
    for (case, extra) in [
        ("a 1M-series page against max_samples = 1000", ""),
        (
            "a 1M-series page against max_samples = 1000 and keep",
            "keep = [\"big\"]\ndrop = [\"small\"]",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut host = scrape_page(
            dir.path(),
            page.clone(),
            &format!("max_samples = 1000\n{extra}"),
        );
        wait_logged(&host, "more samples than max_samples (1000)");
        let rss = report_peak_rss(case, &host);
        assert!(rss < 200 * 1024, "{case}: {rss} KiB");
        assert!(host.stop().success(), "{}", host.log());
    }
}

#[test]
fn samples_left_out_by_keep_are_never_held() {
    // A million series `keep` leaves out, and ten it keeps.
    let mut page = big_page(1_000_000);
    for i in 0..10 {
        page.extend_from_slice(format!("small{{i=\"{i}\"}} {i}\n").as_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let mut host = scrape_page(dir.path(), page, "max_samples = 1000\nkeep = [\"small\"]");
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.contains("small"))
        }),
        "the kept samples are exported:\n{}",
        host.log()
    );
    let record = periscope_tests::read_ndjson(&out);
    let last = |metric: &str| {
        record
            .iter()
            .filter(|r| r["metric"] == metric)
            .filter_map(|r| r["value"].as_f64())
            .next_back()
    };
    let (scraped, post) = (
        last("scrape_samples_scraped"),
        last("scrape_samples_post_metric_relabeling"),
    );
    assert_eq!((scraped, post), (Some(1_000_010.0), Some(10.0)));
    let rss = report_peak_rss("a 1M-series page of which keep takes 10", &host);
    assert!(rss < 200 * 1024, "{rss} KiB");
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn too_many_labels_and_too_long_label_names_or_values_fail_the_scrape() {
    let mut many = String::from("m{");
    for i in 0..100_000 {
        many.push_str(&format!("l{i}=\"v\","));
    }
    many.push_str("} 1\n");
    let long = format!("m{{l=\"{}\"}} 1\n", "x".repeat(15 << 20));
    let long_name = format!("m{{{}=\"v\"}} 1\n", "n".repeat(1 << 20));
    for (page, expected) in [
        (
            long_name,
            "over label_name_length_limit (1024): line 1: sample m: a label name of 1048576 bytes",
        ),
        (
            many,
            "over label_limit (64): line 1: sample m: more than 64 labels",
        ),
        (
            long,
            "over label_value_length_limit (4096): line 1: sample m: the value of label",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut host = scrape_page(dir.path(), page.into_bytes(), "");
        wait_logged(&host, expected);
        let rss = report_peak_rss(expected, &host);
        assert!(rss < 200 * 1024, "{rss} KiB");
        assert!(host.stop().success(), "{}", host.log());
    }
}

#[test]
fn the_remaining_config_errors_carry_a_position() {
    let config = demo_config(
        "[[exporters]]\nname = \"files\"\nplugin = \"file\"\nqueue = { type = \"memory\", capacity = 0 }\n",
    );
    let plugin = line_of(&config, "plugin = \"file\"");
    let capacity = line_of(&config, "capacity = 0");
    let errors = check_refuses(&config);
    for expected in [
        format!(
            "bad.toml:{plugin}:10: `exporters[0].config`: plugin `file` refuses its config: missing field `path`"
        ),
        format!("bad.toml:{capacity}:28: `exporters[0].queue.capacity`: 0 is out of range"),
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&expected)),
            "{expected}\n{errors:?}"
        );
    }
    let config = demo_config(&file_exporter("")).replace("path = \"manifests\"\n", "");
    let line = line_of(&config, "[[sources.files]]");
    let errors = check_refuses(&config);
    assert!(
        errors.iter().any(|e| e.starts_with(&format!(
            "bad.toml:{line}:1: `sources.files[0]`: missing field `path`"
        ))),
        "{errors:?}"
    );
}

#[test]
fn secret_and_certificate_files_that_are_devices_fifos_or_huge_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let huge = dir.path().join("huge.pem");
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    pem.resize(8 << 20, b'A');
    std::fs::write(&huge, pem).unwrap();
    let entry = |auth: &str, tls: &str| {
        demo_config(&file_exporter("")).replace(
            "[[resources]]",
            &format!(
                "[[endpoints]]\nname = \"e\"\nurls = [\"https://127.0.0.1:1/metrics\"]\n\
                 auth = {{ {auth} }}\ntls = {{ {tls} }}\n\n[[resources]]"
            ),
        )
    };
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    let cases = [
        (
            entry(
                &format!("token_file = \"{}\"", fifo.display()),
                "insecure_skip_verify = true",
            ),
            "token_file",
            "not a regular file (a FIFO)",
        ),
        (
            entry(
                &format!("token_file = \"{}\"", token.display()),
                "ca_file = \"/dev/zero\"",
            ),
            "ca_file",
            "not a regular file (a character device)",
        ),
        (
            entry(
                &format!("token_file = \"{}\"", token.display()),
                &format!("ca_file = \"{}\"", huge.display()),
            ),
            "ca_file",
            "larger than 4194304 bytes",
        ),
    ];
    for (config, key, expected) in cases {
        let line = line_of(&config, &format!("{key} = "));
        let started = Instant::now();
        let errors = check_refuses(&config);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("bad.toml:{line}:"))
                    && e.contains(&format!(".{key}`: "))
                    && e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
}

#[test]
fn deep_or_huge_json_answers_fail_the_scrape_with_bounded_memory() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // 16 MiB of tiny values: the most values a default `max_response_bytes` lets in.
    let mut many = String::from("{\"a\":[");
    while many.len() < (16 << 20) - 16 {
        many.push_str("0,");
    }
    many.push_str("0]}");
    for (case, body, expected) in [
        (
            "a JSON answer nested 100000 deep",
            deep,
            "recursion limit exceeded",
        ),
        (
            "a JSON answer of 8M values",
            many,
            "more than 1000000 values in the answer",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        plugin_dir(&dir.path().join("plugins"), &["file"]);
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        let port = serve(body.into_bytes(), "application/json");
        let config = demo_config(&file_exporter("")).replace(
            "[[resources]]",
            &format!(
                "[[endpoints]]\nname = \"json\"\nurls = [\"http://127.0.0.1:{port}/\"]\n\
                 format = \"json\"\ninterval = \"2s\"\ntimeout = \"2s\"\n\n\
                 \x20 [[endpoints.metrics]]\n  name = \"a\"\n  type = \"gauge\"\n  each = \"a[*]\"\n  path = \".\"\n\n[[resources]]"
            ),
        );
        let mut host = Host::start(dir.path(), &config);
        wait_logged(&host, expected);
        let rss = report_peak_rss(case, &host);
        assert!(host.stop().success(), "{}", host.log());
        assert!(rss < 250 * 1024, "{case}: {rss} KiB");
    }
}

#[test]
fn manifests_with_alias_bombs_or_deep_nesting_are_refused_and_counted() {
    // Nine levels of nine aliases: 387 million strings once expanded.
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n  namespace: demo\n  uid: uid-bomb\ndata:\n  l0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..9 {
        let previous = format!("*l{}", level - 1);
        let items = [previous.as_str(); 9].join(",");
        bomb.push_str(&format!("  l{level}: &l{level} [{items}]\n"));
    }
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\n  namespace: demo\n  uid: uid-deep\ndata:\n  value: {}1{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    write_configmap(dir.path(), "good", 1.0);
    let manifests = dir.path().join("manifests");
    std::fs::write(manifests.join("bomb.yaml"), bomb).unwrap();
    std::fs::write(manifests.join("deep.yaml"), deep).unwrap();
    let mut host = Host::start(dir.path(), &demo_config(&file_exporter("")));
    host.wait_ready(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(dir.path().join("out.ndjson"))
                .is_ok_and(|t| t.contains("demo_value"))
        }),
        "the good manifest is still exported:\n{}",
        host.log()
    );
    let errors = "periscope_input_errors_total{input=\"files:manifests\",kind=\"parse\"}";
    assert!(
        wait_until(Duration::from_secs(10), || host.metric(errors) >= 2.0),
        "both refused and counted: {}\n{}",
        host.metrics(),
        host.log()
    );
    let rss = report_peak_rss("a YAML alias bomb and a 100000-deep manifest", &host);
    assert!(rss < 200 * 1024, "{rss} KiB");
    assert!(host.stop().success(), "{}", host.log());
}

/// Answers every request on a free port with `response` (read once the request has arrived),
/// until the test ends; the port and the number of requests answered.
fn answer_every_request(
    response: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = vec![0u8; 1 << 20];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (port, answered)
}

#[test]
fn a_receiver_asking_to_retry_after_centuries_is_retried_within_minutes() {
    let (port, answered) = answer_every_request(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 18446744073709551615\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus-remote-write"]);
    write_configmap(dir.path(), "good", 1.0);
    let config = demo_config(&format!(
        "[[exporters]]\nname = \"push\"\nplugin = \"prometheus-remote-write\"\n\
         config = {{ url = \"http://127.0.0.1:{port}/api/v1/write\" }}\n"
    ));
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    wait_logged(&host, "export will be retried");
    assert!(answered.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let log = host.log();
    assert!(log.contains("wait_ms=300000"), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    let metrics = host.metrics();
    assert!(
        !metrics.contains("periscope_task_failures_total{"),
        "no task died:\n{metrics}"
    );
    report_peak_rss(
        "a remote-write receiver answering Retry-After: u64::MAX",
        &host,
    );
    let started = Instant::now();
    assert!(host.stop().success(), "{}", host.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Serves, on a free port, an answer whose headers never end: `X-Flood: aaa…` forever.
fn serve_endless_headers() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Flood: ");
                let chunk = [b'a'; 64 << 10];
                while stream.write_all(&chunk).is_ok() {}
            });
        }
    });
    port
}

#[test]
fn endless_request_and_response_headers_are_cut() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let upstream = serve_endless_headers();
    let port = periscope_tests::free_port();
    let config = demo_config(&format!(
        "[[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\n\
         config = {{ listen = \"127.0.0.1:{port}\" }}\n"
    ))
    .replace(
        "[[resources]]",
        &format!(
            "[[endpoints]]\nname = \"flood\"\nurls = [\"http://127.0.0.1:{upstream}/metrics\"]\n\
             interval = \"2s\"\ntimeout = \"2s\"\n\n[[resources]]"
        ),
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    // A scrape whose answer's headers never end fails, and is counted.
    let errors = "periscope_input_errors_total{input=\"endpoints:flood\",kind=\"scrape\"}";
    assert!(
        wait_until(Duration::from_secs(20), || host.metric(errors) >= 1.0),
        "{}",
        host.log()
    );
    // A client whose request headers never end is answered 431 and closed.
    let mut flood = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    flood
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        .unwrap();
    let chunk = [b'a'; 64 << 10];
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(10) && flood.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(sent < 16 << 20, "the server took {sent} bytes of headers");
    let mut answer = Vec::new();
    flood
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = flood.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let rss = report_peak_rss("endless request and response headers", &host);
    assert!(rss < 200 * 1024, "{rss} KiB");
    assert!(host.stop().success(), "{}", host.log());
}

#[test]
fn a_page_of_metadata_without_samples_is_refused_past_the_family_bound() {
    // 16 MiB of HELP and TYPE lines: 670 000 families that never get a sample.
    let mut page = String::new();
    let mut i = 0;
    while page.len() < (16 << 20) - 100 {
        page.push_str(&format!("# HELP m{i} h\n# TYPE m{i} gauge\n"));
        i += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut host = scrape_page(dir.path(), page.into_bytes(), "");
    wait_logged(&host, "more than 100000 metric families");
    let rss = report_peak_rss("16 MiB of HELP and TYPE lines without samples", &host);
    assert!(host.stop().success(), "{}", host.log());
    assert!(rss < 150 * 1024, "{rss} KiB");
}
