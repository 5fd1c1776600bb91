//! The queue's two cursors, and the `ack` file that keeps one of them across restarts.
//!
//! The [`ReadCursor`] is where the next record is taken from, by a pop or a `drop_oldest` drop.
//! The [`AckCursor`] is where a restart replays from: the records it lists as pending, then every
//! record from its position on. It only moves to where the read cursor is, and lists every
//! record taken but not delivered (the export in flight) as pending, so a batch in the delivery
//! thread's hands is never acknowledged, even when drops move the cursors past it.
//!
//! The `ack` file: the position (segment `u64`, offset `u64`), then for each pending record its
//! position, payload length (`u32`) and sample count (`u32`); little-endian.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

use tracing::error;

use super::segment::{self, Located, Position, RecordMeta};

/// Bytes of the position at the start of the `ack` file.
const POSITION: usize = 16;
/// Bytes of one pending record in the `ack` file.
const PENDING: usize = 24;

/// Where the next record is taken: every record before it was handed out (popped or dropped),
/// except those a restart left pending, which are taken first.
#[derive(Debug)]
pub(super) struct ReadCursor(Position);

/// Where a restart replays from: the pending records (handed out, not delivered), then every
/// record from the position on. Kept in the `ack` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AckCursor {
    position: Position,
    pending: Vec<Located>,
}

impl ReadCursor {
    /// Where it is.
    pub fn position(&self) -> Position {
        self.0
    }

    /// Moves forward to `to` (past a record taken, or from a finished segment to the next).
    pub fn advance(&mut self, to: Position) {
        self.0 = self.0.max(to);
    }
}

impl AckCursor {
    /// The cursor of a queue with nothing acknowledged yet.
    fn start() -> AckCursor {
        AckCursor {
            position: Position {
                segment: 0,
                offset: 0,
            },
            pending: Vec::new(),
        }
    }

    /// Both cursors where a restart resumes: at `position`, with `pending` to be replayed first.
    pub fn resume(position: Position, pending: Vec<Located>) -> (ReadCursor, AckCursor) {
        (ReadCursor(position), AckCursor { position, pending })
    }

    /// Where it is.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The records before the position that are not delivered.
    pub fn pending(&self) -> &[Located] {
        &self.pending
    }

    /// Moves to the read cursor, keeping `pending` (every record taken and not delivered, and
    /// every record before the read cursor not taken yet) for a restart; whether it changed.
    pub fn catch_up(&mut self, read: &ReadCursor, pending: Vec<Located>) -> bool {
        debug_assert!(pending.iter().all(|r| r.at < read.0));
        let next = AckCursor {
            position: read.0,
            pending,
        };
        let changed = *self != next;
        *self = next;
        changed
    }

    /// Writes the cursor to `dir/ack` (write, sync, rename, sync the directory when `sync`).
    pub fn store(&self, dir: &Path, sync: bool) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(POSITION + PENDING * self.pending.len());
        put_position(&mut bytes, self.position);
        for record in &self.pending {
            put_position(&mut bytes, record.at);
            bytes.extend_from_slice(&record.meta.payload.to_le_bytes());
            bytes.extend_from_slice(&record.meta.samples.to_le_bytes());
        }
        let tmp = dir.join("ack.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        if sync {
            file.sync_data()?;
        }
        fs::rename(&tmp, dir.join("ack"))?;
        if sync {
            segment::sync_dir(dir)?;
        }
        Ok(())
    }

    /// The cursor the `ack` file in `dir` holds; the queue's start when there is none, or it is
    /// damaged (logged: everything still on disk is replayed).
    pub fn load(dir: &Path) -> AckCursor {
        let Ok(bytes) = fs::read(dir.join("ack")) else {
            return AckCursor::start();
        };
        if bytes.len() < POSITION || !(bytes.len() - POSITION).is_multiple_of(PENDING) {
            error!(dir = %dir.display(), "disk queue ack file is damaged; replaying from the oldest segment");
            return AckCursor::start();
        }
        let (position, rest) = bytes.split_at(POSITION);
        AckCursor {
            position: get_position(position),
            pending: rest
                .chunks_exact(PENDING)
                .map(|chunk| Located {
                    at: get_position(&chunk[..POSITION]),
                    meta: RecordMeta {
                        payload: get_u32(&chunk[16..20]),
                        samples: get_u32(&chunk[20..24]),
                    },
                })
                .collect(),
        }
    }
}

fn put_position(out: &mut Vec<u8>, position: Position) {
    out.extend_from_slice(&position.segment.to_le_bytes());
    out.extend_from_slice(&position.offset.to_le_bytes());
}

/// The position in 16 bytes.
fn get_position(bytes: &[u8]) -> Position {
    let mut segment = [0u8; 8];
    let mut offset = [0u8; 8];
    segment.copy_from_slice(&bytes[..8]);
    offset.copy_from_slice(&bytes[8..16]);
    Position {
        segment: u64::from_le_bytes(segment),
        offset: u64::from_le_bytes(offset),
    }
}

/// The `u32` in 4 bytes.
fn get_u32(bytes: &[u8]) -> u32 {
    let mut value = [0u8; 4];
    value.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(value)
}
