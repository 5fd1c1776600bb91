//! Where the page exporter's bytes go, and what a scrape costs, at the benchmark's size:
//!
//! ```sh
//! cargo bench -p periscope-prometheus --bench page
//! ```
//!
//! 10k sources shaped like `bench/`'s VMIs (11 series each over five families, three constant
//! labels): the heap the state holds (counted by a wrapping allocator) split into block text,
//! segment tables and the rest (block headers, keys, persistent-collection nodes, family table),
//! then the CPU of a plain scrape and of a gzip scrape: with nothing kept, of an unchanged state,
//! and after 0.1, 1 and 10 % of the sources changed.

// The counting allocator is the one unsafe part: it forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use periscope_plugin_api::{Batch, BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};
use periscope_prometheus::block::LineOptions;
use periscope_prometheus::format::Format;
use periscope_prometheus::server::page_body;
use periscope_prometheus::shared_pages::SharedPages;
use periscope_prometheus::state::{Ingest, Options, Published, State};
use periscope_prometheus::stats::Stats;

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SOURCES: usize = 10_000;
const PHASES: [&str; 7] = [
    "Pending",
    "Scheduling",
    "Scheduled",
    "Running",
    "Succeeded",
    "Failed",
    "Unknown",
];

/// `Replace` updates of sources `first..first + count`, values shifted by `round`.
fn batch(first: usize, count: usize, round: usize) -> Batch {
    let mut b = BatchBuilder::new();
    let family = |b: &mut BatchBuilder, name, kind| {
        b.family(Family {
            name,
            help: "A benchmark family.",
            unit: "",
            kind,
        })
    };
    let info = family(&mut b, "kubevirt_vmi", FamilyKind::Info);
    let phase = family(&mut b, "kubevirt_vmi_status_phase", FamilyKind::StateSet);
    let ready = family(&mut b, "kubevirt_vmi_ready", FamilyKind::Gauge);
    let vnic = family(&mut b, "kubevirt_vmi_vnic", FamilyKind::Info);
    let created = family(
        &mut b,
        "kubevirt_vmi_creation_timestamp_seconds",
        FamilyKind::Gauge,
    );
    for source in first..first + count {
        let namespace = format!("namespace-{}", source % 100);
        let name = format!("vmi-{source:06}");
        let node = format!("node-{:03}", source % 300);
        let id = format!("{namespace}/{name}");
        let mut r = b.replace(Source::new(SourceKind::Object, &id));
        let base = [
            ("namespace", namespace.as_str()),
            ("name", name.as_str()),
            ("node", node.as_str()),
        ];
        let mut s = r.sample(info, Suffix::Info, 1.0, 0);
        for (k, v) in base {
            s.label(k, v);
        }
        s.label("phase", "Running")
            .label("vm", &name)
            .label("os", "linux")
            .label("workload", "server")
            .label("flavor", "small")
            .label("guest_os_name", "Fedora Linux")
            .label("guest_os_version", "39")
            .label("guest_os_kernel_release", "6.5.6-300.fc39.x86_64")
            .label("guest_os_arch", "x86_64");
        for p in PHASES {
            let mut s = r.sample(phase, Suffix::None, f64::from(p == "Running"), 0);
            for (k, v) in base {
                s.label(k, v);
            }
            s.label("kubevirt_vmi_status_phase", p);
        }
        let mut s = r.sample(ready, Suffix::None, ((source + round) % 2) as f64, 0);
        for (k, v) in base {
            s.label(k, v);
        }
        let mut s = r.sample(vnic, Suffix::Info, 1.0, 0);
        for (k, v) in base {
            s.label(k, v);
        }
        s.label("interface", "default")
            .label("interface_name", "eth0")
            .label(
                "ip_address",
                &format!(
                    "10.{}.{}.{}",
                    source / 65536,
                    source / 256 % 256,
                    source % 256
                ),
            )
            .label(
                "mac",
                &format!(
                    "02:00:00:{:02x}:{:02x}:{:02x}",
                    source / 65536,
                    source / 256 % 256,
                    source % 256
                ),
            );
        let mut s = r.sample(created, Suffix::None, 1.7e9 + source as f64, 0);
        for (k, v) in base {
            s.label(k, v);
        }
    }
    b.build()
}

fn options() -> Options {
    Options {
        line: LineOptions {
            const_labels: vec![
                ("customresource_group".into(), "kubevirt.io".into()),
                ("customresource_version".into(), "v1".into()),
                (
                    "customresource_kind".into(),
                    "VirtualMachineInstance".into(),
                ),
            ],
            ..LineOptions::default()
        },
        ..Options::default()
    }
}

fn apply(state: &State, options: &Options, batch: &Batch) -> State {
    let mut next = state.clone();
    let mut ingest = Ingest::new(options, false, 0);
    next.apply(batch, &mut ingest);
    next
}

fn mb(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let options = options();
    let full = batch(0, SOURCES, 0);
    let before = LIVE.load(Ordering::Relaxed);
    let state = apply(&State::default(), &options, &full);
    let held = (LIVE.load(Ordering::Relaxed) - before) as usize;
    drop(full);
    let layout = state.memory();
    println!("== {SOURCES} sources, {} series", state.series_count());
    println!("state heap (counted):   {}", mb(held));
    println!("  block text (LZ4):     {}", mb(layout.text));
    println!("  segment tables:       {}", mb(layout.segments));
    println!(
        "  the rest (blocks' headers, keys, imbl nodes, family table): {}",
        mb(held.saturating_sub(layout.text + layout.segments))
    );

    let mut text = Vec::new();
    let unpack = median(11, || {
        for block in state.blocks() {
            block.text_into(&mut text);
            black_box(&text);
        }
    });
    println!("  decompressing every block: {}", ms(unpack));

    let stats = Stats::default();
    let state = Arc::new(state);
    let scrape = |published: &Published, state: &Arc<State>, gzip: bool| {
        let pages = SharedPages::default();
        let body = page_body(&pages, published, state, Format::Text, gzip, &stats).expect("a page");
        bytes::Buf::remaining(&body)
    };
    let mut page_bytes = 0;
    let plain = median(11, || {
        page_bytes = scrape(&Published::default(), &state, false)
    });
    println!(
        "plain scrape (render):  {} for {}",
        ms(plain),
        mb(page_bytes)
    );
    let mut gzip_bytes = 0;
    let gzip_cold = median(5, || {
        gzip_bytes = scrape(&Published::default(), &state, true);
    });
    println!(
        "gzip scrape, nothing kept: {} for {}",
        ms(gzip_cold),
        mb(gzip_bytes)
    );
    let published = Published::default();
    published.set(state.clone());
    scrape(&published, &state, true);
    println!("  in {} pieces", published.gzip().compressed());
    let gzip_same = median(11, || {
        black_box(scrape(&published, &state, true));
    });
    println!("gzip scrape, same state: {}", ms(gzip_same));
    // Some of the sources change between two scrapes (consecutive sources are in different
    // namespaces, so they are spread over the page).
    let mut current = state.clone();
    for count in [10, 100, 1000] {
        let changes: Vec<Batch> = (0..5)
            .map(|round| batch(round * count, count, round + 1))
            .collect();
        let mut round = 0;
        let compressed = published.gzip().compressed();
        let gzip_changed = median(5, || {
            current = Arc::new(apply(&current, &options, &changes[round % changes.len()]));
            round += 1;
            published.set(current.clone());
            black_box(scrape(&published, &current, true));
        });
        let apply_only = median(5, || {
            black_box(apply(&current, &options, &changes[round % changes.len()]));
        });
        println!(
            "gzip scrape after {:.1} % of sources changed: {} (of which applying the change {}), {} pieces compressed per scrape",
            count as f64 * 100.0 / SOURCES as f64,
            ms(gzip_changed.saturating_sub(apply_only)),
            ms(apply_only),
            (published.gzip().compressed() - compressed) / 5,
        );
    }
}
