//! Joining by approval (issue 11, finding 2): a machine started with `--wait-for-approval`
//! makes no key, gets nothing from the mesh and shows as waiting on the nodes it reaches, until
//! an admin approves it (`peerbatch approve PEER`), which hands it the cluster key.

use peerbatch_tests::{ok, wait_for, Node};
use serde_json::Value;
use std::time::Duration;

/// A job of one task that only a node labelled `role=new` may run.
const FOR_THE_NEW_NODE: &str =
    "[[tasks]]\nid = \"w\"\nrange = \"1..=1\"\ncommand = \"echo ran-on-the-new-node\"\nconstraints = [\"role=new\"]\n";

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string()
}

fn waiting_on(node: &Node, peer: &str) -> Option<Value> {
    let list = node.json(&["nodes", "--waiting", "--json"]);
    list.as_array()?.iter().find(|w| w["peer"] == peer).cloned()
}

fn task_state(node: &Node, job: &str) -> Value {
    node.json(&["tasks", job, "--json"])[0]["state"].clone()
}

#[test]
fn a_waiting_node_gets_nothing_until_an_admin_approves_it_and_then_runs_work() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (admin, member) = Node::admin_and_member(tmp.path());
    let job_file = tmp.path().join("new.toml");
    std::fs::write(&job_file, FOR_THE_NEW_NODE).expect("job file");
    let job = ok(
        &admin.cli(&["submit", job_file.to_str().expect("UTF-8")]),
        "submit",
    );

    let admin_addr = admin.addr();
    let new = Node::start_keyless(
        &tmp.path().join("new"),
        &[
            "--wait-for-approval",
            "--join",
            &admin_addr,
            "--label",
            "role=new",
        ],
    );
    let new_id = new.listen_peer_id();
    let listed = wait_for(
        "the admin to list the new node as waiting",
        Duration::from_secs(30),
        || waiting_on(&admin, &new_id),
    );
    assert_eq!(listed["host"], host_name().as_str(), "{listed}");
    assert!(listed["addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("/ip4/127.0.0.1/")));

    // Before approval it has nothing and is handed nothing.
    assert!(!new.dir.join("cluster.key").exists(), "it made a key");
    assert!(new
        .log()
        .contains(&format!("waiting for approval: this node is {new_id}")));
    let jobs = new.cli(&["jobs", "--json"]);
    assert!(!jobs.status.success(), "a waiting node answered with jobs");
    let said = String::from_utf8_lossy(&jobs.stderr);
    assert!(said.contains("waits for approval"), "{said}");
    let nodes = admin.json(&["nodes", "--json"]);
    assert!(
        nodes
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["id"] != new_id.as_str())),
        "the admin knows the waiting node as a node: {nodes}"
    );
    assert_eq!(
        task_state(&admin, &job),
        "pending",
        "no node may run it yet"
    );

    // Only an admin approves.
    let refused = member.cli(&["approve", &new_id]);
    assert!(
        !refused.status.success(),
        "a member that is no admin approved"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is not an admin"), "{said}");
    assert!(!new.dir.join("cluster.key").exists());

    let approved = admin.json(&["approve", &new_id, "--json"]);
    assert_eq!(approved["peer"], new_id.as_str());
    let admin_id = admin.listen_peer_id();
    wait_for("the approved node to join", Duration::from_secs(60), || {
        (admin.live_nodes() == 3 && new.live_nodes() == 3).then_some(())
    });
    let key = |n: &Node| std::fs::read(n.dir.join("cluster.key")).expect("cluster.key");
    assert_eq!(key(&new), key(&admin), "it stored the admin's key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(new.dir.join("cluster.key")).expect("cluster.key");
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    assert!(new.log().contains(&format!("approved by admin {admin_id}")));
    wait_for(
        "the new node to run the job's task",
        Duration::from_secs(60),
        || (task_state(&admin, &job) == "succeeded").then_some(()),
    );
    let out = ok(&admin.cli(&["logs", &job, "w1"]), "logs");
    assert_eq!(out, "ran-on-the-new-node");
    assert!(
        waiting_on(&admin, &new_id).is_none(),
        "still listed as waiting"
    );
}
