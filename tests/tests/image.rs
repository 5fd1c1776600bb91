//! The runtime image as an operator gets it: built FROM scratch by `deploy/image/build.sh` with
//! buildah, then run with `buildah run` (podman cannot start containers on these machines). Inside
//! it, every first-party plugin loads, the image's own config passes `periscope check`, and
//! `periscope run` serves the quick-start objects to a scraper.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use periscope_tests::{free_port, http_get, repo_root, wait_until};

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

#[test]
fn the_image_holds_the_host_and_its_plugins_and_serves_the_quick_start() {
    let image = format!("localhost/periscope-test:{}", std::process::id());
    let status = Command::new("bash")
        .arg(repo_root().join("deploy/image/build.sh"))
        .args(["--profile", "debug", "--tag", &image])
        .status()
        .expect("run deploy/image/build.sh");
    assert!(
        status.success(),
        "building the image failed (buildah missing? `apt-get install buildah`)"
    );
    let container = Container::from(&image);

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
