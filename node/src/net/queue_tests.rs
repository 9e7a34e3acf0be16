//! The network's queues are bounded and cannot deadlock: real swarms on 127.0.0.1.
//!
//! Owns only tests of the command channel's bound, of the loop's serving
//! commands while the node does not read its events, and of the bounds on
//! requests awaiting answers; must not be used outside `#[cfg(test)]`.

use std::time::Duration;

use futures::FutureExt;
use libp2p::{Multiaddr, PeerId};
use tokio::{sync::mpsc, time::timeout};

use super::limits_tests::publish_until_heard;
use super::silent_peer::{Received, SilentPeer};
use super::slots::{FETCHES_IN_ALL, FETCHES_PER_PEER, MESSAGES_PER_PEER};
use super::tests::{listen_addr, node};
use super::{Busy, Net, NetError, NetEvent, RequestKind};
use super::{COMMAND_CHANNEL_CAPACITY, EVENT_CHANNEL_CAPACITY};

/// Long enough for anything that is not stuck for good.
const STUCK: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_caller_that_outpaces_the_network_loop_waits_for_room_and_then_goes_on() {
    let (a, mut a_rx) = node(vec![], None).await;
    listen_addr(&mut a_rx).await;
    // Without yielding, the loop (on this same thread) takes nothing in;
    // `unconstrained` keeps tokio's task budget from making sends wait.
    let taken = tokio::task::unconstrained(async {
        let mut taken = 0;
        while taken <= 10 * COMMAND_CHANNEL_CAPACITY {
            let publish = a.publish(format!("burst #{taken}").into_bytes());
            if publish.now_or_never().is_none() {
                break;
            }
            taken += 1;
        }
        taken
    })
    .await;
    assert_eq!(
        taken, COMMAND_CHANNEL_CAPACITY,
        "commands taken before the caller had to wait"
    );
    timeout(STUCK, a.publish(b"after the burst".to_vec()))
        .await
        .expect("the caller goes on once the loop has taken commands in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_sends_commands_while_not_reading_its_events_is_not_deadlocked() {
    let (a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let (b, _b_rx) = node(vec![addr], None).await;
    publish_until_heard(&b, "first", &mut a_rx).await;

    // A stops reading; B's gossip fills A's event channel, so A's loop
    // waits for room.
    let filled = timeout(STUCK, async {
        let mut n = 0u64;
        while a_rx.len() < EVENT_CHANNEL_CAPACITY {
            b.publish(format!("filler #{n}").into_bytes()).await;
            n += 1;
            if n.is_multiple_of(64) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await;
    assert!(filled.is_ok(), "B's gossip filled A's event channel");

    // Meanwhile A sends more commands than its channel holds, and one
    // that needs the loop's answer.
    let commands = async {
        for i in 0..3 * COMMAND_CHANNEL_CAPACITY {
            a.publish(format!("while full #{i}").into_bytes()).await;
        }
        a.connected_peers().await
    };
    let peers = timeout(STUCK, commands)
        .await
        .expect("A's commands are taken while its events wait");
    assert!(peers.contains(&b.local_peer_id()));
    assert_eq!(a_rx.len(), EVENT_CHANNEL_CAPACITY, "A still has not read");
}

/// Waits until the node whose events `rx` carries is connected to `peer`.
async fn connected(rx: &mut mpsc::Receiver<NetEvent>, peer: PeerId) {
    let seen = timeout(STUCK, async {
        while let Some(event) = rx.recv().await {
            if matches!(event, NetEvent::PeerConnected(p) if p == peer) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "{peer} connected");
}

/// A silent peer connected to the node at `addr`, whose events `rx` carries.
async fn silent_peer(addr: &Multiaddr, rx: &mut mpsc::Receiver<NetEvent>) -> SilentPeer {
    let peer = SilentPeer::start(addr.clone()).await;
    connected(rx, peer.id).await;
    peer
}

/// Reads and drops the rest of a node's events.
fn drain(mut rx: mpsc::Receiver<NetEvent>) {
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
}

/// A node that answers every fetch with an empty answer.
async fn answering_node(join: Multiaddr) -> Net {
    let (net, mut rx) = node(vec![join], None).await;
    let responder = net.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let NetEvent::Fetch { reply, .. } = event {
                responder.respond(reply, Vec::new()).await;
            }
        }
    });
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_past_the_bound_for_one_silent_peer_are_refused_while_others_still_go() {
    let (a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let mut silent = silent_peer(&addr, &mut a_rx).await;
    let other = answering_node(addr).await;
    connected(&mut a_rx, other.local_peer_id()).await;
    drain(a_rx);

    silent.hold_fetches(&a, FETCHES_PER_PEER).await;
    let refused = timeout(STUCK, a.fetch(silent.id, b"one more".to_vec())).await;
    assert!(
        matches!(
            refused,
            Ok(Err(NetError::Busy(Busy::Peer { kind: RequestKind::Fetch, peer, limit })))
                if peer == silent.id && limit == FETCHES_PER_PEER
        ),
        "one fetch more than the bound: {refused:?}"
    );
    let answered = timeout(
        STUCK,
        a.fetch(other.local_peer_id(), b"to another".to_vec()),
    )
    .await;
    assert!(matches!(answered, Ok(Ok(_))), "another peer: {answered:?}");

    silent.answer_all();
    let again = async {
        loop {
            match a.fetch(silent.id, b"once answered".to_vec()).await {
                Err(NetError::Busy(_)) => tokio::time::sleep(super::BUSY_RETRY).await,
                done => return done,
            }
        }
    };
    let again = timeout(STUCK, again).await;
    assert!(matches!(again, Ok(Ok(_))), "after the answers: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_past_the_bound_for_all_peers_are_refused() {
    let (a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let mut last = silent_peer(&addr, &mut a_rx).await;
    let mut silent = Vec::new();
    for _ in 0..FETCHES_IN_ALL / FETCHES_PER_PEER {
        silent.push(silent_peer(&addr, &mut a_rx).await);
    }
    drain(a_rx);
    for peer in &mut silent {
        peer.hold_fetches(&a, FETCHES_PER_PEER).await;
    }
    let refused = timeout(STUCK, a.fetch(last.id, b"one more".to_vec())).await;
    assert!(
        matches!(
            refused,
            Ok(Err(NetError::Busy(Busy::Node { kind: RequestKind::Fetch, limit })))
                if limit == FETCHES_IN_ALL
        ),
        "a fetch past the bound for all peers: {refused:?}"
    );
    assert_eq!(
        last.next(Duration::from_millis(500)).await,
        None,
        "not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_bound_for_one_silent_peer_are_refused_unsent() {
    let (a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let mut silent = silent_peer(&addr, &mut a_rx).await;
    drain(a_rx);
    for i in 0..MESSAGES_PER_PEER {
        let sent = a.send(silent.id, format!("held #{i}").into_bytes()).await;
        assert!(sent.is_ok(), "message {i}: {sent:?}");
    }
    for _ in 0..MESSAGES_PER_PEER {
        let got = silent.next(STUCK).await;
        assert!(matches!(got, Some(Received::Message(_))), "got {got:?}");
    }
    let refused = a.send(silent.id, b"one more".to_vec()).await;
    assert!(
        matches!(
            refused,
            Err(NetError::Busy(Busy::Peer {
                kind: RequestKind::Message,
                ..
            }))
        ),
        "one message more than the bound: {refused:?}"
    );
    assert_eq!(
        silent.next(Duration::from_millis(500)).await,
        None,
        "not sent"
    );
}
