//! Byte budgets per peer: what one peer can make this node send.
//!
//! Owns token buckets keyed by peer, each refilled at a fixed rate up to a
//! burst; a peer's answers are charged after they are made, so its bucket
//! may go into debt, and the peer is served again once the debt is paid
//! back. The driver drops a peer's sync requests while its bucket is in
//! debt (it asks again next round); the chunk server waits. Must not send,
//! read or decide anything itself.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Sync replies (`SyncIds`, events sent for `GetEvents` and `SyncIds`) to
/// one peer: `--sync-rate` (16 MiB a second by default), and this many
/// seconds' worth at once (64 MiB: a fresh node's catch-up of a
/// 100,000-task ledger, ~20 MB, fits).
pub const SYNC_BURST_SECONDS: u64 = 4;
pub const DEFAULT_SYNC_RATE: u64 = 16 << 20;

/// Chunks served to one peer: `--chunk-rate` (1 GiB a second by default,
/// above what one provider sends one receiver on loopback), and a quarter
/// second's worth at once.
pub const DEFAULT_CHUNK_RATE: u64 = 1 << 30;

/// The burst of chunk budgets of `rate` bytes a second.
pub fn chunk_burst(rate: u64) -> u64 {
    rate / 4
}

/// Buckets of more peers than this are forgotten once refilled.
const KEEP: usize = 1_024;

struct Bucket {
    /// Bytes that may be sent now; negative while in debt.
    tokens: f64,
    at: Instant,
}

/// Token buckets of `rate` bytes a second, up to `burst`, one per peer.
pub struct Budgets<K> {
    rate: f64,
    burst: f64,
    peers: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    pub fn new(rate: u64, burst: u64) -> Budgets<K> {
        Budgets {
            rate: rate as f64,
            burst: burst as f64,
            peers: HashMap::new(),
        }
    }

    /// `peer`'s bucket refilled up to `now`.
    fn bucket(&mut self, peer: &K, now: Instant) -> &mut Bucket {
        if self.peers.len() > KEEP {
            let (rate, burst) = (self.rate, self.burst);
            self.peers.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let burst = self.burst;
        let bucket = self.peers.entry(peer.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        bucket
    }

    /// How long until `peer` may be answered again (zero: now).
    pub fn wait(&mut self, peer: &K, now: Instant) -> Duration {
        let rate = self.rate;
        let tokens = self.bucket(peer, now).tokens;
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / rate)
        }
    }

    /// Counts `bytes` sent to `peer`.
    pub fn charge(&mut self, peer: &K, bytes: usize, now: Instant) {
        self.bucket(peer, now).tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_past_its_burst_waits_for_its_debt_and_others_do_not() {
        let t0 = Instant::now();
        let mut b: Budgets<u8> = Budgets::new(1_000, 4_000);
        assert_eq!(b.wait(&1, t0), Duration::ZERO);
        b.charge(&1, 3_000, t0);
        assert_eq!(b.wait(&1, t0), Duration::ZERO, "within the burst");
        b.charge(&1, 3_000, t0);
        assert_eq!(
            b.wait(&1, t0),
            Duration::from_secs(2),
            "2,000 bytes in debt"
        );
        assert_eq!(
            b.wait(&2, t0),
            Duration::ZERO,
            "another peer is not held up"
        );
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.wait(&1, later), Duration::ZERO);
        // Refilled only up to the burst however long it waited.
        let much_later = later + Duration::from_secs(3_600);
        b.charge(&1, 4_001, much_later);
        assert!(b.wait(&1, much_later) > Duration::ZERO);
    }
}
