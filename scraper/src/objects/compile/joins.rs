//! Checking and compiling an entry's `[[resources.joins]]`.

use super::Compiler;
use crate::config::{JoinConfig, LabelConfig, ResourceConfig};
use crate::expr::Scope;
use crate::objects::joins::{Join, Lookup};

impl Compiler {
    /// Compiles the joins of the entry at `key`, and makes their names the ones its paths and
    /// expressions may read.
    pub(super) fn joins(&mut self, key: &str, config: &ResourceConfig) -> Vec<Join> {
        // A join's key is read from this object alone: no join reads another.
        self.entry_joins.clear();
        let mut names: Vec<String> = Vec::new();
        let mut joins = Vec::new();
        for (i, join) in config.joins.iter().enumerate() {
            if let Some(join) = self.join(&format!("{key}.joins[{i}]"), join, &names) {
                joins.push(join);
            }
            names.push(join.name.get_ref().clone());
        }
        self.entry_joins = names;
        joins
    }

    /// Compiles one join; `before` are the names of the entry's joins before it.
    fn join(&mut self, key: &str, config: &JoinConfig, before: &[String]) -> Option<Join> {
        let name = config.name.get_ref();
        let mut valid = true;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let message = format!("{name:?} is not a valid join name (letters, digits, `_`)");
            self.error(&format!("{key}.name"), Some(&config.name), &message);
            valid = false;
        } else if before.contains(name) {
            let message = format!("the entry has another join named `{name}`");
            self.error(&format!("{key}.name"), Some(&config.name), &message);
            valid = false;
        }
        for (field, value) in [("version", &config.version), ("kind", &config.kind)] {
            if value.is_empty() {
                self.push(
                    format!("{key}.{field}"),
                    None,
                    "must not be empty".to_owned(),
                );
                valid = false;
            }
        }
        if config.kind == "Secret" && config.group.is_empty() {
            let message = "Secrets cannot be joined: their data is never read".to_owned();
            self.push(format!("{key}.kind"), None, message);
            valid = false;
        }
        let keys = [
            config.name_from.is_some(),
            config.uid_from.is_some(),
            config.label.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            let message =
                "give exactly one of `name_from`, `uid_from` or `label` (with `label_from`)"
                    .to_owned();
            self.push(key.to_owned(), None, message);
            valid = false;
        }
        if config.label.is_some() != config.label_from.is_some() {
            let message = "`label` and `label_from` go together".to_owned();
            self.push(format!("{key}.label_from"), None, message);
            valid = false;
        }
        if let Some(namespace) = &config.namespace_from
            && (config.uid_from.is_some() || config.cluster)
        {
            let message =
                "`namespace_from` is for a namespaced kind found by name or label".to_owned();
            self.push(
                format!("{key}.namespace_from"),
                Some(span_of(namespace)),
                message,
            );
            valid = false;
        }
        let reader = |compiler: &mut Compiler, field: &str, value: &Option<LabelConfig>| {
            value
                .as_ref()
                .map(|value| compiler.reader(&format!("{key}.{field}"), value, Scope::Object))
        };
        let name_from = reader(self, "name_from", &config.name_from);
        let namespace_from = reader(self, "namespace_from", &config.namespace_from);
        let uid_from = reader(self, "uid_from", &config.uid_from);
        let label_from = reader(self, "label_from", &config.label_from);
        let filter = config
            .filter
            .as_ref()
            .map(|filter| self.expr(&format!("{key}.where"), filter, Scope::Joined));
        let kind = self.joined_kinds.iter().position(|(g, v, k)| {
            *g == config.group && *v == config.version && *k == config.kind
        })?;
        let namespace = match namespace_from {
            Some(reader) => Some(reader?),
            None => None,
        };
        let lookup = match (name_from, uid_from, &config.label, label_from) {
            (Some(name), None, None, None) => Lookup::Name {
                namespace,
                name: name?,
            },
            (None, Some(uid), None, None) => Lookup::Uid(uid?),
            (None, None, Some(label), Some(value)) => Lookup::Label {
                label: label.get_ref().clone(),
                namespace,
                value: value?,
            },
            _ => return None,
        };
        let filter = match filter {
            Some(filter) => Some(filter?),
            None => None,
        };
        valid.then_some(Join {
            name: name.clone(),
            kind,
            lookup,
            cluster: config.cluster,
            filter,
            many: config.many,
        })
    }
}

/// The span of a value written as a path or an expression.
fn span_of(value: &LabelConfig) -> std::ops::Range<usize> {
    match value {
        LabelConfig::Path(text) | LabelConfig::Expr(text) => text.span(),
    }
}
