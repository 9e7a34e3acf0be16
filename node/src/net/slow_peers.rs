//! Gossip that peers could not take, summed into one warning a minute.
//!
//! Owns counting the messages gossipsub dropped because a peer's send
//! queue was full (its `SlowPeer` event, once a heartbeat for each such
//! peer) and deciding when a summary is due: at the first drop, then at
//! most once a minute while drops go on. gossipsub's own warning — a line
//! per dropped message, the message printed whole, 143 MiB of a node's log
//! in 40 minutes of load — is filtered out of the log (`main.rs`). What a
//! peer missed reaches it by anti-entropy. Must not touch the Swarm or
//! write the log itself: the event loop does.

use libp2p::PeerId;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The least time between two summaries.
const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct SlowPeers {
    /// Peers that dropped messages since the last summary.
    peers: HashSet<PeerId>,
    /// Messages dropped since the last summary.
    dropped: u64,
    /// When the last summary was due.
    reported: Option<Instant>,
}

/// What to report: drops since the last summary.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Dropped {
    pub peers: usize,
    pub messages: u64,
}

impl SlowPeers {
    /// Notes that `peer` could not take `messages` messages; the summary
    /// to log if one is due.
    pub(super) fn note(&mut self, peer: PeerId, messages: u64, now: Instant) -> Option<Dropped> {
        self.peers.insert(peer);
        self.dropped += messages;
        if self
            .reported
            .is_some_and(|last| now.duration_since(last) < REPORT_EVERY)
        {
            return None;
        }
        self.reported = Some(now);
        let peers = std::mem::take(&mut self.peers).len();
        Some(Dropped {
            peers,
            messages: std::mem::take(&mut self.dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_drop_is_reported_then_one_sum_a_minute() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut slow = SlowPeers::default();
        let first = slow.note(a, 5, t0);
        assert_eq!(
            first,
            Some(Dropped {
                peers: 1,
                messages: 5
            })
        );
        assert_eq!(slow.note(a, 7, t0 + Duration::from_secs(1)), None);
        assert_eq!(slow.note(b, 1, t0 + Duration::from_secs(59)), None);
        let sum = slow.note(a, 2, t0 + Duration::from_secs(60));
        assert_eq!(
            sum,
            Some(Dropped {
                peers: 2,
                messages: 10
            })
        );
        assert_eq!(slow.note(b, 3, t0 + Duration::from_secs(61)), None);
    }
}
