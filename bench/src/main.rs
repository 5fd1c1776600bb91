//! # periscope-bench
//!
//! Periscope and kube-state-metrics (its CustomResourceState feature) side by side on one real
//! kube-apiserver, watching the same N KubeVirt `VirtualMachineInstance`s and serving the same
//! series. `bench/README.md` has the commands; `bench/run.sh` builds what is needed and runs this.
//!
//! One run, in order:
//! 1. start etcd and kube-apiserver (the test harness, [`periscope_tests::controlplane`]), install
//!    the VMI CRD from `examples/kubevirt/crds/`, create the namespaces and N VMIs ([`fleet`],
//!    [`cluster`]);
//! 2. list the VMIs with a bare kube-rs client, with each list semantic ([`bare`]): the physical
//!    limit of a start;
//! 3. start one tool (Periscope with kube-state-metrics' own config, imported), poll its page
//!    until every VMI's series are there, and note its wall time, CPU time and peak RSS
//!    ([`procfs`]); then the same for the other tool;
//! 4. check that both pages hold the same series with the same values ([`series`]), and stop if
//!    not;
//! 5. scrape each page repeatedly: latency, CPU per scrape, size;
//! 6. run a stream of status updates against the VMIs with both tools running and scraped every
//!    few seconds: CPU time and RSS; then how long each takes to show the last phases, and the
//!    same-series check again;
//! 7. print the tables ([`report`]) and write them to `bench/results/<date>-<N>.md`.

mod bare;
mod cluster;
mod fleet;
mod kubevirt;
mod languages;
mod procfs;
mod report;
mod series;
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use periscope_tests::controlplane::{self, ControlPlane};

use crate::fleet::Fleet;
use crate::report::{Figures, RunInfo, ScrapeFigures};
use crate::series::Page;
use crate::tools::{Tool, Which};

/// The prefix of every series the benchmark compares.
const PREFIX: &str = "kubevirt_vmi_";

/// Periscope vs kube-state-metrics on one real kube-apiserver (see bench/README.md).
#[derive(Debug, Parser)]
#[command(name = "periscope-bench")]
struct Args {
    /// How many VirtualMachineInstances: a number, or with a k suffix (1k, 10k, 100k). With
    /// `--scenario kubevirt`, how many VMs (and VMIs, launcher Pods; twice as many claims, five
    /// times as many other Pods). Default: 1k, and 10k with `--scenario kubevirt`.
    #[arg(long, value_parser = parse_count)]
    objects: Option<usize>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "vmi")]
    scenario: Scenario,
    /// Status updates per second while both tools run.
    #[arg(long, default_value_t = 500)]
    update_rate: u32,
    /// How long the updates run, seconds.
    #[arg(long, default_value_t = 60)]
    update_seconds: u64,
    /// How often each page is scraped while the updates run, seconds (as Prometheus would).
    #[arg(long, default_value_t = 15)]
    scrape_interval: u64,
    /// Scrapes per tool for the latency figures.
    #[arg(long, default_value_t = 50)]
    scrapes: usize,
    /// How often a page is polled while waiting for it to be complete, milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// How long a tool may take to serve every object's series, seconds.
    #[arg(long, default_value_t = 900)]
    start_timeout: u64,
    /// Which tool starts first.
    #[arg(long, value_enum, default_value = "ksm")]
    first: First,
    /// The kube-state-metrics binary (default: what bench/build-ksm.sh built).
    #[arg(long)]
    ksm_bin: Option<PathBuf>,
    /// Where `periscope` and the Prometheus exporter plugin are (default: this binary's dir).
    #[arg(long)]
    periscope_dir: Option<PathBuf>,
    /// Periscope's config (default: bench/config/periscope-imported.toml, kube-state-metrics'
    /// own CRS file imported; bench/config/periscope.toml is the same metrics written by hand).
    #[arg(long)]
    periscope_config: Option<PathBuf>,
    /// Where the results file goes.
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Print the table only; write no results file.
    #[arg(long)]
    no_write: bool,
    /// Compare Periscope with its metrics as paths and as CEL expressions instead (two
    /// Periscopes side by side; kube-state-metrics is not started).
    #[arg(long)]
    languages: bool,
    /// Internal: run as the bare list + watch client with this list semantic, print its CPU
    /// seconds and peak RSS, and exit (the benchmark starts itself so).
    #[arg(long, value_enum, hide = true, requires = "bare_kubeconfig")]
    bare_list: Option<bare::Semantic>,
    /// Internal: the kubeconfig of `--bare-list`.
    #[arg(long, hide = true)]
    bare_kubeconfig: Option<PathBuf>,
}

impl Args {
    /// `--objects`, or the scenario's default.
    fn objects(&self) -> usize {
        self.objects.unwrap_or(match self.scenario {
            Scenario::Vmi => 1000,
            Scenario::Kubevirt => 10_000,
        })
    }
}

/// What the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Periscope and kube-state-metrics side by side on N VMIs (or `--languages`).
    Vmi,
    /// Periscope alone with `examples/kubevirt/periscope.toml` on N VMs, N VMIs, N virt-launcher
    /// Pods, 2N claims and 5N other Pods ([`kubevirt`]).
    Kubevirt,
}

/// Which tool starts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum First {
    /// kube-state-metrics first.
    Ksm,
    /// Periscope first.
    Periscope,
}

/// The name of Periscope's watch of the VMIs in its self-metrics.
const VMI_WATCH: &str = "kubernetes:kubevirt.io/v1/VirtualMachineInstance";

fn parse_count(text: &str) -> Result<usize, String> {
    let (digits, factor) = match text.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1000),
        None => (text, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|e| format!("{text:?} is not a count: {e}"))?;
    if n == 0 {
        return Err("at least one object".to_owned());
    }
    Ok(n * factor)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (args.bare_list, &args.bare_kubeconfig) {
        (Some(semantic), Some(kubeconfig)) => bare::child(kubeconfig, args.objects(), semantic),
        _ => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("periscope-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a progress line with the time since the start.
fn say(start: Instant, text: &str) {
    eprintln!("[{:7.1}s] {text}", start.elapsed().as_secs_f64());
}

fn repo_root() -> PathBuf {
    periscope_tests::repo_root()
}

fn run(args: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let load_start = procfs::load_average();
    let root = repo_root();
    // Read before the run, which can last long enough for the tree to change under it.
    let periscope_rev = git_revision(&root);
    let ksm_bin = match &args.ksm_bin {
        Some(path) => path.clone(),
        // Not started with `--languages` or the KubeVirt scenario.
        None if args.languages || args.scenario == Scenario::Kubevirt => PathBuf::new(),
        None => default_ksm_bin(&root)?,
    };
    let periscope_dir = match &args.periscope_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("where am I: {e}"))?
            .parent()
            .ok_or("this binary has no directory")?
            .to_owned(),
    };
    let ksm_needed = (!args.languages && args.scenario == Scenario::Vmi)
        .then(|| (ksm_bin.clone(), "bash bench/build-ksm.sh"));
    for (path, how) in ksm_needed.into_iter().chain([(
        periscope_dir.join("periscope"),
        "cargo build --release --workspace",
    )]) {
        if !procfs::is_executable(&path) {
            return Err(format!(
                "{} is missing: build it with `{how}`",
                path.display()
            ));
        }
    }
    let plugin = periscope_dir.join(periscope_tests::plugin_file("prometheus"));
    if !plugin.is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release --workspace`",
            plugin.display()
        ));
    }
    let ksm_version = if args.languages || args.scenario == Scenario::Kubevirt {
        String::new()
    } else {
        command_line_output(&ksm_bin, &["version"])
    };
    let ksm_version = ksm_version
        .trim_start_matches("kube-state-metrics, version ")
        .to_owned();

    let work = tempfile::Builder::new()
        .prefix("periscope-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    say(t0, "starting etcd and kube-apiserver");
    let cp = std::panic::catch_unwind(ControlPlane::start)
        .map_err(|_| "the control plane did not start (see above)".to_owned())?;
    let client = runtime.block_on(controlplane::kube_client(cp.kubeconfig_path()));
    let apiserver_version = runtime.block_on(cluster::apiserver_version(&client));
    if args.scenario == Scenario::Kubevirt {
        let run = kubevirt::Run {
            args,
            runtime: &runtime,
            client: &client,
            periscope_dir: &periscope_dir,
            kubeconfig: cp.kubeconfig_path(),
            work: work.path(),
            t0,
        };
        let text = run.measure(&load_start, &periscope_rev, &apiserver_version)?;
        drop(cp);
        println!("{text}");
        if !args.no_write {
            let name = format!("kubevirt-{}", count_name(args.objects()));
            let path = write_results(args, &root, &name, &text)?;
            say(t0, &format!("results written to {}", path.display()));
        }
        return Ok(());
    }
    runtime.block_on(cluster::install_crd(
        &client,
        &root.join("examples/kubevirt/crds/virtualmachineinstances.yaml"),
    ))?;

    let fleet = Arc::new(Fleet::new(args.objects()));
    let expected = fleet.expected_series();
    say(t0, &format!("creating {} VMIs", args.objects()));
    let created = Instant::now();
    runtime.block_on(cluster::create_fleet(&client, &fleet))?;
    let create_time = created.elapsed();
    say(
        t0,
        &format!(
            "created {} VMIs in {:.1} s ({:.0}/s); each tool should serve {expected} series",
            args.objects(),
            create_time.as_secs_f64(),
            args.objects() as f64 / create_time.as_secs_f64()
        ),
    );

    if args.languages {
        let text = languages::run(
            args,
            &runtime,
            &client,
            &fleet,
            &periscope_dir,
            cp.kubeconfig_path(),
            t0,
        )?;
        println!("{text}");
        if !args.no_write {
            let name = format!("{}-cel", count_name(args.objects()));
            let path = write_results(args, &root, &name, &text)?;
            say(t0, &format!("results written to {}", path.display()));
        }
        return Ok(());
    }

    // The physical limit: a bare list of the same objects, with each list semantic, alternating.
    let bare = bare_lists(cp.kubeconfig_path(), args.objects(), t0)?;

    // Start: one tool at a time, each until its page is complete.
    let start_ksm = || {
        tools::start_ksm(
            &ksm_bin,
            cp.kubeconfig_path(),
            &root.join("bench/config/kube-state-metrics.yaml"),
            work.path(),
        )
    };
    let periscope_config = args
        .periscope_config
        .clone()
        .unwrap_or_else(|| root.join("bench/config/periscope-imported.toml"));
    let start_periscope = || {
        tools::start_periscope(
            &periscope_dir,
            &periscope_config,
            cp.kubeconfig_path(),
            work.path(),
        )
    };
    let mut figures_p = Figures::default();
    let mut figures_k = Figures::default();
    let mut first = match args.first {
        First::Ksm => start_ksm()?,
        First::Periscope => start_periscope()?,
    };
    say(t0, &format!("{} started", first.which.label()));
    let figures = figures_of(first.which, &mut figures_p, &mut figures_k);
    wait_complete(&mut first, expected, args, t0, figures)?;
    let mut second = match args.first {
        First::Ksm => start_periscope()?,
        First::Periscope => start_ksm()?,
    };
    say(t0, &format!("{} started", second.which.label()));
    let figures = figures_of(second.which, &mut figures_p, &mut figures_k);
    wait_complete(&mut second, expected, args, t0, figures)?;
    let (periscope, ksm) = match first.which {
        Which::Periscope => (&mut first, &mut second),
        Which::Ksm => (&mut second, &mut first),
    };

    // Same series on both pages, or nothing else means anything.
    say(t0, "comparing the two pages");
    same_series(periscope, ksm)?;
    say(t0, "both pages hold the same series and values");

    // Scrape latency, one tool at a time, alternating.
    say(t0, &format!("{} scrapes of each page", args.scrapes));
    scrape_figures(
        &[periscope, ksm],
        &mut [&mut figures_p, &mut figures_k],
        args.scrapes,
    )?;

    // Updates with both tools running.
    say(
        t0,
        &format!(
            "{} updates/s for {} s, both tools running",
            args.update_rate, args.update_seconds
        ),
    );
    let stats = under_updates(
        &runtime,
        &client,
        &fleet,
        args,
        &[periscope, ksm],
        &mut [&mut figures_p, &mut figures_k],
    )?;
    say(
        t0,
        &format!(
            "updates: {} applied, {} failed, {} not sent in time, {:.1} s",
            stats.applied,
            stats.failed,
            stats.skipped,
            stats.elapsed.as_secs_f64()
        ),
    );
    let stream_end = Instant::now();
    catch_up(
        &fleet,
        periscope,
        ksm,
        stream_end,
        &mut figures_p,
        &mut figures_k,
        t0,
    )?;
    same_series(periscope, ksm)?;
    say(
        t0,
        "after the updates, both pages hold the same series and values again",
    );

    for (tool, figures) in [(&*periscope, &mut figures_p), (&*ksm, &mut figures_k)] {
        let (rss, peak) = procfs::rss_bytes(tool.pid())?;
        figures.end_rss = rss;
        figures.end_file_rss = procfs::file_rss_bytes(tool.pid())?;
        figures.end_peak_rss = peak;
    }
    let periscope_state_bytes = periscope.self_metric("periscope_source_state_bytes")?;
    let mut periscope_allocator = Vec::new();
    for kind in ["allocated", "active", "resident", "metadata", "dirty"] {
        let metric = format!("periscope_allocator_bytes{{kind=\"{kind}\"}}");
        if let Some(bytes) = periscope.self_metric(&metric)? {
            periscope_allocator.push((kind, bytes));
        }
    }
    let periscope_held = (
        periscope.self_metric(&format!("periscope_watch_objects{{watch=\"{VMI_WATCH}\"}}"))?,
        periscope.self_metric(&format!(
            "periscope_watch_held_bytes{{watch=\"{VMI_WATCH}\"}}"
        ))?,
    );
    periscope.stop();
    ksm.stop();
    drop(cp);

    let info = RunInfo {
        date: jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
        command: command_line(),
        objects: args.objects(),
        series: expected,
        machine: procfs::machine(),
        load_start,
        load_end: procfs::load_average(),
        ksm_version,
        periscope_rev,
        apiserver_version,
        create_time,
        update_summary: format!(
            "{}; each sets a new phase and the conditions",
            stats.summary(args.update_rate, args.update_seconds)
        ),
        update_elapsed: stats.elapsed.as_secs_f64(),
        first: match args.first {
            First::Ksm => "kube-state-metrics".to_owned(),
            First::Periscope => "Periscope".to_owned(),
        },
        scrapes: args.scrapes,
        periscope_state_bytes,
        periscope_allocator,
        periscope_held: match periscope_held {
            (Some(objects), Some(bytes)) => Some((objects, bytes)),
            _ => None,
        },
        bare,
    };
    println!("{}", report::table(&figures_p, &figures_k, &info));
    println!("{}", report::limit_table(&figures_p, &figures_k, &info));
    if !args.no_write {
        let text = report::markdown(&figures_p, &figures_k, &info);
        let path = write_results(args, &root, &count_name(args.objects()), &text)?;
        say(t0, &format!("results written to {}", path.display()));
    }
    Ok(())
}

/// How many times the bare client lists with each semantic; the table shows the median.
pub(crate) const BARE_ROUNDS: usize = 3;

/// Runs the bare list + watch client [`BARE_ROUNDS`] times with each list semantic, alternating,
/// and returns the run with the median wall time of each semantic.
fn bare_lists(
    kubeconfig: &Path,
    objects: usize,
    t0: Instant,
) -> Result<Vec<bare::BareFigures>, String> {
    let semantics = [bare::Semantic::Consistent, bare::Semantic::Cached];
    let mut runs: Vec<Vec<bare::BareFigures>> = vec![Vec::new(); semantics.len()];
    for _ in 0..BARE_ROUNDS {
        for (semantic, runs) in semantics.iter().zip(&mut runs) {
            let figures = bare::measure(kubeconfig, objects, *semantic)?;
            say(
                t0,
                &format!(
                    "bare list + watch, {:?}: {:.3} s, {:.3} CPU s",
                    semantic, figures.wall, figures.cpu
                ),
            );
            runs.push(figures);
        }
    }
    Ok(runs
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
            runs[runs.len() / 2]
        })
        .collect())
}

/// Writes `text` to `bench/results/<date>-<name>.md` (or `-2`, `-3`, …: an earlier run's file,
/// which may hold notes written by hand, is never replaced).
fn write_results(args: &Args, root: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let dir = args
        .results_dir
        .clone()
        .unwrap_or_else(|| root.join("bench/results"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let stem = format!("{day}-{name}");
    let path = std::iter::once(dir.join(format!("{stem}.md")))
        .chain((2..).map(|n| dir.join(format!("{stem}-{n}.md"))))
        .find(|path| !path.exists())
        .expect("an unbounded sequence of names has a free one");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// The figures of `which`.
fn figures_of<'a>(which: Which, p: &'a mut Figures, k: &'a mut Figures) -> &'a mut Figures {
    match which {
        Which::Periscope => p,
        Which::Ksm => k,
    }
}

/// `1000` → `1k`, `100000` → `100k`, `1500` → `1500`.
fn count_name(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The kube-state-metrics binary bench/build-ksm.sh caches, for the version bench/ksm/go.mod pins.
fn default_ksm_bin(root: &Path) -> Result<PathBuf, String> {
    let go_mod = root.join("bench/ksm/go.mod");
    let text =
        std::fs::read_to_string(&go_mod).map_err(|e| format!("read {}: {e}", go_mod.display()))?;
    let version = text
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("k8s.io/kube-state-metrics/v2"))
                .then(|| words.next())
                .flatten()
        })
        .ok_or_else(|| format!("{} pins no kube-state-metrics version", go_mod.display()))?;
    let cache = std::env::var_os("PERISCOPE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/periscope")))
        .ok_or("neither PERISCOPE_CACHE nor HOME is set")?;
    Ok(cache
        .join("kube-state-metrics")
        .join(version)
        .join("bin/kube-state-metrics"))
}

/// The first line a command prints, or why it printed none.
fn command_line_output(program: &Path, args: &[&str]) -> String {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("(nothing)")
            .trim()
            .to_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// The checked-out revision, `+dirty` when the tree has changes.
fn git_revision(root: &Path) -> String {
    let root = root.display().to_string();
    let rev = command_line_output(
        Path::new("git"),
        &["-C", &root, "rev-parse", "--short=10", "HEAD"],
    );
    let dirty = std::process::Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|out| !out.stdout.is_empty())
        .unwrap_or(false);
    if dirty { format!("{rev}+dirty") } else { rev }
}

/// This run's command line, as typed.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(program) = words.first_mut()
        && let Some(name) = Path::new(program.as_str()).file_name()
    {
        *program = format!("target/release/{}", name.to_string_lossy());
    }
    words.join(" ")
}

/// Polls `tool`'s page until it holds `expected` series, then notes the wall time, CPU time and
/// peak RSS so far.
fn wait_complete(
    tool: &mut Tool,
    expected: usize,
    args: &Args,
    t0: Instant,
    figures: &mut Figures,
) -> Result<(), String> {
    let deadline = tool.started + Duration::from_secs(args.start_timeout);
    let mut polls = 0;
    loop {
        tool.check_running()?;
        let last = match tool.scrape() {
            Ok(scrape) => {
                polls += 1;
                let count = series::count_samples(&scrape.body, PREFIX);
                if count == expected {
                    figures.start_wall = tool.started.elapsed().as_secs_f64();
                    figures.start_cpu = procfs::cpu_seconds(tool.pid())?;
                    figures.start_peak_rss = procfs::rss_bytes(tool.pid())?.1;
                    figures.start_polls = polls;
                    say(
                        t0,
                        &format!(
                            "{}: complete page after {:.2} s, {:.2} CPU s, peak RSS {:.1} MiB",
                            tool.which.label(),
                            figures.start_wall,
                            figures.start_cpu,
                            figures.start_peak_rss as f64 / 1024.0 / 1024.0
                        ),
                    );
                    return Ok(());
                }
                if count > expected {
                    return Err(format!(
                        "{} serves {count} series, more than the {expected} expected",
                        tool.which.label()
                    ));
                }
                format!("{count} of {expected} series")
            }
            Err(e) => {
                tool.check_serving()?;
                e
            }
        };
        if Instant::now() > deadline {
            return Err(format!(
                "{} has no complete page after {} s (last: {last}); its log: {}",
                tool.which.label(),
                args.start_timeout,
                tool.log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
}

/// Scrapes both pages (with gzip, as Prometheus does) and fails, showing the difference, unless
/// they hold the same series with the same values.
fn same_series(periscope: &Tool, ksm: &Tool) -> Result<(), String> {
    let page_of = |tool: &Tool| -> Result<Page, String> {
        let scrape = tool.scrape_gzip()?;
        let text = String::from_utf8(scrape.body)
            .map_err(|e| format!("{} page is not UTF-8: {e}", tool.which.label()))?;
        Page::parse(&text, PREFIX).map_err(|e| format!("{} page: {e}", tool.which.label()))
    };
    let p = page_of(periscope)?;
    let k = page_of(ksm)?;
    let diff = series::diff("Periscope", &p, "kube-state-metrics", &k, 10);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the two pages differ, so the comparison would not be fair:\n{}",
            diff.join("\n")
        ))
    }
}

/// `scrapes` fetches of each tool's page, alternating, plain and then with gzip: latency
/// percentiles, CPU per scrape, size (on the wire for gzip), into the figures of the same index.
/// The gzip page must hold what the plain one does.
fn scrape_figures(
    tools: &[&Tool],
    figures: &mut [&mut Figures],
    scrapes: usize,
) -> Result<(), String> {
    for gzip in [false, true] {
        let mut latencies = vec![Vec::new(); tools.len()];
        let mut cpu = vec![0.0; tools.len()];
        let mut bytes = vec![0; tools.len()];
        for _ in 0..scrapes {
            for (i, tool) in tools.iter().enumerate() {
                let before = procfs::cpu_seconds(tool.pid())?;
                let scrape = if gzip {
                    tool.scrape_gzip()?
                } else {
                    tool.scrape()?
                };
                // Let the server finish its side (a Go server may still be flushing).
                std::thread::sleep(Duration::from_millis(20));
                cpu[i] += procfs::cpu_seconds(tool.pid())? - before;
                latencies[i].push(scrape.latency.as_secs_f64());
                bytes[i] = scrape.wire_bytes;
                if gzip && series::count_samples(&scrape.body, PREFIX) == 0 {
                    return Err(format!(
                        "{}: the gzip page holds no series",
                        tool.which.label()
                    ));
                }
            }
        }
        for (i, figures) in figures.iter_mut().enumerate() {
            let sorted = &mut latencies[i];
            sorted.sort_by(f64::total_cmp);
            let measured = ScrapeFigures {
                median: percentile(sorted, 0.5),
                p99: percentile(sorted, 0.99),
                cpu: cpu[i] / scrapes.max(1) as f64,
                bytes: bytes[i],
            };
            if gzip {
                figures.gzip = measured;
            } else {
                figures.plain = measured;
            }
        }
    }
    Ok(())
}

/// The `q` quantile of sorted values (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the update stream over `objects` while a second thread samples each tool's RSS every
/// 250 ms and scrapes each page with gzip every `scrape_interval`; notes CPU time, max RSS and
/// the slowest scrape into the figures of the same index.
fn under_updates<U: cluster::Updated>(
    runtime: &tokio::runtime::Runtime,
    client: &kube::Client,
    objects: &Arc<U>,
    args: &Args,
    tools: &[&Tool],
    figures: &mut [&mut Figures],
) -> Result<cluster::StreamStats, String> {
    let cpu_before = tools
        .iter()
        .map(|tool| procfs::cpu_seconds(tool.pid()))
        .collect::<Result<Vec<f64>, String>>()?;
    let done = AtomicBool::new(false);
    let (stats, sampled) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut max_rss = vec![0u64; tools.len()];
            let mut slowest = vec![0f64; tools.len()];
            let mut errors = Vec::new();
            let interval = Duration::from_secs(args.scrape_interval.max(1));
            let mut next_scrape = Instant::now() + interval;
            while !done.load(Ordering::Relaxed) {
                for (i, tool) in tools.iter().enumerate() {
                    match procfs::rss_bytes(tool.pid()) {
                        Ok((rss, _)) => max_rss[i] = max_rss[i].max(rss),
                        Err(e) => errors.push(e),
                    }
                }
                if Instant::now() >= next_scrape {
                    next_scrape += interval;
                    // With gzip, as Prometheus asks: each tool compresses what changed.
                    for (i, tool) in tools.iter().enumerate() {
                        match tool.scrape_gzip() {
                            Ok(scrape) => slowest[i] = slowest[i].max(scrape.latency.as_secs_f64()),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (max_rss, slowest, errors)
        });
        let stats = runtime.block_on(cluster::update_stream(
            client,
            objects.clone(),
            args.update_rate,
            Duration::from_secs(args.update_seconds),
        ));
        done.store(true, Ordering::Relaxed);
        (stats, sampler.join())
    });
    let (max_rss, slowest, errors) = sampled.map_err(|_| "the sampler thread panicked")?;
    if let Some(e) = errors.first() {
        return Err(format!("while the updates ran: {e}"));
    }
    for (i, figures) in figures.iter_mut().enumerate() {
        figures.update_cpu = procfs::cpu_seconds(tools[i].pid())? - cpu_before[i];
        figures.update_max_rss = max_rss[i];
        figures.update_scrape_max = slowest[i];
    }
    Ok(stats)
}

/// Polls both pages until each shows every VMI in the phase the fleet last set; notes how long
/// after the end of the stream each got there.
fn catch_up(
    fleet: &Fleet,
    periscope: &Tool,
    ksm: &Tool,
    stream_end: Instant,
    figures_p: &mut Figures,
    figures_k: &mut Figures,
    t0: Instant,
) -> Result<(), String> {
    let want: BTreeSet<(String, String, String)> = fleet
        .current_phases()
        .into_iter()
        .map(|(ns, name, phase)| (ns, name, phase.to_owned()))
        .collect();
    let deadline = stream_end + Duration::from_secs(300);
    let mut pending = vec![(periscope, figures_p), (ksm, figures_k)];
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (tool, figures) in pending {
            let scrape = tool.scrape_gzip()?;
            let elapsed = stream_end.elapsed().as_secs_f64();
            let text = String::from_utf8_lossy(&scrape.body);
            let shown = series::shown_states(&text, "kubevirt_vmi_status_phase", "phase")?;
            if shown == want {
                figures.catch_up = elapsed;
                say(
                    t0,
                    &format!(
                        "{} shows every last phase {elapsed:.2} s after the stream ended",
                        tool.which.label()
                    ),
                );
            } else if Instant::now() > deadline {
                let behind = want.difference(&shown).count();
                return Err(format!(
                    "{} still shows {behind} VMIs in an old phase 300 s after the updates",
                    tool.which.label()
                ));
            } else {
                still.push((tool, figures));
            }
        }
        pending = still;
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
