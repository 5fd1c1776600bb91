//! Batch → CSV rows (RFC 4180): `timestamp_ms,source_id,metric,labels,value`.
//!
//! - one row per sample of a `Replace`; a `Replace` without samples writes nothing;
//! - one row per `Remove`, stamped now, with metric `-` and an empty value;
//! - labels as `name=value;name=value`, in the sample's order;
//! - values as Rust prints them, NaN and infinities as `NaN`, `+Inf`, `-Inf`;
//! - a field holding a comma, a quote or a line break is quoted, its quotes doubled.

use std::fmt::Write as _;

use periscope_plugin_api::{Batch, Sample, Update};

/// The header row.
pub const HEADER: &str = "timestamp_ms,source_id,metric,labels,value\r\n";

/// Appends a row for every sample and every removal in `batch` to `out`.
///
/// `now_ms` stamps the rows of removals, which carry no timestamp of their own.
pub fn encode_batch(batch: &Batch, now_ms: i64, out: &mut String) {
    for update in batch.updates() {
        match update {
            Update::Replace { source, samples } => {
                for sample in samples.iter() {
                    let row = [
                        &sample.timestamp_ms().to_string(),
                        source.id,
                        &sample.metric_name(),
                        &labels(&sample),
                        &value(sample.value()),
                    ];
                    write_row(out, &row);
                }
            }
            Update::Remove { source } => {
                write_row(out, &[&now_ms.to_string(), source.id, "-", "", ""]);
            }
        }
    }
}

/// Writes one row, quoting the fields that need it; rows end with CRLF as RFC 4180 says.
fn write_row(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

fn labels(sample: &Sample<'_>) -> String {
    let mut text = String::new();
    for (i, (name, value)) in sample.labels().enumerate() {
        if i > 0 {
            text.push(';');
        }
        let _ = write!(text, "{name}={value}");
    }
    text
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    fn encode(batch: &Batch) -> String {
        let mut out = String::new();
        encode_batch(batch, 42, &mut out);
        out
    }

    #[test]
    fn samples_and_removals_become_rows() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "vm_restarts",
            help: "",
            unit: "",
            kind: FamilyKind::Counter,
        });
        let mut r = b.replace(Source::new(SourceKind::Object, "default/vm1"));
        r.sample(f, Suffix::Total, 3.0, 1000)
            .label("node", "n1")
            .label("zone", "a");
        r.sample(f, Suffix::Created, f64::NAN, 1000);
        b.remove(Source::new(SourceKind::Object, "default/vm2"));
        assert_eq!(
            encode(&b.build()),
            "1000,default/vm1,vm_restarts_total,node=n1;zone=a,3\r\n\
             1000,default/vm1,vm_restarts_created,,NaN\r\n\
             42,default/vm2,-,,\r\n"
        );
    }

    #[test]
    fn fields_with_commas_quotes_or_newlines_are_quoted() {
        let mut out = String::new();
        write_row(&mut out, &["a,b", "say \"hi\"", "two\nlines", "plain"]);
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",plain\r\n");
    }

    #[test]
    fn an_empty_replace_writes_nothing() {
        let mut b = BatchBuilder::new();
        b.replace(Source::new(SourceKind::Object, "o"));
        assert_eq!(encode(&b.build()), "");
    }
}
