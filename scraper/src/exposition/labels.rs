//! Label sets: `{name="value",…}`.
//!
//! The text format allows blanks around every token and a comma before the closing brace;
//! OpenMetrics allows neither.

use std::borrow::Cow;

use super::error::{ErrorKind, ParseError};
use super::escapes;
use super::lexer::Cursor;

/// One label: its name and its unescaped value.
pub(super) type Label<'a> = (&'a str, Cow<'a, str>);

/// How many labels a set may add, and how long a value may be.
#[derive(Debug, Clone, Copy)]
pub(super) struct LabelLimits {
    pub(super) max_labels: usize,
    pub(super) max_name_bytes: usize,
    pub(super) max_value_bytes: usize,
}

impl LabelLimits {
    /// No limit (an exemplar's labels, which are checked and dropped).
    pub(super) const NONE: LabelLimits = LabelLimits {
        max_labels: usize::MAX,
        max_name_bytes: usize::MAX,
        max_value_bytes: usize::MAX,
    };
}

/// Reads the label set under the cursor (which is on its `{`) into `labels`, up to and including
/// the closing `}`, failing at the first label past `limits`. `strict` is OpenMetrics.
pub(super) fn label_set<'a>(
    cursor: &mut Cursor<'a>,
    strict: bool,
    limits: LabelLimits,
    labels: &mut Vec<Label<'a>>,
) -> Result<(), ParseError> {
    let first = labels.len();
    cursor.expect(b'{', "'{'")?;
    let blanks = |cursor: &mut Cursor<'a>| {
        if !strict {
            cursor.skip_blanks();
        }
    };
    blanks(cursor);
    if cursor.eat(b'}') {
        return Ok(());
    }
    loop {
        if labels.len() - first >= limits.max_labels {
            return Err(cursor.error(
                ErrorKind::TooManyLabels,
                format!("more than {} labels", limits.max_labels),
            ));
        }
        let name = cursor.label_name()?;
        if name.len() > limits.max_name_bytes {
            return Err(cursor.error(
                ErrorKind::LabelNameTooLong,
                format!(
                    "a label name of {} bytes, more than {}",
                    name.len(),
                    limits.max_name_bytes
                ),
            ));
        }
        blanks(cursor);
        cursor.expect(b'=', "'=' after the label name")?;
        blanks(cursor);
        cursor.expect(b'"', "'\"' opening the label value")?;
        let value = escapes::label_value(cursor)?;
        if value.len() > limits.max_value_bytes {
            return Err(cursor.error(
                ErrorKind::LabelValueTooLong,
                format!(
                    "the value of label {name:?} has {} bytes, more than {}",
                    value.len(),
                    limits.max_value_bytes
                ),
            ));
        }
        labels.push((name, value));
        blanks(cursor);
        if cursor.eat(b'}') {
            return Ok(());
        }
        cursor.expect(b',', "',' or '}' after the label value")?;
        blanks(cursor);
        if cursor.peek() == Some(b'}') {
            if strict {
                return Err(cursor.error(ErrorKind::Syntax, "label set ends with ','"));
            }
            cursor.advance(1);
            return Ok(());
        }
    }
}
