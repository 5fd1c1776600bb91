//! The runtime image as an operator gets it: built FROM scratch by `deploy/image/build.sh` with
//! buildah, then run with `buildah run` (podman cannot start containers on these machines). Inside
//! it, every first-party plugin loads, the image's own config passes `periscope check`, `periscope
//! run` serves the quick-start objects to a scraper, and it watches the real test apiserver the way
//! a pod does: through the in-cluster path (a ServiceAccount token, CA and namespace mounted at
//! `/var/run/secrets/kubernetes.io/serviceaccount/`, `KUBERNETES_SERVICE_HOST`/`PORT` set).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use periscope_tests::controlplane::{ControlPlane, create_all, kube_client, service_account_token};
use periscope_tests::{free_port, http_get, periscope, repo_root, wait_until};

/// `buildah` with the storage driver that works without overlay support.
fn buildah() -> Command {
    let mut command = Command::new("buildah");
    command.args(["--storage-driver", "vfs"]);
    command
}

/// Runs `command` and returns its stdout; panics with its stderr when it fails.
fn output(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| {
        panic!("{command:?} cannot start ({e}); install buildah with `apt-get install buildah`")
    });
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A working container from an image, removed (with the image) when dropped.
struct Container {
    name: String,
    image: String,
}

impl Container {
    fn from(image: &str) -> Container {
        let name = output(buildah().args(["from", image])).trim().to_owned();
        Container {
            name,
            image: image.to_owned(),
        }
    }

    /// `buildah run` of `args` in the container, with `extra` options before the container name.
    fn run(&self, extra: &[&str], args: &[&str]) -> Command {
        let mut command = buildah();
        command
            .args(["run", "--isolation", "chroot"])
            .args(extra)
            .arg(&self.name)
            .arg("--")
            .args(args);
        command
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = buildah().args(["rm", &self.name]).output();
        let _ = buildah().args(["rmi", &self.image]).output();
    }
}

/// Stops the containerised host when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the image from the debug build under a tag of this test's own, and a container of it.
fn build_image(test: &str) -> Container {
    let image = format!("localhost/periscope-test:{test}-{}", std::process::id());
    let status = Command::new("bash")
        .arg(repo_root().join("deploy/image/build.sh"))
        .args(["--profile", "debug", "--tag", &image])
        .stdout(Stdio::null())
        .status()
        .expect("run deploy/image/build.sh");
    assert!(
        status.success(),
        "building the image failed (buildah missing? `apt-get install buildah`)"
    );
    Container::from(&image)
}

#[test]
fn the_image_holds_the_host_and_its_plugins_and_serves_the_quick_start() {
    let container = build_image("quickstart");

    let config = output(buildah().args([
        "inspect",
        "--format",
        "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Env}}",
        &container.name,
    ]));
    assert!(
        config.starts_with("65532:65532 [/usr/bin/periscope]"),
        "{config}"
    );
    assert!(
        config.contains("PERISCOPE_CONFIG=/etc/periscope/periscope.toml"),
        "{config}"
    );

    for plugin in [
        "file",
        "prometheus",
        "prometheus_remote_write",
        "elasticsearch",
    ] {
        let file = format!("/usr/lib/periscope/plugins/libperiscope_exporter_{plugin}.so");
        let shown =
            output(&mut container.run(&[], &["/usr/bin/periscope", "plugins", "inspect", &file]));
        assert!(
            shown.contains(&format!("name:           {}", plugin.replace('_', "-"))),
            "{shown}"
        );
    }
    let checked = output(&mut container.run(&[], &["/usr/bin/periscope", "check"]));
    assert!(checked.contains("config ok"), "{checked}");
    // No shell in the image.
    let shell = container
        .run(&[], &["/bin/sh", "-c", "true"])
        .output()
        .unwrap();
    assert!(!shell.status.success(), "the image has a shell");

    // The image's config on free loopback ports, mounted over the default.
    let dir = tempfile::tempdir().unwrap();
    let (host_port, page_port) = (free_port(), free_port());
    let text = std::fs::read_to_string(repo_root().join("deploy/image/periscope.toml"))
        .unwrap()
        .replace("0.0.0.0:9464", &format!("127.0.0.1:{host_port}"))
        .replace("0.0.0.0:9465", &format!("127.0.0.1:{page_port}"))
        .replace("interval = \"10s\"", "interval = \"1s\"");
    std::fs::write(dir.path().join("periscope.toml"), text).unwrap();
    let mount = format!("{}:/config:ro", dir.path().display());
    let child = container
        .run(
            &[
                "-v",
                &mount,
                "-e",
                "PERISCOPE_CONFIG=/config/periscope.toml",
            ],
            &["/usr/bin/periscope", "run"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("buildah run");
    let _running = Running(child);
    let page = format!("http://127.0.0.1:{page_port}/metrics");
    assert!(
        wait_until(Duration::from_secs(60), || http_get(&page).is_ok_and(
            |(status, body)| { status == 200 && body.contains("kubevirt_vmi_status_phase{") }
        )),
        "the containerised host never served the quick-start objects: {:?}",
        http_get(&page)
    );
    let (status, _) = http_get(&format!("http://127.0.0.1:{host_port}/readyz")).unwrap();
    assert_eq!(status, 200);
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// Writes what kubelet mounts for a pod of ServiceAccount `monitoring/periscope`: a token from
/// the TokenRequest API, the apiserver's CA and the namespace.
async fn service_account_volume(cp: &ControlPlane, admin: &kube::Client, dir: &Path) {
    let token = service_account_token(admin, "monitoring", "periscope").await;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), cp.ca_pem()).unwrap();
    std::fs::write(dir.join("namespace"), "monitoring").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_image_the_host_watches_the_apiserver_through_the_in_cluster_path() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    for name in ["demo", "monitoring"] {
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: meta(name),
                    ..Default::default()
                },
            )
            .await
            .expect("create namespace");
    }
    Api::<ConfigMap>::namespaced(admin.clone(), "demo")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("a"),
                data: Some([("value".to_owned(), "7".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create configmap");

    // A config with a [kubernetes] table and no kubeconfig: the in-cluster path.
    let dir = tempfile::tempdir().unwrap();
    let page_port = free_port();
    let config = format!(
        "[host]\nlisten = \"127.0.0.1:{}\"\nplugin_dirs = [\"/usr/lib/periscope/plugins\"]\n\n\
         [kubernetes]\n\n\
         [[resources]]\nversion = \"v1\"\nkind = \"ConfigMap\"\nnamespaces = [\"demo\"]\nprefix = \"demo\"\n\
         labels = {{ name = \"metadata.name\" }}\n\n\
         \x20 [[resources.metrics]]\n  name = \"value\"\n  type = \"gauge\"\n  path = \"data.value\"\n\n\
         [[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\nconfig = {{ listen = \"127.0.0.1:{page_port}\" }}\n",
        free_port()
    );
    std::fs::write(dir.path().join("periscope.toml"), &config).unwrap();

    // The ServiceAccount and its least-privilege role, as `periscope rbac` prints them.
    let (status, yaml, stderr) = periscope(
        &[
            "rbac",
            "--config",
            "periscope.toml",
            "--namespace",
            "monitoring",
        ],
        dir.path(),
    );
    assert!(status.success(), "{stderr}");
    create_all(&admin, &yaml).await;
    let account = dir.path().join("serviceaccount");
    service_account_volume(&cp, &admin, &account).await;

    let container = build_image("in-cluster");
    let config_mount = format!("{}:/config:ro", dir.path().display());
    let account_mount = format!(
        "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        account.display()
    );
    let port = cp.server_url().rsplit(':').next().unwrap().to_owned();
    let service_port = format!("KUBERNETES_SERVICE_PORT={port}");
    let child = container
        .run(
            &[
                "-v",
                &config_mount,
                "-v",
                &account_mount,
                "-e",
                "PERISCOPE_CONFIG=/config/periscope.toml",
                "-e",
                "KUBERNETES_SERVICE_HOST=127.0.0.1",
                "-e",
                &service_port,
            ],
            &["/usr/bin/periscope", "run"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("buildah run");
    let mut running = Running(child);
    let page = format!("http://127.0.0.1:{page_port}/metrics");
    let served = wait_until(Duration::from_secs(60), || {
        http_get(&page)
            .is_ok_and(|(status, body)| status == 200 && body.contains("demo_value{name=\"a\"} 7"))
    });
    if !served {
        let _ = running.0.kill();
        let mut log = String::new();
        if let Some(mut stderr) = running.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        }
        panic!(
            "the containerised host never served the ConfigMap: {:?}\n{log}",
            http_get(&page)
        );
    }
}
