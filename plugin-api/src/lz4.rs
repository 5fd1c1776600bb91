//! LZ4 blocks with their length in front, as [`decompress`] reads them, for state kept
//! compressed in memory: in the host, a watch's objects and the collector's last update of each
//! source; in the Prometheus exporter, every source's rendered lines. [`Compressor`] compresses
//! through one buffer reused for every call, so a kept block costs a single allocation of exactly
//! its compressed size (LZ4's own `compress_prepend_size` allocates the worst case and keeps it as
//! capacity).

pub use lz4_flex::block::DecompressError;

/// Compresses into a reused buffer.
#[derive(Debug, Default)]
pub struct Compressor {
    buffer: Vec<u8>,
}

impl Compressor {
    /// `bytes` as an LZ4 block with its length in front.
    pub fn compress(&mut self, bytes: &[u8]) -> Box<[u8]> {
        let bound = lz4_flex::block::get_maximum_output_size(bytes.len());
        self.buffer.resize(4 + bound, 0);
        // What the host keeps is far below 4 GiB: the input limits stop it long before.
        let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buffer[..4].copy_from_slice(&length.to_le_bytes());
        // Within the maximum output size compressing cannot fail.
        let written =
            lz4_flex::block::compress_into(bytes, &mut self.buffer[4..]).unwrap_or_default();
        Box::from(&self.buffer[..4 + written])
    }
}

/// The bytes of a block [`Compressor::compress`] made.
pub fn decompress(block: &[u8]) -> Result<Vec<u8>, DecompressError> {
    lz4_flex::decompress_size_prepended(block)
}

/// The bytes of a block [`Compressor::compress`] made, written over `out` (reused, so that
/// reading many blocks allocates once).
pub fn decompress_into(block: &[u8], out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let (length, compressed) = block
        .split_first_chunk::<4>()
        .ok_or(DecompressError::ExpectedAnotherByte)?;
    out.clear();
    out.resize(u32::from_le_bytes(*length) as usize, 0);
    let written = lz4_flex::block::decompress_into(compressed, out)?;
    out.truncate(written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_decompresses_to_its_bytes_whatever_came_before() {
        let mut compressor = Compressor::default();
        let big = "y".repeat(5000);
        let block = compressor.compress(big.as_bytes());
        assert!(block.len() < 100, "{} bytes", block.len());
        assert_eq!(decompress(&block).unwrap(), big.as_bytes());
        // The buffer is reused: a smaller input after a bigger one is exact too.
        let block = compressor.compress(b"small");
        assert_eq!(decompress(&block).unwrap(), b"small");
        let mut out = b"left over from before".to_vec();
        decompress_into(&block, &mut out).unwrap();
        assert_eq!(out, b"small");
        assert!(decompress_into(&[1, 0], &mut out).is_err(), "no length");
    }
}
