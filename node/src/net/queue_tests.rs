//! The network's queues are bounded and cannot deadlock: real swarms on 127.0.0.1.
//!
//! Owns only tests of the command channel's bound and of the loop's serving
//! commands while the node does not read its events; must not be used
//! outside `#[cfg(test)]`.

use std::time::Duration;

use futures::FutureExt;
use tokio::time::timeout;

use super::limits_tests::publish_until_heard;
use super::tests::{listen_addr, node};
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
