//! Approval over real swarms on 127.0.0.1: a waiting node's failed connections list it in a
//! keyed node's lobby (read out of the swarm's error chain by `doorbell`), and an armed
//! approval reaches it. Owns only these tests.

use std::time::Duration;

use libp2p::{identity::Keypair, Multiaddr};
use tokio::time::{sleep, timeout};

use super::{
    start,
    tests::{listen_addr, temp_path},
    Candidate, ClusterKey, Lobby, NetConfig, Standing, WaitingPeer,
};

const PATIENCE: Duration = Duration::from_secs(20);

fn config(keypair: Keypair, join: Vec<Multiaddr>, standing: Standing) -> NetConfig {
    NetConfig {
        keypair,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("listen address")],
        join,
        standing,
        mdns: false,
    }
}

async fn listed(lobby: &Lobby) -> WaitingPeer {
    let first = async {
        loop {
            if let Some(w) = lobby.waiting().into_iter().next() {
                return w;
            }
            sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(PATIENCE, first)
        .await
        .expect("a waiting peer listed")
}

#[tokio::test]
async fn a_waiting_swarm_is_listed_connects_to_nothing_and_takes_the_admins_approval() {
    let admin_keys = Keypair::generate_ed25519();
    let admin_id = admin_keys.public().to_peer_id();
    let lobby = Lobby::new(ClusterKey::generate(vec![admin_id]), admin_id);
    let (admin, mut admin_rx) = start(config(admin_keys, vec![], Standing::Member(lobby.clone())))
        .await
        .expect("admin starts");
    let admin_addr = listen_addr(&mut admin_rx).await;

    let key_file = temp_path("approved.key");
    let candidate = Candidate::new("unit-host", key_file.clone());
    let waiting_keys = Keypair::generate_ed25519();
    let waiting_id = waiting_keys.public().to_peer_id();
    let standing = Standing::Waiting(candidate.clone());
    let (waiting, _waiting_rx) = start(config(waiting_keys, vec![admin_addr], standing))
        .await
        .expect("waiting node starts");

    let seen = listed(&lobby).await;
    assert_eq!((seen.peer, seen.host.as_str()), (waiting_id, "unit-host"));
    assert!(!seen.dialled, "it dialled the admin");
    assert!(seen.addr.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    assert!(admin.connected_peers().await.is_empty());
    assert!(waiting.connected_peers().await.is_empty());
    assert!(!key_file.exists());

    let arming = lobby.arm(waiting_id).expect("an admin arms");
    assert_eq!(arming.dial, None, "its listen address is not known");
    let approval = timeout(PATIENCE, candidate.approved())
        .await
        .expect("approved at its next dial");
    assert_eq!(approval.by, admin_id);
    assert_eq!(&approval.key, lobby.key());
    assert_eq!(arming.outcome.await.expect("reported"), Ok(()));
    assert_eq!(ClusterKey::read(&key_file).expect("stored"), approval.key);
    assert!(lobby.waiting().is_empty());
    assert!(
        admin.connected_peers().await.is_empty(),
        "approval admits nobody"
    );
    let _ = std::fs::remove_file(&key_file);
}
