//! Nodes on one LAN find each other with no flags (mDNS), on hosts made of
//! network namespaces.

use peerbatch_tests::{wait_converged, wait_for, Lan, Node};
use std::time::Duration;

#[test]
fn nodes_on_a_lan_find_each_other_by_mdns_and_share_work() {
    let lan = Lan::new("md", 3);
    let tmp = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            Node::start_with(
                &tmp.path().join(format!("n{i}")),
                Some(host),
                &["--slots", "2"],
            )
        })
        .collect();
    wait_for(
        "three nodes to find each other by mDNS",
        Duration::from_secs(60),
        || nodes.iter().all(|n| n.live_nodes() == 3).then_some(()),
    );
    let out = nodes[0].cli(&[
        "run",
        "--array",
        "1-30",
        "--",
        "sh",
        "-c",
        "sleep 0.1; echo {index}",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let refs: Vec<&Node> = nodes.iter().collect();
    let list = wait_converged(&refs, &job, "succeeded", Duration::from_secs(60));
    let ran_on: std::collections::BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["node"].as_str().unwrap())
        .collect();
    assert!(ran_on.len() > 1, "work spread over the LAN: {ran_on:?}");
}
