//! Messages between protocol cores.
//!
//! Owns the wire vocabulary only: what each message carries. How a message
//! travels (gossip or direct) is chosen by `core` and carried out by the node.

use crate::ids::{EventId, NodeId};
use crate::sync::Fingerprints;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Encoded, signed events (gossip, sync replies, pushes).
    Events { events: Vec<Vec<u8>> },
    /// "I am alive", and nothing more. Cores of this version probe
    /// instead (`Ping`); one is still taken as word from its sender.
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
    /// Membership probe: answer with an `Ack` of the same `seq`. Carries
    /// membership rumors (at most [`MAX_RUMORS`] are read).
    Ping { seq: u64, rumors: Vec<Rumor> },
    /// The answer to the `Ping` numbered `seq`, sent by its target or, for
    /// a `PingReq`, relayed by the node asked.
    Ack { seq: u64, rumors: Vec<Rumor> },
    /// "My ping to `target` went unanswered: ping it for me and relay its
    /// `Ack` under my `seq`."
    PingReq {
        seq: u64,
        target: NodeId,
        rumors: Vec<Rumor>,
    },
    /// The sender's view of every member it knows, sent on connect (at most
    /// [`MAX_MEMBERS`] are read).
    Members { members: Vec<Rumor> },
}

/// Most rumors read from one probe message.
pub const MAX_RUMORS: usize = 16;
/// Most members read from one `Members` message.
pub const MAX_MEMBERS: usize = 10_000;

/// What one node says of a member: alive or suspect at an incarnation. Only
/// the member itself raises its incarnation, to refute a suspicion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rumor {
    pub node: NodeId,
    pub incarnation: u64,
    pub suspect: bool,
}
