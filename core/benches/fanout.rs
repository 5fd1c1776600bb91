//! Batch build time and fan-out cost: 100k samples × 5 labels, built as per-source updates (as
//! inputs build them), then gathered by the collector and delivered to 0, 1 and 3 exporters through
//! the real delivery workers. Prints samples per second.
//!
//! Run: `cargo bench -p periscope-core --bench fanout`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use periscope_core::collector::{Collector, Intake};
use periscope_core::config::{BatchConfig, RetryConfig, WhenFull};
use periscope_core::delivery::{DeadLetter, MemoryQueue, Queue, Worker, WorkerSpec};
use periscope_core::plugins::Plugin;
use periscope_core::readiness::Readiness;
use periscope_core::supervise::Supervisor;
use periscope_core::telemetry::Telemetry;
use periscope_plugin_api::config::ByteSize;
use periscope_plugin_api::{
    Batch, BoxError, Context, Export, Exporter, Family, FamilyKind, Source, SourceKind, Suffix,
};
use periscope_scraper::SourceUpdate;
use periscope_scraper::objects::{ObjectPipeline, PipelinePublisher, Secrets};
use serde::Deserialize;
use tokio::sync::mpsc;

const SOURCES: usize = 20_000;
const SAMPLES_PER_SOURCE: usize = 5;
const TOTAL: u64 = (SOURCES * SAMPLES_PER_SOURCE) as u64;
const ROUNDS: usize = 5;

static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Accepts everything and counts samples: the cheapest possible exporter, so what is measured is
/// the host's own cost.
struct Null;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

impl Exporter for Null {
    type Config = NoConfig;
    fn new(_: NoConfig, _: Context<'_>) -> Result<Self, BoxError> {
        Ok(Null)
    }
    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        RECEIVED.fetch_add(batch.sample_count() as u64, Ordering::Relaxed);
        Ok(Export::Ok)
    }
}

fn build_updates() -> Vec<SourceUpdate> {
    let names: Vec<String> = (0..SOURCES).map(|i| format!("vmi-{i:05}")).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let source = Source {
                kind: SourceKind::Object,
                id: name,
                api_version: "kubevirt.io/v1",
                object_kind: "VirtualMachineInstance",
                namespace: "default",
                name,
                uid: name,
            };
            SourceUpdate::replace(source, |w| {
                let family = w.family(Family {
                    name: "kubevirt_vmi_phase",
                    help: "Phase of the VMI.",
                    unit: "",
                    kind: FamilyKind::StateSet,
                });
                for phase in ["Pending", "Scheduling", "Scheduled", "Running", "Succeeded"] {
                    w.sample(
                        family,
                        Suffix::None,
                        f64::from(u8::from(phase == "Running")),
                        1_700_000_000_000,
                    )
                    .label("namespace", "default")
                    .label("name", name)
                    .label("node", if i % 2 == 0 { "node-a" } else { "node-b" })
                    .label("os", "fedora")
                    .label("phase", phase);
                }
            })
        })
        .collect()
}

/// Runs the collector and `exporters` workers over `updates`; the time until every exporter has
/// received every sample.
async fn fan_out(updates: Vec<SourceUpdate>, exporters: usize) -> Duration {
    RECEIVED.store(0, Ordering::Relaxed);
    let telemetry = Telemetry::new();
    let pipeline = ObjectPipeline::compile(&[], Secrets::Refused).expect("compiles");
    let inputs = Arc::new(PipelinePublisher::new(Arc::new(pipeline)));
    let collector = Collector::new(Duration::from_millis(5), 1024, telemetry.clone(), inputs);
    let (resync_tx, resync_rx) = mpsc::unbounded_channel();
    let dead_letters = std::env::temp_dir().join("periscope-bench-dead-letter");
    let supervisor = Supervisor::new(Readiness::default(), telemetry.clone());
    let mut workers = Vec::new();
    for i in 0..exporters {
        let name = format!("null-{i}");
        let metrics = telemetry.exporter(&name);
        let spec = WorkerSpec {
            dead_letter: DeadLetter::new(&dead_letters, &name),
            plugin: Plugin::in_process::<Null>("null", "0"),
            config_text: String::new(),
            queue: Queue::Memory(Arc::new(MemoryQueue::new(
                1024,
                WhenFull::Block,
                metrics.clone(),
            ))),
            batch: BatchConfig {
                max_samples: 100_000,
                max_bytes: ByteSize(64 << 20),
                max_wait: periscope_plugin_api::config::Duration(Duration::from_millis(1)),
            },
            retry: RetryConfig::default(),
            export_timeout: std::time::Duration::from_secs(60),
            max_series: None,
            guard_stats: telemetry.guard_stats(),
            metrics,
            readiness: Readiness::default(),
            name,
        };
        workers.push(
            Worker::start(
                spec,
                collector.fanout().subscribe(),
                resync_tx.clone(),
                &supervisor,
                false,
            )
            .expect("start worker"),
        );
    }
    let (tx, rx) = mpsc::channel(4096);
    let started = Instant::now();
    let task = tokio::spawn(collector.run(rx, resync_rx));
    for update in updates {
        tx.send(Intake::Update(0, update))
            .await
            .expect("collector running");
    }
    drop(tx);
    task.await.expect("collector finished");
    let expected = TOTAL * exporters as u64;
    while RECEIVED.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = started.elapsed();
    for worker in workers {
        worker.finish(Duration::from_secs(5)).await;
    }
    elapsed
}

fn rate(d: Duration) -> String {
    format!(
        "{:>12.0} samples/s  ({:>7.2} ms)",
        TOTAL as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e3
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "periscope fan-out benchmark: {SOURCES} sources × {SAMPLES_PER_SOURCE} samples × 5 labels = {TOTAL} samples, median of {ROUNDS}"
    );

    let build = median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(build_updates());
                t.elapsed()
            })
            .collect(),
    );
    println!("build per-source updates        {}", rate(build));

    let merge = median(
        (0..ROUNDS)
            .map(|_| {
                let updates = build_updates();
                let t = Instant::now();
                let mut b = periscope_plugin_api::BatchBuilder::new();
                for u in &updates {
                    b.append(u.batch());
                }
                std::hint::black_box(b.build());
                t.elapsed()
            })
            .collect(),
    );
    println!("merge into one batch            {}", rate(merge));

    let mut base = Duration::ZERO;
    for exporters in [0, 1, 3] {
        let d = median(
            (0..ROUNDS)
                .map(|_| {
                    let u = build_updates();
                    runtime.block_on(fan_out(u, exporters))
                })
                .collect(),
        );
        if exporters == 0 {
            base = d;
            println!("collector, no exporter          {}", rate(d));
        } else {
            let added = d.saturating_sub(base);
            println!(
                "collector + {exporters} exporter(s)         {}   fan-out adds {:.2} ms = {:.0}% of build",
                rate(d),
                added.as_secs_f64() * 1e3,
                100.0 * added.as_secs_f64() / build.as_secs_f64()
            );
        }
    }
}
