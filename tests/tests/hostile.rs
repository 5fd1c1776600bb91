//! Hostile-but-fair input, each case against the real host process and real files, each bounded
//! in time: what an operator or a peer can send must give a clear error, a count, or be cut — never
//! a panic, a silent stop or unbounded memory.
//!
//! Every case that runs a host records the host's peak resident memory (`VmHWM`) in its output
//! (`cargo test -p periscope-tests --test hostile -- --nocapture`).

mod common;

use common::demo_config;
use periscope_tests::{periscope, plugin_dir};

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

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
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
