//! One peer cannot make a node queue replies without bound: a real node
//! process and a hostile member (holding the cluster key) that speaks the
//! node's own network layer and floods it with sync requests.

use libp2p::{identity::Keypair, Multiaddr, PeerId};
use peerbatch::net::{self, NetConfig, NetEvent};
use peerbatch_protocol::{codec, sync::Fingerprints, EventId, Message};
use peerbatch_tests::{ok, Node};
use std::time::Duration;
use tokio::time::timeout;

/// Waits for the next direct message from the node (other events skipped).
async fn next_message(
    rx: &mut tokio::sync::mpsc::Receiver<NetEvent>,
    within: Duration,
) -> Option<Message> {
    timeout(within, async {
        loop {
            match rx.recv().await {
                Some(NetEvent::Message { data, .. }) => {
                    if let Ok(msg) = codec::decode(&data) {
                        return msg;
                    }
                }
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .ok()
}

/// Bytes of events the node sends until it sends none for 3 s (its own
/// sync digests go on meanwhile).
async fn events_received(rx: &mut tokio::sync::mpsc::Receiver<NetEvent>) -> usize {
    let mut received = 0;
    let mut quiet_since = tokio::time::Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        if let Some(Message::Events { events }) = next_message(rx, Duration::from_secs(1)).await {
            received += events.iter().map(Vec::len).sum::<usize>();
            quiet_since = tokio::time::Instant::now();
        }
    }
    received
}

/// Sends `data` to `target`, waiting while the peer's own network holds
/// too many unacknowledged messages to it.
async fn send(peer: &net::Net, target: PeerId, data: Vec<u8>) {
    loop {
        match peer.send(target, data.clone()).await {
            Err(net::NetError::Busy(_)) => tokio::time::sleep(net::BUSY_RETRY).await,
            sent => return sent.expect("the peer's network runs"),
        }
    }
}

/// Peak resident memory of process `pid`, in MiB (Linux).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_get_events_is_answered_only_within_its_byte_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("cluster.key");
    let key = net::write_cluster_key(&key_file).unwrap();
    let node = Node::start(
        &tmp.path().join("node"),
        &[
            "--cluster-key",
            key_file.to_str().unwrap(),
            "--sync-rate",
            "1MiB",
        ],
    );
    // One job of about 1 MiB: its submit event is what the flood asks for.
    let job = tmp.path().join("big.toml");
    let filler = "x".repeat(1 << 20);
    std::fs::write(&job, format!("[[tasks]]\ncommand = \"true {filler}\"\n")).unwrap();
    ok(&node.cli(&["submit", job.to_str().unwrap()]), "submit");

    let addr: Multiaddr = node.addr().parse().unwrap();
    let keypair = Keypair::generate_ed25519();
    let key = net::ClusterKey {
        secret: key,
        admins: Vec::new(),
    };
    let standing = net::Standing::Member(net::Lobby::new(key, keypair.public().to_peer_id()));
    let (peer, mut rx) = net::start(NetConfig {
        keypair,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        join: vec![addr.clone()],
        standing,
        mdns: false,
    })
    .await
    .unwrap();
    let Some(libp2p::multiaddr::Protocol::P2p(target)) = addr.iter().last() else {
        panic!("no peer id in {addr}");
    };
    let target: PeerId = target;

    // Every id the node holds, from its answer to an empty digest.
    let empty = Message::SyncDigest {
        fingerprints: Fingerprints::default(),
    };
    let mut ids: Vec<EventId> = Vec::new();
    for _ in 0..100 {
        send(&peer, target, codec::encode(&empty)).await;
        let reply = next_message(&mut rx, Duration::from_millis(300)).await;
        if let Some(Message::SyncIds { buckets, .. }) = reply {
            ids = buckets.into_iter().flat_map(|(_, ids)| ids).collect();
            break;
        }
    }
    assert!(!ids.is_empty(), "the node listed its events");

    let before = peak_rss_mib(node.pid());
    // 300 requests for everything: ~300 MiB if each were answered.
    let flood = codec::encode(&Message::GetEvents { ids });
    for _ in 0..300 {
        send(&peer, target, flood.clone()).await;
    }
    let received = events_received(&mut rx).await;
    assert!(
        received >= 1 << 20,
        "the first requests were answered ({received} bytes)"
    );
    // Answering all 300 would queue ~300 MiB of replies to one peer.
    let peak = peak_rss_mib(node.pid());
    eprintln!("node peak RSS: {before} MiB before the flood, {peak} MiB after; {received} bytes of events received");
    assert!(
        peak - before < 100,
        "the node's peak grew from {before} to {peak} MiB answering one peer's flood"
    );
    ok(&node.cli(&["status"]), "the node still answers");
}
