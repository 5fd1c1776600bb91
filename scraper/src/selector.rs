//! Kubernetes label and field selectors, evaluated against objects as the API server would.
//!
//! Label selectors take the full syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//! `a notin (x)`, joined with commas (all must hold). Field selectors are only understood for
//! `metadata.name` and `metadata.namespace` with `=`, `==` and `!=`; the watcher hands the text to the
//! API server anyway, so this is what the offline input needs.

use serde_json::Value;

/// A selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {problem}")]
pub struct SelectorError {
    /// The selector as written.
    pub selector: String,
    /// What is wrong.
    pub problem: SelectorProblem,
}

/// What is wrong with a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorProblem {
    /// A `)` with no `(` before it.
    #[error("`)` without `(`")]
    UnopenedParenthesis,
    /// A `(` with no `)` after it.
    #[error("`(` is not closed")]
    UnclosedParenthesis,
    /// Text after the `)` of a set requirement.
    #[error("`{0}`: nothing may follow the closing `)`")]
    AfterSet(String),
    /// A set requirement that is not `key in (…)` or `key notin (…)`.
    #[error("`{0}`: expected `key in (…)` or `key notin (…)`")]
    SetSyntax(String),
    /// A set operator other than `in` and `notin`.
    #[error("`{0}` is not `in` or `notin`")]
    SetOperator(String),
    /// Not a label key.
    #[error("{0:?} is not a label key")]
    LabelKey(String),
    /// Not a label value.
    #[error("{0:?} is not a label value")]
    LabelValue(String),
    /// A field requirement without `=` or `!=`.
    #[error("`{0}` is not `field=value` or `field!=value`")]
    FieldSyntax(String),
    /// A field the offline input cannot evaluate.
    #[error("field `{0}` is not supported yet; use metadata.name or metadata.namespace")]
    UnsupportedField(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

impl LabelSelector {
    /// Parses a selector such as `app=web,tier in (front,back),!canary`.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let error = |problem| SelectorError {
            selector: text.to_owned(),
            problem,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(text).map_err(error)? {
            requirements.push(parse_requirement(part).map_err(error)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// The label keys the selector tests.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.key.as_str())
    }

    /// Whether an object whose labels are `labels` (the `metadata.labels` map, or nothing) is
    /// selected.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|requirement| {
            let value = labels
                .and_then(|l| l.get(&requirement.key))
                .and_then(Value::as_str);
            match (&requirement.op, value) {
                (Op::Exists, found) => found.is_some(),
                (Op::NotExists, found) => found.is_none(),
                (Op::Equals(want), found) => found == Some(want.as_str()),
                (Op::NotEquals(want), found) => found != Some(want.as_str()),
                (Op::In(set), found) => found.is_some_and(|v| set.iter().any(|s| s == v)),
                (Op::NotIn(set), found) => !found.is_some_and(|v| set.iter().any(|s| s == v)),
            }
        })
    }
}

/// Splits on the commas that are not inside parentheses, dropping empty parts.
fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorProblem> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(SelectorProblem::UnopenedParenthesis)?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(SelectorProblem::UnclosedParenthesis);
    }
    parts.push(&text[start..]);
    Ok(parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorProblem> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: label_key(key.trim())?,
            op: Op::NotExists,
        });
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement {
            key: label_key(key.trim())?,
            op: Op::NotEquals(label_value(value.trim())?),
        });
    }
    if let Some((key, value)) = part.split_once('=') {
        let value = value.strip_prefix('=').unwrap_or(value);
        return Ok(Requirement {
            key: label_key(key.trim())?,
            op: Op::Equals(label_value(value.trim())?),
        });
    }
    if let Some(open) = part.find('(') {
        let Some(set) = part[open + 1..].strip_suffix(')') else {
            return Err(SelectorProblem::AfterSet(part.to_owned()));
        };
        let mut words = part[..open].split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(SelectorProblem::SetSyntax(part.to_owned()));
        };
        let values = set
            .split(',')
            .map(|v| label_value(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let op = match op {
            "in" => Op::In(values),
            "notin" => Op::NotIn(values),
            other => return Err(SelectorProblem::SetOperator(other.to_owned())),
        };
        return Ok(Requirement {
            key: label_key(key)?,
            op,
        });
    }
    Ok(Requirement {
        key: label_key(part)?,
        op: Op::Exists,
    })
}

/// A label key: an optional DNS prefix and `/`, then a name of letters, digits, `-`, `_` and `.`.
fn label_key(key: &str) -> Result<String, SelectorProblem> {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let valid = !name.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(SelectorProblem::LabelKey(key.to_owned()))
    }
}

fn label_value(value: &str) -> Result<String, SelectorProblem> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_owned())
    } else {
        Err(SelectorProblem::LabelValue(value.to_owned()))
    }
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: Field,
    value: String,
    equal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
}

impl FieldSelector {
    /// Parses a selector such as `metadata.namespace=prod,metadata.name!=canary`.
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let error = |problem| SelectorError {
            selector: text.to_owned(),
            problem,
        };
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v.strip_prefix('=').unwrap_or(v), true)
            } else {
                return Err(error(SelectorProblem::FieldSyntax(part.to_owned())));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => {
                    return Err(error(SelectorProblem::UnsupportedField(other.to_owned())));
                }
            };
            requirements.push(FieldRequirement {
                field,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let metadata = object.get("metadata");
        self.requirements.iter().all(|requirement| {
            let key = match requirement.field {
                Field::Name => "name",
                Field::Namespace => "namespace",
            };
            let actual = metadata
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == requirement.value) == requirement.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels_match(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap()
            .matches(labels.as_object())
    }

    #[test]
    fn empty_selectors_match_everything() {
        assert!(labels_match("", json!({})));
        assert!(labels_match(" ", Value::Null));
        assert!(FieldSelector::parse("").unwrap().matches(&json!({})));
    }

    #[test]
    fn equality_requirements_compare_values() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(labels_match("app=web", labels.clone()));
        assert!(labels_match("app==web,tier=front", labels.clone()));
        assert!(!labels_match("app=db", labels.clone()));
        assert!(labels_match("app!=db", labels.clone()));
        assert!(labels_match("missing!=x", labels.clone()));
        assert!(!labels_match("app!=web", labels));
    }

    #[test]
    fn existence_requirements_look_at_keys() {
        let labels = json!({"app.kubernetes.io/name": "web"});
        assert!(labels_match("app.kubernetes.io/name", labels.clone()));
        assert!(labels_match("!canary", labels.clone()));
        assert!(!labels_match("!app.kubernetes.io/name", labels));
        assert!(!labels_match("app", Value::Null));
    }

    #[test]
    fn set_requirements_look_for_membership() {
        let labels = json!({"tier": "front"});
        assert!(labels_match("tier in (front, back)", labels.clone()));
        assert!(!labels_match("tier in (back)", labels.clone()));
        assert!(labels_match("tier notin (back)", labels.clone()));
        assert!(labels_match("env notin (prod)", labels.clone()));
        assert!(!labels_match("tier notin (front,back)", labels.clone()));
        assert!(labels_match("tier in (front,back),!canary", labels));
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        let problem = |text: &str| LabelSelector::parse(text).unwrap_err().problem;
        assert_eq!(problem("tier in (a"), SelectorProblem::UnclosedParenthesis);
        assert_eq!(problem("tier in a)"), SelectorProblem::UnopenedParenthesis);
        assert_eq!(
            problem("tier within (a)"),
            SelectorProblem::SetOperator("within".into())
        );
        assert_eq!(problem("a=b c"), SelectorProblem::LabelValue("b c".into()));
        assert_eq!(problem("=x"), SelectorProblem::LabelKey(String::new()));
        assert_eq!(
            problem("tier in (a) x"),
            SelectorProblem::AfterSet("tier in (a) x".into())
        );
    }

    #[test]
    fn field_selectors_match_name_and_namespace() {
        let object = json!({"metadata": {"name": "vm1", "namespace": "prod"}});
        let matches = |text: &str| FieldSelector::parse(text).unwrap().matches(&object);
        assert!(matches("metadata.name=vm1"));
        assert!(matches("metadata.namespace==prod,metadata.name!=vm2"));
        assert!(!matches("metadata.namespace!=prod"));
    }

    #[test]
    fn other_fields_are_not_supported_yet() {
        let err = FieldSelector::parse("status.phase=Running").unwrap_err();
        assert_eq!(
            err.problem,
            SelectorProblem::UnsupportedField("status.phase".into())
        );
    }
}
