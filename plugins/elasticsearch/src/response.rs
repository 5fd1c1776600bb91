//! Reading a `_bulk` response: every item is checked, since a `200` can still carry per-item
//! failures (`"errors": true`).
//!
//! A `create` answered `409 version_conflict_engine_exception` is a document the node already
//! holds: in a time series data stream the `_id` comes from the dimensions and the timestamp, so
//! a retried sample (or one replayed from a disk queue) meets its first copy. It counts as stored.

use serde::Deserialize;

/// A `_bulk` response body (the parts the exporter reads).
#[derive(Debug, Deserialize)]
pub struct BulkResponse {
    /// Whether any item failed.
    #[serde(default)]
    pub errors: bool,
    /// One entry per operation, in request order.
    #[serde(default)]
    pub items: Vec<std::collections::HashMap<String, Item>>,
}

/// The result of one operation.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// The document id.
    #[serde(rename = "_id", default)]
    pub id: Option<String>,
    /// The operation's HTTP status.
    pub status: u16,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<ItemError>,
}

/// An item's error.
#[derive(Debug, Deserialize)]
pub struct ItemError {
    /// The exception type (`document_parsing_exception`).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The message.
    #[serde(default)]
    pub reason: String,
}

/// What a `_bulk` response means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every item was indexed, or was already there.
    Indexed {
        /// How many items were already there (a 409 version conflict: sent before).
        already_stored: usize,
    },
    /// Some item hit a 429 or a 5xx: send the whole batch again (ids make that safe).
    Retry {
        /// How many items asked for it.
        items: usize,
        /// The first such item's error.
        first: String,
    },
    /// No item needs a retry, but these items were refused for good; the others are indexed.
    Rejected(Vec<Rejection>),
}

/// One item the node refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The item's position in the request.
    pub position: usize,
    /// The document id.
    pub id: String,
    /// The status.
    pub status: u16,
    /// `type: reason` from the node.
    pub error: String,
}

/// Whether an item's failure means the node already holds that document (see the module docs).
fn already_stored(status: u16, error: Option<&ItemError>) -> bool {
    status == 409 && error.is_some_and(|e| e.kind == "version_conflict_engine_exception")
}

/// Whether an item (or request) status asks for the same request to be sent again.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// A `_bulk` response that does not say what happened to each operation.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// Not the JSON of a `_bulk` response (a proxy's error page, say).
    #[error("unreadable _bulk response ({source}): {start}")]
    Unreadable {
        /// Why.
        source: serde_json::Error,
        /// The first 500 bytes of the body.
        start: String,
    },
    /// Not one item per operation.
    #[error("the _bulk response has {items} items for {sent} operations")]
    ItemCount {
        /// Items in the response.
        items: usize,
        /// Operations sent.
        sent: usize,
    },
    /// An item without an action.
    #[error("item {0} of the _bulk response is empty")]
    EmptyItem(usize),
}

/// Classifies a `_bulk` response of a request with `sent` operations.
pub fn classify(body: &[u8], sent: usize) -> Result<Outcome, ResponseError> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|source| ResponseError::Unreadable {
            source,
            start: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
        })?;
    if response.items.len() != sent {
        return Err(ResponseError::ItemCount {
            items: response.items.len(),
            sent,
        });
    }
    let mut retry = 0;
    let mut stored_before = 0;
    let mut first_retry = String::new();
    let mut rejected = Vec::new();
    for (position, item) in response.items.iter().enumerate() {
        let Some(item) = item.values().next() else {
            return Err(ResponseError::EmptyItem(position));
        };
        if (200..300).contains(&item.status) {
            continue;
        }
        if already_stored(item.status, item.error.as_ref()) {
            stored_before += 1;
            continue;
        }
        let error = item.error.as_ref().map_or_else(
            || format!("status {}", item.status),
            |e| format!("{}: {}", e.kind, e.reason),
        );
        if is_retryable(item.status) {
            if retry == 0 {
                first_retry = error;
            }
            retry += 1;
        } else {
            rejected.push(Rejection {
                position,
                id: item.id.clone().unwrap_or_default(),
                status: item.status,
                error,
            });
        }
    }
    Ok(if retry > 0 {
        Outcome::Retry {
            items: retry,
            first: first_retry,
        }
    } else if rejected.is_empty() {
        Outcome::Indexed {
            already_stored: stored_before,
        }
    } else {
        Outcome::Rejected(rejected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: u16, error: Option<&str>) -> String {
        let error = error.map_or(String::new(), |e| {
            format!(r#","error":{{"type":"{e}","reason":"{e} happened"}}"#)
        });
        format!(r#"{{"index":{{"_index":"p","_id":"{id}","status":{status}{error}}}}}"#)
    }

    fn body(errors: bool, items: &[String]) -> Vec<u8> {
        format!(
            r#"{{"took":3,"errors":{errors},"items":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn all_created_or_updated_is_indexed() {
        let b = body(false, &[item("a", 201, None), item("b", 200, None)]);
        assert_eq!(
            classify(&b, 2).unwrap(),
            Outcome::Indexed { already_stored: 0 }
        );
    }

    #[test]
    fn a_create_that_meets_its_first_copy_is_stored() {
        // As the 8.19 node answered a second `create` of one sample into a time series data stream.
        let b = br#"{"errors":true,"took":811,"items":[
            {"create":{"_index":".ds-metrics-periscope.kubevirt-default-2026.11.29-000001","_id":"r46zFle5ts260LniAAABoil0-vA","_version":1,"result":"created","status":201}},
            {"create":{"_index":".ds-metrics-periscope.kubevirt-default-2026.11.29-000001","_id":"r46zFle5ts260LniAAABoil0-vA","status":409,"error":{"type":"version_conflict_engine_exception",
              "reason":"[r46zFle5ts260LniAAABoil0-vA][LJR0vN@2026-11-29T22:37:42.000Z]: version conflict, document already exists (current version [1])"}}}]}"#;
        assert_eq!(
            classify(b, 2).unwrap(),
            Outcome::Indexed { already_stored: 1 }
        );
        // Another 409 is not a copy.
        let b = body(true, &[item("a", 409, Some("other_conflict"))]);
        assert!(matches!(classify(&b, 1).unwrap(), Outcome::Rejected(_)));
    }

    #[test]
    fn a_mapping_conflict_rejects_that_item_only() {
        // As the 8.19 node answered (tests/search-node/README.md).
        let b = br#"{"errors":true,"took":5,"items":[
            {"index":{"_index":"pods","_id":"p1","_version":1,"result":"created","status":201}},
            {"index":{"_index":"pods","_id":"p2","status":400,"error":{"type":"document_parsing_exception",
              "reason":"[1:13] failed to parse field [restarts] of type [long] in document with id 'p2'. Preview of field's value: 'many'"}}}]}"#;
        match classify(b, 2).unwrap() {
            Outcome::Rejected(r) => {
                assert_eq!(r.len(), 1);
                assert_eq!(
                    (r[0].position, r[0].id.as_str(), r[0].status),
                    (1, "p2", 400)
                );
                assert!(r[0].error.starts_with(
                    "document_parsing_exception: [1:13] failed to parse field [restarts]"
                ));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_429_or_5xx_item_retries_the_batch_even_beside_rejections() {
        let b = body(
            true,
            &[
                item("a", 201, None),
                item("b", 400, Some("mapper_parsing_exception")),
                item("c", 429, Some("es_rejected_execution_exception")),
                item("d", 503, Some("unavailable_shards_exception")),
            ],
        );
        assert_eq!(
            classify(&b, 4).unwrap(),
            Outcome::Retry {
                items: 2,
                first: "es_rejected_execution_exception: es_rejected_execution_exception happened"
                    .into()
            }
        );
    }

    #[test]
    fn a_response_that_does_not_match_the_request_is_an_error() {
        assert!(matches!(
            classify(&body(false, &[item("a", 201, None)]), 2),
            Err(ResponseError::ItemCount { items: 1, sent: 2 })
        ));
        assert!(
            classify(b"<html>proxy error</html>", 1)
                .unwrap_err()
                .to_string()
                .contains("proxy error")
        );
    }

    #[test]
    fn retryable_statuses() {
        assert!(is_retryable(429) && is_retryable(500) && is_retryable(503));
        assert!(!is_retryable(400) && !is_retryable(404) && !is_retryable(409));
    }
}
