//! Plugins as users meet them: a third-party exporter built after the host and loaded into it, and a
//! plugin built against another ABI version refused without harming the other exporters.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{demo_config, write_configmap};
use periscope_tests::{
    Host, http_get, periscope, plugin_dir, plugin_file, read_ndjson, repo_root, wait_until,
};

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Packages periscope-plugin-api with `cargo package` and unpacks the `.crate` into `dir`; the
/// unpacked crate's directory.
fn packaged_plugin_api(dir: &Path) -> std::path::PathBuf {
    let target = dir.join("package-target");
    let status = Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args([
            "package",
            "-p",
            "periscope-plugin-api",
            "--no-verify",
            "--allow-dirty",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo package");
    assert!(
        status.success(),
        "`cargo package -p periscope-plugin-api` failed"
    );
    let crate_file = std::fs::read_dir(target.join("package"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "crate"))
        .expect("cargo package wrote a .crate file");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&crate_file)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(
        status.success(),
        "unpacking {} failed",
        crate_file.display()
    );
    let unpacked = dir.join(crate_file.file_stem().unwrap());
    assert!(
        unpacked.join("Cargo.toml").is_file(),
        "{}",
        unpacked.display()
    );
    unpacked
}

/// Copies the files of `from` (recursively, without `target/`) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&path, &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn out_of_tree_exporter_is_built_separately_and_loaded_by_the_unchanged_host() {
    let host_bin = periscope_tests::periscope_bin();
    let host_hash = sha256_of(&host_bin);

    // Build the example exactly as a third party would: its own crate, its own lock file, its own
    // target directory, depending on periscope-plugin-api alone — the crate as `cargo package`
    // ships it, not a path into this workspace.
    let work = tempfile::tempdir().unwrap();
    let api = packaged_plugin_api(work.path());
    let example = work.path().join("csv");
    copy_dir(&repo_root().join("examples/third-party-exporter"), &example);
    let manifest = std::fs::read_to_string(example.join("Cargo.toml")).unwrap();
    let workspace_dependency = r#"periscope-plugin-api = { path = "../../plugin-api" }"#;
    assert!(manifest.contains(workspace_dependency), "{manifest}");
    let manifest = manifest.replace(
        workspace_dependency,
        &format!(
            "periscope-plugin-api = {{ path = {:?} }}",
            api.display().to_string()
        ),
    );
    std::fs::write(example.join("Cargo.toml"), manifest).unwrap();
    let target = repo_root().join("target/third-party");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--manifest-path"])
        .arg(example.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the third-party exporter failed");

    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let built = target.join("debug").join(plugin_file("csv"));
    std::fs::copy(&built, plugins.join(plugin_file("csv"))).expect("copy the csv plugin");

    let (status, stdout, stderr) = periscope(
        &[
            "plugins",
            "inspect",
            plugins.join(plugin_file("csv")).to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("name:           csv"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "abi version:    {}",
            periscope_plugin_api::ABI_VERSION
        )),
        "{stdout}"
    );

    write_configmap(dir.path(), "a", 42.0);
    let config = demo_config(
        "[[exporters]]\nname = \"rows\"\nplugin = \"csv\"\nbatch = { max_wait = \"10ms\" }\nconfig = { path = \"rows.csv\" }\n",
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let rows = dir.path().join("rows.csv");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&rows)
            .is_ok_and(|t| t.contains("v1/ConfigMap/demo/a")
                && t.contains("demo_value")
                && t.contains("42"))),
        "no CSV row for the ConfigMap:\n{}",
        host.log()
    );
    assert!(host.stop().success());
    assert_eq!(
        sha256_of(&host_bin),
        host_hash,
        "the host binary was not rebuilt"
    );
}

#[test]
fn plugin_of_another_abi_version_is_refused_in_one_line_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&dir.path().join("plugins"), &["file", "abi-mismatch"]);
    write_configmap(dir.path(), "a", 5.0);
    let config = demo_config(
        "[[exporters]]\nname = \"old\"\nplugin = \"abi-mismatch\"\n\n\
         [[exporters]]\nname = \"files\"\nplugin = \"file\"\nbatch = { max_wait = \"10ms\" }\nconfig = { path = \"out/metrics.ndjson\" }\n",
    );

    // `check` refuses the whole config, with one line for the plugin.
    std::fs::write(
        dir.path().join("check.toml"),
        config.replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let (status, _, stderr) = periscope(&["check", "--config", "check.toml"], dir.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(plugins.join(plugin_file("abi-mismatch")).is_file());
    let mismatch_file = format!("plugins/{}", plugin_file("abi-mismatch"));
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains(&mismatch_file))
        .collect();
    assert_eq!(lines.len(), 1, "one line naming the file:\n{stderr}");
    assert!(
        lines[0].contains("ABI version 3") && lines[0].contains("version 2"),
        "{}",
        lines[0]
    );
    assert!(lines[0].starts_with("check.toml:"), "{}", lines[0]);

    // `run` disables that exporter, says so in one line, and the file exporter works.
    let host = Host::start(dir.path(), &config);
    let out = dir.path().join("out/metrics.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out)
            .iter()
            .any(|r| r["metric"] == "demo_value" && r["value"] == 5.0)),
        "the file exporter did not work:\n{}",
        host.log()
    );
    let log = host.log();
    let refusals: Vec<_> = log.lines().filter(|l| l.contains("abi_mismatch")).collect();
    assert_eq!(refusals.len(), 1, "{log}");
    let (status, body) = http_get(&format!("http://{}/readyz", host.addr)).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("exporter:old: plugin refused"), "{body}");
}

#[test]
fn inspect_shows_what_it_can_read_of_a_refused_plugin_and_why_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(dir.path(), &["abi-mismatch", "layout-mismatch", "file"]);
    let inspect = |name: &str| {
        let file = plugins.join(plugin_file(name));
        let (status, stdout, stderr) =
            periscope(&["plugins", "inspect", file.to_str().unwrap()], dir.path());
        (status, stdout, stderr, sha256_of(&file))
    };

    // Same ABI version, another layout: its self-description, its hash, and the type that differs.
    let (status, stdout, stderr, sha) = inspect("layout-mismatch");
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("name:           layout-mismatch"),
        "{stdout}"
    );
    assert!(stdout.contains("abi version:    2"), "{stdout}");
    assert!(
        stdout.contains(&format!("sha256:         {sha}")),
        "{stdout}"
    );
    assert!(stdout.contains("status:         refused"), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("layout differs") && stderr.contains("different types: "),
        "the refusal names the difference: {stderr}"
    );

    // Another ABI version, built without plugin-api's self-description: the hash and the refusal.
    let (status, stdout, stderr, sha) = inspect("abi-mismatch");
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("sha256:         {sha}")),
        "{stdout}"
    );
    assert!(stdout.contains("status:         refused"), "{stdout}");
    assert!(stderr.contains("ABI version 3"), "{stderr}");

    // A plugin that loads: everything, plugin-api's version included, and success.
    let (status, stdout, stderr, _) = inspect("file");
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("name:           file"), "{stdout}");
    assert!(stdout.contains("plugin api:     0."), "{stdout}");
    assert!(!stdout.contains("status:"), "{stdout}");
}

#[test]
fn two_plugins_in_one_host_each_run_their_own_code() {
    // abi_stable's cached loaders hand back the first library for every later file; the host must
    // not, so two different plugins each produce their own output.
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file", "chaos"]);
    write_configmap(dir.path(), "a", 9.0);
    let config = demo_config(
        "[[exporters]]\nname = \"files\"\nplugin = \"file\"\nbatch = { max_wait = \"10ms\" }\nconfig = { path = \"out/metrics.ndjson\" }\n\n\
         [[exporters]]\nname = \"chaos\"\nplugin = \"chaos\"\nbatch = { max_wait = \"10ms\" }\nconfig = { record = \"record.ndjson\" }\n",
    );
    let mut host = Host::start(dir.path(), &config);
    host.wait_ready(Duration::from_secs(20));
    let files = dir.path().join("out/metrics.ndjson");
    let record = dir.path().join("record.ndjson");
    assert!(
        wait_until(Duration::from_secs(10), || !read_ndjson(&files).is_empty()
            && !read_ndjson(&record).is_empty()),
        "{}",
        host.log()
    );
    // The file plugin's records and the chaos plugin's records have different shapes.
    assert_eq!(read_ndjson(&files)[0]["metric"], "demo_value");
    assert!(read_ndjson(&files)[0].get("call").is_none());
    assert!(read_ndjson(&record)[0]["call"].as_u64().is_some());
    assert!(host.stop().success());
}
