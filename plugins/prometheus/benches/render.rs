//! Render and ingest figures of the Prometheus exporter:
//!
//! ```sh
//! cargo bench -p periscope-prometheus --bench render
//! ```
//!
//! For 100k and 1M series (3 labels each, 10 series per source, 5 families) it prints the time to
//! ingest them as `Replace` updates, the time and size of a page in both formats (and gzipped),
//! then the throughput of `Replace` updates while another thread scrapes without pause.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use periscope_plugin_api::{Batch, BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};
use periscope_prometheus::format::Format;
use periscope_prometheus::render::render;
use periscope_prometheus::state::{Ingest, Options, Published, State};
use periscope_prometheus::stats::Stats;

const SERIES_PER_SOURCE: usize = 10;
const FAMILIES: [&str; 5] = [
    "bench_vmi_memory_bytes",
    "bench_vmi_cpu_seconds",
    "bench_vmi_network_bytes",
    "bench_vmi_disk_bytes",
    "bench_vmi_ready",
];

/// `Replace` updates of sources `first..first + count`, values shifted by `round`.
fn batch(first: usize, count: usize, round: usize) -> Batch {
    let mut b = BatchBuilder::new();
    let families: Vec<_> = FAMILIES
        .iter()
        .map(|name| {
            b.family(Family {
                name,
                help: "A benchmark gauge.",
                unit: "",
                kind: FamilyKind::Gauge,
            })
        })
        .collect();
    for source in first..first + count {
        let id = format!("ns-{}/vmi-{source}", source % 100);
        let namespace = format!("ns-{}", source % 100);
        let name = format!("vmi-{source}");
        let mut r = b.replace(Source::new(SourceKind::Object, &id));
        for i in 0..SERIES_PER_SOURCE {
            let family = families[i % families.len()];
            let interface = format!("eth{i}");
            r.sample(
                family,
                Suffix::None,
                (source * 7 + i + round) as f64 * 1.5,
                0,
            )
            .label("namespace", &namespace)
            .label("name", &name)
            .label("interface", &interface);
        }
    }
    b.build()
}

fn apply(state: &mut State, options: &Options, batch: &Batch) {
    let mut next = state.clone();
    let mut ingest = Ingest::new(options, false, 0);
    next.apply(batch, &mut ingest);
    *state = next;
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    let options = Options::default();
    let stats = Stats::default();
    for series in [100_000usize, 1_000_000] {
        let sources = series / SERIES_PER_SOURCE;
        println!("== {series} series ({sources} sources × {SERIES_PER_SOURCE}, 3 labels)");
        let mut state = State::default();
        let chunk = 10_000;
        let mut ingest_time = Duration::ZERO;
        for first in (0..sources).step_by(chunk) {
            let b = batch(first, chunk.min(sources - first), 0);
            let start = Instant::now();
            apply(&mut state, &options, &b);
            ingest_time += start.elapsed();
        }
        println!(
            "ingest (render into blocks): {} ({:.0} series/s)",
            secs(ingest_time),
            series as f64 / ingest_time.as_secs_f64()
        );
        for (label, format) in [
            ("text 0.0.4", Format::Text),
            ("openmetrics", Format::OpenMetrics { v0_0_1: false }),
        ] {
            let mut best = Duration::MAX;
            let mut bytes = 0;
            for _ in 0..5 {
                let mut out = Vec::new();
                let start = Instant::now();
                render(&state, format, &stats, &mut out);
                best = best.min(start.elapsed());
                bytes = out.len();
                black_box(&out);
            }
            println!(
                "render {label}: {} for {} (best of 5)",
                secs(best),
                mb(bytes)
            );
        }
        let mut out = Vec::new();
        render(&state, Format::Text, &stats, &mut out);
        let start = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&out).expect("gzip into memory");
        let gz = gz.finish().expect("gzip into memory");
        println!(
            "gzip (fast) of the text page: {} → {}",
            secs(start.elapsed()),
            mb(gz.len())
        );

        // Ingest while a scraper renders the published state without pause.
        let published = Arc::new(Published::default());
        published.set(Arc::new(state.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let scraper = {
            let (published, stop, scrapes) = (published.clone(), stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                let stats = Stats::default();
                let mut longest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let snapshot = published.get();
                    let mut out = Vec::new();
                    render(&snapshot, Format::Text, &stats, &mut out);
                    black_box(&out);
                    longest = longest.max(start.elapsed());
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                longest
            })
        };
        let update_sources = 1000;
        let batches: Vec<Batch> = (0..20)
            .map(|round| {
                batch(
                    (round * update_sources) % sources,
                    update_sources,
                    round + 1,
                )
            })
            .collect();
        let start = Instant::now();
        let mut applied = 0usize;
        let mut longest_publish = Duration::ZERO;
        while start.elapsed() < Duration::from_secs(5) {
            let b = &batches[applied % batches.len()];
            apply(&mut state, &options, b);
            let publish = Instant::now();
            published.set(Arc::new(state.clone()));
            longest_publish = longest_publish.max(publish.elapsed());
            applied += 1;
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let longest_scrape = scraper.join().expect("the scraper thread panicked");
        let updated = applied * update_sources;
        println!(
            "ingest during scrapes: {applied} batches of {update_sources} Replace updates in {} = {:.0} updates/s ({:.0} samples/s); {} scrapes meanwhile (longest {}); longest publish {:.1} µs",
            secs(elapsed),
            updated as f64 / elapsed.as_secs_f64(),
            (updated * SERIES_PER_SOURCE) as f64 / elapsed.as_secs_f64(),
            scrapes.load(Ordering::Relaxed),
            secs(longest_scrape),
            longest_publish.as_secs_f64() * 1e6,
        );
        println!();
    }
}
