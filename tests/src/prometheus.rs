//! A real Prometheus server for the exporter's end-to-end tests, and a strict reader of the
//! exposition formats.
//!
//! [`Prometheus::start`] runs Debian's `prometheus` binary on a free loopback port with a generated
//! config (1 s scrape and rule evaluation interval, one job for the given target, optionally the
//! remote-write receiver), storage in a temp dir; it waits for `/-/ready` and is killed when
//! dropped. [`Prometheus::start_with_rules`] loads rule files too. Install it with
//! `bash tests/prometheus/install.sh`.
//!
//! [`parse_exposition`] reads a metrics page in the text format 0.0.4 or OpenMetrics 1.0 and fails
//! on anything either spec forbids that an exporter could get wrong: a repeated or late HELP/TYPE,
//! interleaved families, a sample name that does not fit its family's type, bad escapes, duplicate
//! labels or series, timestamps, a missing or misplaced `# EOF`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use periscope_plugin_api::names::{is_label_name, is_metric_name};

use crate::{free_port, http_get, wait_until};

/// A labelled value from the query API.
pub type Series = (BTreeMap<String, String>, f64);

/// Where a Prometheus binary is, or a panic saying how to install it.
pub fn binary(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run `bash tests/prometheus/install.sh` \
             (installs Debian's prometheus package)"
        )
    })
}

/// A running Prometheus server, killed when dropped.
pub struct Prometheus {
    child: Option<Child>,
    /// Its HTTP address (query API, remote-write receiver).
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port, path `/metrics`) every second, with the
    /// remote-write receiver on when `remote_write_receiver`.
    pub fn start(target: Option<SocketAddr>, remote_write_receiver: bool) -> Prometheus {
        Prometheus::launch(target, remote_write_receiver, &[])
    }

    /// Starts Prometheus scraping `target` every second and evaluating the rules of `rule_files`
    /// (plain rule files, `groups:` at the top) every second.
    pub fn start_with_rules(target: SocketAddr, rule_files: &[&Path]) -> Prometheus {
        Prometheus::launch(Some(target), false, rule_files)
    }

    fn launch(
        target: Option<SocketAddr>,
        remote_write_receiver: bool,
        rule_files: &[&Path],
    ) -> Prometheus {
        let binary = binary("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let scrape = target.map_or_else(String::new, |target| {
            format!(
                "scrape_configs:\n  - job_name: periscope\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [\"{target}\"]\n"
            )
        });
        let rules = if rule_files.is_empty() {
            String::new()
        } else {
            let files: Vec<String> = rule_files
                .iter()
                .map(|f| format!("  - {:?}\n", f.display().to_string()))
                .collect();
            format!("rule_files:\n{}", files.concat())
        };
        let config =
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rules}{scrape}");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if remote_write_receiver {
            command.arg("--web.enable-remote-write-receiver");
        }
        let child = command.spawn().expect("start prometheus");
        let mut prometheus = Prometheus {
            child: Some(child),
            addr,
            dir,
        };
        let url = format!("http://{addr}/-/ready");
        let ready = wait_until(Duration::from_secs(30), || {
            if let Some(child) = prometheus.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "prometheus exited early with {status}:\n{}",
                    prometheus.log()
                );
            }
            matches!(http_get(&url), Ok((200, _)))
        });
        assert!(ready, "prometheus not ready in 30 s:\n{}", prometheus.log());
        prometheus
    }

    /// The remote-write receiver's URL.
    pub fn remote_write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The directory of its config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an instant query; every series of the (vector or scalar) result with its value.
    pub fn query(&self, expr: &str) -> Vec<Series> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            percent_encode(expr)
        );
        let (status, body) =
            http_get(&url).unwrap_or_else(|e| panic!("query {expr:?} failed: {e}"));
        assert_eq!(status, 200, "query {expr:?}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        let data = &json["data"];
        let point = |value: &serde_json::Value| -> f64 {
            value[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        match data["resultType"].as_str() {
            Some("scalar") => vec![(BTreeMap::new(), point(&data["result"]))],
            _ => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    (labels, point(&r["value"]))
                })
                .collect(),
        }
    }

    /// Polls `query(expr)` until `done` holds on its result, or panics after `timeout`.
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Series]) -> bool,
    ) -> Vec<Series> {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.query(expr);
            done(&last)
        });
        assert!(
            ok,
            "query {expr:?} never gave the expected result; last: {last:?}\ntargets: {}",
            http_get(&format!("http://{}/api/v1/targets", self.addr))
                .map(|(_, b)| b)
                .unwrap_or_default()
        );
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One family of a parsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily {
    /// The name in `# TYPE`.
    pub name: String,
    /// The type.
    pub kind: String,
    /// The help text, unescaped.
    pub help: Option<String>,
    /// The unit (OpenMetrics only).
    pub unit: Option<String>,
    /// Samples: metric name, labels, value.
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// The sample names a family of `kind` named `name` may use.
fn sample_names(name: &str, kind: &str, openmetrics: bool) -> Vec<String> {
    let suffixes: &[&str] = match (kind, openmetrics) {
        ("counter", true) => &["_total", "_created"],
        ("info", true) => &["_info"],
        ("histogram", true) => &["_bucket", "_count", "_sum", "_created"],
        ("histogram", false) => &["_bucket", "_count", "_sum"],
        ("summary", true) => &["", "_count", "_sum", "_created"],
        ("summary", false) => &["", "_count", "_sum"],
        ("gaugehistogram", true) => &["_bucket", "_gcount", "_gsum"],
        _ => &[""],
    };
    suffixes.iter().map(|s| format!("{name}{s}")).collect()
}

fn unescape(text: &str, quote: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            other => return Err(format!("bad escape \\{other:?} in {text:?}")),
        }
    }
    Ok(out)
}

/// Reads `name{labels} value` (no timestamp allowed).
fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest
                .find("=\"")
                .ok_or_else(|| format!("bad labels in {line:?}"))?;
            let label = &rest[..eq];
            if !is_label_name(label) {
                return Err(format!("invalid label name {label:?} in {line:?}"));
            }
            rest = &rest[eq + 2..];
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    (false, '\n') => return Err(format!("raw newline in {line:?}")),
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("unterminated label value in {line:?}"))?;
            let value = unescape(&rest[..end], true)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("duplicate label {label:?} in {line:?}"));
            }
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err(format!("expected , or }} in {line:?}"));
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("expected a space before the value in {line:?}"))?;
    let parts: Vec<&str> = rest.split(' ').collect();
    if parts.len() != 1 {
        return Err(format!(
            "a timestamp (or extra text) after the value in {line:?}"
        ));
    }
    let value = match parts[0] {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .map_err(|_| format!("bad value {v:?} in {line:?}"))?,
    };
    Ok((name.to_owned(), labels, value))
}

/// Parses a page strictly (see the module docs); `openmetrics` picks the format's rules.
pub fn parse_exposition(text: &str, openmetrics: bool) -> Result<Vec<ParsedFamily>, String> {
    let body = text
        .strip_suffix('\n')
        .ok_or("the page does not end with a newline")?;
    let mut lines: Vec<&str> = body.split('\n').collect();
    if openmetrics {
        if lines.pop() != Some("# EOF") {
            return Err("OpenMetrics page without a final `# EOF`".into());
        }
    } else if lines.contains(&"# EOF") {
        return Err("`# EOF` in the text format".into());
    }
    let mut families: Vec<ParsedFamily> = Vec::new();
    let mut seen_families = HashSet::new();
    let mut seen_series = HashSet::new();
    for line in lines {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let arg = parts.next().unwrap_or_default();
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                if openmetrics {
                    return Err(format!("unexpected line {line:?}"));
                }
                continue;
            }
            if !is_metric_name(name) {
                return Err(format!("invalid family name in {line:?}"));
            }
            let current = families
                .last()
                .filter(|f| f.name == name && f.samples.is_empty());
            if current.is_none() {
                if !seen_families.insert(name.to_owned()) {
                    return Err(format!("family {name} appears twice (or interleaved)"));
                }
                families.push(ParsedFamily {
                    name: name.to_owned(),
                    kind: if openmetrics { "unknown" } else { "untyped" }.to_owned(),
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                });
            }
            let family = families.last_mut().ok_or("no family")?;
            match keyword {
                "HELP" if family.help.is_none() => {
                    family.help = Some(unescape(arg, openmetrics)?);
                }
                "TYPE" if family.kind == "unknown" || family.kind == "untyped" => {
                    let allowed: &[&str] = if openmetrics {
                        &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "stateset",
                            "info",
                            "summary",
                            "unknown",
                        ]
                    } else {
                        &["counter", "gauge", "histogram", "summary", "untyped"]
                    };
                    if !allowed.contains(&arg) {
                        return Err(format!("unknown type in {line:?}"));
                    }
                    family.kind = arg.to_owned();
                }
                "UNIT" if openmetrics && family.unit.is_none() => {
                    if !name.ends_with(&format!("_{arg}")) {
                        return Err(format!("unit is not the name's suffix: {line:?}"));
                    }
                    family.unit = Some(arg.to_owned());
                }
                _ => return Err(format!("repeated or misplaced {line:?}")),
            }
            continue;
        }
        if line.is_empty() {
            return Err("empty line".into());
        }
        let (name, labels, value) = parse_sample(line)?;
        let family = families
            .last_mut()
            .filter(|f| sample_names(&f.name, &f.kind, openmetrics).contains(&name))
            .ok_or_else(|| format!("sample {line:?} outside of its family's block"))?;
        if openmetrics
            && family.kind == "stateset"
            && (!labels.contains_key(&family.name) || !(value == 0.0 || value == 1.0))
        {
            return Err(format!("bad state set sample {line:?}"));
        }
        if openmetrics && family.kind == "info" && value != 1.0 {
            return Err(format!("info sample not 1: {line:?}"));
        }
        if !seen_series.insert((name.clone(), labels.clone())) {
            return Err(format!("duplicate series {line:?}"));
        }
        family.samples.push((name, labels, value));
    }
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_page_parses_in_both_formats() {
        let text =
            "# HELP a_total Help \\\\ \\n.\n# TYPE a_total counter\na_total{x=\"1\\\"\"} 1\n";
        let families = parse_exposition(text, false).unwrap();
        assert_eq!(families[0].help.as_deref(), Some("Help \\ \n."));
        assert_eq!(families[0].samples[0].1["x"], "1\"");
        let om = "# TYPE a counter\n# HELP a H \\\"q\\\".\na_total 1\n# TYPE s stateset\ns{s=\"x\"} 1\n# EOF\n";
        assert_eq!(parse_exposition(om, true).unwrap().len(), 2);
    }

    #[test]
    fn mistakes_are_found() {
        for (text, om) in [
            ("a 1 1000\n", false),
            ("# TYPE a gauge\na 1\n# TYPE a gauge\n", false),
            ("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", false),
            ("# TYPE a gauge\na{x=\"\\t\"} 1\n", false),
            ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", false),
            ("# TYPE a counter\na 1\n# EOF\n", true),
            ("# TYPE a gauge\na 1\n", true),
            ("# TYPE a gauge\na 1\n# EOF\n", false),
            ("# TYPE a gauge\na 1\na 2\n", false),
            ("# TYPE a info\na_info 2\n# EOF\n", true),
        ] {
            assert!(parse_exposition(text, om).is_err(), "{text:?} passed");
        }
    }
}
