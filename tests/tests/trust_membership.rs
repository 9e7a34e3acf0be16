//! Closed by default (issue 11, finding 2): a node without key material makes a cluster key,
//! others join with `peerbatch invite`'s token, and running open takes a flag and a warning.

use peerbatch_tests::{bin, ok, wait_for, Node};
use std::time::Duration;

const LOOPBACK: &[&str] = &["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];

#[test]
fn a_node_without_key_material_makes_a_private_key_says_where_and_is_its_admin() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = Node::start_keyless(&tmp.path().join("a"), &[]);
    let key = a.dir.join("cluster.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("cluster.key exists");
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let said = format!("made {}", key.display());
    assert!(a.log().contains(&said), "the log does not say {said:?}");

    let invite = a.json(&["invite", "--json"]);
    assert_eq!(invite["admins"], serde_json::json!([a.peer_id()]));
    assert!(invite["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("pbjoin1:")));
}

#[test]
fn a_node_joins_with_an_invite_token_and_shares_work() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = Node::admin_and_member(tmp.path());
    let token = a.invite();
    let key = |n: &Node| std::fs::read(n.dir.join("cluster.key")).expect("cluster.key");
    assert_eq!(key(&a), key(&b), "B stored the token's key");
    let out = b.cli(&["run", "--array", "1-10", "--wait", "--", "echo", "{index}"]);
    let job = ok(&out, "run --wait");
    wait_for("A to see B's job succeed", Duration::from_secs(30), || {
        let tasks = a.json(&["tasks", &job, "--json"]);
        let all = tasks.as_array()?;
        (all.len() == 10 && all.iter().all(|t| t["state"] == "succeeded")).then_some(())
    });

    // A data dir that already holds another cluster's key is not silently switched.
    let other = tmp.path().join("c");
    std::fs::create_dir_all(&other).expect("mkdir");
    let made = std::process::Command::new(bin())
        .args(["keygen", "--out"])
        .arg(other.join("cluster.key"))
        .output()
        .expect("keygen");
    ok(&made, "keygen");
    let refused = std::process::Command::new(bin())
        .arg("node")
        .arg("--data-dir")
        .arg(&other)
        .args(LOOPBACK)
        .args(["--allow-root-tasks", "--join-token", &token])
        .output()
        .expect("run peerbatch node");
    assert!(!refused.status.success(), "a node with another key joined");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("holds the key of another cluster"),
        "{stderr}"
    );
}

#[test]
fn insecure_open_nodes_mesh_with_a_warning_and_keyed_nodes_stay_apart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = Node::start_keyless(&tmp.path().join("a"), &["--insecure-open"]);
    let a_addr = a.addr();
    let b = Node::start_keyless(
        &tmp.path().join("b"),
        &["--insecure-open", "--join", &a_addr],
    );
    let keyed = Node::start_keyless(&tmp.path().join("k"), &["--join", &a_addr]);
    wait_for("the open nodes to mesh", Duration::from_secs(30), || {
        (a.live_nodes() == 2 && b.live_nodes() == 2).then_some(())
    });
    for node in [&a, &b] {
        assert!(
            node.log().contains("running open (--insecure-open)"),
            "no warning"
        );
        assert!(!node.dir.join("cluster.key").exists());
    }
    let refused = "refused: it does not hold this node's cluster key";
    wait_for(
        "the keyed node to say why A refused it",
        Duration::from_secs(30),
        || keyed.log().contains(refused).then_some(()),
    );
    assert_eq!(keyed.live_nodes(), 1, "the keyed node sees only itself");
    assert_eq!(a.live_nodes(), 2, "A never counted the keyed node");
    let out = a.cli(&["invite"]);
    assert!(
        !out.status.success(),
        "an open node has nothing to invite with"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs open"));
}
