//! A stopped node's stored ledger changed on disk: when the node starts
//! again it names the changed event, drops it and fetches the real one from
//! a peer; nothing made from the changed bytes shows.

use peerbatch_protocol::ids::to_hex;
use peerbatch_tests::{ok, wait_converged, wait_for, Cluster, Node, FAST};
use std::time::Duration;

/// Changes the last byte of `needle` inside the one stored event holding
/// it, under the same key; returns that key in hex.
fn change_stored_event(node: &Node, needle: &[u8]) -> String {
    let db = sled::open(node.dir.join("db")).unwrap();
    let events = db.open_tree("events").unwrap();
    let (key, value) = events
        .iter()
        .map(Result::unwrap)
        .find(|(_, v)| v.windows(needle.len()).any(|w| w == needle))
        .expect("an event holding the job's name is stored");
    let mut changed = value.to_vec();
    let at = changed
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    changed[at + needle.len() - 1] = b'X';
    events.insert(&key, changed).unwrap();
    db.flush().unwrap();
    to_hex(&key)
}

#[test]
fn an_event_changed_on_disk_is_named_dropped_and_fetched_again_from_a_peer() {
    let mut cluster = Cluster::start(2, FAST);
    let name = "a-job-someone-will-tamper-with";
    let first = &cluster.nodes[0];
    let job = ok(&first.cli(&["run", "--name", name, "--", "true"]), "run");
    let all: Vec<&Node> = cluster.nodes.iter().collect();
    wait_converged(&all, &job, "succeeded", Duration::from_secs(60));
    let jobs = cluster.nodes[0].json(&["jobs", "--json"]);

    let second = &mut cluster.nodes[1];
    second.kill9();
    let changed = change_stored_event(second, name.as_bytes());
    second.restart();

    wait_for(
        "the second node to hold the first's jobs again",
        Duration::from_secs(60),
        || (second.json(&["jobs", "--json"]) == jobs).then_some(()),
    );
    let log = second.dir.join("test-node.log");
    wait_for(
        "a warning naming the changed event",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).unwrap();
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(&changed))
                .then_some(())
        },
    );
    let events = |n: &Node| n.status()["events"].as_u64();
    assert_eq!(events(second), events(&cluster.nodes[0]));
}
