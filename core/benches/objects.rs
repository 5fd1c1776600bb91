//! What reading one object costs with each of the benchmark's configs: the hand-written
//! `bench/config/periscope.toml` (paths), `periscope-cel.toml` (the same metrics as CEL) and
//! kube-state-metrics' own `kube-state-metrics.yaml` imported as `[[imports]]` does it. Each
//! compiled pipeline applies the same VMIs (shaped like `bench/src/fleet.rs`'s: most running with
//! one or two interfaces, the rest in other phases) several times; prints the best round's time
//! per object and the samples written.
//!
//! Only the pipeline is measured (object to update), not the exporter's page.
//!
//! Run: `cargo bench -p periscope-core --bench objects`

use std::hint::black_box;
use std::time::{Duration, Instant};

use periscope_core::config::ConfigText;
use periscope_core::import::kube_state_metrics;
use periscope_scraper::objects::{ObjectKey, ObjectPipeline, Secrets};
use serde_json::{Value, json};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const OBJECTS: usize = 2_000;
const ROUNDS: usize = 7;

const PHASES: [&str; 7] = [
    "Pending",
    "Scheduling",
    "Scheduled",
    "Running",
    "Succeeded",
    "Failed",
    "Unknown",
];
const RUNNING: usize = 3;

/// VMI `i`: running four times in five, with one interface (two for one in four).
fn vmi(i: usize) -> Value {
    let phase = if i % 5 == 4 { i % 3 } else { RUNNING };
    let name = format!("vmi-{i:06}");
    let running = phase == RUNNING;
    let mut conditions = vec![json!({
        "type": "Ready", "status": if running { "True" } else { "False" },
        "reason": if running { "" } else { "GuestNotRunning" },
        "lastProbeTime": null, "lastTransitionTime": "2026-11-20T08:00:12Z",
    })];
    let mut status = json!({
        "phase": PHASES[phase],
        "qosClass": "Burstable",
        "launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.4.0",
        "phaseTransitionTimestamps": [
            { "phase": "Pending", "phaseTransitionTimestamp": "2026-11-20T08:00:00Z" },
            { "phase": PHASES[phase], "phaseTransitionTimestamp": "2026-11-20T08:00:12Z" },
        ],
    });
    if phase >= 2 {
        status["nodeName"] = format!("node-{:02}", i % 50).into();
        status["machine"] = json!({ "type": "pc-q35-rhel9.4.0" });
    }
    if running {
        for kind in ["LiveMigratable", "AgentConnected"] {
            conditions.push(json!({
                "type": kind, "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2026-11-20T08:00:12Z",
            }));
        }
        let interfaces: Vec<Value> = (0..if i.is_multiple_of(4) { 2 } else { 1 })
            .map(|n| {
                json!({
                    "name": if n == 0 { "default" } else { "secondary" },
                    "interfaceName": format!("eth{n}"),
                    "ipAddress": format!("10.{}.{}.{}", 128 + n, (i / 250) % 250, i % 250 + 2),
                    "mac": format!("02:{n:02x}:00:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff),
                    "infoSource": "domain, guest-agent",
                    "queueCount": 1,
                })
            })
            .collect();
        status["interfaces"] = interfaces.into();
        status["guestOSInfo"] = json!({
            "name": "Fedora Linux", "id": "fedora", "version": "40", "versionId": "40",
            "prettyName": "Fedora Linux 40", "kernelRelease": "6.8.5-301.fc40.x86_64",
            "kernelVersion": "#1 SMP PREEMPT_DYNAMIC", "machine": "x86_64",
        });
        status["volumeStatus"] = json!([
            { "name": "rootdisk", "target": "vda" },
            { "name": "cloudinitdisk", "target": "vdb", "size": 1048576 },
        ]);
    }
    status["conditions"] = conditions.into();
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": format!("bench-{}", i % 10),
            "uid": format!("uid-{i}"),
            "creationTimestamp": "2026-11-20T08:00:00Z",
            "labels": { "kubevirt.io/vm": name, "kubevirt.io/domain": name, "kubevirt.io/size": "small" },
            "annotations": {
                "vm.kubevirt.io/os": "fedora",
                "vm.kubevirt.io/workload": "server",
                "vm.kubevirt.io/flavor": "small",
                "kubevirt.io/latest-observed-api-version": "v1",
                "kubevirt.io/storage-observed-api-version": "v1",
            },
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine"],
        },
        "spec": {
            "domain": {
                "cpu": { "cores": 1 + i % 4, "sockets": 1, "threads": 1 },
                "memory": { "guest": "2Gi" },
                "machine": { "type": "q35" },
                "resources": { "requests": { "memory": "2Gi" } },
                "devices": {
                    "disks": [
                        { "name": "rootdisk", "disk": { "bus": "virtio" } },
                        { "name": "cloudinitdisk", "disk": { "bus": "virtio" } },
                    ],
                    "interfaces": [ { "name": "default", "masquerade": {} } ],
                    "rng": {},
                },
            },
            "networks": [ { "name": "default", "pod": {} } ],
            "evictionStrategy": "LiveMigrate",
            "terminationGracePeriodSeconds": 180,
            "volumes": [
                { "name": "rootdisk", "containerDisk": { "image": "quay.io/containerdisks/fedora:latest" } },
                { "name": "cloudinitdisk", "cloudInitNoCloud": { "userData": "#cloud-config\nuser: cloud-user\n" } },
            ],
        },
        "status": status,
    })
}

/// The pipeline of a config's `[[resources]]`.
fn pipeline(name: &str, toml: &str) -> ObjectPipeline {
    let config = ConfigText::one(name, toml)
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    ObjectPipeline::compile(&config.resources, Secrets::Refused)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// The best round's time per object, and the samples one round writes.
fn measure(pipeline: &ObjectPipeline, objects: &[(ObjectKey, Value)]) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut samples = 0;
    for _ in 0..ROUNDS {
        samples = 0;
        let start = Instant::now();
        for (key, object) in objects {
            let (update, problems) = pipeline
                .apply(key, object, 1_700_000_000_000)
                .expect("every config selects the VMIs");
            assert!(problems.messages.is_empty(), "{:?}", problems.messages);
            assert!(problems.expressions.is_empty(), "an expression failed");
            samples += update.batch().sample_count();
            black_box(update);
        }
        best = best.min(start.elapsed());
    }
    (best / objects.len() as u32, samples)
}

fn main() {
    let crs = include_str!("../../bench/config/kube-state-metrics.yaml");
    let imported = kube_state_metrics::convert("kube-state-metrics.yaml", crs)
        .unwrap_or_else(|e| panic!("the benchmark's CRS file converts: {e}"));
    let configs = [
        (
            "periscope.toml (paths)",
            include_str!("../../bench/config/periscope.toml").to_owned(),
        ),
        (
            "periscope-cel.toml (CEL)",
            include_str!("../../bench/config/periscope-cel.toml").to_owned(),
        ),
        ("kube-state-metrics.yaml (imported)", imported),
    ];
    let objects: Vec<(ObjectKey, Value)> = (0..OBJECTS)
        .map(|i| {
            let object = vmi(i);
            let key = ObjectKey::of(&object).expect("a VMI has a key");
            (key, object)
        })
        .collect();
    println!("periscope object benchmark: {OBJECTS} VMIs, best of {ROUNDS} rounds");
    for (name, toml) in &configs {
        let pipeline = pipeline(name, toml);
        let (per_object, samples) = measure(&pipeline, &objects);
        println!(
            "{name:<36} {:>7.2} µs/object  {samples} samples",
            per_object.as_secs_f64() * 1e6
        );
    }
}
