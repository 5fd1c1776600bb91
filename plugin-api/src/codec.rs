//! A compact binary form of a [`Batch`], for queues that keep batches on disk.
//!
//! The form is the arena itself, little-endian: the string buffer, then each record table. Decoding
//! checks everything a corrupt or foreign file could get wrong — UTF-8, every span and index within
//! bounds, every enum value known — so a bad record is an error, never a panic or a wrong view.

use crate::batch::{
    Batch, FamilyKind, FamilyRaw, LabelRaw, SampleRaw, SourceKind, SourceRaw, Span, Suffix,
    UpdateKind, UpdateRaw,
};

const MAGIC: &[u8; 4] = b"PSB1";

/// Why bytes are not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid encoded batch: {0}")]
pub struct DecodeError(String);

impl Batch {
    /// Appends the binary form of the batch to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.byte_size() + 32);
        out.extend_from_slice(MAGIC);
        put_len(out, self.text.len());
        out.extend_from_slice(self.text.as_bytes());
        put_len(out, self.families.len());
        for f in self.families.iter() {
            put_span(out, f.name);
            put_span(out, f.help);
            put_span(out, f.unit);
            out.push(f.kind as u8);
        }
        put_len(out, self.updates.len());
        for u in self.updates.iter() {
            out.push(u.kind as u8);
            out.push(u.source.kind as u8);
            for span in [
                u.source.id,
                u.source.api_version,
                u.source.object_kind,
                u.source.namespace,
                u.source.name,
                u.source.uid,
            ] {
                put_span(out, span);
            }
            put_u32(out, u.first_sample);
            put_u32(out, u.sample_count);
        }
        put_len(out, self.samples.len());
        for s in self.samples.iter() {
            put_u32(out, s.family);
            out.push(s.suffix as u8);
            put_u32(out, s.first_label);
            put_u32(out, s.label_count);
            out.extend_from_slice(&s.value.to_bits().to_le_bytes());
            out.extend_from_slice(&s.timestamp_ms.to_le_bytes());
        }
        put_len(out, self.labels.len());
        for l in self.labels.iter() {
            put_span(out, l.name);
            put_span(out, l.value);
        }
    }

    /// Reads a batch written by [`Batch::encode`], checking it completely.
    pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(DecodeError("wrong magic".into()));
        }
        let text_len = r.len()?;
        let text = std::str::from_utf8(r.take(text_len)?)
            .map_err(|e| DecodeError(format!("text is not UTF-8: {e}")))?
            .to_owned();
        let span = |r: &mut Reader<'_>| -> Result<Span, DecodeError> {
            let s = Span {
                start: r.u32()?,
                len: r.u32()?,
            };
            let (start, end) = (s.start as usize, s.start as usize + s.len as usize);
            if end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                return Err(DecodeError(format!("span {start}..{end} outside the text")));
            }
            Ok(s)
        };
        let mut families = Vec::new();
        for _ in 0..r.len()? {
            families.push(FamilyRaw {
                name: span(&mut r)?,
                help: span(&mut r)?,
                unit: span(&mut r)?,
                kind: family_kind(r.u8()?)?,
            });
        }
        let mut updates = Vec::new();
        for _ in 0..r.len()? {
            let kind = match r.u8()? {
                0 => UpdateKind::Replace,
                1 => UpdateKind::Remove,
                other => return Err(DecodeError(format!("unknown update kind {other}"))),
            };
            let source_kind = match r.u8()? {
                0 => SourceKind::Object,
                1 => SourceKind::Endpoint,
                2 => SourceKind::Aggregate,
                other => return Err(DecodeError(format!("unknown source kind {other}"))),
            };
            let source = SourceRaw {
                kind: source_kind,
                id: span(&mut r)?,
                api_version: span(&mut r)?,
                object_kind: span(&mut r)?,
                namespace: span(&mut r)?,
                name: span(&mut r)?,
                uid: span(&mut r)?,
            };
            updates.push(UpdateRaw {
                kind,
                source,
                first_sample: r.u32()?,
                sample_count: r.u32()?,
            });
        }
        let mut samples = Vec::new();
        for _ in 0..r.len()? {
            samples.push(SampleRaw {
                family: r.u32()?,
                suffix: suffix(r.u8()?)?,
                first_label: r.u32()?,
                label_count: r.u32()?,
                value: f64::from_bits(r.u64()?),
                timestamp_ms: r.u64()? as i64,
            });
        }
        let mut labels = Vec::new();
        for _ in 0..r.len()? {
            labels.push(LabelRaw {
                name: span(&mut r)?,
                value: span(&mut r)?,
            });
        }
        if r.at != bytes.len() {
            return Err(DecodeError(format!(
                "{} bytes after the batch",
                bytes.len() - r.at
            )));
        }
        for u in &updates {
            if u.first_sample as usize + u.sample_count as usize > samples.len() {
                return Err(DecodeError(
                    "an update's samples lie outside the batch".into(),
                ));
            }
        }
        for s in &samples {
            if s.family as usize >= families.len() {
                return Err(DecodeError(format!(
                    "sample of unknown family {}",
                    s.family
                )));
            }
            if s.first_label as usize + s.label_count as usize > labels.len() {
                return Err(DecodeError(
                    "a sample's labels lie outside the batch".into(),
                ));
            }
        }
        Ok(Batch {
            text: text.into(),
            families: families.into(),
            updates: updates.into(),
            samples: samples.into(),
            labels: labels.into(),
        })
    }
}

fn family_kind(v: u8) -> Result<FamilyKind, DecodeError> {
    Ok(match v {
        0 => FamilyKind::Gauge,
        1 => FamilyKind::Counter,
        2 => FamilyKind::Info,
        3 => FamilyKind::StateSet,
        4 => FamilyKind::Histogram,
        5 => FamilyKind::Summary,
        6 => FamilyKind::GaugeHistogram,
        7 => FamilyKind::Unknown,
        other => return Err(DecodeError(format!("unknown family kind {other}"))),
    })
}

fn suffix(v: u8) -> Result<Suffix, DecodeError> {
    Ok(match v {
        0 => Suffix::None,
        1 => Suffix::Total,
        2 => Suffix::Created,
        3 => Suffix::Bucket,
        4 => Suffix::Count,
        5 => Suffix::Sum,
        6 => Suffix::Info,
        7 => Suffix::GCount,
        8 => Suffix::GSum,
        other => return Err(DecodeError(format!("unknown suffix {other}"))),
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Batches hold at most 4G of anything (see `batch::to_u32`).
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_span(out: &mut Vec<u8>, s: Span) {
    put_u32(out, s.start);
    put_u32(out, s.len);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| DecodeError("truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A count, refused when it cannot possibly fit in what is left (a corrupt length must not
    /// make the decoder allocate gigabytes).
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() - self.at {
            return Err(DecodeError(format!("a count of {n} exceeds what is left")));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use crate::Batch;
    use crate::batch::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    fn sample_batch() -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "vm_phase",
            help: "Phase.",
            unit: "",
            kind: FamilyKind::StateSet,
        });
        let mut r = b.replace(Source {
            kind: SourceKind::Object,
            id: "ns/vm1",
            api_version: "kubevirt.io/v1",
            object_kind: "VirtualMachineInstance",
            namespace: "ns",
            name: "vm1",
            uid: "u-1",
        });
        r.sample(f, Suffix::None, 1.0, 42)
            .label("phase", "Running")
            .label("node", "nöde-1");
        r.sample(f, Suffix::None, f64::NAN, 42)
            .label("phase", "Pending");
        b.remove(Source::new(SourceKind::Aggregate, "aggregate:x"));
        b.build()
    }

    #[test]
    fn a_batch_survives_encoding() {
        let batch = sample_batch();
        let mut bytes = Vec::new();
        batch.encode(&mut bytes);
        let back = Batch::decode(&bytes).unwrap();
        assert!(back.same_content(&batch));
        assert_eq!(format!("{back:?}"), format!("{batch:?}"));
        assert_eq!(back.sample_count(), 2);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_valid_batch_never_a_panic() {
        let mut bytes = Vec::new();
        sample_batch().encode(&mut bytes);
        for n in 0..bytes.len() {
            assert!(Batch::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                if let Ok(batch) = Batch::decode(&bad) {
                    // Whatever decodes must be readable through the views without panicking.
                    let _ = format!("{batch:?}");
                }
            }
        }
    }
}
