//! Why a page was refused, and where.

/// A page that could not be parsed: the first malformed line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based number of the offending line (one past the last line when something is missing
    /// at the end of the page).
    pub line: usize,
    /// What kind of problem it is, for counting.
    pub kind: ErrorKind,
    /// What is wrong, in a few words.
    pub message: String,
}

/// The kinds of [`ParseError`], each with a short stable name for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The page is not UTF-8.
    InvalidUtf8,
    /// A metric name that is empty or has a character outside `[a-zA-Z0-9_:]` (or starts with a
    /// digit).
    InvalidMetricName,
    /// A label name that is empty or has a character outside `[a-zA-Z0-9_]` (or starts with a
    /// digit).
    InvalidLabelName,
    /// A label value whose closing quote is missing before the end of the line.
    UnterminatedLabelValue,
    /// A backslash followed by something the format does not allow there.
    InvalidEscape,
    /// A sample value that is not a number.
    InvalidValue,
    /// A timestamp that is not a number of the format's kind, or out of range.
    InvalidTimestamp,
    /// The same label name twice in one sample.
    DuplicateLabelName,
    /// Any other line that breaks the grammar (a missing value, text after the timestamp, a blank
    /// line or a plain comment in OpenMetrics, a bad exemplar…).
    Syntax,
    /// A HELP, TYPE or UNIT line that is wrong in itself: an unknown type, a second one for the same
    /// family, a unit that does not end the family name, two families claiming one name.
    InvalidMetadata,
    /// A TYPE line after samples of its family (in OpenMetrics also a HELP or UNIT line).
    MetadataAfterSamples,
    /// A sample whose name or labels do not fit its family's type: a histogram sample without
    /// suffix, a bucket without `le`, a quantile without `quantile`…
    TypeMismatch,
    /// An OpenMetrics page without `# EOF`.
    MissingEof,
    /// Something after the OpenMetrics `# EOF`.
    AfterEof,
    /// An OpenMetrics line cut at the end of the page, without its newline.
    TruncatedLine,
    /// More samples kept than [`Limits::max_samples`](super::Limits::max_samples).
    TooManySamples,
    /// A sample with more labels than [`Limits::max_labels`](super::Limits::max_labels).
    TooManyLabels,
    /// A label value longer than
    /// [`Limits::max_label_value_bytes`](super::Limits::max_label_value_bytes).
    LabelValueTooLong,
    /// A label name longer than
    /// [`Limits::max_label_name_bytes`](super::Limits::max_label_name_bytes).
    LabelNameTooLong,
    /// More metric families than [`MAX_FAMILIES`](super::MAX_FAMILIES), with samples or not.
    TooManyFamilies,
}

impl ErrorKind {
    /// A short `snake_case` name, stable, for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::InvalidMetricName => "invalid_metric_name",
            ErrorKind::InvalidLabelName => "invalid_label_name",
            ErrorKind::UnterminatedLabelValue => "unterminated_label_value",
            ErrorKind::InvalidEscape => "invalid_escape",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::InvalidTimestamp => "invalid_timestamp",
            ErrorKind::DuplicateLabelName => "duplicate_label_name",
            ErrorKind::Syntax => "syntax",
            ErrorKind::InvalidMetadata => "invalid_metadata",
            ErrorKind::MetadataAfterSamples => "metadata_after_samples",
            ErrorKind::TypeMismatch => "type_mismatch",
            ErrorKind::MissingEof => "missing_eof",
            ErrorKind::AfterEof => "after_eof",
            ErrorKind::TruncatedLine => "truncated_line",
            ErrorKind::TooManySamples => "too_many_samples",
            ErrorKind::TooManyLabels => "too_many_labels",
            ErrorKind::LabelValueTooLong => "label_value_too_long",
            ErrorKind::TooManyFamilies => "too_many_families",
            ErrorKind::LabelNameTooLong => "label_name_too_long",
        }
    }
}

impl ParseError {
    /// An error of `kind` at `line`.
    pub(super) fn new(line: usize, kind: ErrorKind, message: impl Into<String>) -> Self {
        ParseError {
            line,
            kind,
            message: message.into(),
        }
    }
}
