//! The line grammar of both formats: comments and metadata, samples, the OpenMetrics `# EOF`.

use super::error::{ErrorKind, ParseError};
use super::families::{Families, Sample};
use super::labels::{self, Label, LabelLimits};
use super::lexer::Cursor;
use super::{Exposition, Format, Limits, escapes, numbers};

/// Parses `input` in `format` within `limits`.
pub(super) fn parse<'a>(
    input: &'a [u8],
    format: Format,
    limits: Limits<'_>,
) -> Result<Exposition<'a>, ParseError> {
    let src = std::str::from_utf8(input).map_err(|error| {
        let valid = &input[..error.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        ParseError::new(line, ErrorKind::InvalidUtf8, "invalid UTF-8")
    })?;
    let label_limits = LabelLimits {
        max_labels: limits.max_labels,
        max_name_bytes: limits.max_label_name_bytes,
        max_value_bytes: limits.max_label_value_bytes,
    };
    let mut reader = Reader {
        cursor: Cursor::new(src, format),
        families: Families::new(format, limits.max_samples, limits.keep, input.len()),
        labels: Vec::new(),
        label_limits,
        strict: format == Format::OpenMetrics,
    };
    match format {
        Format::Text => reader.text()?,
        Format::OpenMetrics => reader.openmetrics()?,
    }
    Ok(reader.families.finish())
}

/// The state of one parse.
struct Reader<'a, 'f> {
    cursor: Cursor<'a>,
    families: Families<'a, 'f>,
    /// The labels of the sample being read (reused from sample to sample).
    labels: Vec<Label<'a>>,
    label_limits: LabelLimits,
    /// OpenMetrics.
    strict: bool,
}

impl<'a> Reader<'a, '_> {
    /// A text 0.0.4 page: lines of samples, `# HELP`, `# TYPE`, other comments and blank lines, blanks
    /// allowed at the start of a line; the last line may lack its newline.
    fn text(&mut self) -> Result<(), ParseError> {
        loop {
            self.cursor.skip_blanks();
            match self.cursor.peek() {
                None => return Ok(()),
                Some(b'\n') => self.cursor.end_line()?,
                Some(b'#') => self.text_comment()?,
                Some(_) => self.sample()?,
            }
        }
    }

    /// A text comment line: `# HELP name text`, `# TYPE name type`, or anything else (ignored).
    fn text_comment(&mut self) -> Result<(), ParseError> {
        let cursor = &mut self.cursor;
        cursor.advance(1);
        if !cursor.skip_blanks() {
            cursor.skip_line();
            return Ok(());
        }
        let keyword = if cursor.starts_with("HELP") {
            "HELP"
        } else if cursor.starts_with("TYPE") {
            "TYPE"
        } else {
            cursor.skip_line();
            return Ok(());
        };
        cursor.advance(keyword.len());
        if !cursor.skip_blanks() {
            cursor.skip_line();
            return Ok(());
        }
        let line = cursor.line();
        let name = cursor.metric_name()?;
        if keyword == "HELP" {
            self.help(name, line)
        } else {
            cursor.separator("a space and the type after the metric name")?;
            let type_name = cursor.token();
            cursor.skip_blanks();
            cursor.end_line()?;
            self.families.declare_type(name, type_name, line)
        }
    }

    /// The rest of a HELP line for `name`, from after the name.
    fn help(&mut self, name: &'a str, line: usize) -> Result<(), ParseError> {
        let cursor = &mut self.cursor;
        let text = if cursor.at_line_end() {
            ""
        } else {
            cursor.separator("a space before the HELP text")?;
            cursor.rest_of_line()
        };
        let help = escapes::help(text, self.strict)
            .map_err(|message| ParseError::new(line, ErrorKind::InvalidEscape, message))?;
        cursor.end_line()?;
        self.families.help(name, help, line)
    }

    /// An OpenMetrics page: metadata and sample lines, each ended by a newline, and `# EOF` last.
    fn openmetrics(&mut self) -> Result<(), ParseError> {
        loop {
            match self.cursor.peek() {
                None => {
                    return Err(self
                        .cursor
                        .error(ErrorKind::MissingEof, "no \"# EOF\" at the end of the page"));
                }
                Some(b'\n') => {
                    return Err(self.cursor.error(ErrorKind::Syntax, "blank line"));
                }
                Some(b'#') if self.cursor.starts_with("# EOF") => return self.eof(),
                Some(b'#') => self.openmetrics_metadata()?,
                Some(_) => self.sample()?,
            }
        }
    }

    /// The `# EOF` line: nothing may follow it but its newline.
    fn eof(&mut self) -> Result<(), ParseError> {
        let cursor = &mut self.cursor;
        cursor.advance("# EOF".len());
        if cursor.at_end() {
            return Ok(());
        }
        cursor.end_line()?;
        if cursor.at_end() {
            Ok(())
        } else {
            Err(cursor.error(ErrorKind::AfterEof, "text after \"# EOF\""))
        }
    }

    /// An OpenMetrics metadata line: `# HELP name text`, `# TYPE name type`, `# UNIT name unit`.
    fn openmetrics_metadata(&mut self) -> Result<(), ParseError> {
        let cursor = &mut self.cursor;
        let keyword = ["# HELP ", "# TYPE ", "# UNIT "]
            .into_iter()
            .find(|keyword| cursor.starts_with(keyword))
            .ok_or_else(|| {
                cursor.error(
                    ErrorKind::Syntax,
                    "OpenMetrics allows no comments but # HELP, # TYPE, # UNIT and # EOF",
                )
            })?;
        cursor.advance(keyword.len());
        let line = cursor.line();
        let name = cursor.metric_name()?;
        match keyword {
            "# HELP " => self.help(name, line),
            "# TYPE " => {
                cursor.separator("a space and the type after the metric name")?;
                let type_name = cursor.token();
                cursor.end_line()?;
                self.families.declare_type(name, type_name, line)
            }
            _ => {
                let unit = if cursor.at_line_end() {
                    ""
                } else {
                    cursor.separator("a space before the unit")?;
                    cursor.token()
                };
                let valid = unit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
                if !valid {
                    return Err(
                        cursor.error(ErrorKind::InvalidMetadata, format!("invalid unit {unit:?}"))
                    );
                }
                cursor.end_line()?;
                self.families.unit(name, unit, line)
            }
        }
    }

    /// A sample line: `name{labels} value timestamp`, and in OpenMetrics an exemplar.
    fn sample(&mut self) -> Result<(), ParseError> {
        let strict = self.strict;
        let cursor = &mut self.cursor;
        let line = cursor.line();
        let name = cursor.metric_name()?;
        self.labels.clear();
        let blank = !strict && cursor.skip_blanks();
        if cursor.peek() == Some(b'{') {
            labels::label_set(cursor, strict, self.label_limits, &mut self.labels).map_err(
                |mut error| {
                    if matches!(
                        error.kind,
                        ErrorKind::TooManyLabels
                            | ErrorKind::LabelNameTooLong
                            | ErrorKind::LabelValueTooLong
                    ) {
                        error.message = format!("sample {name}: {}", error.message);
                    }
                    error
                },
            )?;
            if strict {
                cursor.separator("a space before the value")?;
            } else {
                cursor.skip_blanks();
            }
        } else if strict {
            cursor.separator("'{' or a space after the metric name")?;
        } else if !blank {
            return Err(cursor.unexpected("'{' or a space after the metric name"));
        }
        let token = cursor.token();
        if token.is_empty() {
            return Err(cursor.unexpected("a value"));
        }
        let value = numbers::parse_value(token).ok_or_else(|| {
            cursor.error(ErrorKind::InvalidValue, format!("invalid value {token:?}"))
        })?;
        let timestamp = if strict {
            self.openmetrics_sample_end()?
        } else {
            text_sample_end(cursor)?
        };
        let sample = Sample {
            name,
            value,
            timestamp_ms: timestamp,
        };
        self.families.sample(sample, &mut self.labels, line)
    }

    /// What follows an OpenMetrics value: an optional timestamp, an optional exemplar, the newline.
    fn openmetrics_sample_end(&mut self) -> Result<Option<i64>, ParseError> {
        let cursor = &mut self.cursor;
        let mut timestamp = None;
        if cursor.eat(b' ') {
            if cursor.peek() != Some(b'#') {
                let token = cursor.token();
                timestamp = Some(numbers::parse_openmetrics_timestamp(token).ok_or_else(|| {
                    cursor.error(
                        ErrorKind::InvalidTimestamp,
                        format!("invalid timestamp {token:?}"),
                    )
                })?);
                if cursor.eat(b' ') && cursor.peek() != Some(b'#') {
                    return Err(cursor.unexpected("'#' opening an exemplar"));
                }
            }
            if cursor.peek() == Some(b'#') {
                self.exemplar()?;
            }
        }
        self.cursor.end_line()?;
        Ok(timestamp)
    }

    /// An exemplar, checked and dropped: `# {labels} value [timestamp]`.
    fn exemplar(&mut self) -> Result<(), ParseError> {
        let cursor = &mut self.cursor;
        cursor.expect(b'#', "'#'")?;
        cursor.separator("a space after '#'")?;
        let sample_labels = self.labels.len();
        labels::label_set(cursor, true, LabelLimits::NONE, &mut self.labels)?;
        self.labels.truncate(sample_labels);
        cursor.separator("a space before the exemplar value")?;
        let token = cursor.token();
        if numbers::parse_value(token).is_none() {
            return Err(cursor.error(
                ErrorKind::InvalidValue,
                format!("invalid exemplar value {token:?}"),
            ));
        }
        if cursor.eat(b' ') {
            let token = cursor.token();
            if numbers::parse_openmetrics_timestamp(token).is_none() {
                return Err(cursor.error(
                    ErrorKind::InvalidTimestamp,
                    format!("invalid exemplar timestamp {token:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// What follows a text value: optional blanks and an integer timestamp, optional blanks, the newline.
fn text_sample_end(cursor: &mut Cursor<'_>) -> Result<Option<i64>, ParseError> {
    cursor.skip_blanks();
    let mut timestamp = None;
    if !cursor.at_line_end() {
        let token = cursor.token();
        timestamp = Some(numbers::parse_text_timestamp(token).ok_or_else(|| {
            cursor.error(
                ErrorKind::InvalidTimestamp,
                format!("invalid timestamp {token:?}"),
            )
        })?);
        cursor.skip_blanks();
    }
    cursor.end_line()?;
    Ok(timestamp)
}
