//! Autosharding against the real apiserver, the way the chart's StatefulSet runs it: the chart
//! rendered with three shards (`tests/helm/values/sharded-configmaps.yaml`) is applied, and three
//! hosts named `periscope-0..2` run `periscope run --shard-from-hostname` with a token of the
//! chart's ServiceAccount. Together they serve exactly the series of one unsharded host, none
//! twice, and their aggregates summed equal the unsharded ones. Scaling the StatefulSet makes
//! every shard drain and exit; restarted, two shards cover the objects again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use periscope_tests::controlplane::{ControlPlane, create_all, kube_client, service_account_token};
use periscope_tests::helm::{self, RELEASE};
use periscope_tests::{Host, free_port, http_get, plugin_dir, repo_root, wait_until};

const NAMESPACE: &str = "monitoring";
const OBJECTS: usize = 40;

/// A host of the chart's config, reaching the cluster through `kubeconfig`, its page on a free
/// port; `args` after `run`. Its page's URL with it.
fn start(dir: &Path, config: &str, kubeconfig: &Path, args: &[&str]) -> (Host, String) {
    std::fs::create_dir_all(dir).unwrap();
    let plugins = plugin_dir(&dir.join("plugins"), &["prometheus"]);
    let page_port = free_port();
    let config = helm::local_config(config, &plugins, kubeconfig, page_port);
    let mut host = Host::start_with(dir, &config, args);
    host.wait_ready(Duration::from_secs(60));
    (host, format!("http://127.0.0.1:{page_port}/metrics"))
}

/// Starts shard `ordinal` as the StatefulSet's pod `periscope-<ordinal>` would.
fn start_shard(dir: &Path, config: &str, kubeconfig: &Path, ordinal: u32) -> (Host, String) {
    let hostname = format!("{RELEASE}-{ordinal}");
    start(
        &dir.join(&hostname),
        config,
        kubeconfig,
        &[
            "--shard-from-hostname",
            "--hostname",
            &hostname,
            "--shard-namespace",
            NAMESPACE,
        ],
    )
}

/// The `demo_…` samples of a page: each series line and its value.
fn samples(page: &str) -> Vec<(String, f64)> {
    let body = http_get(page).map(|(_, body)| body).unwrap_or_default();
    body.lines()
        .filter(|line| line.starts_with("demo_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The samples of `family` (`demo_value`, …) in `samples`.
fn family(samples: &[(String, f64)], family: &str) -> Vec<(String, f64)> {
    let prefix = format!("{family}{{");
    samples
        .iter()
        .filter(|(series, _)| series.starts_with(&prefix))
        .cloned()
        .collect()
}

/// `family`'s values summed per series across `pages`: what `sum by (team) (…)` gives in PromQL.
fn summed(pages: &[Vec<(String, f64)>], name: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for page in pages {
        for (series, value) in family(page, name) {
            *sums.entry(series).or_insert(0.0) += value;
        }
    }
    sums
}

/// Whether process `pid` has exited (a zombie waiting to be reaped, or gone).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// How `shards` differ from serving `whole`'s per-object series exactly once each, with
/// aggregates that sum to `whole`'s; `None` when they do not.
fn coverage_problem(whole: &[(String, f64)], shards: &[Vec<(String, f64)>]) -> Option<String> {
    let mut expected = family(whole, "demo_value");
    let mut served: Vec<(String, f64)> = shards
        .iter()
        .flat_map(|page| family(page, "demo_value"))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    served.sort_by(|a, b| a.0.cmp(&b.0));
    if expected.len() != OBJECTS {
        return Some(format!(
            "the unsharded host serves {} objects",
            expected.len()
        ));
    }
    if served != expected {
        return Some(format!(
            "the shards serve {served:?}, the unsharded host {expected:?}"
        ));
    }
    if let Some(i) = shards
        .iter()
        .position(|page| family(page, "demo_value").is_empty())
    {
        return Some(format!("shard {i} serves no object"));
    }
    for aggregate in ["demo_count", "demo_value_sum"] {
        let whole: BTreeMap<String, f64> = family(whole, aggregate).into_iter().collect();
        let sums = summed(shards, aggregate);
        if whole.len() != 4 || sums != whole {
            return Some(format!(
                "{aggregate}: summed across shards {sums:?}, unsharded {whole:?}"
            ));
        }
    }
    None
}

/// Waits (up to 60 s) until the shards' `pages` cover the unsharded host's `whole` page; fails
/// with the last difference.
fn assert_shards_cover(whole: &str, pages: &[String]) {
    let mut problem = None;
    let covered = wait_until(Duration::from_secs(60), || {
        let parts: Vec<_> = pages.iter().map(|p| samples(p)).collect();
        problem = coverage_problem(&samples(whole), &parts);
        problem.is_none()
    });
    assert!(covered, "{}", problem.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_from_hostnames_serve_the_unsharded_series_once_and_restart_on_scaling() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    let values = repo_root().join("tests/helm/values/sharded-configmaps.yaml");
    let objects = helm::objects(&helm::template(NAMESPACE, &[&values]).expect("helm template"));
    create_all(
        &admin,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo"
        ),
    )
    .await;
    helm::apply_all(&admin, &objects)
        .await
        .expect("apply the chart");
    let config_maps: Vec<String> = (0..OBJECTS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: demo\n  \
                 labels: {{team: t{}}}\ndata:\n  value: \"{i}\"",
                i % 4
            )
        })
        .collect();
    create_all(&admin, &config_maps.join("\n---\n")).await;

    let dir = tempfile::tempdir().unwrap();
    let token = service_account_token(&admin, NAMESPACE, RELEASE).await;
    let kubeconfig = dir.path().join("token.kubeconfig");
    cp.token_kubeconfig(&token, &kubeconfig);
    let config = helm::find(&objects, "ConfigMap", Some(RELEASE)).data["data"]["periscope.toml"]
        .as_str()
        .expect("the chart's config")
        .to_owned();

    let (_whole_host, whole_page) = start(&dir.path().join("whole"), &config, &kubeconfig, &[]);
    let mut shards: Vec<(Host, String)> = (0..3)
        .map(|i| start_shard(dir.path(), &config, &kubeconfig, i))
        .collect();

    let pages: Vec<String> = shards.iter().map(|(_, page)| page.clone()).collect();
    assert_shards_cover(&whole_page, &pages);

    // Scaling the StatefulSet: every shard notices, drains and exits cleanly.
    Api::<StatefulSet>::namespaced(admin.clone(), NAMESPACE)
        .patch(
            RELEASE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "replicas": 2 } })),
        )
        .await
        .expect("scale the StatefulSet");
    for (host, _) in &mut shards {
        let pid = host.pid().unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || exited(pid)),
            "a shard kept running after the StatefulSet was scaled:\n{}",
            host.log()
        );
        let status = host.stop();
        assert!(status.success(), "{status}:\n{}", host.log());
        assert!(host.log().contains("replicas changed"), "{}", host.log());
    }

    // Restarted, as the pods would be, two shards divide the objects between them.
    let restarted = tempfile::tempdir().unwrap();
    let shards: Vec<(Host, String)> = (0..2)
        .map(|i| start_shard(restarted.path(), &config, &kubeconfig, i))
        .collect();
    let pages: Vec<String> = shards.iter().map(|(_, page)| page.clone()).collect();
    assert_shards_cover(&whole_page, &pages);
}
