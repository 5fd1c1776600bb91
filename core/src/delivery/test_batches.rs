//! Batches for the queue tests: one gauge sample of one source, and a way to read its value back.

use std::sync::Arc;

use periscope_plugin_api::{
    Batch, BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix, Update,
};

/// A batch replacing source `id` with one sample of `value`.
pub fn batch_of(id: &str, value: f64) -> Arc<Batch> {
    let mut b = BatchBuilder::new();
    let f = b.family(Family {
        name: "x",
        help: "",
        unit: "",
        kind: FamilyKind::Gauge,
    });
    b.replace(Source::new(SourceKind::Object, id))
        .sample(f, Suffix::None, value, 0);
    Arc::new(b.build())
}

/// A batch replacing source `s` with one sample of `value`.
pub fn batch(value: f64) -> Arc<Batch> {
    batch_of("s", value)
}

/// The value of the first sample of the first update (NaN if there is none).
pub fn value(b: &Batch) -> f64 {
    match b.updates().next() {
        Some(Update::Replace { samples, .. }) => {
            samples.iter().next().map_or(f64::NAN, |s| s.value())
        }
        _ => f64::NAN,
    }
}
