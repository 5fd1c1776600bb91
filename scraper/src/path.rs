//! Field paths into Kubernetes objects: `status.phase`, `status.conditions[type=Ready].status`,
//! `spec.disks[*].name`, `metadata.labels["app.kubernetes.io/name"]`.
//!
//! A [`Path`] is parsed once, when the config is compiled, and evaluated for every metric of every
//! object, so evaluation never allocates beyond its result and never fails: whatever is missing
//! simply yields nothing.
//!
//! The syntax:
//! - `.` alone is the value itself (the object, or the item of an `each`); a leading `.` is optional;
//! - `a.b` walks into map fields;
//! - `a[0]`, `a[-1]` pick a list item, counting from the end when negative;
//! - `a[*]` yields every item of a list or every value of a map;
//! - `a[type=Ready]`, `a[type="Ready"]` yield every list item whose field `type` equals the value
//!   (numbers and booleans compare by their JSON text);
//! - `a["x.y/z"]`, `a['x.y/z']` walk into a map key that contains dots or slashes;
//! - a leading `$` anchors the path at the object's root even where paths are relative to an
//!   item (inside `each`): `$.metadata.creationTimestamp`, `$["metadata"]`; `$` alone is the object;
//! - a leading `@name` starts at the object the entry's join `name` found
//!   (`[[resources.joins]]`): `@claim.spec.volumeMode`; it reaches nothing when the join found
//!   nothing. The pipeline puts the joined objects in the object under [`JOINS`], so such a path
//!   is an anchored path through that key.

use std::fmt;

use serde_json::Value;

/// The key under which the pipeline puts an object's joined objects, by join name, before its
/// metrics read it. No Kubernetes object has a field of this name.
pub const JOINS: &str = "@joins";

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    /// Whether the path starts with `$`: it is read from the object even inside an `each`.
    anchored: bool,
    segments: Vec<Segment>,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A map field.
    Field(String),
    /// A list item; negative counts from the end.
    Index(i64),
    /// Every item of a list or every value of a map.
    Wildcard,
    /// Every list item whose `field` equals `value`.
    Select { field: String, value: String },
}

/// A path that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {message} at character {position}")]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// The 1-based position of the offending character (one past the end when the path ends too
    /// early).
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl Path {
    /// Parses `text`.
    ///
    /// ```
    /// use periscope_scraper::path::Path;
    /// use serde_json::json;
    ///
    /// let path = Path::parse("status.conditions[type=Ready].status").unwrap();
    /// let object = json!({"status": {"conditions": [
    ///     {"type": "Paused", "status": "False"},
    ///     {"type": "Ready", "status": "True"},
    /// ]}});
    /// assert_eq!(path.eval(&object), [&json!("True")]);
    /// ```
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let (anchored, segments) = Parser::new(text).path()?;
        Ok(Path {
            text: text.to_owned(),
            anchored,
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is `.`, the value itself (or `$`, the object).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the path starts with `$`, anchored at the object's root.
    pub fn is_anchored(&self) -> bool {
        self.anchored
    }

    /// The join a path starting with `@name` reads, and the fields it walks in the joined object
    /// up to its first list index, wildcard or selector: what of the joined object it needs.
    pub fn join(&self) -> Option<(&str, Vec<&str>)> {
        let [Segment::Field(root), Segment::Field(name), rest @ ..] = self.segments.as_slice()
        else {
            return None;
        };
        if !self.anchored || root != JOINS {
            return None;
        }
        let fields = rest
            .iter()
            .map_while(|segment| match segment {
                Segment::Field(field) => Some(field.as_str()),
                _ => None,
            })
            .collect();
        Some((name, fields))
    }

    /// The fields the path walks from where it starts up to its first list index, wildcard or
    /// selector: the part of the object (or item) it may read from.
    pub fn leading_fields(&self) -> Vec<&str> {
        self.segments
            .iter()
            .map_while(|segment| match segment {
                Segment::Field(field) => Some(field.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every value the path reaches from `root`, in document order; empty when nothing matches.
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        self.visit(root, &mut |value| out.push(value));
        out
    }

    /// Calls `found` with every value the path reaches from `root`, in document order, without
    /// collecting them.
    pub fn visit<'a>(&self, root: &'a Value, found: &mut impl FnMut(&'a Value)) {
        walk(&self.segments, root, found);
    }

    /// Like [`visit`](Self::visit) for a path relative to `item`, one item of an `each` inside
    /// `object`: an anchored path (`$.…`) starts at `object`, any other at `item`.
    ///
    /// ```
    /// use periscope_scraper::path::Path;
    /// use serde_json::json;
    ///
    /// let object = json!({"metadata": {"name": "vm1"}, "items": [{"name": "eth0"}]});
    /// let item = &object["items"][0];
    /// let mut found = Vec::new();
    /// Path::parse("$.metadata.name").unwrap().visit_in(&object, item, &mut |v| found.push(v));
    /// Path::parse("name").unwrap().visit_in(&object, item, &mut |v| found.push(v));
    /// assert_eq!(found, [&json!("vm1"), &json!("eth0")]);
    /// ```
    pub fn visit_in<'a>(
        &self,
        object: &'a Value,
        item: &'a Value,
        found: &mut impl FnMut(&'a Value),
    ) {
        let start = if self.anchored { object } else { item };
        walk(&self.segments, start, found);
    }
}

impl Path {
    /// Like [`visit`](Self::visit), with the map key of each value when the path's last step is
    /// `[*]` walking a map (`None` for the items of a list and for any other last step).
    ///
    /// ```
    /// use periscope_scraper::path::Path;
    /// use serde_json::json;
    ///
    /// let object = json!({"sub": {"a": 1, "b": 2}});
    /// let mut found = Vec::new();
    /// Path::parse("sub[*]").unwrap().visit_keyed(&object, &mut |k, v| found.push((k, v.clone())));
    /// assert_eq!(found, [(Some("a"), json!(1)), (Some("b"), json!(2))]);
    /// ```
    pub fn visit_keyed<'a>(
        &self,
        root: &'a Value,
        found: &mut impl FnMut(Option<&'a str>, &'a Value),
    ) {
        match self.segments.split_last() {
            Some((Segment::Wildcard, init)) => walk(init, root, &mut |value| match value {
                Value::Object(map) => map.iter().for_each(|(k, v)| found(Some(k), v)),
                Value::Array(items) => items.iter().for_each(|v| found(None, v)),
                _ => {}
            }),
            _ => walk(&self.segments, root, &mut |value| found(None, value)),
        }
    }

    /// Whether the path's last step is `[*]`.
    pub fn ends_in_wildcard(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::Wildcard))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn walk<'a>(segments: &[Segment], value: &'a Value, found: &mut impl FnMut(&'a Value)) {
    let Some((first, rest)) = segments.split_first() else {
        found(value);
        return;
    };
    match (first, value) {
        (Segment::Field(name), Value::Object(map)) => {
            if let Some(child) = map.get(name) {
                walk(rest, child, found);
            }
        }
        (Segment::Index(index), Value::Array(items)) => {
            let position = if *index < 0 {
                i64::try_from(items.len())
                    .ok()
                    .and_then(|len| usize::try_from(len + index).ok())
            } else {
                usize::try_from(*index).ok()
            };
            if let Some(child) = position.and_then(|i| items.get(i)) {
                walk(rest, child, found);
            }
        }
        (Segment::Wildcard, Value::Array(items)) => {
            for child in items {
                walk(rest, child, found);
            }
        }
        (Segment::Wildcard, Value::Object(map)) => {
            for child in map.values() {
                walk(rest, child, found);
            }
        }
        (Segment::Select { field, value }, Value::Array(items)) => {
            for child in items {
                if child.get(field).is_some_and(|v| scalar_equals(v, value)) {
                    walk(rest, child, found);
                }
            }
        }
        _ => {}
    }
}

/// Whether a scalar JSON value, read as text, equals `text`.
fn scalar_equals(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == text,
        Value::Number(n) => n.to_string() == text,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// A hand-written parser over the characters of a path.
struct Parser<'t> {
    text: &'t str,
    chars: std::iter::Peekable<std::str::CharIndices<'t>>,
}

impl<'t> Parser<'t> {
    fn new(text: &'t str) -> Self {
        Parser {
            text,
            chars: text.char_indices().peekable(),
        }
    }

    /// The whole path: whether it is anchored (`$`), and its segments.
    fn path(mut self) -> Result<(bool, Vec<Segment>), PathError> {
        if self.text.is_empty() {
            return Err(self.error("the path is empty; write `.` for the value itself"));
        }
        if self.text == "." {
            return Ok((false, Vec::new()));
        }
        if self.eat('@') {
            let name = self.name()?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.error_at(1, "a join name holds only letters, digits and `_`"));
            }
            let mut segments = vec![Segment::Field(JOINS.to_owned()), Segment::Field(name)];
            if self.peek().is_some() {
                segments.extend(self.segments()?);
            }
            return Ok((true, segments));
        }
        if !self.eat('$') {
            return Ok((false, self.segments()?));
        }
        match self.peek() {
            None => Ok((true, Vec::new())),
            Some('.' | '[') => Ok((true, self.segments()?)),
            Some(c) => Err(self.error(&format!("expected `.` or `[` after `$`, found `{c}`"))),
        }
    }

    fn segments(&mut self) -> Result<Vec<Segment>, PathError> {
        let mut segments = Vec::new();
        self.eat('.');
        // After a leading `.` or a `.` separator a field name must follow; the first field may
        // also be a bracket (`[0]`, `["a.b"]`).
        let mut need_field = true;
        loop {
            match self.peek() {
                None if need_field => return Err(self.error("a field name is missing")),
                None => return Ok(segments),
                Some('[') => {
                    self.chars.next();
                    segments.push(self.bracket()?);
                    need_field = false;
                }
                Some('.') if !need_field => {
                    self.chars.next();
                    need_field = true;
                }
                Some(_) if need_field => {
                    segments.push(Segment::Field(self.name()?));
                    need_field = false;
                }
                Some(c) => return Err(self.error(&format!("expected `.` or `[`, found `{c}`"))),
            }
        }
    }

    /// The inside of `[...]`, the `[` already consumed.
    fn bracket(&mut self) -> Result<Segment, PathError> {
        self.skip_spaces();
        let segment = match self.peek() {
            Some('*') => {
                self.chars.next();
                Segment::Wildcard
            }
            Some('"' | '\'') => Segment::Field(self.quoted()?),
            Some(c) if c == '-' || c.is_ascii_digit() => self.index()?,
            Some(_) => {
                let field = self.name()?;
                self.skip_spaces();
                if !self.eat('=') {
                    return Err(self.error("expected `=` in a selector such as `[type=Ready]`"));
                }
                self.skip_spaces();
                let value = match self.peek() {
                    Some('"' | '\'') => self.quoted()?,
                    _ => self.bare_value()?,
                };
                Segment::Select { field, value }
            }
            None => return Err(self.error("`[` is not closed")),
        };
        self.skip_spaces();
        if !self.eat(']') {
            return Err(self.error("expected `]`"));
        }
        Ok(segment)
    }

    fn index(&mut self) -> Result<Segment, PathError> {
        let start = self.offset();
        self.eat('-');
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.chars.next();
        }
        let digits = &self.text[start..self.offset()];
        digits
            .parse()
            .map(Segment::Index)
            .map_err(|_| self.error_at(start, &format!("`{digits}` is not a list index")))
    }

    /// A field name: everything up to a character with a meaning in paths.
    fn name(&mut self) -> Result<String, PathError> {
        let start = self.offset();
        while self.peek().is_some_and(is_name_char) {
            self.chars.next();
        }
        let name = &self.text[start..self.offset()];
        if name.is_empty() {
            let message = match self.peek() {
                Some(c) => format!("expected a field name, found `{c}`"),
                None => "a field name is missing".to_owned(),
            };
            return Err(self.error(&message));
        }
        Ok(name.to_owned())
    }

    /// An unquoted selector value: everything up to `]`, trailing spaces dropped.
    fn bare_value(&mut self) -> Result<String, PathError> {
        let start = self.offset();
        while self.peek().is_some_and(|c| c != ']') {
            self.chars.next();
        }
        let value = self.text[start..self.offset()].trim_end();
        if value.is_empty() {
            return Err(
                self.error("the selector has no value; write `[field=\"\"]` to match empty")
            );
        }
        Ok(value.to_owned())
    }

    /// A string in `"…"` or `'…'`; `\` escapes the next character.
    fn quoted(&mut self) -> Result<String, PathError> {
        let Some((start, quote)) = self.chars.next() else {
            return Err(self.error("expected a quote"));
        };
        let mut out = String::new();
        loop {
            match self.chars.next() {
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, c)) => out.push(c),
                    None => break,
                },
                Some((_, c)) => out.push(c),
                None => break,
            }
        }
        Err(self.error_at(start, "the quoted string is not closed"))
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.chars.next();
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.chars.next();
        }
        found
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn offset(&mut self) -> usize {
        self.chars.peek().map_or(self.text.len(), |(i, _)| *i)
    }

    fn error(&mut self, message: &str) -> PathError {
        let offset = self.offset();
        self.error_at(offset, message)
    }

    fn error_at(&self, offset: usize, message: &str) -> PathError {
        PathError {
            path: self.text.to_owned(),
            position: self.text[..offset].chars().count() + 1,
            message: message.to_owned(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    !matches!(c, '.' | '[' | ']' | '"' | '\'' | '=' | '*' | '$') && !c.is_whitespace()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        json!({
            "metadata": {
                "name": "vm1",
                "labels": {"app.kubernetes.io/name": "web", "tier": "front"},
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "Paused", "status": "False"},
                    {"type": "Ready", "status": "Unknown"},
                ],
                "interfaces": [
                    {"name": "eth0", "ipAddress": "10.0.0.1", "mtu": 1500},
                    {"name": "eth1", "ipAddress": "10.0.0.2", "mtu": 9000},
                ],
            },
        })
    }

    fn eval(path: &str) -> Vec<Value> {
        let object = object();
        Path::parse(path)
            .unwrap()
            .eval(&object)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn dotted_fields_walk_into_maps() {
        assert_eq!(eval("status.phase"), [json!("Running")]);
        assert_eq!(eval(".status.phase"), [json!("Running")]);
    }

    #[test]
    fn dot_alone_is_the_value_itself() {
        assert_eq!(eval("."), [object()]);
        assert!(Path::parse(".").unwrap().is_root());
    }

    #[test]
    fn indexes_count_from_either_end() {
        assert_eq!(eval("status.interfaces[0].name"), [json!("eth0")]);
        assert_eq!(eval("status.interfaces[-1].name"), [json!("eth1")]);
        assert_eq!(eval("status.interfaces[-2].name"), [json!("eth0")]);
        assert!(eval("status.interfaces[2].name").is_empty());
        assert!(eval("status.interfaces[-3].name").is_empty());
    }

    #[test]
    fn wildcard_yields_every_list_item_and_every_map_value() {
        assert_eq!(eval("status.interfaces[*].mtu"), [json!(1500), json!(9000)]);
        let mut labels = eval("metadata.labels[*]");
        labels.sort_by_key(|v| v.to_string());
        assert_eq!(labels, [json!("front"), json!("web")]);
    }

    #[test]
    fn selector_picks_the_ready_condition() {
        assert_eq!(
            eval("status.conditions[type=Paused].status"),
            [json!("False")]
        );
        assert_eq!(
            eval("status.conditions[type=\"Paused\"].status"),
            [json!("False")]
        );
    }

    #[test]
    fn selector_yields_every_match() {
        assert_eq!(
            eval("status.conditions[type=Ready].status"),
            [json!("True"), json!("Unknown")]
        );
    }

    #[test]
    fn selector_compares_numbers_as_text() {
        assert_eq!(eval("status.interfaces[mtu=9000].name"), [json!("eth1")]);
    }

    #[test]
    fn quoted_keys_may_hold_dots_and_slashes() {
        assert_eq!(
            eval("metadata.labels[\"app.kubernetes.io/name\"]"),
            [json!("web")]
        );
        assert_eq!(
            eval("metadata.labels['app.kubernetes.io/name']"),
            [json!("web")]
        );
    }

    #[test]
    fn missing_things_yield_nothing() {
        assert!(eval("status.nothing").is_empty());
        assert!(eval("status.phase.deeper").is_empty());
        assert!(eval("status.phase[0]").is_empty());
        assert!(eval("status.conditions[type=Gone].status").is_empty());
        assert!(eval("metadata[0]").is_empty());
    }

    #[test]
    fn bad_paths_say_what_and_where() {
        let cases = [
            ("", 1, "empty"),
            ("status..phase", 8, "field name"),
            ("status.", 8, "field name is missing"),
            ("status.conditions[type=Ready", 29, "expected `]`"),
            ("a[\"b]", 3, "not closed"),
            ("a[b]", 4, "expected `=`"),
            ("a[-]", 3, "not a list index"),
            ("a[x=]", 5, "no value"),
            ("a]", 2, "expected `.` or `[`"),
        ];
        for (path, position, message) in cases {
            let err = Path::parse(path).unwrap_err();
            assert_eq!(err.position, position, "{path}: {err}");
            assert!(err.message.contains(message), "{path}: {err}");
        }
    }

    #[test]
    fn dollar_anchors_the_path_at_the_object() {
        let object = object();
        let item = &object["status"]["interfaces"][1];
        let found = |path: &str| {
            let mut out = Vec::new();
            Path::parse(path)
                .unwrap()
                .visit_in(&object, item, &mut |v| out.push(v.clone()));
            out
        };
        assert_eq!(found("name"), [json!("eth1")]);
        assert_eq!(found("$.metadata.name"), [json!("vm1")]);
        assert_eq!(found("$[\"metadata\"].name"), [json!("vm1")]);
        assert_eq!(found("$"), std::slice::from_ref(&object));
        assert_eq!(found("."), std::slice::from_ref(item));
        assert!(Path::parse("$.status").unwrap().is_anchored());
        assert!(!Path::parse("status").unwrap().is_anchored());
        // Outside an `each` the object is the item: `$` changes nothing.
        assert_eq!(eval("$.status.phase"), [json!("Running")]);
    }

    #[test]
    fn dollar_must_be_followed_by_a_dot_or_a_bracket() {
        for (path, position) in [("$metadata", 2), ("a.$b", 3), ("$.", 3), ("$$", 2)] {
            let err = Path::parse(path).unwrap_err();
            assert_eq!(err.position, position, "{path}: {err}");
        }
    }

    #[test]
    fn display_shows_the_path_as_written() {
        let path = Path::parse("status.conditions[type=Ready]").unwrap();
        assert_eq!(path.to_string(), "status.conditions[type=Ready]");
    }
}
