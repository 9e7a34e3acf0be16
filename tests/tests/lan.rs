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

/// The LAN case of joining by approval (issue 11, finding 2): a machine started with
/// `--wait-for-approval` and nothing else is found by mDNS, listed with its LAN address, and
/// joins once the admin approves it.
#[test]
fn a_machine_found_by_mdns_waits_until_an_admin_approves_it() {
    let lan = Lan::new("ap", 2);
    let tmp = tempfile::tempdir().unwrap();
    let admin = Node::spawn(&tmp.path().join("admin"), Some(&lan.hosts[0]), &[]);
    let new = Node::spawn(
        &tmp.path().join("new"),
        Some(&lan.hosts[1]),
        &["--wait-for-approval"],
    );
    let new_id = new.listen_peer_id();
    let listed = wait_for(
        "the admin to list the machine it found by mDNS",
        Duration::from_secs(60),
        || {
            let list = admin.json(&["nodes", "--waiting", "--json"]);
            list.as_array()?
                .iter()
                .find(|w| w["peer"] == new_id.as_str())
                .cloned()
        },
    );
    assert!(
        listed["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("/ip4/10.77.0.2/tcp/")),
        "{listed}"
    );
    assert_eq!(admin.live_nodes(), 1, "the waiting machine is no node yet");
    let approved = admin.json(&["approve", &new_id, "--json"]);
    assert_eq!(approved["peer"], new_id.as_str());
    wait_for(
        "the approved machine to join",
        Duration::from_secs(60),
        || (admin.live_nodes() == 2 && new.live_nodes() == 2).then_some(()),
    );
}
