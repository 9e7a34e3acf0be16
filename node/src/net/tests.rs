//! End-to-end tests of the network module: real swarms on 127.0.0.1, no mDNS.
//!
//! Owns only test helpers; must not be used outside `#[cfg(test)]`.

use std::time::Duration;

use libp2p::{identity::Keypair, Multiaddr, PeerId};
use tokio::{sync::mpsc, time::timeout};

use super::{start, ClusterKey, Lobby, Net, NetConfig, NetEvent, Standing};

/// A fresh path in the temporary directory, unique to this test process and moment.
pub(super) fn temp_path(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "peerbatch-net-{name}-{}-{nanos}",
        std::process::id()
    ))
}

/// Generous upper bound for anything that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(20);

pub(super) fn config(
    keypair: Keypair,
    listen: &str,
    join: Vec<Multiaddr>,
    key: Option<[u8; 32]>,
) -> NetConfig {
    let me = keypair.public().to_peer_id();
    let standing = match key {
        Some(secret) => Standing::Member(Lobby::new(
            ClusterKey {
                secret,
                admins: Vec::new(),
            },
            me,
        )),
        None => Standing::Open,
    };
    NetConfig {
        keypair,
        listen: vec![listen.parse().expect("valid listen address")],
        join,
        standing,
        mdns: false,
    }
}

pub(super) async fn node(
    join: Vec<Multiaddr>,
    key: Option<[u8; 32]>,
) -> (Net, mpsc::Receiver<NetEvent>) {
    start(config(
        Keypair::generate_ed25519(),
        "/ip4/127.0.0.1/tcp/0",
        join,
        key,
    ))
    .await
    .expect("network starts")
}

/// Wait (up to `limit`) for the first event `pick` accepts, discarding others.
async fn wait_for_within<T>(
    rx: &mut mpsc::Receiver<NetEvent>,
    limit: Duration,
    mut pick: impl FnMut(NetEvent) -> Option<T>,
) -> Option<T> {
    timeout(limit, async {
        loop {
            let event = rx.recv().await.expect("event channel open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .ok()
}

async fn wait_for<T>(
    rx: &mut mpsc::Receiver<NetEvent>,
    what: &str,
    pick: impl FnMut(NetEvent) -> Option<T>,
) -> T {
    match wait_for_within(rx, PATIENCE, pick).await {
        Some(found) => found,
        None => panic!("timed out waiting for {what}"),
    }
}

pub(super) async fn listen_addr(rx: &mut mpsc::Receiver<NetEvent>) -> Multiaddr {
    wait_for(rx, "listen address", |e| match e {
        NetEvent::Listening(addr) => Some(addr),
        _ => None,
    })
    .await
}

async fn connected_to(rx: &mut mpsc::Receiver<NetEvent>, peer: PeerId) {
    wait_for(rx, "peer connection", |e| match e {
        NetEvent::PeerConnected(p) if p == peer => Some(()),
        _ => None,
    })
    .await
}

/// Publish distinct payloads from `from` until `to_rx` sees one (subscriptions take a moment
/// to propagate after connecting). Returns the payload received.
async fn gossip_until_received(
    from: &Net,
    to_rx: &mut mpsc::Receiver<NetEvent>,
) -> (PeerId, Vec<u8>) {
    for attempt in 0..80 {
        from.publish(format!("gossip #{attempt}").into_bytes())
            .await;
        let got = wait_for_within(to_rx, Duration::from_millis(250), |e| match e {
            NetEvent::Gossip { source, data, .. } => Some((source, data)),
            _ => None,
        })
        .await;
        if let Some(got) = got {
            return got;
        }
    }
    panic!("gossip never arrived");
}

#[tokio::test]
async fn same_cluster_key_gossip_messages_and_fetch() {
    let key = Some([7u8; 32]);
    let (a, mut a_rx) = node(vec![], key).await;
    let a_addr = listen_addr(&mut a_rx).await;
    let (b, mut b_rx) = node(vec![a_addr], key).await;
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());

    connected_to(&mut a_rx, b_id).await;
    connected_to(&mut b_rx, a_id).await;
    assert!(a.connected_peers().await.contains(&b_id));

    // Gossip A -> B, attributed to its author.
    let (source, data) = gossip_until_received(&a, &mut b_rx).await;
    assert_eq!(source, a_id);
    assert!(data.starts_with(b"gossip #"));

    // One-way message B -> A.
    b.send(a_id, b"hello A".to_vec()).await.expect("sent");
    let (from, data) = wait_for(&mut a_rx, "message", |e| match e {
        NetEvent::Message { from, data } => Some((from, data)),
        _ => None,
    })
    .await;
    assert_eq!((from, data.as_slice()), (b_id, &b"hello A"[..]));

    // B answers fetches and reports the messages it gets.
    let (b_msgs_tx, mut b_msgs) = mpsc::unbounded_channel();
    let responder = b.clone();
    tokio::spawn(async move {
        while let Some(event) = b_rx.recv().await {
            match event {
                NetEvent::Fetch { from, data, reply } => {
                    let mut answer = b"answer to ".to_vec();
                    answer.extend_from_slice(&data);
                    assert_eq!(from, a_id);
                    responder.respond(reply, answer).await;
                }
                NetEvent::Message { from, data } => {
                    let _ = b_msgs_tx.send((from, data));
                }
                _ => {}
            }
        }
    });

    let answer = timeout(PATIENCE, a.fetch(b_id, b"question".to_vec()))
        .await
        .expect("fetch finishes")
        .expect("fetch succeeds");
    assert_eq!(answer, b"answer to question");

    timeout(PATIENCE, a.send_acked(b_id, b"acked".to_vec()))
        .await
        .expect("send_acked finishes")
        .expect("send_acked succeeds");
    // The ack means B's event loop has already handed the message to B's node.
    let (from, data) = timeout(PATIENCE, b_msgs.recv())
        .await
        .expect("acked message arrives")
        .expect("responder running");
    assert_eq!((from, data.as_slice()), (a_id, &b"acked"[..]));
}

#[tokio::test]
async fn different_cluster_keys_never_connect() {
    let (a, mut a_rx) = node(vec![], Some([1u8; 32])).await;
    let a_addr = listen_addr(&mut a_rx).await;
    let (b, mut b_rx) = node(vec![a_addr.clone()], Some([2u8; 32])).await;
    b.dial(a.local_peer_id(), vec![a_addr]).await;
    b.send(a.local_peer_id(), b"let me in".to_vec())
        .await
        .expect("sent");
    a.publish(b"secret".to_vec()).await;

    let limit = Duration::from_secs(4);
    let relevant = |e: NetEvent| match e {
        NetEvent::PeerConnected(_) | NetEvent::Gossip { .. } | NetEvent::Message { .. } => {
            Some(format!("{e:?}"))
        }
        _ => None,
    };
    let (on_a, on_b) = tokio::join!(
        wait_for_within(&mut a_rx, limit, relevant),
        wait_for_within(&mut b_rx, limit, relevant),
    );
    assert_eq!(on_a, None, "A must not hear from B");
    assert_eq!(on_b, None, "B must not hear from A");
    assert!(b.connected_peers().await.is_empty());
}

#[tokio::test]
async fn plain_transport_without_cluster_key_connects() {
    let (a, mut a_rx) = node(vec![], None).await;
    let a_addr = listen_addr(&mut a_rx).await;
    let (b, mut b_rx) = node(vec![a_addr], None).await;
    connected_to(&mut b_rx, a.local_peer_id()).await;

    let (source, _) = gossip_until_received(&b, &mut a_rx).await;
    assert_eq!(source, b.local_peer_id());

    b.send(a.local_peer_id(), b"plain".to_vec())
        .await
        .expect("sent");
    let data = wait_for(&mut a_rx, "message", |e| match e {
        NetEvent::Message { data, .. } => Some(data),
        _ => None,
    })
    .await;
    assert_eq!(data, b"plain");
}

#[tokio::test]
async fn restarted_join_target_is_redialled() {
    let key = Some([9u8; 32]);
    let a_keypair = Keypair::generate_ed25519();
    let a_id = a_keypair.public().to_peer_id();
    let (a, mut a_rx) = start(config(
        a_keypair.clone(),
        "/ip4/127.0.0.1/tcp/0",
        vec![],
        key,
    ))
    .await
    .expect("A starts");
    let a_addr = listen_addr(&mut a_rx).await;
    let (b, mut b_rx) = node(vec![a_addr.clone()], key).await;
    connected_to(&mut b_rx, a_id).await;

    // "Kill" A: dropping its handle and receiver stops its event loop and closes its sockets.
    drop((a, a_rx));
    wait_for(&mut b_rx, "A to disconnect", |e| match e {
        NetEvent::PeerDisconnected(p) if p == a_id => Some(()),
        _ => None,
    })
    .await;

    // Restart A on the same address; B must find it again on its own.
    let mut restarted = None;
    for _ in 0..50 {
        match start(config(a_keypair.clone(), &a_addr.to_string(), vec![], key)).await {
            Ok(node) => {
                restarted = Some(node);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let (_a, _a_rx) = restarted.expect("A restarts on its old address");
    connected_to(&mut b_rx, a_id).await;
    assert!(b.connected_peers().await.contains(&a_id));
}
