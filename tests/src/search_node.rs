//! One real search node for the Elasticsearch exporter's end-to-end tests — Elasticsearch 8.19
//! (`tests/search-node/run.sh`) or OpenSearch 2.19 (`tests/opensearch-node/run.sh`), both built
//! from Maven Central artifacts — and small helpers to query it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{free_port, repo_root};

/// How long a start may take: the first one builds the node with Maven.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Which server a [`SearchNode`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Elasticsearch 8.19 without x-pack (`tests/search-node`).
    Elasticsearch,
    /// OpenSearch 2.19 without plugins (`tests/opensearch-node`).
    OpenSearch,
}

impl Distribution {
    /// The script that builds (first use) and runs the node.
    fn script(self) -> &'static str {
        match self {
            Distribution::Elasticsearch => "tests/search-node/run.sh",
            Distribution::OpenSearch => "tests/opensearch-node/run.sh",
        }
    }
}

/// A running node, stopped (SIGTERM, then SIGKILL) when dropped. Its data lives in a temp dir
/// that outlives [`SearchNode::stop`], so [`SearchNode::start_again`] finds the same indices.
pub struct SearchNode {
    distribution: Distribution,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl SearchNode {
    /// Starts an Elasticsearch node: [`SearchNode::start_distribution`].
    pub fn start() -> SearchNode {
        SearchNode::start_distribution(Distribution::Elasticsearch)
    }

    /// Starts a node of `distribution` on a free loopback port with an empty data dir; waits
    /// until it is READY. Fails with how to install them when `java` or `mvn` is missing.
    pub fn start_distribution(distribution: Distribution) -> SearchNode {
        for (tool, package) in [("java", "openjdk-17-jre-headless"), ("mvn", "maven")] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "`{tool}` is missing: the search node needs Java 17+ and Maven \
                 (Debian: `apt-get install -y openjdk-17-jdk-headless maven`; package {package})"
            );
        }
        let mut node = SearchNode {
            distribution,
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        node.start_again();
        node
    }

    /// Starts the node again on the same port and data dir (after [`SearchNode::stop`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the search node is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("search node log");
        let mut child = Command::new("bash")
            .arg(repo_root().join(self.distribution.script()))
            .arg(self.port.to_string())
            .arg(self.dir.path().join("node"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tests/search-node/run.sh");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        let start = Instant::now();
        let want = format!("READY {}", self.url());
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.trim() == want => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "the {:?} node ({}) exited with {status}:\n{}",
                    self.distribution,
                    self.distribution.script(),
                    self.log()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                self.stop();
                panic!(
                    "the {:?} node ({}) was not READY within {START_TIMEOUT:?}:\n{}",
                    self.distribution,
                    self.distribution.script(),
                    self.log()
                );
            }
        }
        // READY comes with the cluster's health; after a restart the primaries of existing
        // indices may still be recovering (a search answers 503 meanwhile): wait for them.
        let (status, health) = self.request(
            "GET",
            "/_cluster/health?wait_for_status=yellow&wait_for_no_initializing_shards=true&timeout=60s",
            None,
        );
        assert!(
            status == 200 && health["timed_out"] == false,
            "the search node's shards did not recover: {health}\n{}",
            self.log()
        );
    }

    /// Which server runs.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// The node's process id (the JVM: `run.sh` execs it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its HTTP address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends SIGTERM and waits (up to 30 s, then SIGKILL) for the node to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// What the node logged (stderr of every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `method path` with an optional JSON body: the status and the JSON answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.request_within(method, path, body, Duration::from_secs(30))
    }

    /// [`SearchNode::request`] with its own timeout, for slow requests (`_forcemerge`).
    pub fn request_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        let url = format!("{}{path}", self.url());
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let result = match (method, body) {
            ("GET", None) => agent.get(&url).call(),
            ("DELETE", None) => agent.delete(&url).call(),
            ("PUT", _) => agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(text.as_str()),
            ("POST", _) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(text.as_str()),
            _ => panic!("unsupported request {method} {path}"),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// Waits until the primaries of `index` have started: an index the exporter has just created
    /// answers searches with 503 `no_shard_available_action_exception` for a moment.
    /// A missing index has nothing to wait for (the health API would wait for it to appear).
    fn wait_for_primaries(&self, index: &str) {
        if self.request("GET", &format!("/{index}"), None).0 == 404 {
            return;
        }
        let (status, health) = self.request(
            "GET",
            &format!("/_cluster/health/{index}?wait_for_status=yellow&timeout=30s"),
            None,
        );
        assert!(
            status == 200 && health["timed_out"] == false,
            "the primaries of {index} did not start: {health}\n{}",
            self.log()
        );
    }

    /// Sends a read (`_count`, `_search`) to `index` after a refresh, waiting for its primaries
    /// first. A wildcard may match an index the exporter creates between that wait and the read,
    /// which then answers 503 `no_shard_available_action_exception`: wait again and repeat, for up
    /// to 30 s. `None` when the index does not exist.
    fn read(
        &self,
        index: &str,
        endpoint: &str,
        body: Option<&serde_json::Value>,
    ) -> Option<serde_json::Value> {
        let start = Instant::now();
        loop {
            self.wait_for_primaries(index);
            let (status, _) = self.request("POST", &format!("/{index}/_refresh"), None);
            if status == 404 {
                return None;
            }
            let (status, answer) = self.request("POST", &format!("/{index}/{endpoint}"), body);
            if status == 503 && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            assert_eq!(status, 200, "{endpoint}: {answer}");
            return Some(answer);
        }
    }

    /// Refreshes `index` (so what was indexed is searchable) and counts its documents matching
    /// `query` (every document when `None`). A missing index counts 0.
    pub fn count(&self, index: &str, query: Option<serde_json::Value>) -> u64 {
        let body = query.map(|q| serde_json::json!({ "query": q }));
        self.read(index, "_count", body.as_ref())
            .map_or(0, |answer| answer["count"].as_u64().expect("a count"))
    }

    /// Refreshes `index` and returns the `_source` of up to 10 000 documents matching `query`.
    pub fn search(&self, index: &str, query: serde_json::Value) -> Vec<serde_json::Value> {
        let body = serde_json::json!({ "query": query, "size": 10000 });
        self.read(index, "_search", Some(&body))
            .and_then(|answer| {
                answer["hits"]["hits"]
                    .as_array()
                    .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
            })
            .unwrap_or_default()
    }
}

impl Drop for SearchNode {
    fn drop(&mut self) {
        self.stop();
    }
}
