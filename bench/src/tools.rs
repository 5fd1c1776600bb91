//! The two tools under test as child processes: how each is started from the configs in
//! `bench/config/`, where its metrics page is, and how its page is fetched.

use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Periscope (`periscope run` with the Prometheus exporter plugin).
    Periscope,
    /// kube-state-metrics with a CustomResourceState config.
    Ksm,
}

impl Which {
    /// The name used in tables and logs.
    pub fn label(self) -> &'static str {
        match self {
            Which::Periscope => "Periscope",
            Which::Ksm => "kube-state-metrics",
        }
    }
}

/// A running tool: its process and the URL of its metrics page.
pub struct Tool {
    /// Which tool it is.
    pub which: Which,
    child: Child,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
    /// Periscope's own `/metrics` (the host's, not the exporter's page); `None` for
    /// kube-state-metrics.
    self_metrics_url: Option<String>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// When it was started.
    pub started: Instant,
    agent: ureq::Agent,
}

/// What one fetch of a metrics page gave.
pub struct Scrape {
    /// The body (text format), decompressed when it came gzip-compressed.
    pub body: Vec<u8>,
    /// Bytes on the wire: the body as it came, compressed or not.
    pub wire_bytes: usize,
    /// From sending the request to the last byte of the body.
    pub latency: Duration,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local address: {e}"))
}

/// Starts kube-state-metrics watching only the custom resources of `crs_config`.
pub fn start_ksm(
    bin: &Path,
    kubeconfig: &Path,
    crs_config: &Path,
    work_dir: &Path,
) -> Result<Tool, String> {
    let port = free_port()?;
    let telemetry_port = free_port()?;
    let log = work_dir.join("kube-state-metrics.log");
    let child = spawn(
        Command::new(bin)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--telemetry-host=127.0.0.1")
            .arg(format!("--telemetry-port={telemetry_port}"))
            .arg("--custom-resource-state-only")
            // Off by default in kube-state-metrics: without it a scrape asking for gzip (as every
            // Prometheus does) is answered uncompressed, and the gzip rows would compare nothing.
            .arg("--enable-gzip-encoding")
            .arg(format!(
                "--custom-resource-state-config-file={}",
                crs_config.display()
            )),
        &log,
    )?;
    Ok(Tool::new(Which::Ksm, child, port, log))
}

/// Starts `periscope run` with `template` (a config of `bench/config/`), its placeholders filled
/// in: `${CONFIG_DIR}` is the template's directory, where an `[[imports]]` file is.
pub fn start_periscope(
    bin_dir: &Path,
    template: &Path,
    kubeconfig: &Path,
    work_dir: &Path,
) -> Result<Tool, String> {
    let port = free_port()?;
    let host_port = free_port()?;
    let config_dir = template.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("read {}: {e}", template.display()))?;
    let config = text
        .replace("${HOST_LISTEN}", &format!("127.0.0.1:{host_port}"))
        .replace("${METRICS_LISTEN}", &format!("127.0.0.1:{port}"))
        .replace("${PLUGIN_DIR}", &bin_dir.display().to_string())
        .replace("${WORK_DIR}", &work_dir.display().to_string())
        .replace("${KUBECONFIG}", &kubeconfig.display().to_string())
        .replace("${CONFIG_DIR}", &config_dir.display().to_string());
    let config_path = work_dir.join("periscope.toml");
    std::fs::write(&config_path, config)
        .map_err(|e| format!("write {}: {e}", config_path.display()))?;
    let log = work_dir.join("periscope.log");
    let child = spawn(
        Command::new(bin_dir.join("periscope"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(work_dir),
        &log,
    )?;
    let mut tool = Tool::new(Which::Periscope, child, port, log);
    tool.self_metrics_url = Some(format!("http://127.0.0.1:{host_port}/metrics"));
    Ok(tool)
}

fn spawn(command: &mut Command, log: &Path) -> Result<Child, String> {
    let file = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("clone {}: {e}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("start {:?}: {e}", command.get_program()))
}

impl Tool {
    fn new(which: Which, child: Child, port: u16, log: PathBuf) -> Tool {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Tool {
            which,
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            self_metrics_url: None,
            log,
            started: Instant::now(),
            agent,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the tail of its log, if the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited with {status}; the end of {}:\n{}",
                self.which.label(),
                self.log.display(),
                tail(&self.log, 30)
            )),
            Err(e) => Err(format!("wait for {}: {e}", self.which.label())),
        }
    }

    /// Fails, with the tail of its log, if the tool logged that it cannot serve its page: Periscope
    /// keeps running with a refused exporter plugin (for example one reached through a symlink out
    /// of its plugin directory), and the benchmark would otherwise wait for the whole start timeout.
    pub fn check_serving(&self) -> Result<(), String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if log.contains("exporter disabled") {
            return Err(format!(
                "{} disabled its exporter; the end of {}:\n{}",
                self.which.label(),
                self.log.display(),
                tail(&self.log, 30)
            ));
        }
        Ok(())
    }

    /// Fetches the metrics page once (plain text, no compression, as `curl` would).
    pub fn scrape(&self) -> Result<Scrape, String> {
        self.fetch(&self.metrics_url, false)
    }

    /// Fetches the metrics page once asking for gzip, as every Prometheus server does; fails if
    /// the answer is not gzip. The latency counts the transfer, not the client's decompression.
    pub fn scrape_gzip(&self) -> Result<Scrape, String> {
        self.fetch(&self.metrics_url, true)
    }

    /// The value of a series of Periscope's own `/metrics` (the host's self-metrics), named as
    /// the page writes it (`name`, or `name{label="value"}` for a series with one label);
    /// `None` for kube-state-metrics or if the page does not have it.
    pub fn self_metric(&self, name: &str) -> Result<Option<f64>, String> {
        Ok(self
            .self_metrics(name)?
            .into_iter()
            .find_map(|(series, value)| (series == name).then_some(value)))
    }

    /// Every series of Periscope's own `/metrics` whose text starts with `prefix`, with its value;
    /// empty for kube-state-metrics.
    pub fn self_metrics(&self, prefix: &str) -> Result<Vec<(String, f64)>, String> {
        let Some(url) = &self.self_metrics_url else {
            return Ok(Vec::new());
        };
        let page = self.fetch(url, false)?;
        Ok(String::from_utf8_lossy(&page.body)
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    fn fetch(&self, url: &str, gzip: bool) -> Result<Scrape, String> {
        let start = Instant::now();
        let mut request = self
            .agent
            .get(url)
            .header("Accept", "text/plain;version=0.0.4");
        if gzip {
            request = request.header("Accept-Encoding", "gzip");
        }
        let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let encoding = (response.headers().get("content-encoding"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let wire = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| format!("read {url}: {e}"))?;
        let latency = start.elapsed();
        if status != 200 {
            return Err(format!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&wire[..wire.len().min(300)])
            ));
        }
        let wire_bytes = wire.len();
        let body = match (gzip, encoding.as_str()) {
            (false, "") => wire,
            (true, "gzip") => {
                // Multi-member streams too, as Go's and Prometheus' readers take them.
                let mut body = Vec::with_capacity(wire.len() * 8);
                flate2::read::MultiGzDecoder::new(&wire[..])
                    .read_to_end(&mut body)
                    .map_err(|e| format!("GET {url}: the gzip body does not decompress: {e}"))?;
                body
            }
            (_, other) => {
                return Err(format!(
                    "GET {url}: Content-Encoding {other:?} when asking for {}",
                    if gzip { "gzip" } else { "none" }
                ));
            }
        };
        Ok(Scrape {
            body,
            wire_bytes,
            latency,
        })
    }

    /// Stops the process: SIGTERM, then SIGKILL after 10 s.
    // Unsafe: std can only SIGKILL a child; SIGTERM, for a clean stop, is a libc call.
    #[allow(unsafe_code)]
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tool {
    /// Never leaves a tool running after the benchmark.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
