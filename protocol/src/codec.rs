//! The one codec for everything that crosses the wire or reaches disk.
//!
//! Owns the encoding: a version byte followed by bincode 2 (serde), with an
//! explicit size limit. Nothing else in the project calls bincode directly.
//! Every value has exactly one accepted encoding (ids are hashes of bytes,
//! so a second encoding of a signed value would be a second id for it).

use serde::{de::DeserializeOwned, Serialize};

/// First byte of every encoded value; bumped on incompatible changes.
pub const VERSION: u8 = 1;
/// Largest encoded value accepted, in bytes.
pub const MAX_SIZE: usize = 16 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_SIZE>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_SIZE>()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes is over the {MAX_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("unsupported encoding version {found} (this build speaks {VERSION})")]
    Version { found: u8 },
    #[error("garbled message: {0}")]
    Garbled(String),
    #[error("garbled message: {0} trailing bytes")]
    Trailing(usize),
    #[error("message is not in canonical form (a value written with more bytes than it needs)")]
    NotCanonical,
}

/// Encodes `value` with the version byte in front.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Encoding into a Vec only fails for values over the limit, which the
    // protocol never builds: batches are capped well below it.
    if let Err(e) = bincode::serde::encode_into_std_write(value, &mut out, config()) {
        panic!("encoding a protocol value failed: {e}");
    }
    out
}

/// The size [`encode`] would produce, without its limit (for refusing
/// values that would be too large before building them into events).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    let mut counter = Counter(0);
    match bincode::serde::encode_into_std_write(value, &mut counter, bincode::config::standard()) {
        Ok(n) => n + 1,
        Err(_) => usize::MAX,
    }
}

struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a value written by [`encode`], refusing anything malformed and
/// any bytes that [`encode`] would not have written for the value (bincode
/// also reads integers and lengths written wider than needed, and maps in
/// any order).
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let value = decode_stored(bytes)?;
    if !encodes_to(&value, &bytes[1..]) {
        return Err(CodecError::NotCanonical);
    }
    Ok(value)
}

/// As [`decode`] but for the canonical check, for bytes this node decoded
/// with [`decode`] when they first came and has kept since (its own store,
/// read back: a node's store hashes each event against its id at start).
/// The second encoding that check makes was a sixth of the time taken to
/// fold a finished job's views back from the store. Never for bytes from
/// outside the process.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if bytes.len() > MAX_SIZE {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    if version != VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Garbled(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Whether `value` encodes (without the version byte) to exactly `body`,
/// compared as it is written rather than built into a second buffer.
fn encodes_to<T: Serialize>(value: &T, body: &[u8]) -> bool {
    let mut same = SameAs {
        rest: body,
        same: true,
    };
    let written = bincode::serde::encode_into_std_write(value, &mut same, config());
    written.is_ok() && same.same && same.rest.is_empty()
}

/// A writer that only checks its input against the bytes expected next.
struct SameAs<'a> {
    rest: &'a [u8],
    same: bool,
}

impl std::io::Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) if self.same => self.rest = rest,
            _ => self.same = false,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let v = (7u32, "hello".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&v);
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&bytes), Ok(v));
        assert_eq!(decode::<u32>(&[]), Err(CodecError::Empty));
        assert_eq!(
            decode::<u32>(&[VERSION + 1, 0]),
            Err(CodecError::Version { found: VERSION + 1 })
        );
        let mut trailing = encode(&5u32);
        trailing.push(0);
        assert_eq!(decode::<u32>(&trailing), Err(CodecError::Trailing(1)));
        assert!(matches!(
            decode::<String>(&[VERSION, 0xff, 0xff]),
            Err(CodecError::Garbled(_))
        ));
    }

    #[test]
    fn stored_bytes_skip_only_the_canonical_check() {
        // 5 as a u32 written wide (bincode's varint marker 251, then a u16).
        let wide = [VERSION, 251, 5, 0];
        assert_eq!(decode::<u32>(&wide), Err(CodecError::NotCanonical));
        assert_eq!(decode_stored::<u32>(&wide), Ok(5));
        let mut trailing = encode(&5u32);
        trailing.push(0);
        assert_eq!(
            decode_stored::<u32>(&trailing),
            Err(CodecError::Trailing(1))
        );
        assert_eq!(
            decode_stored::<u32>(&[VERSION + 1, 0]),
            Err(CodecError::Version { found: VERSION + 1 })
        );
    }
}
