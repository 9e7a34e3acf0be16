//! Outbound requests awaiting their end, bounded per peer and in all.
//!
//! Owns the counts of one-way messages and of fetches sent and not yet
//! answered or failed, their bounds, and the typed refusal [`Busy`] that a
//! caller gets when one more would pass a bound. A `Net` handle takes a
//! [`Slot`] before it hands a request to the event loop; the loop keeps the
//! slot with the request until libp2p reports its end (an answer, or a
//! failure: every request ends in one, at the latest when it times out), and
//! dropping the slot frees it. Must not send, wait or decide what a refused
//! caller does (it tries again later; see `Net::send` and `Net::fetch`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;

/// One-way messages to one peer, and to all peers, awaiting acknowledgement.
/// The node sends a peer a few at a time (anti-entropy answers of up to 8 MiB
/// each, pushed events, a submit's replication).
pub const MESSAGES_PER_PEER: usize = 32;
pub const MESSAGES_IN_ALL: usize = 1_024;
/// Fetches to one peer, and to all peers, awaiting their answer. One pull
/// keeps at most three at a provider (two chunk batches and a `Have`).
pub const FETCHES_PER_PEER: usize = 32;
pub const FETCHES_IN_ALL: usize = 256;
/// Function calls sent to one peer, and to all peers, awaiting their answer.
pub const INVOKES_PER_PEER: usize = 256;
pub const INVOKES_IN_ALL: usize = 1_024;

/// How long a caller refused with [`Busy`] waits before trying again; slots
/// free as answers arrive.
pub const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Which requests a bound counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Message,
    Fetch,
    Invoke,
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestKind::Message => "one-way messages",
            RequestKind::Fetch => "fetches",
            RequestKind::Invoke => "function calls",
        })
    }
}

/// A request refused because too many already await their end; try again
/// later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("{limit} {kind} to peer {peer} already await an answer")]
    Peer {
        kind: RequestKind,
        peer: PeerId,
        limit: usize,
    },
    #[error("{limit} {kind} to peers already await an answer")]
    Node { kind: RequestKind, limit: usize },
}

#[derive(Default)]
struct Counts {
    by_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// The outstanding requests of one kind.
pub(super) struct Slots {
    kind: RequestKind,
    per_peer: usize,
    in_all: usize,
    counts: Mutex<Counts>,
}

impl Slots {
    pub(super) fn new(kind: RequestKind, per_peer: usize, in_all: usize) -> Arc<Slots> {
        Arc::new(Slots {
            kind,
            per_peer,
            in_all,
            counts: Mutex::default(),
        })
    }

    /// A slot for one more request to `peer`, unless a bound is reached.
    pub(super) fn take(self: &Arc<Self>, peer: PeerId) -> Result<Slot, Busy> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.in_all {
            return Err(Busy::Node {
                kind: self.kind,
                limit: self.in_all,
            });
        }
        let held = counts.by_peer.entry(peer).or_default();
        if *held >= self.per_peer {
            return Err(Busy::Peer {
                kind: self.kind,
                peer,
                limit: self.per_peer,
            });
        }
        *held += 1;
        counts.total += 1;
        Ok(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

/// One outstanding request's place; freed when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    peer: PeerId,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({} to {})", self.slots.kind, self.peer)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(held) = counts.by_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}
