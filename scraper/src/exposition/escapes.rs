//! Quoted label values and HELP texts: borrowed as they are when they hold no backslash, unescaped
//! into a new string when they do.

use std::borrow::Cow;

use super::error::{ErrorKind, ParseError};
use super::lexer::{Cursor, find_any};

/// The label value whose opening quote the cursor has just passed; the cursor ends after the
/// closing quote. Knows `\\`, `\"` and `\n` (both formats).
pub(super) fn label_value<'a>(cursor: &mut Cursor<'a>) -> Result<Cow<'a, str>, ParseError> {
    let start = cursor.position();
    let rest = cursor.rest();
    match find_any(rest, b'"', b'\\', b'\n') {
        Some(end) if rest[end] == b'"' => {
            cursor.advance(end);
            let value = cursor.since(start);
            cursor.advance(1);
            Ok(Cow::Borrowed(value))
        }
        Some(end) if rest[end] == b'\\' => {
            cursor.advance(end);
            let mut value = String::with_capacity(end + 16);
            value.push_str(cursor.since(start));
            unescape_label_value(cursor, value).map(Cow::Owned)
        }
        _ => {
            cursor.advance(rest.len());
            Err(unterminated(cursor))
        }
    }
}

/// The rest of a label value that has escapes, from the first backslash on.
fn unescape_label_value(cursor: &mut Cursor<'_>, mut value: String) -> Result<String, ParseError> {
    loop {
        let run_start = cursor.position();
        let rest = cursor.rest();
        let Some(end) = find_any(rest, b'"', b'\\', b'\n') else {
            cursor.advance(rest.len());
            return Err(unterminated(cursor));
        };
        cursor.advance(end);
        value.push_str(cursor.since(run_start));
        match rest[end] {
            b'"' => {
                cursor.advance(1);
                return Ok(value);
            }
            b'\\' => {
                let escaped = rest.get(end + 1).copied();
                match escaped {
                    Some(b'\\') => value.push('\\'),
                    Some(b'"') => value.push('"'),
                    Some(b'n') => value.push('\n'),
                    None | Some(b'\n') => {
                        cursor.advance(1);
                        return Err(unterminated(cursor));
                    }
                    Some(_) => return Err(bad_escape(cursor, "label values", "\\\\, \\\" or \\n")),
                }
                cursor.advance(2);
            }
            _ => return Err(unterminated(cursor)),
        }
    }
}

fn unterminated(cursor: &Cursor<'_>) -> ParseError {
    cursor.error(
        ErrorKind::UnterminatedLabelValue,
        "label value without its closing quote",
    )
}

/// The error for the escape sequence under the cursor (which is on its backslash).
fn bad_escape(cursor: &Cursor<'_>, place: &str, allowed: &str) -> ParseError {
    let sequence: String = cursor.rest_str().chars().take(2).collect();
    cursor.error(
        ErrorKind::InvalidEscape,
        format!("invalid escape {sequence:?} in {place} (allowed: {allowed})"),
    )
}

/// A HELP text, unescaped: `\\` and `\n`, and `\"` when `quotes` (OpenMetrics). A text that ends
/// with a lone backslash or holds another escape is refused with the reason.
pub(super) fn help<'a>(text: &'a str, quotes: bool) -> Result<Cow<'a, str>, String> {
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(text));
    }
    let mut help = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            help.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => help.push('\\'),
            Some('n') => help.push('\n'),
            Some('"') if quotes => help.push('"'),
            Some(other) => {
                let allowed = if quotes {
                    "\\\\, \\\" or \\n"
                } else {
                    "\\\\ or \\n"
                };
                return Err(format!(
                    "invalid escape \"\\{other}\" in HELP (allowed: {allowed})"
                ));
            }
            None => return Err("HELP ends with a lone backslash".to_owned()),
        }
    }
    Ok(Cow::Owned(help))
}
