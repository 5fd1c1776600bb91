//! The harness of Periscope's end-to-end tests: finds the built host and plugins, starts the host
//! as a real process on a free loopback port with a config written into a temp dir, and reads what
//! it produced. The tests themselves live in `tests/tests/`.
//!
//! The host binary and plugins are built by `cargo build --workspace` (the test script runs it
//! first). `PERISCOPE_BIN_DIR` points elsewhere if they were built into another directory.

pub mod controlplane;
pub mod endpoint_server;
pub mod helm;
pub mod pki;
pub mod prometheus;
pub mod proxy;
pub mod search_node;
pub mod tls_proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_owned()
}

/// Where the built `periscope` binary and plugin libraries are.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("PERISCOPE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug"))
}

/// The built `periscope` binary; fails with how to build it when it is missing.
pub fn periscope_bin() -> PathBuf {
    let bin = bin_dir().join("periscope");
    assert!(
        bin.is_file(),
        "{} is missing: build the host and plugins first with `cargo build --workspace` \
         (the README's test command, `bash .ci/run`, does it)",
        bin.display()
    );
    bin
}

/// The file name of plugin `name`.
pub fn plugin_file(name: &str) -> String {
    format!("libperiscope_exporter_{}.so", name.replace('-', "_"))
}

/// Copies the named built plugins into `dir` (created, mode 0755), as a plugin directory holding
/// exactly what the test wants. Fails with how to build them when one is missing.
pub fn plugin_dir(dir: &Path, names: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create plugin dir");
    for name in names {
        let from = bin_dir().join(plugin_file(name));
        assert!(
            from.is_file(),
            "{} is missing: build the plugins with `cargo build --workspace`",
            from.display()
        );
        let to = dir.join(plugin_file(name));
        std::fs::copy(&from, &to).expect("copy plugin");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .expect("chmod plugin");
    }
    dir.to_owned()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET url`: the status and body, or why the request failed (5 s at most).
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    request(Duration::from_secs(5), |agent| agent.get(url).call())
}

/// `POST url` with an empty body: the status and body, or why the request failed (60 s at most:
/// a reload waits for the host to apply its config).
pub fn http_post(url: &str) -> Result<(u16, String), String> {
    request(Duration::from_secs(60), |agent| {
        agent.post(url).send_empty()
    })
}

/// Sends one request with `send` through an agent that takes every status as an answer.
fn request(
    timeout: Duration,
    send: impl FnOnce(&ureq::Agent) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = send(&agent).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Every JSON line of an NDJSON file (none if it does not exist yet).
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// One sample of the current state: metric name, labels (as JSON text) and value (as JSON text;
/// NaN and infinities as their `value_text`, `NaN`, `+Inf` or `-Inf`).
pub type StateSample = (String, String, String);

/// The current state an NDJSON file of the file exporter describes: for every source still
/// present, the samples of its latest `Replace`.
pub fn ndjson_state(records: &[serde_json::Value]) -> BTreeMap<String, BTreeSet<StateSample>> {
    let mut state: BTreeMap<String, BTreeSet<StateSample>> = BTreeMap::new();
    let mut last_replace: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for record in records {
        let id = record["source"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match record["op"].as_str() {
            Some("remove") => {
                state.remove(&id);
                last_replace.remove(&id);
            }
            Some("replace") => {
                // The samples of one Replace share its timestamp; a new timestamp starts a new set.
                if last_replace.get(&id) != Some(&record["ts"]) {
                    last_replace.insert(id.clone(), record["ts"].clone());
                    state.insert(id.clone(), BTreeSet::new());
                }
                if record.get("metric").is_some() {
                    state.entry(id).or_default().insert((
                        record["metric"].as_str().unwrap_or_default().to_owned(),
                        record["labels"].to_string(),
                        record["value_text"]
                            .as_str()
                            .map_or_else(|| record["value"].to_string(), str::to_owned),
                    ));
                }
            }
            _ => {}
        }
    }
    state
}

/// The value of the self-metric line `name{labels}` in a Prometheus text page, if present.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The CPU time (user + system, all threads) process `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat`; `None` when the process is gone or the file unreadable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), 100 if it cannot be asked.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Runs `periscope ARGS…` to completion; its exit status, stdout and stderr.
pub fn periscope(args: &[&str], cwd: &Path) -> (ExitStatus, String, String) {
    let out = Command::new(periscope_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run periscope");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running host process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Host {
    child: Option<Child>,
    /// The address of its `/metrics`, `/healthz`, `/readyz`.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Host {
    /// Starts `periscope run --config <dir>/periscope.toml` in `dir` with `config`, whose
    /// `{listen}` placeholder becomes a free loopback address.
    pub fn start(dir: &Path, config: &str) -> Host {
        Host::start_with(dir, config, &[])
    }

    /// Like [`Host::start`], with extra arguments after `run` (such as `--shard 1`).
    pub fn start_with(dir: &Path, config: &str, args: &[&str]) -> Host {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config_path = dir.join("periscope.toml");
        std::fs::write(&config_path, config.replace("{listen}", &addr.to_string()))
            .expect("write config");
        let mut all = vec!["--config", config_path.to_str().expect("UTF-8 path")];
        all.extend(args);
        Host::spawn(dir, addr, &all)
    }

    /// Starts `periscope run <args>` in `dir`; `addr` is the `listen` address its config gives.
    pub fn spawn(dir: &Path, addr: SocketAddr, args: &[&str]) -> Host {
        let log = dir.join("periscope.log");
        let log_file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(periscope_bin())
            .arg("run")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start periscope");
        Host {
            child: Some(child),
            addr,
            log,
        }
    }

    /// Waits until `/readyz` answers 200; fails with the host's log if it does not in `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.addr);
        let ready = wait_until(timeout, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("periscope exited early with {status}:\n{}", self.log());
            }
            matches!(http_get(&url), Ok((200, _)))
        });
        assert!(
            ready,
            "periscope not ready after {timeout:?}:\n{}",
            self.log()
        );
    }

    /// The host's self-metrics page.
    pub fn metrics(&self) -> String {
        http_get(&format!("http://{}/metrics", self.addr))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// One self-metric's value (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series).unwrap_or(0.0)
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The host's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the host with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("host still running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits (up to 30 s) for the host to exit; its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("host still running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!(
                    "periscope did not stop within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
