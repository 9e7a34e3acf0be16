//! Identifiers: nodes, events, jobs, tasks and content blobs.
//!
//! Owns their byte layout and their text form (lower-case hex). Must not know
//! how any of them is derived beyond "a fixed number of bytes".

use serde::{Deserialize, Serialize};
use std::fmt;

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly `N` bytes of hex.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                from_hex::<$len>(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &to_hex(&self.0)[..8.min($len * 2)])
            }
        }
    };
}

hex_id!(
    /// A node: its ed25519 public key.
    NodeId,
    32
);
hex_id!(
    /// An event: the blake3 hash of its encoding.
    EventId,
    32
);
hex_id!(
    /// A job: the first 8 bytes of its submit event's id.
    JobId,
    8
);
hex_id!(
    /// Content: the blake3 hash of a blob's manifest.
    BlobId,
    32
);

/// One task of one job, by its position in the job's expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    pub job: JobId,
    pub index: u32,
}

impl TaskRef {
    /// Every task of `job`, as a range of keys.
    pub fn all_of(job: JobId) -> std::ops::RangeInclusive<TaskRef> {
        TaskRef { job, index: 0 }..=TaskRef {
            job,
            index: u32::MAX,
        }
    }
}
