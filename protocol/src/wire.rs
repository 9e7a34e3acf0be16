//! Messages between protocol cores.
//!
//! Owns the wire vocabulary only: what each message carries. How a message
//! travels (gossip or direct) is chosen by `core` and carried out by the node.

use crate::ids::EventId;
use crate::sync::Fingerprints;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Encoded, signed events (gossip, sync replies, pushes).
    Events { events: Vec<Vec<u8>> },
    /// "I am alive": renews the leases of all the sender's claims.
    Heartbeat,
    /// Anti-entropy round, step 1: the sender's bucket summaries.
    SyncDigest { fingerprints: Fingerprints },
    /// Step 2: the ids the sender holds in buckets that differed. With
    /// `partial`, the last bucket lists only the sender's ids from its
    /// first to its last listed id (a bucket larger than one reply).
    SyncIds {
        buckets: Vec<(u8, Vec<EventId>)>,
        partial: bool,
    },
    /// Step 3: events the sender lacks.
    GetEvents { ids: Vec<EventId> },
}
