//! `--languages`: what writing the metrics as CEL expressions costs against paths.
//!
//! Two Periscopes run side by side on the same fleet, one with `bench/config/periscope.toml`
//! (paths), one with `bench/config/periscope-cel.toml` (the same metrics as CEL expressions).
//! Both start at once and list the same VMIs; once both pages are complete they must hold the
//! same series and values. Then the update stream runs with both watching, and after it both
//! pages must agree again. The CPU time of each (utime + stime) to the complete page and over
//! the updates gives the ratio; kube-state-metrics is not started.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Updated as _;
use crate::fleet::Fleet;
use crate::series::{self, Page};
use crate::tools::{self, Tool};
use crate::{Args, PREFIX, cluster, procfs, say};

/// What one language cost.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    start_wall: f64,
    start_cpu: f64,
    update_cpu: f64,
    peak_rss: u64,
}

/// Runs both configs on `fleet` (created already) and returns the results as Markdown.
pub fn run(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    client: &kube::Client,
    fleet: &Arc<Fleet>,
    periscope_dir: &Path,
    kubeconfig: &Path,
    t0: Instant,
) -> Result<String, String> {
    let root = crate::repo_root();
    let expected = fleet.expected_series();
    let mut tools = Vec::new();
    let mut dirs = Vec::new();
    for config in ["periscope.toml", "periscope-cel.toml"] {
        let dir = tempfile::Builder::new()
            .prefix("periscope-bench-lang-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let tool = tools::start_periscope(
            periscope_dir,
            &root.join("bench/config").join(config),
            kubeconfig,
            dir.path(),
        )?;
        tools.push(tool);
        dirs.push(dir);
    }
    let mut costs = [Cost::default(); 2];
    let deadline = Instant::now() + Duration::from_secs(args.start_timeout);
    let mut done = [false; 2];
    while done.iter().any(|d| !d) {
        for (i, tool) in tools.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            tool.check_running()?;
            let Ok(scrape) = tool.scrape() else {
                continue;
            };
            if series::count_samples(&scrape.body, PREFIX) == expected {
                done[i] = true;
                costs[i].start_wall = tool.started.elapsed().as_secs_f64();
                costs[i].start_cpu = procfs::cpu_seconds(tool.pid())?;
                say(
                    t0,
                    &format!(
                        "{}: complete page after {:.2} s, {:.2} CPU s",
                        label(i),
                        costs[i].start_wall,
                        costs[i].start_cpu
                    ),
                );
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no complete pages after {} s", args.start_timeout));
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
    same_pages(&tools)?;
    say(t0, "both pages hold the same series and values");

    let before = [
        procfs::cpu_seconds(tools[0].pid())?,
        procfs::cpu_seconds(tools[1].pid())?,
    ];
    let stats = runtime.block_on(cluster::update_stream(
        client,
        fleet.clone(),
        args.update_rate,
        Duration::from_secs(args.update_seconds),
    ));
    // Let both take in the last updates before the CPU is read and the pages compared.
    let settle = Instant::now();
    while same_pages(&tools).is_err() && settle.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
    }
    same_pages(&tools)?;
    for (i, tool) in tools.iter().enumerate() {
        costs[i].update_cpu = procfs::cpu_seconds(tool.pid())? - before[i];
        costs[i].peak_rss = procfs::rss_bytes(tool.pid())?.1;
    }
    say(
        t0,
        &format!(
            "updates: {} applied in {:.1} s; both pages agree again",
            stats.applied,
            stats.elapsed.as_secs_f64()
        ),
    );
    for tool in &mut tools {
        tool.stop();
    }
    let ratio = |f: fn(&Cost) -> f64| f(&costs[1]) / f(&costs[0]);
    let mut out = String::new();
    out.push_str(&format!(
        "# Paths vs CEL, {} VMIs\n\n\
         Two Periscopes side by side on one kube-apiserver, one with `bench/config/periscope.toml`\n\
         (paths), one with `bench/config/periscope-cel.toml` (every value and label a CEL\n\
         expression; `each` stays a path). Both pages held the same {expected} series with the same\n\
         values when complete, and again after the updates.\n\n\
         | | paths | CEL | CEL / paths |\n|---|---|---|---|\n",
        fleet.len()
    ));
    out.push_str(&format!(
        "| CPU s to the complete page | {:.2} | {:.2} | {:.2} |\n",
        costs[0].start_cpu,
        costs[1].start_cpu,
        ratio(|c| c.start_cpu)
    ));
    out.push_str(&format!(
        "| CPU s over the updates | {:.2} | {:.2} | {:.2} |\n",
        costs[0].update_cpu,
        costs[1].update_cpu,
        ratio(|c| c.update_cpu)
    ));
    out.push_str(&format!(
        "| wall s to the complete page | {:.2} | {:.2} | |\n",
        costs[0].start_wall, costs[1].start_wall
    ));
    out.push_str(&format!(
        "| peak RSS MiB | {:.1} | {:.1} | |\n\n",
        costs[0].peak_rss as f64 / 1048576.0,
        costs[1].peak_rss as f64 / 1048576.0
    ));
    out.push_str(&format!(
        "Updates: {} merge patches/s asked for {} s; {} applied in {:.1} s, {} failed, {} not sent \
         in time.\n\nMachine: {}; load at the end: {}.\n\nCommand: `{}`\n",
        args.update_rate,
        args.update_seconds,
        stats.applied,
        stats.elapsed.as_secs_f64(),
        stats.failed,
        stats.skipped,
        procfs::machine(),
        procfs::load_average(),
        crate::command_line()
    ));
    Ok(out)
}

fn label(i: usize) -> &'static str {
    if i == 0 { "paths" } else { "CEL" }
}

/// Fails unless both pages hold the same series with the same values.
fn same_pages(tools: &[Tool]) -> Result<(), String> {
    let page = |tool: &Tool| -> Result<Page, String> {
        let body = tool.scrape()?.body;
        let text = String::from_utf8(body).map_err(|e| format!("page is not UTF-8: {e}"))?;
        Page::parse(&text, PREFIX)
    };
    let diff = series::diff("paths", &page(&tools[0])?, "CEL", &page(&tools[1])?, 10);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!("the two pages differ:\n{}", diff.join("\n")))
    }
}
