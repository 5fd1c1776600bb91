//! Segment files and the record format inside them.
//!
//! A segment is a run of whole records, each `[payload length u32][CRC-32 of payload u32]
//! [samples u32][payload]` (little-endian), the payload being [`Batch::encode`]'s form. Segments
//! are named `NNNNNNNNNNNNNNNNNNNN.seg` after their number, which only grows.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use periscope_plugin_api::Batch;
use periscope_plugin_api::codec::DecodeError;
use tracing::{error, warn};

use crate::telemetry::ExporterMetrics;

/// Bytes before a record's payload.
pub(super) const HEADER: usize = 12;

/// A place in the queue: a segment and a byte offset in it. Positions order as the records do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    /// The segment's number.
    pub segment: u64,
    /// Bytes from the segment's start.
    pub offset: u64,
}

/// What the queue keeps in memory of a record: enough to find, read and count it without
/// touching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordMeta {
    /// The payload's length (the record is [`HEADER`] bytes longer).
    pub payload: u32,
    /// Samples in the batch.
    pub samples: u32,
}

impl RecordMeta {
    /// The record's size on disk.
    pub fn size(self) -> u64 {
        HEADER as u64 + u64::from(self.payload)
    }
}

/// A record and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Located {
    /// Where the record starts.
    pub at: Position,
    /// Its size and samples.
    pub meta: RecordMeta,
}

impl Located {
    /// Where the record ends (and the next one in its segment starts).
    pub fn end(&self) -> Position {
        Position {
            segment: self.at.segment,
            offset: self.at.offset + self.meta.size(),
        }
    }
}

/// Why a record could not be read back.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    /// The file could not be read.
    #[error("cannot read the record: {0}")]
    Io(#[from] io::Error),
    /// The header does not describe the record the queue wrote there.
    #[error("the record's header does not match what was written")]
    Header,
    /// The payload is not what was written.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload is not a batch.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The record's segment is gone, or shorter than the record.
    #[error("the record is no longer in its segment")]
    Missing,
}

/// A record ready to be appended: header and payload in one buffer.
pub(super) struct Record {
    bytes: Vec<u8>,
    meta: RecordMeta,
}

impl Record {
    /// Frames `batch` as a record; `None` if its payload is too large for the format (4 GiB).
    pub fn frame(batch: &Batch) -> Option<Record> {
        let mut bytes = vec![0u8; HEADER];
        batch.encode(&mut bytes);
        let payload = u32::try_from(bytes.len() - HEADER).ok()?;
        let samples = u32::try_from(batch.sample_count()).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(&bytes[HEADER..]);
        bytes[0..4].copy_from_slice(&payload.to_le_bytes());
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        bytes[8..12].copy_from_slice(&samples.to_le_bytes());
        Some(Record {
            bytes,
            meta: RecordMeta { payload, samples },
        })
    }

    /// The bytes to append.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its size and sample count.
    pub fn meta(&self) -> RecordMeta {
        self.meta
    }
}

/// The path of segment `number` in `dir`.
pub(super) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.seg"))
}

/// The numbers of the segments in `dir`, oldest first. Only regular files named exactly as
/// [`path`] names them count; anything else ending in `.seg` (`5.seg`, a directory) is foreign:
/// warned about, left alone, never read or deleted.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        let number = stem
            .parse::<u64>()
            .ok()
            .filter(|n| format!("{n:020}") == stem);
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        match number {
            Some(number) if regular => numbers.push(number),
            _ => warn!(
                entry = %entry.path().display(),
                "a foreign entry in the disk queue directory (not a segment file this queue \
                 wrote); ignored"
            ),
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Opens segment `number` for appending, creating it if needed; a new file's name is made
/// durable (the directory synced) when `sync` is set.
pub(super) fn open_for_append(dir: &Path, number: u64, sync: bool) -> io::Result<File> {
    let path = path(dir, number);
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    if sync && !existed {
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Makes the names in `dir` (created, renamed or removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads back the record `meta` describes at `offset` of `file`, checking its header and checksum.
pub(super) fn read(file: &File, offset: u64, meta: RecordMeta) -> Result<Batch, RecordError> {
    let mut bytes = vec![0u8; HEADER + meta.payload as usize];
    file.read_exact_at(&mut bytes, offset)?;
    let (header, payload) = bytes.split_at(HEADER);
    if header[0..4] != meta.payload.to_le_bytes() || header[8..12] != meta.samples.to_le_bytes() {
        return Err(RecordError::Header);
    }
    if header[4..8] != crc32fast::hash(payload).to_le_bytes() {
        return Err(RecordError::Checksum);
    }
    Ok(Batch::decode(payload)?)
}

/// What [`scan`] found in a segment.
pub(super) struct Scan {
    /// The end of the last whole, valid record: the segment's size from now on.
    pub end: u64,
    /// The records from the scan's start, in order.
    pub records: Vec<Located>,
}

/// Checks the records of segment `number` from `start`. A corrupt record is skipped: the scan
/// resynchronises at the next valid record, so one bad record loses only itself. A torn or
/// corrupt tail (no valid record after it) is cut off the file. Each loss is logged and counted
/// (`queue_corrupt_records`, and the samples its header still tells as `dropped{corrupt}`);
/// never a crash.
pub(super) fn scan(
    dir: &Path,
    number: u64,
    start: u64,
    metrics: &ExporterMetrics,
) -> io::Result<Scan> {
    let path = path(dir, number);
    let bytes = fs::read(&path)?;
    let mut at = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let mut records = Vec::new();
    while at < bytes.len() {
        if let Some(meta) = check(&bytes[at..]) {
            records.push(Located {
                at: Position {
                    segment: number,
                    offset: at as u64,
                },
                meta,
            });
            at += HEADER + meta.payload as usize;
            continue;
        }
        if let Some(size) = hole(&bytes[at..]) {
            // Left by an earlier scan (below): counted then already.
            at += size;
            continue;
        }
        if torn_hole(&bytes[at..]) {
            // The end of a hole lost in a crash: nothing that was not counted already.
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(at as u64)?;
            break;
        }
        let next = (at + 1..bytes.len())
            .find(|&o| check(&bytes[o..]).is_some() || hole(&bytes[o..]).is_some());
        let lost = &bytes[at..next.unwrap_or(bytes.len())];
        metrics.queue_corrupt_records.inc();
        let samples = lost_samples(lost, next.is_none());
        metrics.dropped_corrupt.inc_by(u64::from(samples));
        match next {
            Some(next) => {
                error!(
                    segment = %path.display(),
                    offset = at,
                    lost_bytes = next - at,
                    "disk queue record is corrupt; skipped to the next valid record"
                );
                // Overwritten with a hole, so that the next start skips it without counting it
                // again.
                if let Some(hole) = hole_bytes(next - at) {
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .write_all_at(&hole, at as u64)?;
                }
                at = next;
            }
            None => {
                error!(
                    segment = %path.display(),
                    offset = at,
                    lost_bytes = bytes.len() - at,
                    "disk queue segment is torn or corrupt from here to its end; cut off"
                );
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(at as u64)?;
                break;
            }
        }
    }
    Ok(Scan {
        end: at as u64,
        records,
    })
}

/// The sample-count field of a hole: no record says it has this many samples and a zeroed payload.
const HOLE: [u8; 4] = *b"HOLE";

/// A hole of `size` bytes: a header marked [`HOLE`] with the checksum of a zeroed payload, then
/// the zeroed payload. `None` when `size` cannot hold a header.
fn hole_bytes(size: usize) -> Option<Vec<u8>> {
    let payload = u32::try_from(size.checked_sub(HEADER)?).ok()?;
    let mut bytes = vec![0u8; size];
    bytes[0..4].copy_from_slice(&payload.to_le_bytes());
    let crc = crc32fast::hash(&bytes[HEADER..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    bytes[8..12].copy_from_slice(&HOLE);
    Some(bytes)
}

/// The size of the hole at the start of `bytes`, if there is one (see [`hole_bytes`]).
fn hole(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..HEADER)?;
    let payload = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let body = bytes.get(HEADER..HEADER.checked_add(payload)?)?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    (header[8..12] == HOLE && body.iter().all(|b| *b == 0) && crc32fast::hash(body) == crc)
        .then_some(HEADER + payload)
}

/// Whether `tail` (the rest of a segment) is a hole cut short: its header, then zeros up to the end.
fn torn_hole(tail: &[u8]) -> bool {
    tail.get(8..HEADER).is_some_and(|marker| marker == HOLE)
        && tail[HEADER..].iter().all(|b| *b == 0)
}

/// The samples of the one record that `lost` (bytes between two valid records, or up to a
/// segment's end: a `tail`) held, when its header is whole and its length fits what was lost: a
/// damaged payload, or a torn write at the tail. 0 when the header itself is damaged (nothing
/// trustworthy to count).
fn lost_samples(lost: &[u8], tail: bool) -> u32 {
    let Some(header) = lost.get(..HEADER) else {
        return 0;
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let size = HEADER as u64 + u64::from(word(0));
    let fits = size == lost.len() as u64 || (tail && size > lost.len() as u64);
    if fits { word(8) } else { 0 }
}

/// The record at the start of `bytes`, if it is whole and valid.
pub(super) fn check(bytes: &[u8]) -> Option<RecordMeta> {
    let header = bytes.get(..HEADER)?;
    let payload = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let samples = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(payload as usize)?)?;
    (crc32fast::hash(body) == crc && Batch::decode(body).is_ok())
        .then_some(RecordMeta { payload, samples })
}
