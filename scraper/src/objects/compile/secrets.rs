//! The rule for Secrets: refused as a watched resource unless `[kubernetes] allow_secrets = true`,
//! and even then no path may reach their `data` or `stringData`.

use crate::config::ResourceConfig;
use crate::objects::{CompileError, Secrets};

/// The entries that break the rule for Secrets.
pub(super) fn check(resources: &[ResourceConfig], secrets: Secrets) -> Vec<CompileError> {
    let mut errors = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        if !(resource.group.is_empty() && resource.kind == "Secret") {
            continue;
        }
        if secrets == Secrets::Refused {
            errors.push(CompileError {
                key: format!("resources[{i}].kind"),
                span: None,
                message: "watching Secrets needs `allow_secrets = true` in [kubernetes]; their data is never readable".to_owned(),
            });
            continue;
        }
        for (key, expr) in resource.expressions() {
            errors.push(CompileError {
                key: format!("resources[{i}].{key}"),
                span: Some(expr.span()),
                message: "expressions are not allowed on Secrets: they could read the data, which Periscope never exports".to_owned(),
            });
        }
        for (key, path) in resource.paths() {
            if reaches_secret_data(path.get_ref()) {
                errors.push(CompileError {
                    key: format!("resources[{i}].{key}"),
                    span: Some(path.span()),
                    message: format!(
                        "{:?} would read a Secret's data, which Periscope never exports",
                        path.get_ref()
                    ),
                });
            }
        }
    }
    errors
}

/// Whether a path starts at a Secret's `data` or `stringData`, or at every field of the object.
fn reaches_secret_data(path: &str) -> bool {
    let path = path.trim();
    let path = path
        .strip_prefix('$')
        .unwrap_or(path)
        .trim_start_matches('.');
    path.starts_with('[')
        || ["data", "stringData"].iter().any(|field| {
            path.strip_prefix(field).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::objects::ObjectPipeline;

    #[test]
    fn secret_data_paths_are_recognised() {
        for path in [
            "data",
            "data.password",
            ".data[\"x\"]",
            "stringData.x",
            "[*]",
        ] {
            assert!(reaches_secret_data(path), "{path}");
        }
        for path in ["metadata.name", "type", "database"] {
            assert!(!reaches_secret_data(path), "{path}");
        }
    }

    use crate::config::test_resources as resources;

    /// The keys of the errors compiling `text` gives under `secrets`.
    fn refused(text: &str, secrets: Secrets) -> Vec<String> {
        match ObjectPipeline::compile(&resources(text), secrets) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.key).collect(),
        }
    }

    #[test]
    fn secrets_are_refused_unless_allowed_and_never_with_data() {
        let config = "[[resources]]\nversion = \"v1\"\nkind = \"Secret\"\nlabels = { name = \"metadata.name\" }\n\
             [[resources.metrics]]\nname = \"x\"\ntype = \"info\"\nlabels = { pw = \"data.password\" }\n";
        assert_eq!(refused(config, Secrets::Refused), ["resources[0].kind"]);
        assert_eq!(
            refused(config, Secrets::Allowed),
            ["resources[0].metrics[0].labels.pw"]
        );
        let without_data = config.replace("data.password", "type");
        assert_eq!(refused(&without_data, Secrets::Allowed), [""; 0]);
    }

    #[test]
    fn secret_data_is_refused_in_aggregates_and_derived_metrics_too() {
        let config = "[[resources]]\nversion = \"v1\"\nkind = \"Secret\"\n\
             [[resources.aggregates]]\nname = \"n\"\ntype = \"count\"\nby = { pw = \"$.data.password\" }\n\
             [[resources.derived]]\nname = \"t\"\ntype = \"transitions\"\npath = \"stringData\"\n";
        assert_eq!(
            refused(config, Secrets::Allowed),
            [
                "resources[0].aggregates[0].by.pw",
                "resources[0].derived[0].path"
            ]
        );
    }
}
