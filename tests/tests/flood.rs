//! One peer cannot make a node queue replies without bound, nor take its
//! upload from others: a real node process and a hostile member (holding the
//! cluster key) that speaks the node's own network layer and floods it with
//! sync requests or chunk fetches.

use libp2p::{identity::Keypair, Multiaddr, PeerId};
use peerbatch::net::{self, NetConfig, NetEvent};
use peerbatch_protocol::content::{FetchRequest, FetchResponse, Object};
use peerbatch_protocol::ids::from_hex;
use peerbatch_protocol::{codec, sync::Fingerprints, EventId, Message};
use peerbatch_tests::{ok, wait_for, Node};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// Waits for the next direct message from the node (other events skipped).
async fn next_message(rx: &mut Receiver<NetEvent>, within: Duration) -> Option<Message> {
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
async fn events_received(rx: &mut Receiver<NetEvent>) -> usize {
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

/// A member holding `key`, connected to `node`: its network, its events
/// and the node's peer id.
async fn member(key: [u8; 32], node: &Node) -> (net::Net, Receiver<NetEvent>, PeerId) {
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
    let connected = timeout(Duration::from_secs(30), async {
        while let Some(event) = rx.recv().await {
            if matches!(event, NetEvent::PeerConnected(p) if p == target) {
                return;
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "the member connects to the node");
    (peer, rx, target)
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

    let (peer, mut rx, target) = member(key, &node).await;

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

/// Fetches the chunk hashes of file blob `id` from `target`.
async fn chunk_hashes(peer: &net::Net, target: PeerId, id: &str) -> Vec<[u8; 32]> {
    let hash = from_hex(id).expect("a blob id");
    let reply = timeout(
        Duration::from_secs(30),
        peer.fetch(target, codec::encode(&FetchRequest::Chunk(hash))),
    )
    .await
    .expect("the node answers")
    .expect("the fetch goes through");
    let Ok(FetchResponse::Chunk(object)) = codec::decode(&reply) else {
        panic!("the node sends the blob's manifest");
    };
    let Ok(Object::File(manifest)) = codec::decode(&object) else {
        panic!("a file manifest");
    };
    manifest.chunks.iter().map(|c| c.hash).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_fetching_far_past_its_chunk_budget_waits_while_another_member_gets_its_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("cluster.key");
    let key = net::write_cluster_key(&key_file).unwrap();
    let keyed = ["--cluster-key", key_file.to_str().unwrap()];
    let node = Node::start(
        &tmp.path().join("node"),
        &[&keyed[..], &["--chunk-rate", "1MiB"]].concat(),
    );
    let big = tmp.path().join("big");
    let small = tmp.path().join("small");
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    };
    std::fs::write(&big, pattern(16 << 20, 1)).unwrap();
    std::fs::write(&small, pattern(200_000, 2)).unwrap();
    let put = |path: &std::path::Path| ok(&node.cli(&["put", path.to_str().unwrap()]), "put");
    let (big_id, small_id) = (put(&big), put(&small));

    // 32 fetches of all 16 MiB at once: 512 MiB asked of a 1 MiB/s budget.
    let (peer, _rx, target) = member(key, &node).await;
    let hashes = chunk_hashes(&peer, target, &big_id).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let ask = codec::encode(&FetchRequest::Chunks(hashes));
    for _ in 0..32 {
        let (peer, ask, answered) = (peer.clone(), ask.clone(), answered.clone());
        tokio::spawn(async move {
            loop {
                match peer.fetch(target, ask.clone()).await {
                    Err(net::NetError::Busy(_)) => tokio::time::sleep(net::BUSY_RETRY).await,
                    Ok(_) => return answered.fetch_add(1, Relaxed),
                    Err(_) => return 0,
                }
            }
        });
    }
    wait_for("the first answer", Duration::from_secs(30), || {
        (answered.load(Relaxed) > 0).then_some(())
    });

    // Another member gets its blob meanwhile, and the node's API answers.
    let node_addr = node.addr();
    let other = Node::start(
        &tmp.path().join("other"),
        &[&keyed[..], &["--join", &node_addr]].concat(),
    );
    let out = tmp.path().join("small.out");
    ok(
        &other.cli(&["get", &small_id, "--out", out.to_str().unwrap()]),
        "the other member's get",
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&small).unwrap());
    let status = node.status();

    let answered = answered.load(Relaxed);
    eprintln!(
        "{answered} of the flood's 32 fetches answered; the node deferred {}",
        status["fetches_deferred"]
    );
    // Four pass at once (one per serving slot), then 64 MiB of debt holds
    // the rest for about a minute.
    assert!(
        answered <= 8,
        "the flooding peer had {answered} of its 32 fetches answered"
    );
    let deferred = status["fetches_deferred"].as_u64().unwrap_or(0);
    assert!(
        deferred >= 16,
        "the node deferred {deferred} fetches past the peer's budget"
    );
}
