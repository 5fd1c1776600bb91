//! A cursor over a page: names, blanks, tokens and line ends, with the line number for errors.
//!
//! The page has been checked to be UTF-8 before the cursor is made, and the cursor only ever stops
//! on ASCII bytes, so every slice it hands out falls on character boundaries.

use periscope_plugin_api::names;

use super::Format;
use super::error::{ErrorKind, ParseError};

/// What a byte may be in names.
const METRIC_START: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

/// The classes of every byte, by the name rules of `periscope_plugin_api::names`: `[a-zA-Z_]`
/// start and continue both kinds of names, `:` only metric names, digits only continue them.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if names::is_metric_name_start(b) {
            class |= METRIC_START;
        }
        if names::is_metric_name_char(b) {
            class |= METRIC_CHAR;
        }
        if names::is_label_name_start(b) {
            class |= LABEL_START;
        }
        if names::is_label_name_char(b) {
            class |= LABEL_CHAR;
        }
        table[byte] = class;
        byte += 1;
    }
    table
}

/// The position of the first of `a`, `b`, `c` in `bytes`, eight bytes at a time.
pub(super) fn find_any(bytes: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit set in every byte of `word` equal to `byte`; exact for the lowest such byte,
    // which is the only one used.
    let matches = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = matches(word, a) | matches(word, b) | matches(word, c);
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| x == a || x == b || x == c)
        .map(|at| offset + at)
}

/// A position in the page.
pub(super) struct Cursor<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    /// Whether the grammar is OpenMetrics' strict one (single spaces, lines ended by `\n`).
    strict: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `src`, line 1.
    pub(super) fn new(src: &'a str, format: Format) -> Self {
        Cursor {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            line: 1,
            strict: format == Format::OpenMetrics,
        }
    }

    /// The 1-based number of the current line.
    pub(super) fn line(&self) -> usize {
        self.line
    }

    /// Whether the whole page has been read.
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The byte under the cursor.
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Whether the rest of the page starts with `text`.
    pub(super) fn starts_with(&self, text: &str) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(text.as_bytes()))
    }

    /// Moves past `count` bytes, which the caller has seen to be ASCII.
    pub(super) fn advance(&mut self, count: usize) {
        self.pos = (self.pos + count).min(self.bytes.len());
    }

    /// Moves past `byte` if it is under the cursor.
    pub(super) fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Moves past `byte`, or fails with a [`ErrorKind::Syntax`] error saying what was `expected`.
    pub(super) fn expect(&mut self, byte: u8, expected: &str) -> Result<(), ParseError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Moves past spaces and tabs; returns whether there were any.
    pub(super) fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Moves past the separator between two tokens: one space in OpenMetrics, spaces and tabs in the
    /// text format. Fails when there is none.
    pub(super) fn separator(&mut self, expected: &str) -> Result<(), ParseError> {
        let found = if self.strict {
            self.eat(b' ')
        } else {
            self.skip_blanks()
        };
        if found {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Whether the cursor is at the end of a line (or of the page).
    pub(super) fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
    }

    /// Moves past the end of the line under the cursor. In OpenMetrics, a line that the end of the
    /// page cuts before its newline is an error.
    pub(super) fn end_line(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                Ok(())
            }
            None if self.strict => Err(self.error(
                ErrorKind::TruncatedLine,
                "the last line has no newline (page cut short?)",
            )),
            None => Ok(()),
            Some(_) => Err(self.unexpected("the end of the line")),
        }
    }

    /// Moves past the rest of the line, whatever it holds, and its newline.
    pub(super) fn skip_line(&mut self) {
        let rest = &self.bytes[self.pos..];
        match find_any(rest, b'\n', b'\n', b'\n') {
            Some(at) => {
                self.pos += at + 1;
                self.line += 1;
            }
            None => self.pos = self.bytes.len(),
        }
    }

    /// The rest of the line, without its newline; the cursor stays before the newline.
    pub(super) fn rest_of_line(&mut self) -> &'a str {
        let start = self.pos;
        let rest = &self.bytes[start..];
        self.pos += find_any(rest, b'\n', b'\n', b'\n').unwrap_or(rest.len());
        &self.src[start..self.pos]
    }

    /// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub(super) fn metric_name(&mut self) -> Result<&'a str, ParseError> {
        self.name(METRIC_START, METRIC_CHAR)
            .ok_or_else(|| self.bad_name(ErrorKind::InvalidMetricName, "a metric name"))
    }

    /// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
    pub(super) fn label_name(&mut self) -> Result<&'a str, ParseError> {
        self.name(LABEL_START, LABEL_CHAR)
            .ok_or_else(|| self.bad_name(ErrorKind::InvalidLabelName, "a label name"))
    }

    /// The name under the cursor, or `None` (cursor unmoved) when it does not start with a byte of
    /// class `start`.
    fn name(&mut self, start: u8, rest: u8) -> Option<&'a str> {
        let begin = self.pos;
        let first = self.peek()?;
        if CLASSES[usize::from(first)] & start == 0 {
            return None;
        }
        let mut end = begin + 1;
        while let Some(&b) = self.bytes.get(end) {
            if CLASSES[usize::from(b)] & rest == 0 {
                break;
            }
            end += 1;
        }
        self.pos = end;
        Some(&self.src[begin..end])
    }

    /// The error for a name that is missing or starts badly; a name that goes on with a bad
    /// character is reported by whatever expected the next token.
    fn bad_name(&self, kind: ErrorKind, expected: &str) -> ParseError {
        let message = match self.char_here() {
            Some(found) => format!("expected {expected}, found {found:?}"),
            None => format!("expected {expected}, found the end of the page"),
        };
        self.error(kind, message)
    }

    /// The token under the cursor: everything up to the next separator or line end. Empty when the
    /// cursor is on one of them.
    pub(super) fn token(&mut self) -> &'a str {
        let start = self.pos;
        let rest = &self.bytes[start..];
        let length = if self.strict {
            rest.iter().position(|&b| b == b' ' || b == b'\n')
        } else {
            rest.iter()
                .position(|&b| b == b' ' || b == b'\t' || b == b'\n')
        };
        self.pos += length.unwrap_or(rest.len());
        &self.src[start..self.pos]
    }

    /// The bytes from `start` (a position this cursor stopped at) to the cursor.
    pub(super) fn since(&self, start: usize) -> &'a str {
        &self.src[start..self.pos]
    }

    /// The position of the cursor in bytes.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// The bytes after the cursor.
    pub(super) fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// The text after the cursor.
    pub(super) fn rest_str(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// An error of `kind` on the current line.
    pub(super) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ParseError {
        ParseError::new(self.line, kind, message)
    }

    /// A [`ErrorKind::Syntax`] error: `expected` was expected, something else is under the cursor.
    pub(super) fn unexpected(&self, expected: &str) -> ParseError {
        let message = match self.char_here() {
            Some('\n') => format!("expected {expected}, found the end of the line"),
            Some(found) => format!("expected {expected}, found {found:?}"),
            None => format!("expected {expected}, found the end of the page"),
        };
        self.error(ErrorKind::Syntax, message)
    }

    /// The character under the cursor.
    fn char_here(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }
}
