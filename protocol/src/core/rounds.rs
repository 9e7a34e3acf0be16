//! Which anti-entropy exchanges with each peer are still worth making.
//!
//! Owns, per peer, when this node last sent it a digest that it has not
//! answered yet, and the last digest of its that this node answered (as a
//! summary of both sides' fingerprints). A node busy for several rounds
//! finds the same digest from a peer queued many times, and answering each
//! would make the peer send the same events again each time; a peer asked
//! again before it answered would list the same ids again. Must not send
//! anything or read the ledger: `core` asks before sending or answering.

use crate::ids::NodeId;
use crate::sync::Fingerprints;
use crate::time::Millis;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

#[derive(Default)]
pub(super) struct Rounds {
    peers: BTreeMap<NodeId, PeerRounds>,
    /// Per bucket, when this node last listed it whole to a peer, which
    /// then sends what this node lacks in it unasked.
    listed: BTreeMap<u8, Millis>,
}

#[derive(Default)]
struct PeerRounds {
    /// When a digest was sent to the peer that it has not answered yet.
    asked: Option<Millis>,
    /// The last digest of the peer's answered, with this node's
    /// fingerprints then, and when.
    answered: Option<(u64, Millis)>,
}

impl Rounds {
    /// Whether to send `peer` a digest at `now`: not while one sent less
    /// than `window` ago is unanswered. Notes it as sent if so.
    pub fn ask(&mut self, peer: NodeId, now: Millis, window: u64) -> bool {
        let p = self.peers.entry(peer).or_default();
        if p.asked.is_some_and(|at| now.since(at) < window) {
            return false;
        }
        p.asked = Some(now);
        true
    }

    /// `peer` answered the digest sent to it.
    pub fn answered_by(&mut self, peer: NodeId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.asked = None;
        }
    }

    /// Whether to answer `theirs` from `peer` at `now`, this node's
    /// fingerprints being `ours`: not if the same digest was answered less
    /// than `window` ago with the same fingerprints here (the answer would
    /// be the same). Notes it as answered if so.
    pub fn answer(
        &mut self,
        peer: NodeId,
        theirs: &Fingerprints,
        ours: &Fingerprints,
        now: Millis,
        window: u64,
    ) -> bool {
        let key = summary(theirs, ours);
        let p = self.peers.entry(peer).or_default();
        if p.answered
            .is_some_and(|(k, at)| k == key && now.since(at) < window)
        {
            return false;
        }
        p.answered = Some((key, now));
        true
    }

    /// This node listed `buckets` whole to a peer at `now`.
    pub fn listed(&mut self, buckets: impl IntoIterator<Item = u8>, now: Millis) {
        for b in buckets {
            self.listed.insert(b, now);
        }
    }

    /// Whether what this node lacks in `bucket` is on its way unasked: it
    /// listed the bucket to a peer less than `window` ago.
    pub fn coming(&self, bucket: u8, now: Millis, window: u64) -> bool {
        self.listed
            .get(&bucket)
            .is_some_and(|at| now.since(*at) < window)
    }

    /// A peer disconnected: a new connection starts afresh.
    pub fn forget(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }
}

/// A summary of both sides' fingerprints: equal pairs give equal
/// summaries (another pair giving the same one only costs an answer).
fn summary(theirs: &Fingerprints, ours: &Fingerprints) -> u64 {
    let mut h = DefaultHasher::new();
    theirs.buckets.hash(&mut h);
    ours.buckets.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;

    fn peer() -> NodeId {
        crate::event::Identity::from_seed([5; 32]).node_id()
    }

    #[test]
    fn a_digest_is_not_sent_again_until_answered_or_a_window_passed() {
        let mut r = Rounds::default();
        assert!(r.ask(peer(), Millis(0), 2_000));
        assert!(!r.ask(peer(), Millis(1_999), 2_000));
        assert!(r.ask(peer(), Millis(2_000), 2_000));
        r.answered_by(peer());
        assert!(r.ask(peer(), Millis(2_001), 2_000));
    }

    #[test]
    fn the_same_digest_is_answered_once_a_window_while_nothing_changed_here() {
        let mut r = Rounds::default();
        let (theirs, mut ours) = (Fingerprints::default(), Fingerprints::default());
        assert!(r.answer(peer(), &theirs, &ours, Millis(0), 2_000));
        assert!(!r.answer(peer(), &theirs, &ours, Millis(10), 2_000));
        ours.add(&EventId([1; 32]));
        assert!(r.answer(peer(), &theirs, &ours, Millis(20), 2_000));
        assert!(r.answer(peer(), &theirs, &ours, Millis(2_020), 2_000));
        r.forget(&peer());
        assert!(r.answer(peer(), &theirs, &ours, Millis(2_021), 2_000));
    }

    #[test]
    fn a_bucket_listed_whole_is_coming_for_a_window() {
        let mut r = Rounds::default();
        r.listed([3, 4], Millis(100));
        assert!(r.coming(3, Millis(2_099), 2_000));
        assert!(!r.coming(3, Millis(2_100), 2_000));
        assert!(!r.coming(5, Millis(100), 2_000));
    }
}
