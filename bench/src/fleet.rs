//! The objects both tools watch: N KubeVirt `VirtualMachineInstance`s with a realistic spread of
//! phases, nodes, conditions, interfaces and guest OS information, and the stream of status
//! updates sent to them while the tools run.
//!
//! The VMI CRD has no status subresource (as in KubeVirt), so a status update is a JSON merge
//! patch of the object itself. Each update moves one VMI to another phase and rewrites its
//! conditions (`Ready` is `True` exactly when it is `Running`); the fleet remembers every phase it
//! set, so the benchmark can tell when a tool has caught up.

use std::sync::atomic::{AtomicU8, Ordering};

use kube::api::ApiResource;
use serde_json::{Value, json};

use crate::cluster::{Update, Updated};

/// The phases of a VMI, in the order of the `status_phase` state set.
pub const PHASES: [&str; 7] = [
    "Pending",
    "Scheduling",
    "Scheduled",
    "Running",
    "Succeeded",
    "Failed",
    "Unknown",
];

const RUNNING: u8 = 3;

/// How many namespaces the VMIs are spread over.
pub const NAMESPACES: usize = 10;

/// How many nodes the scheduled VMIs are spread over.
const NODES: usize = 50;

/// Guest operating systems: `(vm.kubevirt.io/os annotation, guest name, version, kernel)`.
const GUESTS: [(&str, &str, &str, &str); 4] = [
    ("fedora", "Fedora Linux", "40", "6.8.5-301.fc40.x86_64"),
    (
        "rhel9",
        "Red Hat Enterprise Linux",
        "9.4",
        "5.14.0-427.13.1.el9_4.x86_64",
    ),
    (
        "centos-stream9",
        "CentOS Stream",
        "9",
        "5.14.0-480.el9.x86_64",
    ),
    ("ubuntu", "Ubuntu", "24.04", "6.8.0-45-generic"),
];

const WORKLOADS: [&str; 3] = ["server", "desktop", "highperformance"];
const FLAVORS: [&str; 4] = ["tiny", "small", "medium", "large"];

/// The VMIs of one run and the phase each one has now.
pub struct Fleet {
    phases: Vec<AtomicU8>,
}

impl Fleet {
    /// A fleet of `count` VMIs; their first phases follow a fixed spread (most are running).
    pub fn new(count: usize) -> Fleet {
        let phases = (0..count).map(|i| AtomicU8::new(first_phase(i))).collect();
        Fleet { phases }
    }

    /// The namespace of VMI `i`.
    pub fn namespace(i: usize) -> String {
        format!("bench-{}", i % NAMESPACES)
    }

    /// The name of VMI `i`.
    pub fn name(i: usize) -> String {
        format!("vmi-{i:06}")
    }

    /// How many network interfaces VMI `i` reports (none until it runs; one in four has two).
    fn interface_count(i: usize) -> usize {
        if first_phase(i) != RUNNING {
            0
        } else if i.is_multiple_of(4) {
            2
        } else {
            1
        }
    }

    /// The number of series each tool should serve for the whole fleet: per VMI one info, one
    /// per phase of the state set, one ready, one creation time, one per interface.
    pub fn expected_series(&self) -> usize {
        (0..self.len())
            .map(|i| 1 + PHASES.len() + 1 + 1 + Fleet::interface_count(i))
            .sum()
    }

    /// `(namespace, name, phase)` of every VMI as the fleet last set it.
    pub fn current_phases(&self) -> Vec<(String, String, &'static str)> {
        self.phases
            .iter()
            .enumerate()
            .map(|(i, phase)| {
                (
                    Fleet::namespace(i),
                    Fleet::name(i),
                    PHASES[phase.load(Ordering::Relaxed) as usize],
                )
            })
            .collect()
    }

    /// VMI `i` as it is created: metadata, a spec like virt-controller's, and a status like
    /// virt-handler's for its first phase.
    pub fn object(&self, i: usize) -> Value {
        let phase = first_phase(i);
        let (os, guest_name, guest_version, kernel) = GUESTS[i % GUESTS.len()];
        let name = Fleet::name(i);
        let node = format!("node-{:02}", i % NODES);
        let mut status = json!({
            "phase": PHASES[phase as usize],
            "conditions": conditions(phase, "2026-11-20T08:00:12Z"),
            "qosClass": "Burstable",
            "launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.4.0",
            "phaseTransitionTimestamps": [
                { "phase": "Pending", "phaseTransitionTimestamp": "2026-11-20T08:00:00Z" },
                { "phase": PHASES[phase as usize], "phaseTransitionTimestamp": "2026-11-20T08:00:12Z" },
            ],
        });
        if phase >= 2 {
            status["nodeName"] = node.into();
            status["machine"] = json!({ "type": "pc-q35-rhel9.4.0" });
        }
        if phase == RUNNING {
            let interfaces: Vec<Value> = (0..Fleet::interface_count(i))
                .map(|n| {
                    json!({
                        "name": if n == 0 { "default" } else { "secondary" },
                        "interfaceName": format!("eth{n}"),
                        "ipAddress": format!("10.{}.{}.{}", 128 + n, (i / 250) % 250, i % 250 + 2),
                        "mac": format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", n, (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
                        "infoSource": "domain, guest-agent",
                        "queueCount": 1,
                    })
                })
                .collect();
            status["interfaces"] = interfaces.into();
            status["guestOSInfo"] = json!({
                "name": guest_name,
                "id": os,
                "version": guest_version,
                "versionId": guest_version,
                "prettyName": format!("{guest_name} {guest_version}"),
                "kernelRelease": kernel,
                "kernelVersion": "#1 SMP PREEMPT_DYNAMIC",
                "machine": "x86_64",
            });
            status["volumeStatus"] = json!([
                { "name": "rootdisk", "target": "vda" },
                { "name": "cloudinitdisk", "target": "vdb", "size": 1048576 },
            ]);
            status["migrationMethod"] = "BlockMigration".into();
        }
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": name,
                "namespace": Fleet::namespace(i),
                "labels": {
                    "kubevirt.io/vm": name,
                    "kubevirt.io/domain": name,
                    "kubevirt.io/size": FLAVORS[i % FLAVORS.len()],
                },
                "annotations": {
                    "vm.kubevirt.io/os": os,
                    "vm.kubevirt.io/workload": WORKLOADS[i % WORKLOADS.len()],
                    "vm.kubevirt.io/flavor": FLAVORS[(i / 3) % FLAVORS.len()],
                    "kubevirt.io/latest-observed-api-version": "v1",
                    "kubevirt.io/storage-observed-api-version": "v1",
                },
                "finalizers": ["kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine"],
            },
            "spec": {
                "domain": {
                    "cpu": { "cores": 1 + i % 4, "sockets": 1, "threads": 1 },
                    "memory": { "guest": format!("{}Gi", 1 << (i % 4)) },
                    "machine": { "type": "q35" },
                    "resources": { "requests": { "memory": format!("{}Gi", 1 << (i % 4)) } },
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
                    { "name": "rootdisk", "containerDisk": { "image": format!("quay.io/containerdisks/{os}:latest") } },
                    { "name": "cloudinitdisk", "cloudInitNoCloud": { "userData": "#cloud-config\nuser: cloud-user\n" } },
                ],
            },
            "status": status,
        })
    }
}

impl Updated for Fleet {
    fn resource(&self) -> ApiResource {
        crate::cluster::vmi_resource()
    }

    /// The VMI CRD has no status subresource (as in KubeVirt): the object itself is patched.
    fn status_subresource(&self) -> bool {
        false
    }

    fn len(&self) -> usize {
        self.phases.len()
    }

    /// Moves VMI `k mod len` to another phase and rewrites its conditions.
    fn update(&self, k: usize) -> Update {
        let i = k % self.len();
        let current = self.phases[i].load(Ordering::Relaxed);
        // Any other phase, running half of the time (as a busy cluster mostly is).
        let next = if current != RUNNING && fastrand::bool() {
            RUNNING
        } else {
            let other = fastrand::u8(0..PHASES.len() as u8 - 1);
            if other >= current { other + 1 } else { other }
        };
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({
            "status": {
                "phase": PHASES[next as usize],
                "conditions": conditions(next, &now),
            }
        });
        Update {
            index: i,
            namespace: Fleet::namespace(i),
            name: Fleet::name(i),
            state: next,
            patch,
        }
    }

    fn applied(&self, i: usize, phase: u8) {
        self.phases[i].store(phase, Ordering::Relaxed);
    }
}

/// The phase VMI `i` is created in: 80 % running, the rest spread over the other phases.
fn first_phase(i: usize) -> u8 {
    match i % 50 {
        0..=1 => 0,   // Pending
        2..=3 => 1,   // Scheduling
        4..=5 => 2,   // Scheduled
        6..=7 => 4,   // Succeeded
        8..=9 => 5,   // Failed
        10 => 6,      // Unknown
        _ => RUNNING, // Running
    }
}

/// The conditions of a VMI in `phase`, changed at `time`: `Ready` always (`True` only when
/// running), `LiveMigratable` and `AgentConnected` when running.
fn conditions(phase: u8, time: &str) -> Value {
    let running = phase == RUNNING;
    let mut list = vec![json!({
        "type": "Ready",
        "status": if running { "True" } else { "False" },
        "reason": if running { "" } else { "GuestNotRunning" },
        "lastProbeTime": null,
        "lastTransitionTime": time,
    })];
    if running {
        for kind in ["LiveMigratable", "AgentConnected"] {
            list.push(json!({
                "type": kind,
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": time,
            }));
        }
    }
    Value::Array(list)
}
