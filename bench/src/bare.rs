//! The physical limit of a start: a minimal kube-rs client that lists and watches the VMIs and
//! does nothing with them, timed to the moment it has seen every object.
//!
//! It runs as a child process (this binary with `--bare-list`), so its CPU time and memory are
//! its own and are read from `/proc` as the tools' are. It lists in pages of [`PAGE_SIZE`], as
//! Periscope does by default, with either list semantic:
//! - [`Semantic::Consistent`]: kube-rs' default, `resourceVersion` unset: a consistent read, each
//!   page continued from the first one's snapshot;
//! - [`Semantic::Cached`]: `resourceVersion=0` (`watcher::Config::any_semantic()`), what
//!   client-go's reflector (and so kube-state-metrics) asks for: whatever the API server's watch
//!   cache holds, possibly older than what this client saw before.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;

use crate::{cluster, procfs};

/// Objects per page of the list, Periscope's default `[kubernetes] page_size`.
pub const PAGE_SIZE: u32 = 500;

/// Which list semantic the bare client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Semantic {
    /// `resourceVersion` unset: a consistent list (kube-rs' default).
    Consistent,
    /// `resourceVersion=0`: served from the watch cache (client-go's reflector).
    Cached,
}

impl Semantic {
    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Semantic::Consistent => "consistent pages (`resourceVersion` unset, kube-rs' default)",
            Semantic::Cached => "`resourceVersion=0`, from the watch cache (client-go's reflector)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Semantic::Consistent => "consistent",
            Semantic::Cached => "cached",
        }
    }
}

/// What one bare list + watch took.
#[derive(Debug, Clone, Copy)]
pub struct BareFigures {
    /// The semantic it listed with.
    pub semantic: Semantic,
    /// From starting the process to having seen every object, seconds.
    pub wall: f64,
    /// CPU seconds (user + system) of the process until then.
    pub cpu: f64,
    /// Peak resident memory until then, bytes.
    pub peak_rss: u64,
}

/// Runs the bare client as a child process of this binary and reads what it measured.
pub fn measure(
    kubeconfig: &Path,
    objects: usize,
    semantic: Semantic,
) -> Result<BareFigures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--bare-list")
        .arg(semantic.arg())
        .arg("--bare-kubeconfig")
        .arg(kubeconfig)
        .arg("--objects")
        .arg(objects.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the bare client: {e}"))?;
    let stdout = child.stdout.take().ok_or("the bare client has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read the bare client: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let status = child
        .wait()
        .map_err(|e| format!("wait for the bare client: {e}"))?;
    if !status.success() {
        return Err(format!("the bare client exited with {status}"));
    }
    let mut words = line.split_whitespace().map(str::parse::<f64>);
    match (words.next(), words.next()) {
        (Some(Ok(cpu)), Some(Ok(peak_rss))) => Ok(BareFigures {
            semantic,
            wall,
            cpu,
            peak_rss: peak_rss as u64,
        }),
        _ => Err(format!("the bare client printed {line:?}")),
    }
}

/// The child's side: lists and watches the VMIs until every one of `objects` has been seen,
/// then prints its CPU seconds and peak RSS in bytes on one line.
pub fn child(kubeconfig: &Path, objects: usize, semantic: Semantic) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let seen = runtime.block_on(list_all(kubeconfig, semantic))?;
    let pid = std::process::id();
    let cpu = procfs::cpu_seconds(pid)?;
    let peak = procfs::rss_bytes(pid)?.1;
    println!("{cpu} {peak}");
    if seen != objects {
        return Err(format!("listed {seen} objects, {objects} expected"));
    }
    Ok(())
}

/// Lists every VMI with kube-rs' watcher until the list is complete; returns how many it saw.
async fn list_all(kubeconfig: &Path, semantic: Semantic) -> Result<usize, String> {
    let client = periscope_tests::controlplane::kube_client(kubeconfig).await;
    let api: Api<DynamicObject> = Api::all_with(client, &cluster::vmi_resource());
    let mut config = watcher::Config::default().page_size(PAGE_SIZE);
    if semantic == Semantic::Cached {
        config = config.any_semantic();
    }
    let mut stream = watcher(api, config).boxed();
    let mut seen = 0usize;
    while let Some(event) = stream.next().await {
        match event.map_err(|e| format!("list: {e}"))? {
            watcher::Event::InitApply(_) => seen += 1,
            // The list is complete; the watcher would go on to watch from here.
            watcher::Event::InitDone => return Ok(seen),
            watcher::Event::Init | watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
        }
    }
    Err(format!("the watch ended after {seen} objects"))
}
