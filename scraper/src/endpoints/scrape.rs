//! One scrape of one target: fetch, parse, filter, cap, label — and the target's own series.

use std::time::{Duration, Instant};

use periscope_plugin_api::batch::{
    Batch, BatchBuilder, Family, FamilyId, FamilyKind, ReplaceWriter, Source, SourceKind, Suffix,
    Update,
};

use super::Endpoint;
use super::client::{self, FetchError, Page};
use super::json_answer;
use super::targets::Target;
use crate::config::EndpointFormat;
use crate::event::SourceUpdate;
use crate::exposition::{self, Exposition, Format};

/// What a scrape gives: the target's update, and what to report.
pub(crate) struct Outcome {
    /// The `Replace` of the target's source: its samples (none when the scrape failed) and its
    /// `up`, `scrape_duration_seconds`, `scrape_samples_scraped` and
    /// `scrape_samples_post_metric_relabeling`.
    pub(crate) update: SourceUpdate,
    /// Why the scrape failed, if it did.
    pub(crate) error: Option<ScrapeError>,
    /// Problems that did not fail the scrape (duplicate series dropped, JSON values that are not
    /// numbers).
    pub(crate) problems: Vec<String>,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScrapeError {
    /// Fetching the page failed.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The page did not arrive in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The content type is not one the entry's format reads.
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// The page is not valid Prometheus text or OpenMetrics.
    #[error("malformed {format} page: {error}")]
    Parse {
        /// The format the content type named.
        format: &'static str,
        /// Where and what.
        error: exposition::ParseError,
    },
    /// The answer is not valid JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A sample with more labels than `label_limit`: the parse stopped at its first label over.
    #[error("over label_limit ({limit}): {error}")]
    LabelLimit {
        /// The limit.
        limit: usize,
        /// Where, and which sample.
        error: exposition::ParseError,
    },
    /// A label value longer than `label_value_length_limit`: the parse stopped there.
    #[error("over label_value_length_limit ({limit}): {error}")]
    LabelValueLength {
        /// The limit.
        limit: usize,
        /// Where, which sample and label.
        error: exposition::ParseError,
    },
    /// A label name longer than `label_name_length_limit`: the parse stopped there.
    #[error("over label_name_length_limit ({limit}): {error}")]
    LabelNameLength {
        /// The limit.
        limit: usize,
        /// Where, and which sample.
        error: exposition::ParseError,
    },
    /// More samples than `max_samples` after `keep` and `drop`; for a Prometheus or
    /// OpenMetrics page the parse stops at the first sample over it, so the page's total is not
    /// known.
    #[error("more samples than max_samples ({limit})")]
    SampleLimit {
        /// The limit.
        limit: usize,
    },
}

/// What a page holds once parsed.
enum Content<'p> {
    Exposition(Exposition<'p>),
    /// A JSON answer's samples, as one `Replace` without the target's labels.
    Json(Batch),
}

/// The series every scrape of a target writes first, whatever its page: `up`,
/// `scrape_duration_seconds`, `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`.
pub(super) const REPORT_SERIES: usize = 4;

/// Scrapes `target` (whose source id is `id`) once.
pub(crate) async fn scrape(endpoint: &Endpoint, target: &Target, id: &str) -> Outcome {
    let started = Instant::now();
    let now_ms = periscope_plugin_api::now_ms();
    let fetched = tokio::time::timeout(
        endpoint.timeout,
        client::fetch(
            &endpoint.http,
            &target.url,
            endpoint.format,
            endpoint.auth.as_ref(),
            endpoint.max_response_bytes,
        ),
    )
    .await;
    let (page, fetch_error) = match fetched {
        Ok(Ok(page)) => (Some(page), None),
        Ok(Err(e)) => (None, Some(ScrapeError::from(e))),
        Err(_) => (None, Some(ScrapeError::Timeout(endpoint.timeout))),
    };
    let mut problems = Vec::new();
    let mut kept = Kept::default();
    let parsed = page.as_ref().map(|page| {
        let content = parse(endpoint, page, now_ms, &mut kept, &mut problems)?;
        kept.count(endpoint, &content)?;
        Ok(content)
    });
    let (content, error) = match parsed {
        Some(Ok(content)) => (Some(content), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, fetch_error),
    };
    let duration = started.elapsed();
    let labels = target_labels(endpoint, target);
    // The report comes first: a cap (`max_series`, the memory limit) leaves the last series out,
    // and a target's `up` must never be one of them.
    let update = SourceUpdate::replace(target.source(id), |writer| {
        let report: [(&str, &str, &str, f64); REPORT_SERIES] = [
            (
                "up",
                "1 if the target's last scrape succeeded, 0 if not.",
                "",
                if error.is_none() { 1.0 } else { 0.0 },
            ),
            (
                "scrape_duration_seconds",
                "How long the target's last scrape took.",
                "seconds",
                duration.as_secs_f64(),
            ),
            (
                "scrape_samples_scraped",
                "Samples the target's last scrape found.",
                "",
                kept.scraped as f64,
            ),
            (
                "scrape_samples_post_metric_relabeling",
                "Samples left after keep and drop.",
                "",
                kept.kept as f64,
            ),
        ];
        for (name, help, unit, value) in report {
            let family = writer.family(Family {
                name,
                help,
                unit,
                kind: FamilyKind::Gauge,
            });
            writer
                .sample(family, Suffix::None, value, now_ms)
                .labels(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        }
        if let Some(content) = &content {
            write_samples(endpoint, content, &labels, now_ms, &mut kept, writer);
        }
    });
    Outcome {
        update,
        error,
        problems,
    }
}

/// Parses the page by the entry's format and the page's content type.
fn parse<'p>(
    endpoint: &Endpoint,
    page: &'p Page,
    now_ms: i64,
    kept: &mut Kept,
    problems: &mut Vec<String>,
) -> Result<Content<'p>, ScrapeError> {
    match endpoint.format {
        EndpointFormat::Prometheus => {
            let format = Format::from_content_type(&page.content_type)
                .ok_or_else(|| ScrapeError::ContentType(page.content_type.clone()))?;
            // The limits apply as the page is read: a sample `keep` or `drop` leaves out is
            // never stored, and the parse stops at the first sample, label or value over a
            // limit, so memory grows with what is kept, never with the page.
            let unlimited = |limit: usize| if limit == 0 { usize::MAX } else { limit };
            let mut keep = |name: &str| kept.keeps(endpoint, name);
            let filtering = endpoint.keep.is_some() || endpoint.drop.is_some();
            let limits = exposition::Limits {
                max_samples: unlimited(endpoint.max_samples),
                max_labels: unlimited(endpoint.label_limit),
                max_label_value_bytes: unlimited(endpoint.label_value_length_limit),
                max_label_name_bytes: unlimited(endpoint.label_name_length_limit),
                keep: if filtering { Some(&mut keep) } else { None },
            };
            let parsed =
                exposition::parse_with_limits(&page.body, format, limits).map_err(|error| {
                    match error.kind {
                        exposition::ErrorKind::TooManySamples => ScrapeError::SampleLimit {
                            limit: endpoint.max_samples,
                        },
                        exposition::ErrorKind::TooManyLabels => ScrapeError::LabelLimit {
                            limit: endpoint.label_limit,
                            error,
                        },
                        exposition::ErrorKind::LabelValueTooLong => ScrapeError::LabelValueLength {
                            limit: endpoint.label_value_length_limit,
                            error,
                        },
                        exposition::ErrorKind::LabelNameTooLong => ScrapeError::LabelNameLength {
                            limit: endpoint.label_name_length_limit,
                            error,
                        },
                        _ => ScrapeError::Parse {
                            format: match format {
                                Format::Text => "Prometheus text",
                                Format::OpenMetrics => "OpenMetrics",
                            },
                            error,
                        },
                    }
                })?;
            if parsed.duplicates > 0 {
                problems.push(format!(
                    "{} duplicate series dropped (the first of each was kept)",
                    parsed.duplicates
                ));
            }
            Ok(Content::Exposition(parsed))
        }
        EndpointFormat::Json => {
            let media = page.content_type.split(';').next().unwrap_or("").trim();
            if !(media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")) {
                return Err(ScrapeError::ContentType(page.content_type.clone()));
            }
            let document = json_answer::parse(&page.body, json_answer::MAX_VALUES)
                .map_err(|e| ScrapeError::Json(e.to_string()))?;
            let mut builder = BatchBuilder::new();
            let mut writer = builder.replace(Source::new(SourceKind::Endpoint, ""));
            if let Some(json) = &endpoint.json {
                json.write(&document, now_ms, &mut writer, problems);
            }
            Ok(Content::Json(builder.build()))
        }
    }
}

/// How many samples a page had and how many `keep` and `drop` left, with the decision for each
/// sample name remembered (a family has a handful of names; the regular expressions run once per
/// name, not once per sample).
#[derive(Default)]
struct Kept {
    scraped: usize,
    kept: usize,
    decisions: std::collections::HashMap<String, bool>,
}

/// Decisions remembered at most: a page of a million distinct names must not make a million
/// entries (past this, names are matched each time).
const MAX_DECISIONS: usize = 4096;

impl Kept {
    /// Whether a sample named `name` survives `keep` and `drop`.
    fn keeps(&mut self, endpoint: &Endpoint, name: &str) -> bool {
        if endpoint.keep.is_none() && endpoint.drop.is_none() {
            return true;
        }
        if let Some(&decision) = self.decisions.get(name) {
            return decision;
        }
        let decision = endpoint.keeps(name);
        if self.decisions.len() < MAX_DECISIONS {
            self.decisions.insert(name.to_owned(), decision);
        }
        decision
    }

    /// Counts the page's samples and fails when more than `max_samples` are kept (a Prometheus
    /// page's parse has kept only those and stopped at the limit already).
    fn count(&mut self, endpoint: &Endpoint, content: &Content<'_>) -> Result<(), ScrapeError> {
        match content {
            Content::Exposition(page) => {
                self.kept = page.sample_count();
                self.scraped = self.kept + page.filtered;
            }
            Content::Json(batch) => {
                for update in batch.updates() {
                    if let Update::Replace { samples, .. } = update {
                        for sample in samples.iter() {
                            self.scraped += 1;
                            if self
                                .keeps(endpoint, &json_name(sample.family().name, sample.suffix()))
                            {
                                self.kept += 1;
                            }
                        }
                    }
                }
            }
        }
        if endpoint.max_samples > 0 && self.kept > endpoint.max_samples {
            return Err(ScrapeError::SampleLimit {
                limit: endpoint.max_samples,
            });
        }
        Ok(())
    }
}

/// The metric name of a JSON sample of `family` with `suffix`.
fn json_name(family: &str, suffix: Suffix) -> String {
    format!("{family}{}", suffix.as_str())
}

/// The labels every sample of the target carries: `job`, `instance`, the entry's labels, the
/// discovered object's labels.
fn target_labels(endpoint: &Endpoint, target: &Target) -> Vec<(String, String)> {
    let mut labels = vec![
        ("job".to_owned(), endpoint.name.clone()),
        ("instance".to_owned(), target.instance.clone()),
    ];
    for (name, value) in endpoint.labels.iter().chain(&target.labels) {
        if !labels.iter().any(|(n, _)| n == name) {
            labels.push((name.clone(), value.clone()));
        }
    }
    labels
}

/// Writes the kept samples with the target's labels first; a scraped label with the name of a
/// target label is renamed `exported_<name>`.
fn write_samples(
    endpoint: &Endpoint,
    content: &Content<'_>,
    target: &[(String, String)],
    now_ms: i64,
    kept: &mut Kept,
    writer: &mut ReplaceWriter<'_>,
) {
    let mut exported = String::new();
    let mut write = |writer: &mut ReplaceWriter<'_>,
                     family: FamilyId,
                     suffix: Suffix,
                     value: f64,
                     timestamp_ms: i64,
                     labels: &mut dyn Iterator<Item = (&str, &str)>| {
        let mut sample = writer.sample(family, suffix, value, timestamp_ms);
        sample.labels(target.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        for (name, value) in labels {
            if target.iter().any(|(n, _)| n == name) {
                exported.clear();
                exported.push_str("exported_");
                exported.push_str(name);
                sample.label(&exported, value);
            } else {
                sample.label(name, value);
            }
        }
    };
    match content {
        Content::Exposition(page) => {
            // The parse kept only what `keep` and `drop` let through.
            for family in &page.families {
                let mut id = None;
                for sample in &family.samples {
                    let id = *id.get_or_insert_with(|| {
                        writer.family(Family {
                            name: family.name,
                            help: &family.help,
                            unit: family.unit,
                            kind: family.kind,
                        })
                    });
                    write(
                        writer,
                        id,
                        sample.suffix,
                        sample.value,
                        sample.timestamp_ms.unwrap_or(now_ms),
                        &mut sample.labels.iter().map(|(n, v)| (&**n, &**v)),
                    );
                }
            }
        }
        Content::Json(batch) => {
            for update in batch.updates() {
                let Update::Replace { samples, .. } = update else {
                    continue;
                };
                for sample in samples.iter() {
                    let family = sample.family();
                    if !kept.keeps(endpoint, &json_name(family.name, sample.suffix())) {
                        continue;
                    }
                    let id = writer.family(family);
                    write(
                        writer,
                        id,
                        sample.suffix(),
                        sample.value(),
                        sample.timestamp_ms(),
                        &mut sample.labels(),
                    );
                }
            }
        }
    }
}
