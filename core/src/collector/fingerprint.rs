//! A source update's fingerprint: 64 bits that stand for what the update says, so that the
//! collector can skip an update that changes nothing without keeping the last one.
//!
//! It hashes what [`Batch::same_content`] compares (the source, then each sample's family,
//! suffix, value bits and labels, in order), never the timestamps, with the standard library's
//! SipHash-1-3 under fixed keys. Two different updates of a source have the same fingerprint with
//! a probability of about 2⁻⁶⁴ per update; the one that collides is then taken for unchanged and
//! not sent, until the source changes again. That is far below any other cause of a lost update
//! (for comparison: 10⁶ changes a second for a thousand years make ~2⁻³⁵ of them), so the
//! collector does not confirm a match with a copy. Not a defence against updates crafted to
//! collide: a source's samples come from the cluster and config the host reads.

use std::hash::{DefaultHasher, Hash, Hasher};

use periscope_plugin_api::{Batch, Update};

/// The fingerprint of `batch`'s content (timestamps left out).
pub(super) fn of(batch: &Batch) -> u64 {
    let mut hasher = DefaultHasher::new();
    for update in batch.updates() {
        match update {
            Update::Remove { source } => {
                0u8.hash(&mut hasher);
                source.hash(&mut hasher);
            }
            Update::Replace { source, samples } => {
                1u8.hash(&mut hasher);
                source.hash(&mut hasher);
                samples.len().hash(&mut hasher);
                for sample in samples.iter() {
                    sample.family().hash(&mut hasher);
                    sample.suffix().hash(&mut hasher);
                    sample.value().to_bits().hash(&mut hasher);
                    let labels = sample.labels();
                    labels.len().hash(&mut hasher);
                    for (name, value) in labels {
                        name.hash(&mut hasher);
                        value.hash(&mut hasher);
                    }
                }
            }
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    fn vm(value: f64, timestamp_ms: i64, node: &str) -> Batch {
        let mut builder = BatchBuilder::new();
        let mut writer = builder.replace(Source::new(SourceKind::Object, "ns/vm"));
        let family = writer.family(Family {
            name: "kubevirt_vmi_info",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        writer
            .sample(family, Suffix::None, value, timestamp_ms)
            .label("node", node);
        builder.build()
    }

    #[test]
    fn the_same_content_at_another_time_has_the_same_fingerprint_and_any_change_another() {
        assert_eq!(of(&vm(1.0, 1, "a")), of(&vm(1.0, 2, "a")));
        assert_ne!(of(&vm(1.0, 1, "a")), of(&vm(2.0, 1, "a")));
        assert_ne!(of(&vm(1.0, 1, "a")), of(&vm(1.0, 1, "b")));
        assert_eq!(of(&vm(f64::NAN, 1, "a")), of(&vm(f64::NAN, 1, "a")));
    }

    #[test]
    fn labels_cannot_shift_into_each_other() {
        let with = |labels: &[(&str, &str)]| {
            let mut builder = BatchBuilder::new();
            let mut writer = builder.replace(Source::new(SourceKind::Object, "s"));
            let family = writer.family(Family {
                name: "x",
                help: "",
                unit: "",
                kind: FamilyKind::Gauge,
            });
            writer
                .sample(family, Suffix::None, 1.0, 0)
                .labels(labels.iter().copied());
            of(&builder.build())
        };
        assert_ne!(with(&[("a", "bc")]), with(&[("ab", "c")]));
        assert_ne!(with(&[("a", "b"), ("c", "d")]), with(&[("a", "b")]));
    }
}
