//! Parse throughput of the exposition parsers on a ~10 MB page shaped like a busy endpoint: a
//! counter, a histogram, a summary and gauges, 3 to 6 labels each, HELP and TYPE lines, a few
//! escaped label values. The same page is written in the text format and in OpenMetrics, each
//! parsed several times; prints MB/s and samples/s (best round and mean).
//!
//! Run: `cargo bench -p periscope-scraper --bench exposition`

use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use periscope_scraper::exposition::{Format, parse};

const TARGET_BYTES: usize = 10 * 1024 * 1024;
const ROUNDS: usize = 10;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const CODES: [&str; 5] = ["200", "201", "404", "500", "503"];
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const QUANTILES: [&str; 5] = ["0.5", "0.75", "0.9", "0.99", "0.999"];
const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// A page with `pods` pods' worth of series, in `format`.
fn page(pods: usize, format: Format) -> String {
    let om = format == Format::OpenMetrics;
    let mut out = String::new();
    let mut counter = 0u64;
    let mut next = || {
        counter = counter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        counter >> 33
    };

    let declared = if om {
        "http_requests"
    } else {
        "http_requests_total"
    };
    out.push_str("# HELP http_requests_total Total HTTP requests by method, code and handler.\n");
    let _ = writeln!(out, "# TYPE {declared} counter");
    for pod in 0..pods {
        for method in METHODS {
            for code in CODES {
                let _ = writeln!(
                    out,
                    "http_requests_total{{code=\"{code}\",handler=\"/api/v1/namespaces/{{namespace}}/pods\",instance=\"10.0.{}.{}:8080\",job=\"apiserver\",method=\"{method}\"}} {}",
                    pod / 250,
                    pod % 250,
                    next() % 1_000_000
                );
            }
        }
    }

    out.push_str("# HELP http_request_duration_seconds Latency of HTTP requests.\n");
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for pod in 0..pods {
        for method in &METHODS[..2] {
            let labels = format!(
                "handler=\"/metrics\",instance=\"10.0.{}.{}:8080\",job=\"apiserver\",method=\"{method}\"",
                pod / 250,
                pod % 250
            );
            let mut cumulative = 0;
            for le in BUCKETS {
                cumulative += next() % 100;
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = cumulative as f64 * 0.0173;
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }

    out.push_str("# HELP rpc_duration_seconds RPC latency distributions.\n");
    out.push_str("# TYPE rpc_duration_seconds summary\n");
    for pod in 0..pods {
        let labels = format!(
            "instance=\"10.0.{}.{}:8080\",method=\"Watch\",service=\"kubevirt.io/virt-handler\"",
            pod / 250,
            pod % 250
        );
        for quantile in QUANTILES {
            let value = (next() % 100_000) as f64 * 1e-6;
            let _ = writeln!(
                out,
                "rpc_duration_seconds{{{labels},quantile=\"{quantile}\"}} {value:e}"
            );
        }
        let _ = writeln!(out, "rpc_duration_seconds_sum{{{labels}}} 1.7560473e+07");
        let _ = writeln!(out, "rpc_duration_seconds_count{{{labels}}} 2693");
    }

    out.push_str(
        "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.\n",
    );
    out.push_str("# TYPE node_filesystem_avail_bytes gauge\n");
    for pod in 0..pods {
        for (device, fstype, mountpoint) in [
            ("/dev/nvme0n1p2", "ext4", "/"),
            ("tmpfs", "tmpfs", "/run"),
            ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
        ] {
            let _ = writeln!(
                out,
                "node_filesystem_avail_bytes{{device=\"{device}\",fstype=\"{fstype}\",instance=\"node-{pod:04}\",mountpoint=\"{mountpoint}\"}} {:e}",
                (next() % 1_000_000_000) as f64 * 340.179
            );
        }
    }

    out.push_str("# HELP kube_pod_status_phase The pods current phase.\n");
    out.push_str("# TYPE kube_pod_status_phase gauge\n");
    for pod in 0..pods {
        let name = if pod % 100 == 0 {
            format!("virt-launcher-\\\"quoted\\\"-{pod:05}")
        } else {
            format!("virt-launcher-testvm-{pod:05}-x7k2p")
        };
        for phase in PHASES {
            let running = u8::from(phase == "Running");
            let _ = writeln!(
                out,
                "kube_pod_status_phase{{namespace=\"tenant-{}\",node=\"worker-{}\",phase=\"{phase}\",pod=\"{name}\",uid=\"5f1c8a3e-{pod:04x}-4b7d-9c2e-0a1b2c3d4e5f\"}} {running}",
                pod % 37,
                pod % 11
            );
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

/// A page of about [`TARGET_BYTES`].
fn sized_page(format: Format) -> String {
    let per_pod = page(10, format).len() / 10;
    page(TARGET_BYTES / per_pod + 1, format)
}

fn run(format: Format) -> Result<(), Box<dyn Error>> {
    let page = sized_page(format);
    let samples = parse(page.as_bytes(), format)?.sample_count();
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let exposition = parse(black_box(page.as_bytes()), format)?;
        black_box(&exposition);
        drop(exposition);
        times.push(start.elapsed());
    }
    let best = times.iter().min().copied().unwrap_or_default();
    let mean = times.iter().sum::<Duration>() / ROUNDS as u32;
    let megabytes = page.len() as f64 / 1e6;
    println!(
        "{:<12} {:6.2} MB, {samples:>7} samples: best {:7.1} MB/s {:6.2} M samples/s, mean {:7.1} MB/s ({:.1} ms)",
        format!("{format:?}"),
        megabytes,
        megabytes / best.as_secs_f64(),
        samples as f64 / best.as_secs_f64() / 1e6,
        megabytes / mean.as_secs_f64(),
        mean.as_secs_f64() * 1e3,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    for format in [Format::Text, Format::OpenMetrics] {
        run(format)?;
    }
    Ok(())
}
