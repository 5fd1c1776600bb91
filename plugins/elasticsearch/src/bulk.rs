//! Batch → one `_bulk` request: an `index` operation with an explicit `_id` per document.

use elasticsearch::{BulkOperation, BulkOperations};
use periscope_plugin_api::{Batch, Update};

use crate::document::{Document, IndexPattern};

/// One operation of the request, for reading its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The document id.
    pub id: String,
    /// Source id and metric, for error messages.
    pub what: String,
}

/// A `_bulk` request built from a batch.
pub struct BulkRequest {
    /// The NDJSON body.
    pub body: BulkOperations,
    /// One entry per operation, in order.
    pub sent: Vec<Sent>,
    /// Documents that could not even be written (a timestamp out of range): the node never sees
    /// them, and the export reports them as rejected.
    pub unsendable: Vec<String>,
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
    for update in batch.updates() {
        let documents: Box<dyn Iterator<Item = Document<'_>>> = match update {
            Update::Replace { source, samples } => {
                Box::new(samples.iter().map(move |s| Document::sample(source, s)))
            }
            Update::Remove { source } => {
                Box::new(std::iter::once(Document::remove(source, now_ms)))
            }
        };
        for doc in documents {
            let id = doc.id();
            let index_name = match &last_index {
                Some((ts, name)) if *ts == doc.timestamp_ms => Ok(name.clone()),
                _ => index.name(doc.timestamp_ms),
            };
            let pushed = index_name.and_then(|name| {
                last_index = Some((doc.timestamp_ms, name.clone()));
                let body = doc.body()?;
                request
                    .body
                    .push(BulkOperation::index(body).id(id.as_str()).index(name))
                    .map_err(|e| e.to_string())
            });
            match pushed {
                Ok(()) => request.sent.push(Sent {
                    id,
                    what: doc.describe(),
                }),
                Err(error) => request
                    .unsendable
                    .push(format!("{id} ({}): {error}", doc.describe())),
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
            request.unsendable[0].contains("out of range"),
            "{:?}",
            request.unsendable
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
