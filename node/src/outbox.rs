//! The outbox: makes events durable, then sends what depended on them.
//!
//! Owns the write path's ordering rule — nothing polled from the core after a
//! persist is transmitted before that persist is flushed to sled — while
//! keeping the driver free to take new input during an fsync. Items arrive in
//! the driver's order; consecutive persists are written and flushed together
//! (group commit). Must not make protocol decisions or touch the Swarm.

use crate::identity::peer_of;
use crate::net::Net;
use crate::store::ledger::LedgerStore;
use futures::StreamExt;
use libp2p::PeerId;
use peerbatch_protocol::core::Destination;
use peerbatch_protocol::{codec, EventId, EventStore, Message, Transmit};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a submit waits for a peer to hold the job before answering.
const REPLICATION_WAIT: Duration = Duration::from_secs(10);

pub enum Item {
    Persist(Vec<(EventId, Vec<u8>)>),
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
            Item::Replicate { .. } => 0,
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
    }
}

/// How long to wait before writing again after the disk refused a write.
const RETRY_WRITE: Duration = Duration::from_secs(1);

/// Starts the outbox. The counter holds the bytes of items queued and not
/// yet carried out (the sender adds [`Item::size`], the outbox subtracts
/// it), by which the driver holds back input; the watch carries why the
/// ledger cannot be written (`None` while it can): the driver stops
/// claiming meanwhile.
pub fn spawn(
    store: LedgerStore,
    net: Net,
) -> (
    mpsc::UnboundedSender<Item>,
    Arc<AtomicUsize>,
    watch::Receiver<Option<String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (health_tx, health_rx) = watch::channel(None);
    let queued = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run(store, net, rx, queued.clone(), health_tx));
    (tx, queued, health_rx)
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
    queued: Arc<AtomicUsize>,
    health: watch::Sender<Option<String>>,
) {
    let mut pending: Vec<Item> = Vec::new();
    // Leading persist items of `pending` already inserted (not yet flushed).
    let mut inserted = 0;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
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
            queued.fetch_sub(item.size(), Relaxed);
            match item {
                Item::Persist(_) => {}
                Item::Transmit(t) => send(&net, t).await,
                Item::Replicate {
                    event,
                    peers,
                    reply,
                } => replicate(&store, &net, event, peers, reply),
            }
        }
    }
}

async fn send(net: &Net, t: Transmit) {
    let bytes = codec::encode(&t.msg);
    match t.to {
        Destination::Gossip => net.publish(bytes).await,
        Destination::Peer(node) => {
            if let Some(peer) = peer_of(&node) {
                net.send(peer, bytes).await;
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
                async move { net.send_acked(peer, msg).await }
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
