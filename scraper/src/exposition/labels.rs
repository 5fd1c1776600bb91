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

/// Reads the label set under the cursor (which is on its `{`) into `labels`, up to and including
/// the closing `}`. `strict` is OpenMetrics.
pub(super) fn label_set<'a>(
    cursor: &mut Cursor<'a>,
    strict: bool,
    labels: &mut Vec<Label<'a>>,
) -> Result<(), ParseError> {
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
        let name = cursor.label_name()?;
        blanks(cursor);
        cursor.expect(b'=', "'=' after the label name")?;
        blanks(cursor);
        cursor.expect(b'"', "'\"' opening the label value")?;
        let value = escapes::label_value(cursor)?;
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
