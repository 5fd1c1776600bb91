//! Batch → one `_bulk` request: an `index` operation with an explicit `_id` per document.

use elasticsearch::{BulkOperation, BulkOperations};
use periscope_plugin_api::{Batch, Update};

use crate::document::{Document, IndexPattern};

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
    /// The document id.
    pub id: String,
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
    /// `id (what): error`.
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

/// Builds the request for every sample and removal in `batch`; removals are stamped `now_ms`.
pub fn build(batch: &Batch, index: &IndexPattern, now_ms: i64) -> BulkRequest {
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
            Update::Remove { source } => {
                Box::new(std::iter::once((None, Document::remove(source, now_ms))))
            }
        };
        for (sample, doc) in documents {
            let position = Position {
                update: update_position,
                sample,
            };
            let id = doc.id();
            let index_name = match &last_index {
                Some((ts, name)) if *ts == doc.timestamp_ms => Ok(name.clone()),
                _ => index.name(doc.timestamp_ms),
            };
            let pushed = index_name.map_err(|e| e.to_string()).and_then(|name| {
                last_index = Some((doc.timestamp_ms, name.clone()));
                let body = doc.body().map_err(|e| e.to_string())?;
                request
                    .body
                    .push(BulkOperation::index(body).id(id.as_str()).index(name))
                    .map_err(|e| e.to_string())
            });
            match pushed {
                Ok(()) => request.sent.push(Sent {
                    id,
                    what: doc.describe(),
                    position,
                }),
                Err(error) => request.unsendable.push(Unsendable {
                    position,
                    reason: format!("{id} ({}): {error}", doc.describe()),
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
        let request = build(&batch, &IndexPattern::new("p-%Y.%m.%d").unwrap(), 0);
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
        assert_eq!(lines[0]["index"]["_id"], request.sent[0].id.as_str());
        assert_eq!(lines[1]["value"], 1.0);
        assert_eq!(lines[2]["index"]["_index"], "p-2025.11.26");
        assert_eq!(lines[3]["labels"]["x"], "y");
        assert_eq!(lines[4]["index"]["_index"], "p-1970.01.01");
        assert_eq!(lines[5]["op"], "remove");
        assert_eq!(request.sent[2].what, "e2 (remove)");
    }
}
