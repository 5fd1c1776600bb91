//! The gzipped series of the current state, made of pieces kept from earlier states, so that a
//! gzip scrape compresses only what changed since the last one.
//!
//! Every real Prometheus asks for gzip. Compressing a 25 MB page costs tens of milliseconds of
//! CPU (`benches/page.rs`), so a gzip body is assembled from *pieces*, each a raw deflate stream
//! ended by a sync flush (byte-aligned, no final block, as `pigz` joins its pieces; a new stream
//! refers to nothing before it, so pieces can follow each other in any order):
//! - a family's header lines are one piece;
//! - a family group's lines are cut into pieces where a *chunk* of sources starts: a source starts
//!   one when the hash of its id is a multiple of [`SOURCES_PER_CHUNK`], so chunks stay where
//!   they are when sources come and go, and a change to one source leaves every other chunk's
//!   pieces as they were.
//!
//! A piece is known by a fingerprint of what it holds: the family group and the serial of every
//! block in it ([`crate::block::Block::serial`]; a block never changes once made), or the header
//! lines themselves. A body of a new state reuses every piece whose fingerprint it finds and
//! compresses the rest, decompressing only the blocks they hold. The fingerprint is a 64-bit
//! SipHash: two different pieces would share one with a chance of about 2^-64 per comparison.
//!
//! The page's end (the exporter's own metrics) changes at each scrape: a body is the gzip header
//! and every piece, kept per state and format, then at each scrape the end deflated on its own and
//! the trailer, whose CRC-32 is the pieces' combined with the end's ([`finish`]). The whole is one
//! gzip member (RFC 1952), which every client reads.
//!
//! Bounded: bodies of the current state only ([`crate::state::Published::set`] forgets them), and
//! the pieces the last body used.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::format::Format;
use crate::render::{self, Part, bucket};
use crate::state::State;
use crate::stats::Stats;

/// A source starts a chunk when the hash of its id is a multiple of this: chunks of 32 sources
/// on average. Smaller chunks compress worse (each piece starts with no history); larger ones
/// are recompressed more often. `benches/page.rs` (10k VMIs, 27 MB page), at [`LEVEL`]: 0.96 MB
/// on the wire; 1 % of the sources changed recompresses three pieces in ten. With 64 sources the
/// body was 6 % smaller and 1 % of the sources changed recompressed half the pieces.
pub const SOURCES_PER_CHUNK: u64 = 32;

/// The compression level of the pieces. Level 1 (zlib-rs' quick deflate, static Huffman codes)
/// made bodies 35 % larger (1.31 MB) for the same CPU within the benchmark's noise; level 6
/// (kube-state-metrics' and Go's default) made them 0.87 MB for three to five times the CPU.
const LEVEL: u32 = 2;

/// The gzip bodies of the current state, by format, and the pieces they are made of.
#[derive(Debug, Default)]
pub struct GzipPages {
    bodies: Mutex<Vec<GzipPage>>,
    /// The pieces of the last body made; held while a body is made, so concurrent scrapes of a
    /// new state make it once.
    pieces: Mutex<Pieces>,
    /// Scrapes served from a kept body.
    reused: AtomicU64,
    /// Pieces compressed.
    compressed: AtomicU64,
}

#[derive(Debug)]
struct GzipPage {
    /// Held weakly: the state's allocation stays while the entry does, so its address is not
    /// reused by another state.
    state: Weak<State>,
    format: Format,
    series: Arc<Deflated>,
}

/// Kept pieces by fingerprint, and the compressor they are made with.
#[derive(Default)]
struct Pieces {
    kept: HashMap<u64, Arc<Piece>>,
    compress: Option<Compress>,
}

impl std::fmt::Debug for Pieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pieces")
            .field("kept", &self.kept.len())
            .finish()
    }
}

/// Raw deflate ended by a sync flush, with the CRC-32 and length of what it holds.
#[derive(Debug)]
struct Piece {
    bytes: Box<[u8]>,
    crc: Crc,
}

/// The start of a gzip member: its header and the deflated series, with their CRC.
#[derive(Debug)]
pub struct Deflated {
    /// The gzip header, then raw deflate ended by a sync flush.
    pub bytes: Bytes,
    /// The CRC-32 and length of what was deflated.
    crc: Crc,
}

/// The lines of one family group within one chunk of sources, as the layout finds them.
#[derive(Clone)]
struct Sketch {
    chunk: u32,
    fingerprint: DefaultHasher,
}

impl GzipPages {
    /// The gzip header and deflated series of `state` in `format`: the kept ones, or made from
    /// kept and new pieces and kept while `state` is current. A new body counts as a render in
    /// `stats`.
    pub fn series(
        &self,
        state: &Arc<State>,
        format: Format,
        stats: &Stats,
    ) -> std::io::Result<Arc<Deflated>> {
        let mut pieces = self.pieces.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = self.kept(state, format) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(kept);
        }
        let start = Instant::now();
        let layout = render::layout(state, format);
        let (order, made) = pieces.make(state, &layout.parts)?;
        self.compressed.fetch_add(made, Ordering::Relaxed);
        let mut bytes = GZIP_HEADER.to_vec();
        bytes.reserve(order.iter().map(|p| p.bytes.len()).sum());
        let mut crc = Crc::new();
        for piece in &order {
            bytes.extend_from_slice(&piece.bytes);
            crc.combine(&piece.crc);
        }
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.rendered(micros, layout.rendered.conflicts);
        let deflated = Arc::new(Deflated {
            bytes: Bytes::from(bytes),
            crc,
        });
        let mut bodies = self.bodies.lock().unwrap_or_else(PoisonError::into_inner);
        bodies.retain(|page| page.state.as_ptr() == Arc::as_ptr(state));
        bodies.push(GzipPage {
            state: Arc::downgrade(state),
            format,
            series: deflated.clone(),
        });
        Ok(deflated)
    }

    /// Forgets every body: a new state is published. The pieces stay for the next body.
    pub fn forget(&self) {
        let old = std::mem::take(&mut *self.bodies.lock().unwrap_or_else(PoisonError::into_inner));
        drop(old);
    }

    fn kept(&self, state: &Arc<State>, format: Format) -> Option<Arc<Deflated>> {
        self.bodies
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

    /// How many pieces were compressed (the others were reused).
    pub fn compressed(&self) -> u64 {
        self.compressed.load(Ordering::Relaxed)
    }

    /// How many bodies are kept.
    pub fn len(&self) -> usize {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no body is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pieces {
    /// The pieces of the page laid out as `parts`, in order, kept from before or compressed now
    /// (how many were is the second value). Only the pieces used here are kept afterwards.
    fn make(&mut self, state: &State, parts: &[Part]) -> std::io::Result<(Vec<Arc<Piece>>, u64)> {
        // Each family group's pieces, chunk after chunk, and each source's chunk.
        let buckets = state.families().len() * crate::block::GROUPS;
        let mut sketches: Vec<Vec<Sketch>> = vec![Vec::new(); buckets];
        let mut chunks = Vec::with_capacity(usize::try_from(state.source_count()).unwrap_or(0));
        let mut chunk = 0u32;
        for (i, (id, block)) in state.sources().enumerate() {
            if i > 0 && starts_chunk(id) {
                chunk += 1;
            }
            chunks.push(chunk);
            for segment in block.segments.iter() {
                let bucket = bucket(segment);
                let Some(list) = sketches.get_mut(bucket) else {
                    continue;
                };
                if list.last().is_none_or(|s| s.chunk != chunk) {
                    let mut fingerprint = DefaultHasher::new();
                    (b'l', bucket).hash(&mut fingerprint);
                    list.push(Sketch { chunk, fingerprint });
                }
                if let Some(sketch) = list.last_mut() {
                    sketch.fingerprint.write_u64(block.serial());
                }
            }
        }
        let fingerprints: Vec<Vec<u64>> = sketches
            .iter()
            .map(|list| list.iter().map(|s| s.fingerprint.finish()).collect())
            .collect();

        // The lines of every piece not kept, from the blocks that hold them.
        let mut missing: Vec<Vec<Option<Vec<u8>>>> = fingerprints
            .iter()
            .map(|list| {
                list.iter()
                    .map(|f| (!self.kept.contains_key(f)).then(Vec::new))
                    .collect()
            })
            .collect();
        let shown: Vec<bool> = {
            let mut shown = vec![false; buckets];
            for part in parts {
                if let Part::Lines { bucket, .. } = part {
                    shown[*bucket] = true;
                }
            }
            shown
        };
        let mut cursor = vec![0usize; buckets];
        let mut text = Vec::new();
        for ((_, block), chunk) in state.sources().zip(&chunks) {
            let mut read = false;
            for segment in block.segments.iter() {
                let bucket = bucket(segment);
                if !shown.get(bucket).copied().unwrap_or(false) {
                    continue;
                }
                let (Some(list), Some(lines)) = (sketches.get(bucket), missing.get_mut(bucket))
                else {
                    continue;
                };
                let at = &mut cursor[bucket];
                while list.get(*at).is_some_and(|s| s.chunk < *chunk) {
                    *at += 1;
                }
                if let Some(Some(piece)) = lines.get_mut(*at) {
                    if !read {
                        block.text_into(&mut text);
                        read = true;
                    }
                    piece.extend_from_slice(text.get(segment.range()).unwrap_or_default());
                }
            }
        }

        let compress = self
            .compress
            .get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        let mut kept = HashMap::with_capacity(self.kept.len());
        let mut order = Vec::new();
        let mut made = 0;
        let mut take = |fingerprint: u64, lines: Option<&[u8]>| -> std::io::Result<()> {
            let piece = match (self.kept.get(&fingerprint), lines) {
                (Some(piece), _) => piece.clone(),
                (None, lines) => {
                    let lines = lines.unwrap_or_default();
                    let mut bytes = Vec::new();
                    deflate(compress, lines, FlushCompress::Sync, &mut bytes)?;
                    let mut crc = Crc::new();
                    crc.update(lines);
                    made += 1;
                    Arc::new(Piece {
                        bytes: bytes.into_boxed_slice(),
                        crc,
                    })
                }
            };
            kept.insert(fingerprint, piece.clone());
            order.push(piece);
            Ok(())
        };
        for part in parts {
            match part {
                Part::Header(lines) => {
                    let mut fingerprint = DefaultHasher::new();
                    (b'h', lines).hash(&mut fingerprint);
                    take(fingerprint.finish(), Some(lines))?;
                }
                Part::Lines { bucket, .. } => {
                    let (Some(list), Some(lines)) =
                        (fingerprints.get(*bucket), missing.get(*bucket))
                    else {
                        continue;
                    };
                    for (fingerprint, piece) in list.iter().zip(lines) {
                        take(*fingerprint, piece.as_deref())?;
                    }
                }
            }
        }
        self.kept = kept;
        Ok((order, made))
    }
}

/// Whether source `id` starts a chunk (see [`SOURCES_PER_CHUNK`]).
fn starts_chunk(id: &str) -> bool {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish().is_multiple_of(SOURCES_PER_CHUNK)
}

/// A gzip header: deflate, no name or time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The rest of the gzip member that starts with `start`: `end` deflated (with the final block),
/// then the trailer.
pub fn finish(start: &Deflated, end: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(end.len() / 2 + 64);
    let mut compress = Compress::new(Compression::fast(), false);
    deflate(&mut compress, end, FlushCompress::Finish, &mut out)?;
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

/// Appends `input` as a new raw deflate stream to `out`, ended by `flush`: `Sync` to append more deflate after it, `Finish` to
/// end. `compress` is reset first, so the stream refers to nothing before it.
fn deflate(
    compress: &mut Compress,
    input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    compress.reset();
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

    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    use super::*;
    use crate::render::render_series;
    use crate::state::{Ingest, Options};

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

    /// `state` with sources `range` replaced: two families, a value per source of `value`.
    fn replaced(state: &State, range: std::ops::Range<usize>, value: f64) -> Arc<State> {
        let mut b = BatchBuilder::new();
        let up = b.family(Family {
            name: "vm_up",
            help: "Up.",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let phase = b.family(Family {
            name: "vm_phase",
            help: "Phase.",
            unit: "",
            kind: FamilyKind::StateSet,
        });
        for i in range {
            let id = format!("ns/vm-{i:05}");
            let mut r = b.replace(Source::new(SourceKind::Object, &id));
            r.sample(up, Suffix::None, value, 0).label("name", &id);
            for p in ["Running", "Pending", "Failed"] {
                r.sample(phase, Suffix::None, f64::from(p == "Running"), 0)
                    .label("name", &id)
                    .label("vm_phase", p);
            }
        }
        let mut next = state.clone();
        let options = Options::default();
        next.apply(&b.build(), &mut Ingest::new(&options, false, 0));
        Arc::new(next)
    }

    fn plain(state: &State, format: Format) -> Vec<u8> {
        let mut out = Vec::new();
        render_series(state, format, &mut out);
        out
    }

    #[test]
    fn a_body_is_made_once_per_state_and_format_and_reads_as_the_plain_page() {
        let pages = GzipPages::default();
        let stats = Stats::default();
        let state = replaced(&State::default(), 0..300, 1.0);
        let first = pages.series(&state, Format::Text, &stats).unwrap();
        let second = pages.series(&state, Format::Text, &stats).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the kept body");
        assert_eq!(pages.reused(), 1);
        let om = Format::OpenMetrics { v0_0_1: false };
        let third = pages.series(&state, om, &stats).unwrap();
        assert_eq!(pages.len(), 2);
        for (body_start, format, end) in [
            (&first, Format::Text, &b""[..]),
            (&first, Format::Text, b"scrapes 1\n"),
            (&third, om, b"scrapes 2\n# EOF\n"),
        ] {
            let expected: Vec<u8> = plain(&state, format)
                .into_iter()
                .chain(end.iter().copied())
                .collect();
            assert_eq!(gunzip(&body(body_start, end)), expected);
        }
        // A new state: the bodies of the old one go.
        let newer = replaced(&state, 0..1, 2.0);
        pages.series(&newer, Format::Text, &stats).unwrap();
        assert_eq!(pages.len(), 1);
        pages.forget();
        assert!(pages.is_empty());
        let empty = pages
            .series(&Arc::new(State::default()), om, &stats)
            .unwrap();
        assert_eq!(gunzip(&body(&empty, b"# EOF\n")), b"# EOF\n");
    }

    #[test]
    fn a_change_to_one_source_compresses_only_the_pieces_of_its_chunk() {
        let pages = GzipPages::default();
        let stats = Stats::default();
        let state = replaced(&State::default(), 0..5000, 1.0);
        pages.series(&state, Format::Text, &stats).unwrap();
        let all = pages.compressed();
        // Two headers and two family groups cut into chunks of about 64 sources.
        assert!(all > 2 + 2 * 30, "{all} pieces");

        let changed = replaced(&state, 1234..1235, 7.0);
        let start = pages.series(&changed, Format::Text, &stats).unwrap();
        // The chunk holding the source, in each of the two families.
        assert_eq!(pages.compressed() - all, 2);
        assert_eq!(gunzip(&body(&start, b"")), plain(&changed, Format::Text));

        // Sources come and go: the body is still the page, and most pieces are kept.
        let before = pages.compressed();
        let mut grown = replaced(&changed, 5000..5010, 1.0);
        let mut shrunk = (*grown).clone();
        let mut b = BatchBuilder::new();
        b.remove(Source::new(SourceKind::Object, "ns/vm-00007"));
        shrunk.apply(&b.build(), &mut Ingest::new(&Options::default(), false, 0));
        grown = Arc::new(shrunk);
        let start = pages.series(&grown, Format::Text, &stats).unwrap();
        assert_eq!(
            gunzip(&body(&start, b"x 1\n")),
            [plain(&grown, Format::Text), b"x 1\n".to_vec()].concat()
        );
        assert!(
            pages.compressed() - before <= 2 * 3,
            "{} pieces",
            pages.compressed() - before
        );
    }
}
