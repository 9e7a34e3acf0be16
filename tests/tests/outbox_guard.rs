//! A node holds network input while its outbox is over its limit, loses
//! nothing and goes on: real node processes, one with an outbox limit so
//! small (`--outbox-limit 1`) that every write or message it queues holds
//! its input until it is out.

use peerbatch_tests::{ok, wait_converged, wait_for, Node, FAST};
use std::time::Duration;

#[test]
fn a_node_holding_input_for_its_full_outbox_loses_nothing_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"), FAST);
    let a_addr = a.addr();
    let tight = [FAST, &["--outbox-limit", "1", "--join", &a_addr]].concat();
    let b = Node::start(&tmp.path().join("b"), &tight);
    wait_for("the two nodes to mesh", Duration::from_secs(30), || {
        (a.live_nodes() == 2 && b.live_nodes() == 2).then_some(())
    });

    let job = |name: &str, tasks: u32| {
        let path = tmp.path().join(format!("{name}.toml"));
        let text = format!(
            "name = \"{name}\"\n[[tasks]]\nid = \"t-\"\ncommand = \"echo {{index}}\"\nrange = \"1..={tasks}\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    // Submitted on A: B takes its events, claims and reports while every
    // item it queues holds its input.
    let first = ok(
        &a.cli(&["submit", job("first", 200).to_str().unwrap()]),
        "submit on A",
    );
    let tasks = wait_converged(&[&a, &b], &first, "succeeded", Duration::from_secs(120));
    assert_eq!(tasks.as_array().map(Vec::len), Some(200));
    let ran_on_b = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["node"] == b.peer_id().as_str())
        .count();
    assert!(ran_on_b > 0, "B ran none of the tasks");

    // It recovers: a job submitted on B reaches A and runs to the end.
    let second = ok(
        &b.cli(&["submit", job("second", 20).to_str().unwrap()]),
        "submit on B",
    );
    wait_converged(&[&a, &b], &second, "succeeded", Duration::from_secs(60));
    wait_for(
        "both ledgers to hold the same events",
        Duration::from_secs(30),
        || (a.status()["events"] == b.status()["events"]).then_some(()),
    );

    let held = b.status()["input_held"].as_u64().unwrap_or(0);
    assert!(held > 0, "B never held its input (input_held = {held})");
}
