//! Anti-entropy: finding which events two replicas do not share.
//!
//! Owns the set fingerprints (event ids split into 256 buckets by first byte,
//! each summarised by count and XOR of the ids' first 8 bytes) and the
//! comparison that tells which buckets differ. Must not send anything; `core`
//! decides when to sync and with whom.

use crate::ids::EventId;
use serde::{Deserialize, Serialize};

pub const BUCKETS: usize = 256;

/// Count and XOR summary of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bucket {
    pub count: u32,
    pub xor: u64,
}

/// Per-bucket summaries of a set of event ids, kept up to date on insert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    pub buckets: Vec<Bucket>,
}

impl Default for Fingerprints {
    fn default() -> Self {
        Fingerprints {
            buckets: vec![Bucket::default(); BUCKETS],
        }
    }
}

fn prefix(id: &EventId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

impl Fingerprints {
    pub fn add(&mut self, id: &EventId) {
        let bucket = &mut self.buckets[id.0[0] as usize];
        bucket.count += 1;
        bucket.xor ^= prefix(id);
    }

    /// Takes out an id [`Fingerprints::add`] put in (an event forgotten).
    pub fn remove(&mut self, id: &EventId) {
        let bucket = &mut self.buckets[id.0[0] as usize];
        bucket.count = bucket.count.saturating_sub(1);
        bucket.xor ^= prefix(id);
    }

    /// Buckets whose summaries differ from `other`'s (a malformed `other`
    /// counts as differing everywhere).
    pub fn differing(&self, other: &Fingerprints) -> Vec<u8> {
        (0..BUCKETS)
            .filter(|&b| other.buckets.get(b) != Some(&self.buckets[b]))
            .map(|b| b as u8)
            .collect()
    }
}

/// The lowest and highest ids that fall in `bucket`.
pub fn bucket_bounds(bucket: u8) -> (EventId, EventId) {
    let (mut lo, mut hi) = ([0u8; 32], [0xffu8; 32]);
    lo[0] = bucket;
    hi[0] = bucket;
    (EventId(lo), EventId(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_buckets_are_exactly_those_with_other_ids() {
        let ids: Vec<EventId> = (0..50u8)
            .map(|i| EventId(*blake3::hash(&[i]).as_bytes()))
            .collect();
        let (mut a, mut b) = (Fingerprints::default(), Fingerprints::default());
        for id in &ids {
            a.add(id);
        }
        for id in &ids[..45] {
            b.add(id);
        }
        let mut expected: Vec<u8> = ids[45..].iter().map(|id| id.0[0]).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(a.differing(&b), expected);
    }
}
