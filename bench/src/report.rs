//! The figures of one run and the table that shows them side by side.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bare::BareFigures;

/// Sequential scrapes of the full page while nothing changes.
#[derive(Debug, Default, Clone)]
pub struct ScrapeFigures {
    /// Median time of one scrape, seconds.
    pub median: f64,
    /// 99th percentile of the same, seconds.
    pub p99: f64,
    /// CPU seconds the tool spent per scrape.
    pub cpu: f64,
    /// Bytes on the wire of one answer.
    pub bytes: usize,
}

/// Everything measured of one tool.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Wall time from start to the first scrape with every object's series.
    pub start_wall: f64,
    /// CPU seconds (user + system) until then.
    pub start_cpu: f64,
    /// Peak resident memory (VmHWM) until then, bytes.
    pub start_peak_rss: u64,
    /// How many scrapes the wait took (each costs the tool a render).
    pub start_polls: usize,
    /// Scrapes of the full page in plain text.
    pub plain: ScrapeFigures,
    /// Scrapes of the full page asking for gzip, as Prometheus does.
    pub gzip: ScrapeFigures,
    /// CPU seconds used while the updates ran (including the periodic scrapes).
    pub update_cpu: f64,
    /// Largest resident memory sampled while the updates ran, bytes.
    pub update_max_rss: u64,
    /// Slowest periodic scrape while the updates ran, seconds.
    pub update_scrape_max: f64,
    /// Time from the last update's answer until the page showed every VMI's last phase, seconds.
    pub catch_up: f64,
    /// Resident memory at the end, bytes.
    pub end_rss: u64,
    /// Of `end_rss`, what is mapped files (the binary, libraries, plugins), bytes.
    pub end_file_rss: u64,
    /// Peak resident memory over the whole run (VmHWM at the end), bytes.
    pub end_peak_rss: u64,
}

/// What the run was, for the header of the results file.
pub struct RunInfo {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The command line.
    pub command: String,
    /// Objects.
    pub objects: usize,
    /// Series each tool serves for them.
    pub series: usize,
    /// Cores, CPU, memory.
    pub machine: String,
    /// `/proc/loadavg` before anything started.
    pub load_start: String,
    /// `/proc/loadavg` at the end.
    pub load_end: String,
    /// kube-state-metrics' `version` output, first line.
    pub ksm_version: String,
    /// Periscope's git revision.
    pub periscope_rev: String,
    /// kube-apiserver's version.
    pub apiserver_version: String,
    /// How long creating the objects took.
    pub create_time: Duration,
    /// The update stream: asked rate, duration, and what it achieved.
    pub update_summary: String,
    /// How long the update stream ran, seconds.
    pub update_elapsed: f64,
    /// Which tool was started first.
    pub first: String,
    /// Scrapes per tool in the latency measurement.
    pub scrapes: usize,
    /// Periscope's `periscope_source_state_bytes` at the end: what the host keeps for resyncs.
    pub periscope_state_bytes: Option<f64>,
    /// Periscope's `periscope_allocator_bytes` at the end, by kind.
    pub periscope_allocator: Vec<(&'static str, f64)>,
    /// What Periscope's VMI watch holds at the end: objects and bytes.
    pub periscope_held: Option<(f64, f64)>,
    /// The bare list + watch client, one run per list semantic (the median of its rounds).
    pub bare: Vec<BareFigures>,
}

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// The rows of the tables for one tool: name, value, decimals. `update_secs` is how long the
/// update stream ran.
pub fn rows(f: &Figures, update_secs: f64) -> Vec<(&'static str, f64, usize)> {
    let update_secs = update_secs.max(0.001);
    vec![
        ("Start: wall time to a complete page (s)", f.start_wall, 2),
        ("Start: CPU time to a complete page (s)", f.start_cpu, 2),
        (
            "Start: peak RSS to a complete page (MiB)",
            f.start_peak_rss as f64 / MIB,
            1,
        ),
        ("Scrape: latency, median (ms)", f.plain.median * 1e3, 1),
        ("Scrape: latency, p99 (ms)", f.plain.p99 * 1e3, 1),
        ("Scrape: CPU per scrape (ms)", f.plain.cpu * 1e3, 1),
        ("Scrape: response size (MB)", f.plain.bytes as f64 / 1e6, 2),
        (
            "Scrape with gzip: latency, median (ms)",
            f.gzip.median * 1e3,
            1,
        ),
        ("Scrape with gzip: latency, p99 (ms)", f.gzip.p99 * 1e3, 1),
        ("Scrape with gzip: CPU per scrape (ms)", f.gzip.cpu * 1e3, 1),
        (
            "Scrape with gzip: bytes on the wire (MB)",
            f.gzip.bytes as f64 / 1e6,
            2,
        ),
        ("Updates: CPU time (s)", f.update_cpu, 2),
        (
            "Updates: CPU, % of one core",
            f.update_cpu / update_secs * 100.0,
            1,
        ),
        ("Updates: max RSS (MiB)", f.update_max_rss as f64 / MIB, 1),
        ("Updates: slowest scrape (ms)", f.update_scrape_max * 1e3, 1),
        ("Updates: catch-up after the last one (s)", f.catch_up, 2),
        ("End: RSS (MiB)", f.end_rss as f64 / MIB, 1),
        (
            "End: of that RSS, mapped files: binary, libraries (MiB)",
            f.end_file_rss as f64 / MIB,
            1,
        ),
        (
            "End: peak RSS over the run (MiB)",
            f.end_peak_rss as f64 / MIB,
            1,
        ),
    ]
}

/// The side-by-side table (Markdown).
pub fn table(periscope: &Figures, ksm: &Figures, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} objects, {} series | Periscope | kube-state-metrics | Periscope / KSM |",
        info.objects, info.series
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let ksm_rows = rows(ksm, info.update_elapsed);
    for ((name, p, digits), (_, k, _)) in rows(periscope, info.update_elapsed)
        .into_iter()
        .zip(ksm_rows)
    {
        let ratio = if k > 0.0 {
            format!("{:.2}", p / k)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(out, "| {name} | {p:.digits$} | {k:.digits$} | {ratio} |");
    }
    let _ = writeln!(
        out,
        "| Start: scrapes while waiting (1 per poll) | {} | {} | |",
        periscope.start_polls, ksm.start_polls
    );
    out
}

/// The physical limit: the bare client's list + watch with each semantic, and each tool's start
/// as a multiple of it (Markdown).
pub fn limit_table(periscope: &Figures, ksm: &Figures, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Bare kube-rs list + watch to all {} objects, pages of {} | wall (s) | CPU (s) | peak RSS (MiB) | Periscope start wall / this | KSM start wall / this | Periscope start CPU / this | KSM start CPU / this |",
        info.objects,
        crate::bare::PAGE_SIZE
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for bare in &info.bare {
        let ratio = |tool: f64, limit: f64| {
            if limit > 0.0 {
                format!("{:.2}", tool / limit)
            } else {
                "–".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.1} | {} | {} | {} | {} |",
            bare.semantic.label(),
            bare.wall,
            bare.cpu,
            bare.peak_rss as f64 / MIB,
            ratio(periscope.start_wall, bare.wall),
            ratio(ksm.start_wall, bare.wall),
            ratio(periscope.start_cpu, bare.cpu),
            ratio(ksm.start_cpu, bare.cpu),
        );
    }
    out
}

/// The whole results file: what ran where, the table, and how to read it.
pub fn markdown(periscope: &Figures, ksm: &Figures, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Periscope vs kube-state-metrics: {} VirtualMachineInstances\n",
        info.objects
    );
    let _ = writeln!(out, "- Date: {}", info.date);
    let _ = writeln!(out, "- Command: `{}`", info.command);
    let _ = writeln!(out, "- Machine: {}", info.machine);
    let _ = writeln!(
        out,
        "- Load average (1/5/15 min): {} at the start, {} at the end. The machine is shared with \
         other builds and tests, which this run did not stop; figures taken while they ran are \
         noisier, CPU seconds least of all (they count only the tool's own time).",
        info.load_start, info.load_end
    );
    let _ = writeln!(
        out,
        "- Versions: kube-state-metrics {}; Periscope {}; kube-apiserver {}",
        info.ksm_version, info.periscope_rev, info.apiserver_version
    );
    let _ = writeln!(
        out,
        "- Objects: {} VMIs in 10 namespaces, created in {:.1} s; each tool serves {} series \
         for them (checked equal: names, labels and values)",
        info.objects,
        info.create_time.as_secs_f64(),
        info.series
    );
    let _ = writeln!(out, "- Update stream: {}", info.update_summary);
    if let Some(bytes) = info.periscope_state_bytes {
        let _ = writeln!(
            out,
            "- Periscope's own `periscope_source_state_bytes` at the end (what the host keeps for \
             resyncs: a copy of the sources no input can send again, and for the watched ones \
             only what removes them): {:.1} MiB, {:.0} bytes per object",
            bytes / MIB,
            bytes / info.objects.max(1) as f64
        );
    }
    if let Some((objects, bytes)) = info.periscope_held {
        let _ = writeln!(
            out,
            "- Periscope's VMI watch at the end (`periscope_watch_objects`, \
             `periscope_watch_held_bytes`): {objects:.0} objects held in {:.2} MiB, {:.0} bytes \
             each (pruned to the fields the config reads, LZ4-compressed JSON)",
            bytes / MIB,
            bytes / objects.max(1.0)
        );
    }
    if !info.periscope_allocator.is_empty() {
        let kinds: Vec<String> = info
            .periscope_allocator
            .iter()
            .map(|(kind, bytes)| format!("{kind} {:.1} MiB", bytes / MIB))
            .collect();
        let _ = writeln!(
            out,
            "- Periscope's allocator at the end (`periscope_allocator_bytes`; the host's heap, not \
             its exporter plugin's): {}",
            kinds.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "- {} started first; the other one was started once it had a complete page.\n",
        info.first
    );
    out.push_str(&table(periscope, ksm, info));
    out.push('\n');
    out.push_str(&limit_table(periscope, ksm, info));
    let _ = writeln!(
        out,
        "\nHow to read it: *Start* runs from the process start to the first scrape that holds \
         every VMI's series (the page is polled; each poll is a full scrape and its cost is \
         included). *Scrape* is {} sequential fetches of the whole page per tool while nothing \
         changes, plain text without compression; *Scrape with gzip* as many again with \
         `Accept-Encoding: gzip`, as every Prometheus server asks. *Updates* covers the update \
         stream, with both tools running and scraped with gzip every `--scrape-interval` seconds \
         (before 2026-11-30 these scrapes were plain), so its CPU includes compressing what \
         changed; the checks after it (catch-up, same series) ask for gzip too, so the *End* \
         figures follow scrapes as Prometheus makes them; *catch-up* is how long after the last \
         update each page still showed an old phase (polled, so ± the poll interval; Periscope \
         gathers changes for its 200 ms flush interval, and its exporter runs with \
         batch.max_wait = 0s). RSS is VmRSS/VmHWM from /proc, mapped files RssFile (the rest is \
         heap and stacks). kube-state-metrics runs with its defaults (no GOMEMLIMIT, GOGC=100) and `--enable-gzip-encoding`, without which it never compresses.",
        info.scrapes
    );
    let _ = writeln!(
        out,
        "\nThe second table is the physical limit of a start: a minimal kube-rs client (this \
         benchmark's binary with `--bare-list`, a process of its own, one thread) lists the VMIs \
         with kube-rs' watcher and does nothing with them; its wall time runs from starting the \
         process to the end of the list (every object seen, the point where the watch begins), \
         the median of {} runs per semantic, run alternating before either tool starts. The tools' \
         start times include polling their page every `--poll-ms`, so at small sizes their wall \
         time is rounded up to the poll interval.",
        crate::BARE_ROUNDS
    );
    out
}
