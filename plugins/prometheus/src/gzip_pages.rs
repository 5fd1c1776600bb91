//! The gzipped series of the current state, kept so that gzip scrapes do not recompress an
//! unchanged page.
//!
//! Every real Prometheus asks for gzip. Compressing a 25 MB page costs tens of milliseconds of
//! CPU, so a gzip scrape of a state already compressed in the same format reuses that body.
//!
//! The page's end (the exporter's own metrics) changes at each scrape, so a body is made of two
//! parts and is still one gzip member (RFC 1952), which every client reads, not only those that
//! read several members: the kept part is the gzip header and the series as raw deflate ended by
//! a sync flush (byte-aligned, no final block, as `pigz` joins its pieces); the part made at
//! each scrape is the page's end deflated on its own (a new deflate stream refers to nothing
//! before it, so appending its blocks is valid), then the trailer, whose CRC-32 is the kept
//! part's combined with the end's.
//!
//! Bounded: one body per format, of the current state only. [`crate::state::Published::set`]
//! forgets every body when it publishes a new state, so a stale body never outlives its state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::format::Format;
use crate::state::State;

/// The gzip members of the series of the current state, by format.
#[derive(Debug, Default)]
pub struct GzipPages {
    members: Mutex<Vec<GzipPage>>,
    /// Held while a body is compressed, so concurrent scrapes of a new state compress it once.
    compressing: Mutex<()>,
    /// Scrapes served from a kept body.
    reused: AtomicU64,
}

#[derive(Debug)]
struct GzipPage {
    /// Held weakly: the state's allocation stays while the entry does, so its address is not
    /// reused by another state.
    state: Weak<State>,
    format: Format,
    series: Arc<Deflated>,
}

/// The start of a gzip member: its header and the deflated series, with their CRC.
#[derive(Debug)]
pub struct Deflated {
    /// The gzip header, then raw deflate ended by a sync flush.
    pub bytes: Bytes,
    /// The CRC-32 and length of what was deflated.
    crc: Crc,
}

impl GzipPages {
    /// The gzip header and deflated series of `state` in `format`: the kept ones, or made from
    /// what `series` renders and kept while `state` is current.
    pub fn series(
        &self,
        state: &Arc<State>,
        format: Format,
        series: impl FnOnce() -> Bytes,
    ) -> std::io::Result<Arc<Deflated>> {
        let _compressing = self
            .compressing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = self.kept(state, format) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(kept);
        }
        let rendered = series();
        let mut bytes = GZIP_HEADER.to_vec();
        deflate(&rendered, FlushCompress::Sync, &mut bytes)?;
        let mut crc = Crc::new();
        crc.update(&rendered);
        drop(rendered);
        let deflated = Arc::new(Deflated {
            bytes: Bytes::from(bytes),
            crc,
        });
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.retain(|page| page.state.as_ptr() == Arc::as_ptr(state));
        members.push(GzipPage {
            state: Arc::downgrade(state),
            format,
            series: deflated.clone(),
        });
        Ok(deflated)
    }

    /// Forgets every body: a new state is published.
    pub fn forget(&self) {
        let old = std::mem::take(&mut *self.members.lock().unwrap_or_else(PoisonError::into_inner));
        drop(old);
    }

    fn kept(&self, state: &Arc<State>, format: Format) -> Option<Arc<Deflated>> {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|page| page.format == format && page.state.as_ptr() == Arc::as_ptr(state))
            .map(|page| page.series.clone())
    }

    /// How many scrapes were served from a kept body.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// How many bodies are kept.
    pub fn len(&self) -> usize {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no body is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A gzip header: deflate, no name or time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The rest of the gzip member that starts with `start`: `end` deflated (with the final block),
/// then the trailer.
pub fn finish(start: &Deflated, end: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(end.len() / 2 + 64);
    deflate(end, FlushCompress::Finish, &mut out)?;
    let mut end_crc = Crc::new();
    end_crc.update(end);
    // The CRC of nothing, combined with the start's then the end's: the whole member's.
    let mut crc = Crc::new();
    crc.combine(&start.crc);
    crc.combine(&end_crc);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    Ok(Bytes::from(out))
}

/// Appends `input` as raw deflate at the fastest level (pages are large and compress well even
/// so) to `out`, ended by `flush`: `Sync` to append more deflate after it, `Finish` to end.
fn deflate(input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut compress = Compress::new(Compression::fast(), false);
    out.reserve(input.len() / 8 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = compress
            .compress_vec(rest, out, flush)
            .map_err(std::io::Error::other)?;
        let done = usize::try_from(compress.total_in()).unwrap_or(usize::MAX) == input.len()
            && out.len() < out.capacity();
        if status == Status::StreamEnd || (flush == FlushCompress::Sync && done) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Reads one gzip member only, so a body of several would fail the comparison.
    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn body(start: &Deflated, end: &[u8]) -> Vec<u8> {
        let mut body = start.bytes.to_vec();
        body.extend_from_slice(&finish(start, end).unwrap());
        body
    }

    #[test]
    fn a_body_is_compressed_once_per_state_and_format() {
        let pages = GzipPages::default();
        let state = Arc::new(State::default());
        let renders = std::cell::Cell::new(0);
        let render = || {
            renders.set(renders.get() + 1);
            Bytes::from_static(b"up 1\n")
        };
        let first = pages.series(&state, Format::Text, render).unwrap();
        let second = pages.series(&state, Format::Text, render).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the kept body");
        assert_eq!(pages.reused(), 1);
        pages
            .series(&state, Format::OpenMetrics { v0_0_1: false }, render)
            .unwrap();
        assert_eq!((renders.get(), pages.len()), (2, 2));
        // Another state: the bodies of the old one go.
        let newer = Arc::new(State::default());
        let third = pages.series(&newer, Format::Text, render).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
        assert_eq!((renders.get(), pages.len()), (3, 1));
        pages.forget();
        assert!(pages.is_empty());
    }

    #[test]
    fn a_kept_start_and_any_end_make_one_valid_member() {
        let pages = GzipPages::default();
        let state = Arc::new(State::default());
        // Long and repetitive, so deflate uses back-references and several blocks.
        let series: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("m{{pod=\"p{}\"}} {i}\n", i % 977).into_bytes())
            .collect();
        let start = pages
            .series(&state, Format::Text, || Bytes::from(series.clone()))
            .unwrap();
        for end in [&b""[..], b"scrapes 1\n", b"scrapes 2\n# EOF\n"] {
            let expected: Vec<u8> = series.iter().chain(end).copied().collect();
            assert_eq!(gunzip(&body(&start, end)), expected);
        }
        let empty = pages
            .series(&state, Format::OpenMetrics { v0_0_1: true }, Bytes::new)
            .unwrap();
        assert_eq!(gunzip(&body(&empty, b"# EOF\n")), b"# EOF\n");
    }
}
