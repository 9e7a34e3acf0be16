//! The outbox: makes events durable, then sends what depended on them.
//!
//! Owns the write path's ordering rule — nothing polled from the core after a
//! persist is transmitted before that persist is flushed to sled — while
//! keeping the driver free to take new input during an fsync. Items arrive in
//! the driver's order; consecutive persists are written and flushed together
//! (group commit). A message to a peer that has too many awaiting
//! acknowledgement (`net::Busy`) waits in that peer's backlog, in order,
//! and is tried again every `net::BUSY_RETRY`: nothing is dropped, and its
//! bytes stay counted in the outbox's [`Load`], which bounds the whole
//! queue through the driver. Must not make protocol decisions or touch the
//! Swarm.

use crate::identity::peer_of;
use crate::net::{Net, NetError, BUSY_RETRY};
use crate::store::ledger::LedgerStore;
use futures::StreamExt;
use libp2p::PeerId;
use peerbatch_protocol::core::Destination;
use peerbatch_protocol::storage::Forgetting;
use peerbatch_protocol::{codec, EventId, EventStore, Message, Transmit};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a submit waits for a peer to hold the job before answering.
const REPLICATION_WAIT: Duration = Duration::from_secs(10);

pub enum Item {
    Persist(Vec<(EventId, Vec<u8>)>),
    /// What the core forgot, carried out on sled after the persists before it.
    Forget(Forgetting),
    Transmit(Transmit),
    /// Push a durable event to these peers and answer with how many acked (first ack wins).
    Replicate {
        event: EventId,
        peers: Vec<PeerId>,
        reply: oneshot::Sender<usize>,
    },
}

impl Item {
    /// Bytes it holds, as the driver counts the outbox's load.
    pub fn size(&self) -> usize {
        match self {
            Item::Persist(events) => events.iter().map(|(_, bytes)| bytes.len()).sum(),
            Item::Transmit(t) => wire_size(&t.msg),
            Item::Replicate { .. } | Item::Forget(_) => 0,
        }
    }
}

/// About the bytes `msg` takes encoded, without encoding it: the events or
/// ids it carries (what budgets and the outbox's load count).
pub fn wire_size(msg: &Message) -> usize {
    match msg {
        Message::Events { events } => events.iter().map(|e| e.len() + 8).sum(),
        Message::SyncIds { buckets, .. } => buckets.iter().map(|(_, ids)| 9 + 32 * ids.len()).sum(),
        Message::GetEvents { ids } => 32 * ids.len(),
        Message::SyncDigest { .. } => 12 * peerbatch_protocol::sync::BUCKETS,
        Message::Heartbeat => 1,
        Message::Ping { rumors, .. } | Message::Ack { rumors, .. } => 8 + 41 * rumors.len(),
        Message::PingReq { rumors, .. } => 40 + 41 * rumors.len(),
        Message::Members { members } => 41 * members.len(),
    }
}

/// How long to wait before writing again after the disk refused a write.
const RETRY_WRITE: Duration = Duration::from_secs(1);

/// What the outbox holds, as the driver reads it to hold back input.
#[derive(Default)]
pub struct Load {
    /// Bytes of items queued and not yet carried out: the sender adds
    /// [`Item::size`], the outbox subtracts it once the item is written or
    /// handed to the network.
    bytes: AtomicUsize,
    /// Peers with messages in their backlog.
    backlogged: Mutex<BTreeSet<PeerId>>,
}

impl Load {
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    /// Counts an item handed to the outbox.
    pub fn add(&self, item: &Item) {
        self.bytes.fetch_add(item.size(), Relaxed);
    }

    /// Whether messages to `peer` wait for its earlier ones to be acknowledged.
    pub fn backlogged(&self, peer: &PeerId) -> bool {
        self.backlogged.lock().is_ok_and(|b| b.contains(peer))
    }

    fn done(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Relaxed);
    }
}

/// Starts the outbox. The [`Load`] counts what it holds, by which the
/// driver holds back input; the watch carries why the ledger cannot be
/// written (`None` while it can): the driver stops claiming meanwhile.
pub fn spawn(
    store: LedgerStore,
    net: Net,
) -> (
    mpsc::UnboundedSender<Item>,
    Arc<Load>,
    watch::Receiver<Option<String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (health_tx, health_rx) = watch::channel(None);
    let load = Arc::new(Load::default());
    tokio::spawn(run(store, net, rx, load.clone(), health_tx));
    (tx, load, health_rx)
}

/// Writes and flushes persists in arrival order, then carries out what
/// queued behind them. When a write fails, everything stays queued (new
/// items join the queue) and the database is reopened and written again
/// until the disk takes it: nothing is dropped and nothing is sent ahead of
/// its events.
async fn run(
    store: LedgerStore,
    net: Net,
    mut rx: mpsc::UnboundedReceiver<Item>,
    load: Arc<Load>,
    health: watch::Sender<Option<String>>,
) {
    let mut pending: Vec<Item> = Vec::new();
    let mut backlog = Backlog::default();
    // Leading persist items of `pending` already inserted (not yet flushed).
    let mut inserted = 0;
    loop {
        if pending.is_empty() {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = tokio::time::sleep(BUSY_RETRY), if !backlog.is_empty() => {
                    backlog.retry(&net, &load).await;
                    continue;
                }
            };
            match next {
                Some(first) => pending.push(first),
                None => return,
            }
        }
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let persists: Vec<&Vec<(EventId, Vec<u8>)>> = pending
            .iter()
            .filter_map(|item| match item {
                Item::Persist(events) => Some(events),
                _ => None,
            })
            .collect();
        if !persists.is_empty() {
            let fresh = persists[inserted.min(persists.len())..]
                .iter()
                .copied()
                .flatten();
            let written = store.put_batch(fresh).map(|()| inserted = persists.len());
            let written = match written {
                Ok(()) => store.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // While closed, the reason stays the one reopening gave.
                if store.is_open() {
                    let why = format!("cannot write the ledger: {e:#}");
                    tracing::error!("{why}; holding {} queued items and retrying", pending.len());
                    health.send_replace(Some(why));
                }
                tokio::time::sleep(RETRY_WRITE).await;
                // sled refuses all writes after a failed one: start afresh
                // from what it flushed, and write everything queued again.
                if let Err(e) = store.reopen() {
                    let why = format!("cannot reopen the ledger: {e:#}");
                    if health.borrow().as_deref() != Some(why.as_str()) {
                        tracing::warn!("{why}; retrying");
                        health.send_replace(Some(why));
                    }
                }
                inserted = 0;
                continue;
            }
        }
        if health.borrow().is_some() {
            tracing::info!("the ledger is writable again");
            health.send_replace(None);
        }
        inserted = 0;
        for item in pending.drain(..) {
            let size = item.size();
            match item {
                Item::Persist(_) => load.done(size),
                Item::Forget(f) => {
                    if let Err(e) = store.forget(&f) {
                        tracing::warn!("cannot remove a forgotten job's events: {e:#}");
                    }
                }
                Item::Transmit(t) => backlog.send(&net, &load, t, size).await,
                Item::Replicate {
                    event,
                    peers,
                    reply,
                } => {
                    load.done(size);
                    replicate(&store, &net, event, peers, reply);
                }
            }
        }
    }
}

/// Encoded messages to peers, each with the bytes it counts in the
/// [`Load`], that wait in order until the peer has room.
#[derive(Default)]
struct Backlog {
    by_peer: BTreeMap<PeerId, VecDeque<(Vec<u8>, usize)>>,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Carries out `t`, which counts `size` bytes in `load`: gossip at
    /// once, a message to a peer behind that peer's backlog.
    async fn send(&mut self, net: &Net, load: &Load, t: Transmit, size: usize) {
        let bytes = codec::encode(&t.msg);
        let peer = match t.to {
            Destination::Gossip => {
                net.publish(bytes).await;
                return load.done(size);
            }
            Destination::Peer(node) => match peer_of(&node) {
                Some(peer) => peer,
                None => return load.done(size),
            },
        };
        self.by_peer
            .entry(peer)
            .or_default()
            .push_back((bytes, size));
        self.flush(net, load, peer).await;
    }

    /// Tries every backlogged peer again.
    async fn retry(&mut self, net: &Net, load: &Load) {
        let peers: Vec<PeerId> = self.by_peer.keys().copied().collect();
        for peer in peers {
            self.flush(net, load, peer).await;
        }
    }

    /// Sends `peer`'s backlog in order until the network refuses one.
    async fn flush(&mut self, net: &Net, load: &Load, peer: PeerId) {
        let Some(queue) = self.by_peer.get_mut(&peer) else {
            return;
        };
        while let Some(reserved) = queue.front().and_then(|_| net.reserve(peer).ok()) {
            if let Some((bytes, size)) = queue.pop_front() {
                reserved.send(bytes).await;
                load.done(size);
            }
        }
        let waiting = !queue.is_empty();
        if !waiting {
            self.by_peer.remove(&peer);
        }
        if let Ok(mut backlogged) = load.backlogged.lock() {
            if waiting {
                backlogged.insert(peer);
            } else {
                backlogged.remove(&peer);
            }
        }
    }
}

fn replicate(
    store: &LedgerStore,
    net: &Net,
    event: EventId,
    peers: Vec<PeerId>,
    reply: oneshot::Sender<usize>,
) {
    let bytes = match store.get(&event) {
        Some(bytes) if !peers.is_empty() => bytes,
        _ => {
            let _ = reply.send(0);
            return;
        }
    };
    let msg = codec::encode(&Message::Events {
        events: vec![bytes],
    });
    let net = net.clone();
    tokio::spawn(async move {
        let mut acks: futures::stream::FuturesUnordered<_> = peers
            .into_iter()
            .map(|peer| {
                let (net, msg) = (net.clone(), msg.clone());
                async move {
                    loop {
                        match net.send_acked(peer, msg.clone()).await {
                            Err(NetError::Busy(_)) => tokio::time::sleep(BUSY_RETRY).await,
                            acked => return acked,
                        }
                    }
                }
            })
            .collect();
        let held = tokio::time::timeout(REPLICATION_WAIT, async {
            while let Some(result) = acks.next().await {
                if result.is_ok() {
                    return 1;
                }
            }
            0
        })
        .await
        .unwrap_or(0);
        let _ = reply.send(held);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{sync_refusal, SyncRefusal};
    use crate::identity::node_of;
    use crate::net::silent_peer::{Received, SilentPeer};
    use crate::net::{self, NetConfig, NetEvent};
    use libp2p::identity::Keypair;
    use peerbatch_protocol::event::event_id;

    const STUCK: Duration = Duration::from_secs(30);

    /// A network on 127.0.0.1 with a silent peer connected to it.
    async fn net_and_silent_peer() -> (Net, SilentPeer) {
        let (net, mut rx) = net::start(NetConfig {
            keypair: Keypair::generate_ed25519(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            join: vec![],
            standing: net::Standing::Open,
            mdns: false,
        })
        .await
        .unwrap();
        let Some(NetEvent::Listening(addr)) = rx.recv().await else {
            panic!("the network listens first");
        };
        let silent = SilentPeer::start(addr).await;
        while !matches!(rx.recv().await, Some(NetEvent::PeerConnected(p)) if p == silent.id) {}
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        (net, silent)
    }

    /// The `GetEvents` ids in a message the silent peer received.
    fn asked(got: Option<Received>) -> Vec<EventId> {
        match got.map(|r| match r {
            Received::Message(bytes) => codec::decode::<Message>(&bytes).ok(),
            Received::Fetch(_) => None,
        }) {
            Some(Some(Message::GetEvents { ids })) => ids,
            other => panic!("expected a GetEvents message, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_peers_messages_wait_and_all_arrive_and_its_asking_waits_meanwhile() {
        let dir = std::env::temp_dir().join(format!("pb-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = LedgerStore::open(&dir).unwrap();
        let (net, mut silent) = net_and_silent_peer().await;
        let node = node_of(&silent.id).unwrap();
        let (outbox, load, _) = spawn(store, net);
        let ids: Vec<EventId> = (0..100u8).map(|i| event_id(&[i])).collect();
        for id in &ids {
            let item = Item::Transmit(Transmit {
                to: Destination::Peer(node),
                msg: Message::GetEvents { ids: vec![*id] },
            });
            load.add(&item);
            outbox.send(item).unwrap();
        }

        let mut received = Vec::new();
        for _ in 0..net::MESSAGES_PER_PEER {
            received.extend(asked(silent.next(STUCK).await));
        }
        assert_eq!(silent.next(Duration::from_millis(500)).await, None);
        assert!(load.backlogged(&silent.id), "the rest wait for it");
        assert!(load.bytes() > 0, "and count in the outbox's load");
        let mut budget = crate::budget::Budgets::new(1 << 20, 1 << 20);
        let refused = sync_refusal(&mut budget, &load, &node, &silent.id);
        assert_eq!(refused, Some(SyncRefusal::AnswersWait), "its asking waits");

        silent.answer_all();
        while received.len() < ids.len() {
            received.extend(asked(silent.next(STUCK).await));
        }
        // Streams of one connection may overtake one another on the way.
        received.sort();
        let mut sent = ids.clone();
        sent.sort();
        assert_eq!(received, sent, "every message arrived, once");
        let drained = tokio::time::timeout(STUCK, async {
            while load.bytes() > 0 || load.backlogged(&silent.id) {
                tokio::time::sleep(BUSY_RETRY).await;
            }
        })
        .await;
        assert!(drained.is_ok(), "the outbox is empty again");
        let refused = sync_refusal(&mut budget, &load, &node, &silent.id);
        assert_eq!(refused, None, "it is answered again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
