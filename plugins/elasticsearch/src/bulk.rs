//! Batch → one `_bulk` request: in index mode an `index` operation with an explicit `_id` per
//! document, in data-stream mode a `create` operation — on Elasticsearch without an `_id` (the
//! node derives it from the dimensions and the timestamp), on OpenSearch, which has no time series
//! mode, with the exporter's deterministic one. Either way the node answers a second `create` of
//! the same sample with a 409.

use elasticsearch::{BulkOperation, BulkOperations};
use std::collections::HashMap;

use periscope_plugin_api::{Batch, Source, Update};

use crate::distribution::Distribution;
use crate::document::{Document, Shape};
use crate::target::Target;

/// Where a document came from in the batch: the update's position in `batch.updates()` and the
/// sample's position in that update (none for a removal), as the host addresses refused items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The update's position.
    pub update: usize,
    /// The sample's position in the update; `None` for the document of a `Remove`.
    pub sample: Option<usize>,
}

/// One operation of the request, for reading its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The document id, when the exporter sets it (not in an Elasticsearch data stream, where
    /// the node derives it).
    pub id: Option<String>,
    /// Source id and metric, for error messages.
    pub what: String,
    /// Where the document came from in the batch.
    pub position: Position,
}

/// A document that could not even be written into the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable {
    /// Where the document came from in the batch.
    pub position: Position,
    /// `what: error`.
    pub reason: String,
}

/// A `_bulk` request built from a batch.
pub struct BulkRequest {
    /// The NDJSON body.
    pub body: BulkOperations,
    /// One entry per operation, in order.
    pub sent: Vec<Sent>,
    /// Documents that could not even be written (a timestamp out of range): the node never sees
    /// them, and the export reports them as rejected.
    pub unsendable: Vec<Unsendable>,
}

/// The times removals are stamped with, kept while their batch is retried.
///
/// A removal has no time of its own: it is stamped when first sent. In a data stream its marker's
/// `_id` comes from that time, so a retry must send the same one, or a marker the node stored
/// before an answer was lost would be stored again at another time. The exporter clears the
/// stamps once a batch is done (delivered or refused). A process that dies meanwhile forgets
/// them: a removal replayed from a disk queue after a crash is stamped anew.
#[derive(Debug, Default)]
pub struct RemovalStamps {
    stamps: HashMap<(String, String), i64>,
}

impl RemovalStamps {
    /// The time of `source`'s removal: the one given first since the last [`Self::clear`].
    pub fn stamp(&mut self, source: Source<'_>, now_ms: i64) -> i64 {
        *self
            .stamps
            .entry((source.id.to_owned(), source.uid.to_owned()))
            .or_insert(now_ms)
    }

    /// Forgets every stamp: the batches that used them are done.
    pub fn clear(&mut self) {
        self.stamps.clear();
    }
}

/// Builds the request for every sample and removal in `batch` into `target` on `distribution`; a
/// removal is stamped by `stamps`, `now_ms` when it is new.
pub fn build(
    batch: &Batch,
    target: &Target,
    distribution: Distribution,
    stamps: &mut RemovalStamps,
    now_ms: i64,
) -> BulkRequest {
    let mut request = BulkRequest {
        body: BulkOperations::new(),
        sent: Vec::with_capacity(batch.sample_count() + batch.update_count()),
        unsendable: Vec::new(),
    };
    // The samples of one update share a timestamp: format its index name once.
    let mut last_index: Option<(i64, String)> = None;
    for (update_position, update) in batch.updates().enumerate() {
        let documents: Box<dyn Iterator<Item = (Option<usize>, Document<'_>)>> = match update {
            Update::Replace { source, samples } => Box::new(
                samples
                    .iter()
                    .enumerate()
                    .map(move |(i, s)| (Some(i), Document::sample(source, s))),
            ),
            Update::Remove { source } => Box::new(std::iter::once((
                None,
                Document::remove(source, stamps.stamp(source, now_ms)),
            ))),
        };
        for (sample, doc) in documents {
            let position = Position {
                update: update_position,
                sample,
            };
            let pushed = match target {
                Target::Index(index) => {
                    let id = doc.id();
                    let index_name = match &last_index {
                        Some((ts, name)) if *ts == doc.timestamp_ms => Ok(name.clone()),
                        _ => index.name(doc.timestamp_ms),
                    };
                    index_name
                        .map_err(|e| e.to_string())
                        .and_then(|name| {
                            last_index = Some((doc.timestamp_ms, name.clone()));
                            let body = doc.body(Shape::Plain).map_err(|e| e.to_string())?;
                            request
                                .body
                                .push(BulkOperation::index(body).id(id.as_str()).index(name))
                                .map_err(|e| e.to_string())
                        })
                        .map(|()| Some(id))
                }
                Target::DataStream(stream) => {
                    let id = match distribution {
                        Distribution::Elasticsearch => None,
                        Distribution::OpenSearch => Some(doc.id()),
                    };
                    doc.body(Shape::TimeSeries)
                        .map_err(|e| e.to_string())
                        .and_then(|body| {
                            let mut operation = BulkOperation::create(body).index(stream.name());
                            if let Some(id) = &id {
                                operation = operation.id(id.as_str());
                            }
                            request.body.push(operation).map_err(|e| e.to_string())
                        })
                        .map(|()| id)
                }
            };
            match pushed {
                Ok(id) => request.sent.push(Sent {
                    id,
                    what: doc.describe(),
                    position,
                }),
                Err(error) => request.unsendable.push(Unsendable {
                    position,
                    reason: format!("{}: {error}", doc.describe()),
                }),
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use elasticsearch::http::request::Body as _;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    #[test]
    fn one_index_operation_per_sample_and_removal() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source::new(SourceKind::Endpoint, "e1"));
        r.sample(f, Suffix::None, 1.0, 1_764_115_199_999);
        r.sample(f, Suffix::None, 2.0, 1_764_115_200_000)
            .label("x", "y");
        r.sample(f, Suffix::None, 3.0, i64::MAX);
        b.replace(Source::new(SourceKind::Endpoint, "empty"));
        b.remove(Source::new(SourceKind::Endpoint, "e2"));
        let batch = b.build();
        let index = Target::Index(crate::document::IndexPattern::new("p-%Y.%m.%d").unwrap());
        let request = build(
            &batch,
            &index,
            Distribution::Elasticsearch,
            &mut RemovalStamps::default(),
            0,
        );
        assert_eq!(request.sent.len(), 3);
        assert_eq!(request.unsendable.len(), 1);
        assert!(
            request.unsendable[0].reason.contains("out of range"),
            "{:?}",
            request.unsendable
        );
        // The third sample of the first update; the removal is the whole fourth update.
        assert_eq!(
            request.unsendable[0].position,
            Position {
                update: 0,
                sample: Some(2)
            }
        );
        assert_eq!(
            request.sent[1].position,
            Position {
                update: 0,
                sample: Some(1)
            }
        );
        assert_eq!(
            request.sent[2].position,
            Position {
                update: 2,
                sample: None
            }
        );
        let body = String::from_utf8(request.body.bytes().unwrap().to_vec()).unwrap();
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0]["index"]["_index"], "p-2025.11.25");
        assert_eq!(
            lines[0]["index"]["_id"],
            request.sent[0].id.as_deref().unwrap()
        );
        assert_eq!(lines[1]["value"], 1.0);
        assert_eq!(lines[2]["index"]["_index"], "p-2025.11.26");
        assert_eq!(lines[3]["labels"]["x"], "y");
        assert_eq!(lines[4]["index"]["_index"], "p-1970.01.01");
        assert_eq!(lines[5]["op"], "remove");
        assert_eq!(request.sent[2].what, "e2 (remove)");
    }

    #[test]
    fn a_data_stream_gets_create_operations_without_ids() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        b.replace(Source::new(SourceKind::Endpoint, "e1")).sample(
            f,
            Suffix::None,
            1.0,
            1_764_115_199_999,
        );
        b.remove(Source::new(SourceKind::Endpoint, "e2"));
        let batch = b.build();
        let stream = crate::target::DataStream::new(&crate::target::DataStreamConfig {
            dataset: "periscope.kubevirt".into(),
            namespace: "default".into(),
            retention: None,
            policy: None,
        })
        .unwrap();
        let target = Target::DataStream(stream);
        let mut stamps = RemovalStamps::default();
        let request = build(&batch, &target, Distribution::Elasticsearch, &mut stamps, 7);
        assert_eq!(request.sent.len(), 2);
        assert!(request.sent.iter().all(|s| s.id.is_none()));
        let body = String::from_utf8(request.body.bytes().unwrap().to_vec()).unwrap();
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"create": {"_index": "metrics-periscope.kubevirt-default"}})
        );
        assert_eq!(lines[1]["value"], 1.0);
        assert_eq!(lines[2], lines[0]);
        assert_eq!(lines[3]["metric"], "periscope_source_removed");
        assert_eq!(lines[3]["@timestamp"], "1970-01-01T00:00:00.007Z");
        // A retry later keeps the removal's time; once the batch is done, a new one gets a new.
        let marker_time = |stamps: &mut RemovalStamps, now| {
            let request = build(&batch, &target, Distribution::Elasticsearch, stamps, now);
            let body = String::from_utf8(request.body.bytes().unwrap().to_vec()).unwrap();
            let last: serde_json::Value =
                serde_json::from_str(body.lines().last().unwrap()).unwrap();
            last["@timestamp"].as_str().unwrap().to_owned()
        };
        assert_eq!(marker_time(&mut stamps, 9), "1970-01-01T00:00:00.007Z");
        stamps.clear();
        assert_eq!(marker_time(&mut stamps, 9), "1970-01-01T00:00:00.009Z");
    }

    #[test]
    fn on_opensearch_a_data_stream_gets_create_operations_with_deterministic_ids() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        b.replace(Source::new(SourceKind::Endpoint, "e1")).sample(
            f,
            Suffix::None,
            1.0,
            1_764_115_199_999,
        );
        b.remove(Source::new(SourceKind::Endpoint, "e2"));
        let batch = b.build();
        let stream = crate::target::DataStream::new(&crate::target::DataStreamConfig {
            dataset: "periscope".into(),
            namespace: "default".into(),
            retention: None,
            policy: None,
        })
        .unwrap();
        let target = Target::DataStream(stream);
        let first = build(
            &batch,
            &target,
            Distribution::OpenSearch,
            &mut RemovalStamps::default(),
            7,
        );
        // A removal replayed after a crash is stamped anew, yet keeps its id.
        let again = build(
            &batch,
            &target,
            Distribution::OpenSearch,
            &mut RemovalStamps::default(),
            9,
        );
        let ids: Vec<_> = first.sent.iter().map(|s| s.id.clone().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            again
                .sent
                .iter()
                .map(|s| s.id.clone().unwrap())
                .collect::<Vec<_>>(),
            ids
        );
        let body = String::from_utf8(first.body.bytes().unwrap().to_vec()).unwrap();
        let action: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(
            action,
            serde_json::json!({"create": {"_index": "metrics-periscope-default", "_id": ids[0]}})
        );
    }
}
