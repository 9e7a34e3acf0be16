//! Peers whose gossip the node rejected, and for how long it drops what
//! they pass on unread.
//!
//! Owns a decaying count of rejected messages per propagating peer: each
//! rejection adds one, the count loses [`DECAY_PER_SECOND`] of itself a
//! second, and a peer is graylisted while `count²` exceeds [`GRAYLIST_AT`]
//! (the rule gossipsub's peer score applied with our weights: one rejection
//! silences a peer for about 11 s, five for about 3 min). Kept here rather
//! than in gossipsub's peer score, whose per-message delivery records (two
//! minutes of every message's id and the peers it came from) were the
//! largest part of a node's heap after a burst of work (BENCHMARKS, "After
//! the burst"). Must not touch the Swarm: the event loop asks and acts.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Instant;

/// The share of a peer's count that remains after a second.
const DECAY_PER_SECOND: f64 = 0.99;

/// A peer is graylisted while the square of its count exceeds this.
const GRAYLIST_AT: f64 = 0.8;

/// Counts below this are dropped when the map is tidied.
const FORGET_BELOW: f64 = 0.1;

#[derive(Default)]
pub(super) struct Graylist {
    counts: HashMap<PeerId, (f64, Instant)>,
}

impl Graylist {
    /// One more of `peer`'s messages was rejected.
    pub(super) fn rejected(&mut self, peer: PeerId, now: Instant) {
        let count = self.count(&peer, now) + 1.0;
        // Bounded by the peers that ever sent a rejected message and have
        // not yet been forgiven: tidy at each new rejection.
        self.counts
            .retain(|_, (c, at)| decayed(*c, *at, now) >= FORGET_BELOW);
        self.counts.insert(peer, (count, now));
    }

    /// Whether what `peer` passes on is dropped unread now.
    pub(super) fn is_graylisted(&self, peer: &PeerId, now: Instant) -> bool {
        self.count(peer, now).powi(2) > GRAYLIST_AT
    }

    fn count(&self, peer: &PeerId, now: Instant) -> f64 {
        self.counts
            .get(peer)
            .map_or(0.0, |(count, at)| decayed(*count, *at, now))
    }
}

fn decayed(count: f64, at: Instant, now: Instant) -> f64 {
    count * DECAY_PER_SECOND.powf(now.saturating_duration_since(at).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_rejection_silences_a_peer_for_about_eleven_seconds_five_for_minutes() {
        let (bad, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut list = Graylist::default();
        list.rejected(bad, t0);
        assert!(list.is_graylisted(&bad, t0));
        assert!(!list.is_graylisted(&other, t0));
        assert!(list.is_graylisted(&bad, t0 + Duration::from_secs(10)));
        assert!(!list.is_graylisted(&bad, t0 + Duration::from_secs(12)));
        for _ in 0..4 {
            list.rejected(bad, t0);
        }
        assert!(list.is_graylisted(&bad, t0 + Duration::from_secs(160)));
        assert!(!list.is_graylisted(&bad, t0 + Duration::from_secs(185)));
    }
}
