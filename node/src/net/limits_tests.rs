//! One peer cannot take over a node's network: real swarms on 127.0.0.1.
//!
//! Owns only tests of the connection limits and of gossip validation with
//! peer scoring; must not be used outside `#[cfg(test)]`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{identity::Keypair, swarm::dial_opts::DialOpts, swarm::SwarmEvent, Multiaddr};
use tokio::{sync::mpsc, time::timeout};

use super::tests::{config, listen_addr, node};
use super::{behaviour, GossipVerdict, Net, NetEvent};

/// How many of `n` swarms sharing one identity keep a connection to the
/// node at `addr` once it has had its say.
async fn connections_kept(addr: Multiaddr, n: usize) -> usize {
    let key = Keypair::generate_ed25519();
    let mut kept = 0;
    let mut swarms = Vec::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let cfg = config(key.clone(), "/ip4/127.0.0.1/tcp/0", vec![], None);
        let mut swarm = behaviour::build_swarm(&cfg).expect("swarm builds");
        swarm
            .dial(DialOpts::unknown_peer_id().address(addr.clone()).build())
            .expect("dial starts");
        swarms.push(swarm);
    }
    for mut swarm in swarms {
        let mut up = false;
        // Established, then closed by the node if it is one too many.
        let _ = timeout(Duration::from_secs(3), async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => up = true,
                    SwarmEvent::ConnectionClosed { .. }
                    | SwarmEvent::OutgoingConnectionError { .. } => up = false,
                    _ => {}
                }
            }
        })
        .await;
        kept += usize::from(up);
        // Keep the connection open while the others are judged.
        held.push(swarm);
    }
    kept
}

#[tokio::test]
async fn one_peer_holds_at_most_two_connections_to_a_node() {
    let (_a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let drain = tokio::spawn(async move { while a_rx.recv().await.is_some() {} });
    assert_eq!(connections_kept(addr, 5).await, 2);
    drain.abort();
}

/// Publishes from `from` until `to_rx` hears it; returns its event.
pub(super) async fn publish_until_heard(
    from: &Net,
    tag: &str,
    to_rx: &mut mpsc::Receiver<NetEvent>,
) -> NetEvent {
    for attempt in 0..80 {
        from.publish(format!("{tag} #{attempt}").into_bytes()).await;
        let heard = timeout(Duration::from_millis(250), async {
            loop {
                match to_rx.recv().await {
                    Some(event @ NetEvent::Gossip { .. }) => return event,
                    Some(_) => {}
                    None => panic!("event channel closed"),
                }
            }
        })
        .await;
        if let Ok(event) = heard {
            return event;
        }
    }
    panic!("{tag} gossip never arrived");
}

#[tokio::test]
async fn a_peer_whose_gossip_is_rejected_is_not_heard_again_while_others_are() {
    let (a, mut a_rx) = node(vec![], None).await;
    let addr = listen_addr(&mut a_rx).await;
    let (bad, _bad_rx) = node(vec![addr.clone()], None).await;
    let (good, _good_rx) = node(vec![addr], None).await;

    let NetEvent::Gossip { source, ticket, .. } = publish_until_heard(&bad, "bad", &mut a_rx).await
    else {
        unreachable!()
    };
    assert_eq!(source, bad.local_peer_id());
    a.judge_gossip(ticket, GossipVerdict::Reject).await;

    for i in 0..20 {
        bad.publish(format!("bad again #{i}").into_bytes()).await;
    }
    // The good peer is still heard; nothing more from the bad one.
    let NetEvent::Gossip { source, data, .. } = publish_until_heard(&good, "good", &mut a_rx).await
    else {
        unreachable!()
    };
    let heard = String::from_utf8_lossy(&data);
    assert_ne!(source, bad.local_peer_id(), "heard {heard:?}");
    let late = timeout(Duration::from_secs(1), async {
        loop {
            if let Some(NetEvent::Gossip { source, .. }) = a_rx.recv().await {
                if source == bad.local_peer_id() {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        late.is_err(),
        "a rejected peer's gossip was delivered again"
    );
}
