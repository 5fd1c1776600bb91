//! kube-state-metrics' CustomResourceState configs (the `kind: CustomResourceStateMetrics` YAML
//! given to `--custom-resource-state-config-file`, or the Helm chart's values holding one under
//! `customResourceState.config`), turned into Periscope's `[[resources]]` TOML with the series
//! kube-state-metrics v2.16 writes.
//!
//! Start at [`convert`]. The YAML is parsed strictly ([`crs`]): a key kube-state-metrics would
//! ignore is an error here. Each construct then maps to config entries ([`mapping`]); one that
//! Periscope cannot express with the same result is an error naming its line, never a silent
//! difference. `docs/kube-state-metrics.md` has the table of constructs and the differences left.

mod crs;
mod locate;
mod mapping;

use crate::config::{ConfigErrors, Problem};

use locate::KeyPath;

/// Converts the CustomResourceState config `text` (named `file` in errors and comments) into
/// Periscope TOML: one `[[resources]]` entry per resource of the config, one
/// `[[resources.metrics]]` per metric, each with a comment naming the YAML it comes from. A
/// problem's key is the YAML key path (`spec.resources[0].metrics[2].each.gauge.labelFromKey`),
/// empty when it is about the whole file.
///
/// ```
/// use periscope_core::import::kube_state_metrics::convert;
///
/// let yaml = r#"
/// kind: CustomResourceStateMetrics
/// spec:
///   resources:
///     - groupVersionKind: { group: example.com, version: v1, kind: Foo }
///       metrics:
///         - name: uptime
///           help: Foo uptime
///           each:
///             type: Gauge
///             gauge:
///               path: [status, uptime]
/// "#;
/// let toml = convert("crs.yaml", yaml).unwrap();
/// assert!(toml.contains("path = \"status.uptime\""));
/// ```
pub fn convert(file: &str, text: &str) -> Result<String, ConfigErrors> {
    let problem = |path: &KeyPath, line: Option<(usize, usize)>, message: String| {
        let (line, column) = line.unwrap_or((0, 0));
        Problem {
            file: file.to_owned(),
            key: path.to_string(),
            line,
            column,
            message,
        }
    };
    let (config, base) = parse(text).map_err(|(path, e)| {
        let at = e.location().map(|l| (l.line(), l.column()));
        let message = strip_location(&e.to_string());
        ConfigErrors {
            problems: vec![problem(&path, at, message)],
        }
    })?;
    mapping::render(file, text, &config, &base).map_err(|problems| {
        let mut problems: Vec<Problem> = problems
            .into_iter()
            .map(|(path, message)| problem(&path, locate::line_of(text, &path), message))
            .collect();
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        ConfigErrors { problems }
    })
}

/// The config of `text`, whether the file is the config itself or Helm values holding it, and
/// the key path of the config in the file.
fn parse(text: &str) -> Result<(crs::Config, KeyPath), (KeyPath, serde_yaml_ng::Error)> {
    let root = KeyPath::default();
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| (root.clone(), e))?;
    let helm = value
        .as_mapping()
        .is_some_and(|m| m.contains_key("customResourceState"));
    if helm {
        let values: crs::HelmValues =
            serde_yaml_ng::from_str(text).map_err(|e| (root.clone(), e))?;
        let base = root.key("customResourceState").key("config");
        Ok((values.custom_resource_state.config, base))
    } else {
        let config: crs::Config = serde_yaml_ng::from_str(text).map_err(|e| (root.clone(), e))?;
        Ok((config, root))
    }
}

/// serde_yaml_ng's message without its ` at line L column C` (the problem carries the position).
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
