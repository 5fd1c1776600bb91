//! `--scenario kubevirt`: the KubeVirt example's whole config (`examples/kubevirt/periscope.toml`,
//! every metric of kubevirt-observability-controller with its joins) at cluster scale, Periscope
//! alone.
//!
//! On the real apiserver: the example's CRDs and cluster instance types and preferences, then for
//! N (`--objects`) N VirtualMachines (with a DataVolume template and a claim volume each), their
//! N VMIs (the VMI fleet of [`Fleet`], owned by the VMs, naming the instance types), one
//! virt-launcher Pod per VMI (label `kubevirt.io/created-by` = the VMI's uid, on its node,
//! Running when the VMI runs), 2N PersistentVolumeClaims (the VMs' volumes) and 5N Pods no join
//! reads. Periscope runs with the example config and its Prometheus exporter; the run measures
//! the start to a complete page, scrapes plain and gzip, a stream of VM status changes (merge
//! patches of `status.printableStatus` and the `Ready` condition through the status
//! subresource), the catch-up after it, the end RSS, and how many objects the VM and VMI watches
//! listed (the host's `periscope_input_updates_total`; the joined kinds' watches have no count
//! there).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

use crate::cluster::{self, Update, Updated};
use crate::fleet::{Fleet, NAMESPACES};
use crate::report::{Figures, MIB};
use crate::tools::{self, Tool};
use crate::{Args, procfs, say};

/// VM printable statuses the churn moves VMs between (KubeVirt's, each of the metrics' groups).
const STATUSES: [&str; 10] = [
    "Running",
    "Stopped",
    "Starting",
    "Migrating",
    "Paused",
    "Provisioning",
    "Terminating",
    "CrashLoopBackOff",
    "ErrorUnschedulable",
    "Unknown",
];

/// The example's cluster instance types and preferences the VMs name, in turn (one without the
/// vendor label, so `<other>` appears too).
const INSTANCETYPES: [&str; 3] = ["u1.medium", "u1.2xlarge", "u1.large"];
const PREFERENCES: [&str; 3] = ["fedora", "rhel.9", "windows.2k22"];

/// Pods no join reads, per VM.
const OTHER_PODS_PER_VM: usize = 5;

/// The VMs of one run and the printable status each one has now (an index of [`STATUSES`]).
pub struct Vms {
    statuses: Vec<AtomicU8>,
}

impl Vms {
    /// VM `i`'s first status follows its VMI's phase.
    fn new(vmis: &[Value]) -> Vms {
        let statuses = vmis
            .iter()
            .map(|vmi| {
                let status = match vmi["status"]["phase"].as_str().unwrap_or_default() {
                    "Running" => "Running",
                    "Pending" | "Scheduling" | "Scheduled" => "Starting",
                    "Succeeded" => "Stopped",
                    "Failed" => "CrashLoopBackOff",
                    _ => "Unknown",
                };
                AtomicU8::new(STATUSES.iter().position(|s| *s == status).unwrap_or(0) as u8)
            })
            .collect();
        Vms { statuses }
    }

    /// VM `i` as it is created, shaped like `examples/kubevirt/objects/virtualmachines.yaml`.
    fn object(&self, i: usize) -> Value {
        let name = Fleet::name(i);
        let status = STATUSES[self.statuses[i].load(Ordering::Relaxed) as usize];
        let memory = format!("{}Gi", 1 << (i % 4));
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {
                "name": name,
                "namespace": Fleet::namespace(i),
                "labels": { "app": format!("app-{}", i % 20), "team.example.com/owner": format!("team-{}", i % 3) },
            },
            "spec": {
                "runStrategy": "Always",
                "dataVolumeTemplates": [{
                    "metadata": { "name": format!("{name}-rootdisk") },
                    "spec": { "storage": { "resources": { "requests": { "storage": "20Gi" } } } },
                }],
                "instancetype": { "kind": "VirtualMachineClusterInstancetype", "name": INSTANCETYPES[i % 3] },
                "preference": { "kind": "VirtualMachineClusterPreference", "name": PREFERENCES[i % 3] },
                "template": {
                    "metadata": {
                        "annotations": {
                            "vm.kubevirt.io/os": "fedora",
                            "vm.kubevirt.io/workload": "server",
                            "vm.kubevirt.io/flavor": "small",
                        },
                        "labels": { "kubevirt.io/vm": name, "app": format!("app-{}", i % 20) },
                    },
                    "spec": {
                        "domain": {
                            "cpu": { "cores": 1 + i % 4 },
                            "devices": { "interfaces": [ { "name": "default", "masquerade": {} } ] },
                            "resources": { "requests": { "memory": memory } },
                        },
                        "networks": [ { "name": "default", "pod": {} } ],
                        "volumes": [
                            { "name": "rootdisk", "dataVolume": { "name": format!("{name}-rootdisk") } },
                            { "name": "data", "persistentVolumeClaim": { "claimName": format!("{name}-data") } },
                            { "name": "cloudinit", "cloudInitNoCloud": { "userData": "#cloud-config" } },
                        ],
                    },
                },
            },
            "status": vm_status(status, "2026-11-20T08:00:30Z"),
        })
    }

    /// `(namespace, name, status lowercased)` of every VM as the churn last set it.
    fn current(&self) -> BTreeSet<(String, String, String)> {
        self.statuses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let status = STATUSES[s.load(Ordering::Relaxed) as usize];
                (Fleet::namespace(i), Fleet::name(i), status.to_lowercase())
            })
            .collect()
    }
}

/// A VM's status in `status`, its `Ready` condition changed at `time`.
fn vm_status(status: &str, time: &str) -> Value {
    let running = status == "Running";
    json!({
        "printableStatus": status,
        "ready": running,
        "created": true,
        "runStrategy": "Always",
        "conditions": [{
            "type": "Ready",
            "status": if running { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": time,
        }],
    })
}

impl Updated for Vms {
    fn resource(&self) -> ApiResource {
        resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines")
    }

    /// VMs have a status subresource in KubeVirt.
    fn status_subresource(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.statuses.len()
    }

    /// Moves VM `k mod len` to another printable status and its `Ready` condition with it.
    fn update(&self, k: usize) -> Update {
        let i = k % self.len();
        let current = self.statuses[i].load(Ordering::Relaxed);
        let other = fastrand::u8(0..STATUSES.len() as u8 - 1);
        let next = if other >= current { other + 1 } else { other };
        let now = jiff::Timestamp::now().to_string();
        Update {
            index: i,
            namespace: Fleet::namespace(i),
            name: Fleet::name(i),
            state: next,
            patch: json!({ "status": vm_status(STATUSES[next as usize], &now) }),
        }
    }

    fn applied(&self, i: usize, state: u8) {
        self.statuses[i].store(state, Ordering::Relaxed);
    }
}

/// VMI `i` of the fleet, owned by VM `i` (`vm_uid`) and naming its instance type and preference.
fn vmi(fleet: &Fleet, i: usize, vm_uid: &str) -> Value {
    let mut vmi = fleet.object(i);
    let annotations = &mut vmi["metadata"]["annotations"];
    annotations["kubevirt.io/cluster-instancetype-name"] = INSTANCETYPES[i % 3].into();
    annotations["kubevirt.io/cluster-preference-name"] = PREFERENCES[i % 3].into();
    vmi["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "name": Fleet::name(i),
        "uid": vm_uid,
        "controller": true,
    }]);
    vmi
}

/// VMI `vmi`'s virt-launcher Pod: created by it (`uid`), on its node, Running when it runs.
fn launcher(i: usize, vmi: &Value, uid: &str) -> Value {
    let name = Fleet::name(i);
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("virt-launcher-{name}-{:05x}", i % 0xfffff),
            "namespace": Fleet::namespace(i),
            "labels": {
                "kubevirt.io": "virt-launcher",
                "kubevirt.io/created-by": uid,
                "vm.kubevirt.io/name": name,
            },
            "annotations": { "kubevirt.io/domain": name },
        },
        "spec": {
            "containers": [{
                "name": "compute",
                "image": "quay.io/kubevirt/virt-launcher:v1.4.0",
                "resources": { "requests": { "cpu": "100m", "memory": "2Gi" } },
            }],
        },
    });
    if let Some(node) = vmi["status"]["nodeName"].as_str() {
        pod["spec"]["nodeName"] = node.into();
    }
    if vmi["status"]["phase"] == "Running" {
        pod["status"] = json!({ "phase": "Running" });
    }
    pod
}

/// Claim `j`: the DataVolume's (`<vm>-rootdisk`) for even `j`, the claim volume's
/// (`<vm>-data`, one in five a block device) for odd `j`, of VM `j / 2`.
fn claim(j: usize) -> Value {
    let i = j / 2;
    let (suffix, size, mode) = if j.is_multiple_of(2) {
        ("rootdisk", "30Gi", "Filesystem")
    } else if i.is_multiple_of(5) {
        ("data", "100Gi", "Block")
    } else {
        ("data", "50Gi", "Filesystem")
    };
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": format!("{}-{suffix}", Fleet::name(i)), "namespace": Fleet::namespace(i) },
        "spec": {
            "storageClassName": "standard",
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": mode,
            "resources": { "requests": { "storage": size } },
        },
    })
}

/// Pod `j` of those no join reads: an ordinary workload's.
fn other_pod(j: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("shop-{j:07}"),
            "namespace": Fleet::namespace(j),
            "labels": { "app": format!("shop-{}", j % 40), "pod-template-hash": format!("{:08x}", j % 97) },
        },
        "spec": {
            "nodeName": format!("node-{:02}", j % 50),
            "containers": [{
                "name": "app",
                "image": format!("registry.example.com/shop:1.{}", j % 9),
                "ports": [ { "containerPort": 8080, "name": "http" } ],
                "env": [ { "name": "MODE", "value": "production" } ],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
            }],
        },
    })
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// What a page must hold to be complete: one `kubevirt_vm_info` per VM and `kubevirt_vmi_info`
/// per VMI, a `vmi_pod` on the info of every running VMI (the launcher join), and a
/// `kubevirt_vm_disk_allocated_size_bytes` per claim (the claims join).
struct Expected {
    vms: usize,
    running: usize,
    claims: usize,
}

impl Expected {
    /// How far `page` is from complete: `None` when it is complete.
    fn missing(&self, page: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(page);
        let count = |prefix: &str, needle: &str| {
            text.lines()
                .filter(|l| l.starts_with(prefix) && l.contains(needle))
                .count()
        };
        let seen = [
            (count("kubevirt_vm_info{", ""), self.vms, "VM infos"),
            (count("kubevirt_vmi_info{", ""), self.vms, "VMI infos"),
            (
                count("kubevirt_vmi_info{", "vmi_pod=\"virt-launcher-"),
                self.running,
                "launcher Pods joined",
            ),
            (
                count("kubevirt_vm_disk_allocated_size_bytes{", ""),
                self.claims,
                "claims joined",
            ),
        ];
        let short: Vec<String> = seen
            .iter()
            .filter(|(n, want, _)| n != want)
            .map(|(n, want, what)| format!("{n} of {want} {what}"))
            .collect();
        (!short.is_empty()).then(|| short.join(", "))
    }
}

/// One run of the scenario on a started control plane.
pub struct Run<'a> {
    /// The command line.
    pub args: &'a Args,
    /// The runtime the cluster requests run on.
    pub runtime: &'a tokio::runtime::Runtime,
    /// A client of the control plane.
    pub client: &'a kube::Client,
    /// Where `periscope` and the exporter plugin are.
    pub periscope_dir: &'a Path,
    /// The control plane's kubeconfig.
    pub kubeconfig: &'a Path,
    /// A scratch directory for Periscope's config and log.
    pub work: &'a Path,
    /// When the benchmark started.
    pub t0: Instant,
}

impl Run<'_> {
    /// Creates the objects, runs Periscope on them, and returns the results file's text.
    pub fn measure(
        &self,
        load_start: &str,
        periscope_rev: &str,
        apiserver_version: &str,
    ) -> Result<String, String> {
        let (args, t0) = (self.args, self.t0);
        let n = args.objects();
        let root = crate::repo_root();
        let crds = root.join("examples/kubevirt/crds");
        let mut files: Vec<_> = std::fs::read_dir(&crds)
            .map_err(|e| format!("read {}: {e}", crds.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for file in &files {
            self.runtime
                .block_on(cluster::install_crd(self.client, file))?;
        }
        self.runtime.block_on(create_cluster_instancetypes(
            self.client,
            &root.join("examples/kubevirt/objects/instancetypes.yaml"),
        ))?;

        say(
            t0,
            &format!(
                "creating {n} VMs, {n} VMIs, {n} launcher Pods, {} claims, {} other Pods",
                2 * n,
                OTHER_PODS_PER_VM * n
            ),
        );
        let created = Instant::now();
        let fleet = Fleet::new(n);
        let vmi_objects: Vec<Value> = (0..n).map(|i| fleet.object(i)).collect();
        let vms = Arc::new(Vms::new(&vmi_objects));
        let running = vmi_objects
            .iter()
            .filter(|v| v["status"]["phase"] == "Running")
            .count();
        let client = self.client;
        let pods = resource("", "v1", "Pod", "pods");
        self.runtime.block_on(async {
            cluster::create_namespaces(client, (0..NAMESPACES).map(Fleet::namespace)).await?;
            let vm_uids =
                cluster::create_objects(client, &vms.resource(), n, true, |i| vms.object(i))
                    .await?;
            let vmi_uids =
                cluster::create_objects(client, &cluster::vmi_resource(), n, false, |i| {
                    vmi(&fleet, i, &vm_uids[i])
                })
                .await?;
            cluster::create_objects(client, &pods, n, true, |i| {
                launcher(i, &vmi_objects[i], &vmi_uids[i])
            })
            .await?;
            let claims = resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
            cluster::create_objects(client, &claims, 2 * n, false, claim).await?;
            cluster::create_objects(client, &pods, OTHER_PODS_PER_VM * n, false, other_pod).await
        })?;
        let create_time = created.elapsed();
        say(
            t0,
            &format!("created in {:.1} s", create_time.as_secs_f64()),
        );

        // Periscope with the example config, pointed at this cluster.
        let template = self.work.join("kubevirt-template.toml");
        std::fs::write(&template, config_template(&root)?)
            .map_err(|e| format!("write {}: {e}", template.display()))?;
        let mut periscope =
            tools::start_periscope(self.periscope_dir, &template, self.kubeconfig, self.work)?;
        let expected = Expected {
            vms: n,
            running,
            claims: 2 * n,
        };
        let mut figures = Figures::default();
        self.wait_complete(&mut periscope, &expected, &mut figures)?;
        let page_bytes = periscope.scrape()?.body.len();
        let series = periscope
            .scrape()?
            .body
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"kubevirt_"))
            .count();

        say(t0, &format!("{} scrapes of the page", args.scrapes));
        crate::scrape_figures(&[&periscope], &mut [&mut figures], args.scrapes)?;

        say(
            t0,
            &format!(
                "{} VM status patches/s for {} s",
                args.update_rate, args.update_seconds
            ),
        );
        let stats = crate::under_updates(
            self.runtime,
            self.client,
            &vms,
            args,
            &[&periscope],
            &mut [&mut figures],
        )?;
        let stream_end = Instant::now();
        self.catch_up(&periscope, &vms, stream_end, &mut figures)?;
        let (rss, peak) = procfs::rss_bytes(periscope.pid())?;
        figures.end_rss = rss;
        figures.end_peak_rss = peak;
        figures.end_file_rss = procfs::file_rss_bytes(periscope.pid())?;
        let state_bytes = periscope.self_metric("periscope_source_state_bytes")?;
        let held = Held::read(&periscope)?;
        periscope.stop();

        let mut out = String::new();
        let _ = writeln!(
            out,
            "# The KubeVirt example at scale: {n} VMs, {n} VMIs, {n} launcher Pods, {} claims, {} other Pods\n",
            2 * n,
            OTHER_PODS_PER_VM * n
        );
        let _ = writeln!(
            out,
            "- Date: {}",
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(out, "- Command: `{}`", crate::command_line());
        let _ = writeln!(out, "- Machine: {}", procfs::machine());
        let _ = writeln!(
            out,
            "- Load average (1/5/15 min): {load_start} at the start, {} at the end (the machine is \
             shared with other builds, which this run did not stop)",
            procfs::load_average()
        );
        let _ = writeln!(
            out,
            "- Versions: Periscope {periscope_rev}; kube-apiserver {apiserver_version}"
        );
        let _ = writeln!(
            out,
            "- Config: `examples/kubevirt/periscope.toml` as it is, with the cluster's kubeconfig, \
             loopback ports and the plugin directory filled in"
        );
        let _ = writeln!(
            out,
            "- Objects: created in {:.1} s; {running} of the VMIs run (each with its launcher Pod \
             Running on its node); the complete page holds {series} `kubevirt_*` sample lines, \
             {:.1} MB",
            create_time.as_secs_f64(),
            page_bytes as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "- Update stream: {}; each a merge patch of VM `status` (printableStatus and the Ready \
             condition, through the status subresource)",
            stats.summary(args.update_rate, args.update_seconds)
        );
        if let Some(bytes) = state_bytes {
            let _ = writeln!(
                out,
                "- `periscope_source_state_bytes` at the end (what the host keeps for resyncs: a copy \
                 of the sources no input can send again, and for the watched ones only what \
                 removes them): {:.1} MiB",
                bytes / MIB
            );
        }
        let _ = writeln!(out, "\n| {n} VMs | Periscope |\n|---|---:|");
        for (name, value, digits) in crate::report::rows(&figures, stats.elapsed.as_secs_f64()) {
            let _ = writeln!(out, "| {name} | {value:.digits$} |");
        }
        let _ = writeln!(
            out,
            "| Start: scrapes while waiting (1 per poll) | {} |",
            figures.start_polls
        );
        let in_cluster = |watch: &str| match watch.rsplit('/').next() {
            Some("VirtualMachine" | "VirtualMachineInstance") => Some(n),
            Some("Pod") => Some(n + OTHER_PODS_PER_VM * n),
            Some("PersistentVolumeClaim") => Some(2 * n),
            _ => None,
        };
        let _ = writeln!(
            out,
            "\n| watch (at the end) | objects in the cluster | objects held | held bytes (MiB) | bytes per object |\n|---|---:|---:|---:|---:|"
        );
        for (watch, objects, bytes) in &held.0 {
            let exist = in_cluster(watch).map_or_else(|| "–".to_owned(), |n| n.to_string());
            let _ = writeln!(
                out,
                "| `{watch}` | {exist} | {objects:.0} | {:.2} | {:.0} |",
                bytes / MIB,
                bytes / objects.max(1.0)
            );
        }
        let _ = writeln!(
            out,
            "\nHow to read it: *Start* runs from the process start to the first scrape that holds \
             a `kubevirt_vm_info` per VM and a `kubevirt_vmi_info` per VMI, a `vmi_pod` label on \
             the info of each of the {running} running VMIs (the launcher Pod join) and a \
             `kubevirt_vm_disk_allocated_size_bytes` per claim (the claims join); the page is \
             polled every `--poll-ms`, each poll a full scrape. *Scrape* is {} fetches of the whole \
             page, plain and then with gzip. *Updates* is the VM status stream with the page \
             scraped every `--scrape-interval`; *catch-up* is how long after the last patch the \
             page still showed an old status. RSS is VmRSS/VmHWM from /proc, mapped files \
             RssFile. The second table is what each of Periscope's watches holds at the end \
             (`periscope_watch_objects`, `periscope_watch_held_bytes`): every object pruned to the \
             fields the config reads of its kind, LZ4-compressed. The Pod watch asks the apiserver \
             only for Pods with the `kubevirt.io/created-by` label (`scraper/src/kube/plan.rs`), \
             so the {} other Pods are never sent to Periscope.\n\n\
             Against kubevirt-observability-controller: its design target (VEP 143) is about \
             200 MiB for a large cluster, and it caches every Pod and every PVC of the cluster in \
             informers (whole objects) besides the VMs, VMIs, migrations, instance types and \
             preferences. The row *End: RSS* is Periscope's figure for the same job here.",
            args.scrapes,
            OTHER_PODS_PER_VM * n
        );
        Ok(out)
    }

    /// Polls the page until it is complete; notes wall time, CPU time and peak RSS then.
    fn wait_complete(
        &self,
        tool: &mut Tool,
        expected: &Expected,
        figures: &mut Figures,
    ) -> Result<(), String> {
        let deadline = tool.started + Duration::from_secs(self.args.start_timeout);
        let mut polls = 0;
        loop {
            tool.check_running()?;
            let last = match tool.scrape() {
                Ok(scrape) => {
                    polls += 1;
                    match expected.missing(&scrape.body) {
                        None => break,
                        Some(missing) => missing,
                    }
                }
                Err(e) => {
                    tool.check_serving()?;
                    e
                }
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "no complete page after {} s (last: {last}); the log: {}",
                    self.args.start_timeout,
                    tool.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(self.args.poll_ms));
        }
        figures.start_wall = tool.started.elapsed().as_secs_f64();
        figures.start_cpu = procfs::cpu_seconds(tool.pid())?;
        figures.start_peak_rss = procfs::rss_bytes(tool.pid())?.1;
        figures.start_polls = polls;
        say(
            self.t0,
            &format!(
                "complete page after {:.2} s, {:.2} CPU s, peak RSS {:.1} MiB",
                figures.start_wall,
                figures.start_cpu,
                figures.start_peak_rss as f64 / MIB
            ),
        );
        Ok(())
    }

    /// Polls the page (with gzip, as Prometheus) until every VM shows the status the stream last
    /// set.
    fn catch_up(
        &self,
        tool: &Tool,
        vms: &Vms,
        stream_end: Instant,
        figures: &mut Figures,
    ) -> Result<(), String> {
        let want = vms.current();
        loop {
            let scrape = tool.scrape_gzip()?;
            let text = String::from_utf8_lossy(&scrape.body);
            let shown = crate::series::shown_states(&text, "kubevirt_vm_info", "status")?;
            if shown == want {
                figures.catch_up = stream_end.elapsed().as_secs_f64();
                say(
                    self.t0,
                    &format!(
                        "every last VM status shown {:.2} s after the stream ended",
                        figures.catch_up
                    ),
                );
                return Ok(());
            }
            if stream_end.elapsed() > Duration::from_secs(300) {
                let behind = want.difference(&shown).count();
                return Err(format!(
                    "{behind} VMs still show an old status 300 s after the updates"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Creates the cluster-wide instance types and preferences of the example's `file`.
async fn create_cluster_instancetypes(client: &kube::Client, file: &Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Option<Value> = serde::Deserialize::deserialize(document)
            .map_err(|e| format!("parse {}: {e}", file.display()))?;
        let Some(value) = value.filter(|v| v["metadata"]["namespace"].is_null()) else {
            continue;
        };
        let object: DynamicObject =
            serde_json::from_value(value).map_err(|e| format!("{}: {e}", file.display()))?;
        let types = object.types.clone().ok_or("an object without a kind")?;
        let (group, version) = types
            .api_version
            .split_once('/')
            .ok_or("a cluster instance type in the core group")?;
        let plural = format!("{}s", types.kind.to_lowercase());
        let api: kube::Api<DynamicObject> = kube::Api::all_with(
            client.clone(),
            &resource(group, version, &types.kind, &plural),
        );
        api.create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("create {} {:?}: {e}", types.kind, object.metadata.name))?;
    }
    Ok(())
}

/// `examples/kubevirt/periscope.toml` with the placeholders `tools::start_periscope` fills in:
/// the host's and the exporter's listen addresses, the plugin directory, the kubeconfig.
fn config_template(root: &Path) -> Result<String, String> {
    let path = root.join("examples/kubevirt/periscope.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let replacements = [
        (
            "listen = \"127.0.0.1:9464\"",
            "listen = \"${HOST_LISTEN}\"\nplugin_dirs = [\"${PLUGIN_DIR}\"]\ndead_letter_dir = \"${WORK_DIR}/dead-letter\"",
        ),
        (
            "[kubernetes]",
            "[kubernetes]\nkubeconfig = \"${KUBECONFIG}\"",
        ),
        (
            "config = { listen = \"127.0.0.1:9100\" }",
            "config = { listen = \"${METRICS_LISTEN}\" }",
        ),
    ];
    let mut config = text;
    for (from, to) in replacements {
        if !config.contains(from) {
            return Err(format!("{} has no `{from}` to replace", path.display()));
        }
        config = config.replacen(from, to, 1);
    }
    Ok(config)
}

/// What each of Periscope's watches holds: `(watch, objects, bytes)`, from its self-metrics.
struct Held(Vec<(String, f64, f64)>);

impl Held {
    fn read(periscope: &Tool) -> Result<Held, String> {
        let bytes = periscope.self_metrics("periscope_watch_held_bytes{")?;
        let watch_of = |series: &str| {
            let start = series.find("watch=\"")? + "watch=\"".len();
            let end = start + series[start..].find('"')?;
            Some(series[start..end].to_owned())
        };
        let mut held = Vec::new();
        for (series, objects) in periscope.self_metrics("periscope_watch_objects{")? {
            let Some(watch) = watch_of(&series) else {
                continue;
            };
            let size = bytes
                .iter()
                .find(|(s, _)| watch_of(s).as_deref() == Some(watch.as_str()))
                .map_or(0.0, |(_, b)| *b);
            held.push((
                watch.trim_start_matches("kubernetes:").to_owned(),
                objects,
                size,
            ));
        }
        Ok(Held(held))
    }
}
