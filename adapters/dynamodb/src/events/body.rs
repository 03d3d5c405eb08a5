//! How an event's body is kept: zstd-compressed (level 3, with a frame checksum) inline in the
//! event item, or, past what one 400 KB item holds, in content-addressed chunk items.

use std::io::Write;

use relay_core::domain::event::{EventId, NewEvent};
use relay_core::ports::store::StoreError;
use sha2::{Digest, Sha256};

/// Largest compressed body (plus the event's other variable fields) kept inside the event
/// item; past it the body goes to chunk items. Leaves ~100 KB of the 400 KB item limit spare.
const INLINE_MAX: usize = 300_000;
/// Bytes of compressed body per chunk item: 350 KB of data plus a few hundred bytes of keys
/// stays under the 400 KB (409,600 bytes) item limit.
pub(crate) const CHUNK_BYTES: usize = 350_000;
/// Chunk keys carry a 4-digit index, so they sort in order under `begins_with`.
const MAX_CHUNKS: usize = 9_999;
const ZSTD_LEVEL: i32 = 3;

/// How an event's body is written: zstd (level 3, with a frame checksum) inline, or split.
pub(crate) enum StoredBody {
    Inline(Vec<u8>),
    Chunked {
        /// Hex SHA-256 of the uncompressed body.
        hash: String,
        chunks: Vec<Vec<u8>>,
    },
}

impl StoredBody {
    pub(crate) fn encode(event: &NewEvent) -> Result<Self, StoreError> {
        let others = event.idempotency_key.len()
            + event.source_event.len()
            + event.status_code.as_deref().map_or(0, str::len)
            + event.occurred_at.as_deref().map_or(0, str::len);
        Self::encode_body(&event.body, others)
    }

    /// `others`: bytes the item's other variable-size attributes take.
    fn encode_body(body: &str, others: usize) -> Result<Self, StoreError> {
        let compressed = compress(body.as_bytes())
            .map_err(|e| StoreError::Unavailable(format!("zstd compression failed: {e}")))?;
        if compressed.len() + others <= INLINE_MAX {
            return Ok(StoredBody::Inline(compressed));
        }
        let chunks: Vec<Vec<u8>> = compressed.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        if chunks.len() > MAX_CHUNKS {
            return Err(StoreError::Unavailable(format!(
                "body of {} bytes is too large for the store",
                body.len()
            )));
        }
        Ok(StoredBody::Chunked {
            hash: hex::encode(Sha256::digest(body.as_bytes())),
            chunks,
        })
    }
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(raw.len() / 4), ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.write_all(raw)?;
    enc.finish()
}

/// The body as sent, from its compressed bytes; `hash` (of a chunked body) is checked.
pub(crate) fn decompress(
    event_id: &EventId,
    compressed: &[u8],
    hash: Option<&str>,
) -> Result<String, StoreError> {
    let raw = zstd::stream::decode_all(compressed)
        .map_err(|e| StoreError::Corrupt(format!("body of {event_id} does not decompress: {e}")))?;
    if let Some(hash) = hash
        && hex::encode(Sha256::digest(&raw)) != hash
    {
        return Err(StoreError::Corrupt(format!(
            "body of {event_id} does not match its hash"
        )));
    }
    String::from_utf8(raw)
        .map_err(|_| StoreError::Corrupt(format!("body of {event_id} is not UTF-8")))
}

/// Sort-key prefix of a body's chunks: the event and the body's hash, so a retry of the same
/// delivery rewrites identical items.
pub(crate) fn chunk_prefix(event_id: &EventId, hash: &str) -> String {
    format!("BLOB#{event_id}#{}#", hash.get(..16).unwrap_or(hash))
}
