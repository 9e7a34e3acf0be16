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
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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

pub fn spawn(store: LedgerStore, net: Net) -> mpsc::UnboundedSender<Item> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(store, net, rx));
    tx
}

async fn run(store: LedgerStore, net: Net, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut pending: Vec<Item> = Vec::new();
    while let Some(first) = rx.recv().await {
        pending.push(first);
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let mut healthy = true;
        let persists: Vec<(EventId, Vec<u8>)> = pending
            .iter_mut()
            .filter_map(|item| match item {
                Item::Persist(events) => Some(std::mem::take(events)),
                _ => None,
            })
            .flatten()
            .collect();
        if !persists.is_empty() {
            let written = match store.put_batch(&persists) {
                Ok(()) => store.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // Nothing unflushed may be sent: drop this round's sends.
                tracing::error!("cannot persist ledger events: {e:#}");
                healthy = false;
            }
        }
        for item in pending.drain(..) {
            match item {
                Item::Persist(_) => {}
                Item::Transmit(t) if healthy => send(&net, t),
                Item::Transmit(_) => {}
                Item::Replicate {
                    event,
                    peers,
                    reply,
                } => replicate(&store, &net, event, peers, reply),
            }
        }
    }
}

fn send(net: &Net, t: Transmit) {
    let bytes = codec::encode(&t.msg);
    match t.to {
        Destination::Gossip => net.publish(bytes),
        Destination::Peer(node) => {
            if let Some(peer) = peer_of(&node) {
                net.send(peer, bytes);
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
