//! Bad config gives a precise error (file, line, column, key) and exit code 1 from both `check`
//! and `run`, before anything starts.

mod common;

use common::{demo_config, line_of};
use periscope_tests::{periscope, plugin_dir};

/// Writes `config` as `bad.toml` and runs `periscope check` and `periscope run` on it; both must
/// exit 1, and the first line of stderr is returned for each.
fn both_refuse(config: &str) -> [String; 2] {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        config.replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    ["check", "run"].map(|command| {
        let (status, _, stderr) = periscope(&[command, "--config", "bad.toml"], dir.path());
        assert_eq!(
            status.code(),
            Some(1),
            "`periscope {command}` must exit 1:\n{stderr}"
        );
        stderr
            .lines()
            .find(|l| l.starts_with("bad.toml"))
            .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
            .to_owned()
    })
}

fn file_exporter() -> &'static str {
    "[[exporters]]\nname = \"files\"\nplugin = \"file\"\nconfig = { path = \"out.ndjson\" }\n"
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let config = demo_config(file_exporter()).replace("flush_interval", "flush_intervall");
    let line = line_of(&config, "flush_intervall");
    for error in both_refuse(&config) {
        assert!(
            error.starts_with(&format!(
                "bad.toml:{line}:1: `host.flush_intervall`: unknown field `flush_intervall`"
            )),
            "{error}"
        );
    }
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let config = demo_config(file_exporter()).replace("interval = \"100ms\"", "interval = 100");
    let line = line_of(&config, "interval = 100");
    for error in both_refuse(&config) {
        assert!(error.starts_with(&format!("bad.toml:{line}:")), "{error}");
        assert!(error.contains("`sources.files[0].interval`"), "{error}");
        assert!(error.contains("invalid type: integer `100`"), "{error}");
    }
}

#[test]
fn bad_path_expression_is_named_with_its_line() {
    let config = demo_config(file_exporter())
        .replace("path = \"data.value\"", "path = \"data.value[type=\"");
    let line = line_of(&config, "data.value[type=");
    for error in both_refuse(&config) {
        assert!(error.starts_with(&format!("bad.toml:{line}:")), "{error}");
        assert!(error.contains("`resources[0].metrics[0].path`"), "{error}");
    }
}

#[test]
fn missing_plugin_is_named_with_its_line() {
    let config = demo_config(&file_exporter().replace("plugin = \"file\"", "plugin = \"nosuch\""));
    let line = line_of(&config, "plugin = \"nosuch\"");
    for error in both_refuse(&config) {
        assert!(error.starts_with(&format!("bad.toml:{line}:")), "{error}");
        assert!(error.contains("`exporters[0].plugin`: plugin `nosuch` not found: looked for libperiscope_exporter_nosuch.so"), "{error}");
    }
}

#[test]
fn plugin_refusing_its_own_config_is_named() {
    let config =
        demo_config(&file_exporter().replace("path = \"out.ndjson\"", "pathh = \"out.ndjson\""));
    let line = line_of(&config, "pathh");
    let column = config.lines().nth(line - 1).unwrap().find("pathh").unwrap() + 1;
    for error in both_refuse(&config) {
        // At the key itself, not at the start of the table.
        assert!(
            error.starts_with(&format!(
                "bad.toml:{line}:{column}: `exporters[0].config.pathh`:"
            )),
            "{error}"
        );
        assert!(
            error.contains("plugin `file` refuses its config") && error.contains("pathh"),
            "{error}"
        );
    }
}

#[test]
fn a_bad_value_in_an_exporters_config_table_is_named_at_its_own_line() {
    let config = demo_config(
        "[[exporters]]\nname = \"files\"\nplugin = \"file\"\n\n  [exporters.config]\n  path = \"out.ndjson\"\n  max_files = \"many\"\n",
    );
    let line = line_of(&config, "max_files");
    for error in both_refuse(&config) {
        assert!(
            error.starts_with(&format!(
                "bad.toml:{line}:3: `exporters[0].config.max_files`: plugin `file` refuses its config:"
            )),
            "{error}"
        );
    }
}

#[test]
fn endpoint_problems_are_named_with_their_line() {
    let config = demo_config(&format!(
        "{}\n[[endpoints]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9/metrics\"]\ninterval = \"1s\"\ntimeout = \"7s\"\n",
        file_exporter()
    ));
    let line = line_of(&config, "timeout = \"7s\"");
    for error in both_refuse(&config) {
        assert!(error.starts_with(&format!("bad.toml:{line}:")), "{error}");
        assert!(
            error.contains("`endpoints[0].timeout`: \"7s\" is out of range: write a duration from 1ms to 1s (at most the interval)"),
            "{error}"
        );
    }
}

#[test]
fn an_inline_secret_is_a_warning_that_names_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["prometheus"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let config = demo_config(
        "[[exporters]]\nname = \"page\"\nplugin = \"prometheus\"\n\
         config = { listen = \"127.0.0.1:0\", auth = { username = \"prom\", password = \"s3cret\" } }\n",
    );
    let line = line_of(&config, "password = ");
    std::fs::write(
        dir.path().join("ok.toml"),
        config.replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let (status, stdout, stderr) = periscope(&["check", "--config", "ok.toml"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("config ok"), "{stdout}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(&format!(
            "warning: ok.toml:{line}:10: `exporters[0].config.auth.password`: a secret written in the config"
        )),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_config_directory_is_checked_as_one_config_with_errors_in_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(&dir.path().join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let conf = dir.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    let whole = demo_config(file_exporter()).replace("{listen}", "127.0.0.1:1");
    let (host, rest) = whole.split_at(whole.find("[[resources]]").unwrap());
    std::fs::write(conf.join("00-host.toml"), host).unwrap();
    std::fs::write(conf.join("10-team.toml"), rest).unwrap();
    let (status, stdout, stderr) = periscope(&["check", "--config", "conf.d"], dir.path());
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 resource(s), 1 input(s), 1 exporter(s)"),
        "{stdout}"
    );
    let (status, rbac, stderr) = periscope(&["rbac", "--config", "conf.d"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(rbac.contains("kind: ClusterRole"), "{rbac}");

    let broken = rest.replace("path = \"data.value\"", "path = \"data.value[type=\"");
    std::fs::write(conf.join("10-team.toml"), &broken).unwrap();
    let line = line_of(&broken, "data.value[type=");
    for command in ["check", "run"] {
        let (status, _, stderr) = periscope(&[command, "--config", "conf.d"], dir.path());
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("conf.d/10-team.toml:{line}:"))
                && stderr.contains("`resources[0].metrics[0].path`"),
            "{stderr}"
        );
    }
}

#[test]
fn a_missing_or_malformed_ca_file_is_named_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, expected) in [
        (&missing, "cannot read"),
        (&garbage, "not a usable CA certificate"),
        (&key, "no PEM certificate in it"),
    ] {
        let entry = format!(
            "[[endpoints]]\nname = \"tls\"\nurls = [\"https://127.0.0.1:1/metrics\"]\n\
             tls = {{ ca_file = \"{}\" }}\n\n[[resources]]",
            file.display()
        );
        let config = demo_config(file_exporter()).replace("[[resources]]", &entry);
        let line = line_of(&config, "ca_file");
        for error in both_refuse(&config) {
            assert!(
                error.starts_with(&format!("bad.toml:{line}:9: `endpoints[0].tls.ca_file`: "))
                    && error.contains(expected),
                "{expected}: {error}"
            );
        }
    }
}
