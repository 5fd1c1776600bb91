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
use tracing::error;

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

/// The numbers of the segments in `dir`, oldest first.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
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

/// Checks the records of segment `number` from `start` and cuts the file after the last valid
/// one (a torn or corrupt record ends the segment: logged and counted, never a crash).
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
        match check(&bytes[at..]) {
            Some(meta) => {
                records.push(Located {
                    at: Position {
                        segment: number,
                        offset: at as u64,
                    },
                    meta,
                });
                at += HEADER + meta.payload as usize;
            }
            None => {
                error!(
                    segment = %path.display(),
                    offset = at,
                    lost_bytes = bytes.len() - at,
                    "disk queue segment is torn or corrupt here; cutting it and going on"
                );
                metrics.queue_corrupt_records.inc();
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

/// The record at the start of `bytes`, if it is whole and valid.
fn check(bytes: &[u8]) -> Option<RecordMeta> {
    let header = bytes.get(..HEADER)?;
    let payload = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let samples = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(payload as usize)?)?;
    (crc32fast::hash(body) == crc && Batch::decode(body).is_ok())
        .then_some(RecordMeta { payload, samples })
}
