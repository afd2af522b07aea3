//! How bodies are stored: compressed when it pays.

use super::*;

/// A body as written to `event_bodies.raw_body`.
///
/// Why compress: payloads are JSON, which LZ4 shrinks about 2.5 times for a
/// couple of microseconds (on the request worker, not the writer). Stored
/// as received, a 2 KB product takes a 4 KB page of its own (two do not fit
/// in one), so every delivery wrote a page of body to the WAL and again to
/// the database; compressed, four share a page. The bytes read back are
/// the received ones exactly.
pub(super) struct StoredBody {
    pub(super) codec: i64,
    pub(super) bytes: Vec<u8>,
}

/// `codec` of an LZ4 block with the decompressed size in front.
pub(super) const CODEC_LZ4: i64 = 1;
/// Bodies shorter than this are stored as received.
pub(super) const COMPRESS_FROM: usize = 256;

impl StoredBody {
    pub(super) fn encode(body: &[u8]) -> Option<Self> {
        if body.len() < COMPRESS_FROM {
            return None;
        }
        let bytes = lz4_flex::compress_prepend_size(body);
        // Only when it saves something worth a decompression on read.
        (bytes.len() < body.len() - body.len() / 8).then_some(Self {
            codec: CODEC_LZ4,
            bytes,
        })
    }

    pub(super) fn decode(codec: i64, bytes: Vec<u8>) -> rusqlite::Result<Bytes> {
        match codec {
            0 => Ok(Bytes::from(bytes)),
            CODEC_LZ4 => {
                // The size in front is allocated before anything is read:
                // a damaged row must not ask for 4 GiB. LZ4 cannot expand
                // a block more than 255 times.
                let claimed = bytes
                    .first_chunk::<4>()
                    .map_or(0, |n| u64::from(u32::from_le_bytes(*n)));
                let most = (bytes.len() as u64).saturating_mul(255);
                if claimed > most {
                    return Err(corrupt(format!(
                        "compressed body: claims {claimed} bytes from {}",
                        bytes.len()
                    )));
                }
                lz4_flex::decompress_size_prepended(&bytes)
                    .map(Bytes::from)
                    .map_err(|e| corrupt(format!("compressed body: {e}")))
            }
            other => Err(corrupt(format!("unknown body codec {other}"))),
        }
    }
}

pub(super) fn corrupt(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        12,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(message)),
    )
}
