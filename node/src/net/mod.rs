//! Peer-to-peer networking: owns the libp2p `Swarm` and nothing else.
//!
//! This module moves opaque byte messages between peers (gossip on one topic, one-way direct
//! messages, request/response fetches) and keeps links to known peers up. It knows nothing about
//! jobs, ledgers or how the bytes it carries are encoded, and it must not touch any other node
//! state (ledger, executor, HTTP API).
//!
//! Layout follows the rust-libp2p file-sharing example's Client/EventLoop split: only the event
//! loop task ([`event_loop`]) touches the `Swarm`; the cheap, cloneable [`Net`] handle sends it
//! commands over a channel, and the loop reports what happens as [`NetEvent`]s.
//!
//! Both channels are bounded, so neither side can queue without limit: a caller whose command
//! finds [`COMMAND_CHANNEL_CAPACITY`] commands waiting waits for room (every `Net` method that
//! sends a command is `async` for this), and the loop waits for room in the event channel
//! ([`EVENT_CHANNEL_CAPACITY`]) before it reads more from the swarm, which stops reading from
//! peers. The two waits cannot close a circle: the loop awaits nothing but room for an event,
//! and while it waits it goes on taking and carrying out commands (`EventLoop::emit`), each of
//! which finishes without waiting on the node. So a node that sends a command while it is not
//! reading events (its driver, say, judging gossip in the middle of a burst) always gets its
//! command taken. Whoever changes the loop must keep both halves: no `await` in
//! `handle_command`, and commands served wherever the loop waits.
//!
//! Requests to peers (one-way messages and fetches) are bounded too, per peer and in all
//! ([`slots`]): past a bound, [`Net::send`], [`Net::send_acked`] and [`Net::fetch`] answer at
//! once with [`NetError::Busy`], and the caller tries again later (after [`BUSY_RETRY`]) instead
//! of libp2p queueing the request without limit behind a slow peer.

#[cfg(test)]
mod approval_tests;
mod behaviour;
mod candidate;
mod cluster;
pub mod codec;
mod doorbell;
mod event_loop;
mod graylist;
mod key;
#[cfg(test)]
mod limits_tests;
mod lobby;
#[cfg(test)]
mod queue_tests;
mod redial;
mod refusals;
#[cfg(test)]
pub(crate) mod silent_peer;
mod slots;
mod slow_peers;
#[cfg(test)]
mod tests;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use libp2p::{identity::Keypair, request_response, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use event_loop::{Command, EventLoop};

pub use candidate::{Approval, Candidate, Progress};
pub use key::{write_cluster_key, ClusterKey, JoinToken, TokenError};
pub use lobby::{ApproveError, Lobby, WaitingPeer, APPROVAL_LASTS};
pub use slots::{
    Busy, RequestKind, BUSY_RETRY, FETCHES_IN_ALL, FETCHES_PER_PEER, INVOKES_IN_ALL,
    INVOKES_PER_PEER, MESSAGES_PER_PEER,
};
use slots::{RequestKind::*, Slots};

/// Capacity of the event channel returned by [`start`]. When it is full the event loop waits
/// (events are never dropped), so keep draining it.
const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// Commands waiting for the event loop, past which a `Net` method waits for room.
const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// How to run the network.
pub struct NetConfig {
    /// This node's identity (ed25519).
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` or `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start and to keep redialling (with backoff) while not connected.
    /// An address may end in `/p2p/<peer id>` to pin the identity expected there.
    pub join: Vec<Multiaddr>,
    /// Whom the cluster admission exchange (`cluster`) inside every new connection's TLS
    /// session admits.
    pub standing: Standing,
    /// Discover peers on the local network with mDNS and dial what is found.
    pub mdns: bool,
}

/// What this node is to the cluster, which decides whom it admits.
#[derive(Clone)]
pub enum Standing {
    /// It holds the cluster key (in the lobby): it admits only peers holding the same key, and
    /// lists peers waiting for approval.
    Member(Lobby),
    /// It runs open (`--insecure-open`): it admits only other nodes running open.
    Open,
    /// It waits for approval (`--wait-for-approval`): it admits nobody and takes the first
    /// approval an admin hands it.
    Waiting(Candidate),
}

/// Something that happened on the network.
#[derive(Debug)]
pub enum NetEvent {
    /// We are listening on this address.
    Listening(Multiaddr),
    /// The first connection to this peer has been established.
    PeerConnected(PeerId),
    /// The last connection to this peer has been closed.
    PeerDisconnected(PeerId),
    /// A gossip message on our topic; `source` is its original (signing) author. It is not
    /// forwarded to other peers until the node passes `ticket` to [`Net::judge_gossip`].
    Gossip {
        source: PeerId,
        data: Vec<u8>,
        ticket: GossipTicket,
    },
    /// A one-way direct message. The sender has already been sent its acknowledgement.
    Message { from: PeerId, data: Vec<u8> },
    /// A request that wants a response: answer it with [`Net::respond`]. Dropping `reply`
    /// without responding makes the requester's [`Net::fetch`] fail.
    Fetch {
        from: PeerId,
        data: Vec<u8>,
        reply: FetchReply,
    },
    /// A function call another node asks this one to run: answer it with
    /// [`Net::respond`], as a fetch.
    Invoke {
        from: PeerId,
        data: Vec<u8>,
        reply: FetchReply,
    },
}

/// Which request/response protocol a request travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    Fetch,
    Invoke,
}

/// Which gossip message a verdict is about, and the peer that sent it to us.
#[derive(Debug, Clone)]
pub struct GossipTicket {
    id: libp2p::gossipsub::MessageId,
    via: PeerId,
}

/// What the node makes of a gossip message (see [`Net::judge_gossip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Valid and new: forward it.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it (peer scoring).
    Reject,
    /// Valid but of no use (nothing new): drop it without penalty.
    Ignore,
}

/// The way back to the peer that sent a [`NetEvent::Fetch`]; pass it to [`Net::respond`].
#[derive(Debug)]
pub struct FetchReply {
    channel: request_response::ResponseChannel<Vec<u8>>,
    lane: Lane,
}

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("failed to set up TLS")]
    Tls(#[from] tls::TlsError),
    #[error("invalid gossipsub setup: {0}")]
    Gossipsub(String),
    #[error("failed to start mDNS")]
    Mdns(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: Multiaddr,
        #[source]
        source: libp2p::TransportError<std::io::Error>,
    },
    #[error("the network event loop has stopped")]
    Closed,
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("request to peer {peer} failed")]
    Request {
        peer: PeerId,
        #[source]
        source: request_response::OutboundFailure,
    },
    #[error("cluster key file {}: {reason}", path.display())]
    ClusterKey { path: PathBuf, reason: String },
    #[error("cluster key file {}", path.display())]
    ClusterKeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Cheap, cloneable handle to the network event loop.
#[derive(Clone)]
pub struct Net {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    messages: Arc<Slots>,
    fetches: Arc<Slots>,
    invokes: Arc<Slots>,
}

impl Net {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Gossip `data` to every peer on the topic. Failures (e.g. no peers yet, or an identical
    /// payload published in the last minute) are logged, not returned.
    pub async fn publish(&self, data: Vec<u8>) {
        self.command(Command::Publish { data }).await;
    }

    /// Send a one-way message to `peer`, dialling it if needed. Fire and forget: failures are
    /// logged at debug level. [`NetError::Busy`] (nothing sent) while [`slots::MESSAGES_PER_PEER`]
    /// messages to `peer`, or [`slots::MESSAGES_IN_ALL`] in all, await acknowledgement.
    pub async fn send(&self, peer: PeerId, data: Vec<u8>) -> Result<(), NetError> {
        self.reserve(peer)?.send(data).await;
        Ok(())
    }

    /// A place for one more one-way message to `peer`, or [`Busy`] while too many await
    /// acknowledgement: lets a caller keep its message when refused.
    pub fn reserve(&self, peer: PeerId) -> Result<Reserved<'_>, Busy> {
        let slot = self.messages.take(peer)?;
        Ok(Reserved {
            net: self,
            peer,
            slot,
        })
    }

    /// Like [`Net::send`], but resolves once the peer's event loop has received the message and
    /// handed it to its node (as [`NetEvent::Message`]).
    pub async fn send_acked(&self, peer: PeerId, data: Vec<u8>) -> Result<(), NetError> {
        let slot = self.messages.take(peer)?;
        let (tx, rx) = oneshot::channel();
        self.command(Command::Send {
            peer,
            data,
            slot,
            ack: Some(tx),
        })
        .await;
        rx.await.map_err(|_| NetError::Closed)?
    }

    /// Send a request to `peer` and wait (up to ~30 s) for its [`Net::respond`].
    /// [`NetError::Busy`] (nothing sent) while [`slots::FETCHES_PER_PEER`] fetches from `peer`,
    /// or [`slots::FETCHES_IN_ALL`] in all, await their answer.
    pub async fn fetch(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.request(Lane::Fetch, peer, data).await
    }

    /// Send a function call to `peer` and wait (up to 16 min) for its [`Net::respond`].
    /// [`NetError::Busy`] (nothing sent) while [`slots::INVOKES_PER_PEER`] calls to `peer`, or
    /// [`slots::INVOKES_IN_ALL`] in all, await their answer.
    pub async fn invoke(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.request(Lane::Invoke, peer, data).await
    }

    async fn request(&self, lane: Lane, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let slots = match lane {
            Lane::Fetch => &self.fetches,
            Lane::Invoke => &self.invokes,
        };
        let slot = slots.take(peer)?;
        let (tx, rx) = oneshot::channel();
        self.command(Command::Fetch {
            lane,
            peer,
            data,
            slot,
            reply: tx,
        })
        .await;
        rx.await.map_err(|_| NetError::Closed)?
    }

    /// Report the node's verdict on a [`NetEvent::Gossip`]: only accepted messages are
    /// forwarded, and rejected ones count against the peer that sent them.
    pub async fn judge_gossip(&self, ticket: GossipTicket, verdict: GossipVerdict) {
        self.command(Command::JudgeGossip { ticket, verdict }).await;
    }

    /// Answer a [`NetEvent::Fetch`]. If the requester has gone away this is logged and ignored.
    pub async fn respond(&self, reply: FetchReply, data: Vec<u8>) {
        self.command(Command::Respond { reply, data }).await;
    }

    /// Remember `addrs` for `peer` (for this and later redials) and dial it if not connected.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.command(Command::Dial { peer, addrs }).await;
    }

    /// Peers we currently have at least one connection to. Empty if the event loop has stopped.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::ConnectedPeers { reply: tx }).await;
        rx.await.unwrap_or_default()
    }

    /// Hands `command` to the event loop, waiting while its channel is full.
    async fn command(&self, command: Command) {
        if self.commands.send(command).await.is_err() {
            debug!("network event loop has stopped; command dropped");
        }
    }
}

/// A one-way message's place, taken by [`Net::reserve`]; freed if not used.
pub struct Reserved<'a> {
    net: &'a Net,
    peer: PeerId,
    slot: slots::Slot,
}

impl Reserved<'_> {
    /// Sends `data` as [`Net::send`] does.
    pub async fn send(self, data: Vec<u8>) {
        let command = Command::Send {
            peer: self.peer,
            data,
            slot: self.slot,
            ack: None,
        };
        self.net.command(command).await;
    }
}

/// Build the swarm, start listening and spawn the event loop on the current tokio runtime.
///
/// The loop runs until every [`Net`] clone or the returned receiver is dropped.
pub async fn start(cfg: NetConfig) -> Result<(Net, mpsc::Receiver<NetEvent>), NetError> {
    let local_peer_id = cfg.keypair.public().to_peer_id();
    let mut swarm = behaviour::build_swarm(&cfg)?;
    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|source| NetError::Listen {
                addr: addr.clone(),
                source,
            })?;
    }
    let topic = behaviour::subscribe(&mut swarm)?;

    let (command_tx, command_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let event_loop = EventLoop::new(swarm, command_rx, event_tx, topic, &cfg.join);
    tokio::spawn(event_loop.run());

    let net = Net {
        local_peer_id,
        commands: command_tx,
        messages: Slots::new(Message, slots::MESSAGES_PER_PEER, slots::MESSAGES_IN_ALL),
        fetches: Slots::new(Fetch, slots::FETCHES_PER_PEER, slots::FETCHES_IN_ALL),
        invokes: Slots::new(Invoke, slots::INVOKES_PER_PEER, slots::INVOKES_IN_ALL),
    };
    Ok((net, event_rx))
}
