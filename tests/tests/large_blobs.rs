//! Large files kept once: a default `get` leaves one copy of the bytes on
//! the node (the store's data file, linked out), an input staged for many
//! tasks is held once and they cannot change it, and a node killed in the
//! middle of a get serves only the chunks it verified and resumes.

use peerbatch_tests::{
    bin, hash_file, ok, wait_for, wait_tasks_ended, write_pattern, Cluster, Node, FAST,
};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Bytes `du` counts on disk for all of `paths` together (a file linked
/// at two of them counts once).
fn du(paths: &[&Path]) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-c", "-B1"])
        .args(paths)
        .output()
        .unwrap();
    let text = ok(&out, "du");
    let total = text.lines().last().unwrap();
    total.split_whitespace().next().unwrap().parse().unwrap()
}

fn put(node: &Node, path: &Path) -> String {
    ok(&node.cli(&["put", path.to_str().unwrap()]), "put")
}

#[test]
fn a_default_get_leaves_the_bytes_once_on_the_nodes_disk() {
    let cluster = Cluster::start(2, &[]);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let size = 128 * MIB;
    let file = cluster.tmp.path().join("big");
    let hash = write_pattern(&file, size, 15);
    let id = put(a, &file);
    let before = du(&[&b.dir]);

    let out = cluster.tmp.path().join("got");
    let args = ["get", &id, "--out", out.to_str().unwrap()];
    ok(&b.cli(&args), "get");
    assert_eq!(hash_file(&out), hash);
    let used = du(&[&b.dir, &out]) - before;
    assert!(
        used <= size + size / 10,
        "data dir and output grew by {used} bytes for a {size}-byte file"
    );

    // A second get of it, and the node serving it, still hold one copy.
    let again = cluster.tmp.path().join("again");
    ok(
        &b.cli(&["get", &id, "--out", again.to_str().unwrap()]),
        "get again",
    );
    assert_eq!(hash_file(&again), hash);
    let used = du(&[&b.dir, &out, &again]) - before;
    assert!(used <= size + size / 10, "{used} bytes after two gets");
    let on_a = du(&[&a.dir]);
    assert!(
        on_a <= size + size / 10,
        "{on_a} bytes on the node that put it"
    );
}

/// The have bytes of blob `id`'s data file on `node`: 1 per chunk held.
fn have_bytes(node: &Node, id: &str) -> Vec<u8> {
    let path = node.dir.join("chunks/large").join(format!("{id}.have"));
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_node_killed_during_a_get_serves_only_verified_chunks_and_resumes() {
    let mut cluster = Cluster::start(3, &[]);
    let size = 200 * MIB;
    let chunks = size / MIB;
    let file = cluster.tmp.path().join("big");
    let hash = write_pattern(&file, size, 2027);
    let id = put(&cluster.nodes[0], &file);

    let out = cluster.tmp.path().join("big.out");
    let b = &cluster.nodes[1];
    let get = Command::new(bin())
        .arg("--data-dir")
        .arg(&b.dir)
        .args(["get", &id, "--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("B to fetch some chunks", Duration::from_secs(60), || {
        let n = b.status()["chunks_fetched"].as_u64().unwrap();
        (n >= 3).then_some(())
    });
    cluster.nodes[1].kill9();
    assert!(!get.wait_with_output().unwrap().status.success());
    assert!(!out.exists(), "nothing appears before every chunk is here");
    let have = have_bytes(&cluster.nodes[1], &id);
    let held = have.iter().filter(|&&b| b == 1).count() as u64;
    assert!(held < chunks, "the killed get does not look complete");

    // B restarts with part of the blob; A, the only full copy, goes away,
    // so everything C gets comes from B.
    cluster.nodes[1].restart();
    cluster.wait_meshed();
    cluster.nodes[0].kill9();
    let c = &cluster.nodes[2];
    let bare = cluster.tmp.path().join("from-b");
    let args = ["get", "--no-store", &id, "--out", bare.to_str().unwrap()];
    assert!(!c.cli(&args).status.success(), "B cannot serve it all");
    let st = c.status();
    assert_eq!(st["bad_chunks"], 0, "B served only verified chunks: {st}");
    let served = st["chunks_fetched"].as_u64().unwrap();
    assert!(served >= 1, "B served the chunks it holds: {st}");

    cluster.nodes[0].restart();
    cluster.wait_meshed();
    let b = &cluster.nodes[1];
    let done = b.json(&["get", &id, "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(hash_file(&out), hash);
    let present = done["chunks_present"].as_u64().unwrap();
    assert!(present >= held.max(1), "resumed from what was held: {done}");
    assert_eq!(present + done["chunks_fetched"].as_u64().unwrap(), chunks);
    assert!(have_bytes(b, &id).iter().all(|&b| b == 1));
}

#[test]
fn a_large_input_staged_for_four_tasks_is_held_once_and_they_cannot_change_it() {
    let cluster = Cluster::start(1, &[FAST, &["--run-as", "nobody"]].concat());
    let node = &cluster.nodes[0];
    let size = 48 * MIB;
    let input = cluster.tmp.path().join("big.bin");
    write_pattern(&input, size, 4);
    let sum = Command::new("sha256sum")
        .arg("-b")
        .stdin(fs::File::open(&input).unwrap())
        .output();
    let sum = ok(&sum.unwrap(), "sha256sum");
    let before = du(&[&node.dir]);
    let job_file = cluster.file(
        "four.toml",
        r#"
[[tasks]]
id = "t"
range = "1..=4"
command = "echo x 2>/dev/null > big.bin && echo changed; sha256sum -b < big.bin"
inputs = [{ path = "big.bin", source = "big.bin" }]
"#,
    );
    let job = ok(&node.cli(&["submit", job_file.to_str().unwrap()]), "submit");
    let list = wait_tasks_ended(node, &job);
    for t in list.as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{list}");
        let task = t["id"].as_str().unwrap();
        let seen = ok(&node.cli(&["logs", &job, task]), "logs");
        assert_eq!(seen, sum, "task {task} saw its input unchanged");
    }
    let used = du(&[&node.dir]) - before;
    assert!(
        used <= size + size / 10,
        "the node's data dir grew by {used} bytes for a {size}-byte input used by 4 tasks"
    );
}

/// Runs a job of `n` tasks on `node`, each running `command` with `input`
/// as `big.bin`; returns what each printed, after checking each succeeded.
fn run_tasks(
    node: &Node,
    dir: &Path,
    name: &str,
    n: u32,
    input: &str,
    command: &str,
) -> Vec<String> {
    let job_file = dir.join(format!("{name}.toml"));
    let job = format!(
        "[[tasks]]\nid = \"t\"\nrange = \"1..={n}\"\ncommand = {command:?}\ninputs = [{input}]\n"
    );
    fs::write(&job_file, job).unwrap();
    let job = ok(&node.cli(&["submit", job_file.to_str().unwrap()]), "submit");
    let list = wait_tasks_ended(node, &job);
    let mut seen = Vec::new();
    for t in list.as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{list}");
        seen.push(ok(
            &node.cli(&["logs", &job, t["id"].as_str().unwrap()]),
            "logs",
        ));
    }
    seen
}

#[test]
fn tasks_of_the_nodes_own_account_share_the_stores_one_copy_and_a_change_to_it_is_fetched_again() {
    let cluster = Cluster::start(2, FAST);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let size = 48 * MIB;
    let input = cluster.tmp.path().join("big.bin");
    write_pattern(&input, size, 8);
    let sum = Command::new("sha256sum")
        .arg("-b")
        .stdin(fs::File::open(&input).unwrap())
        .output();
    let sum = ok(&sum.unwrap(), "sha256sum");
    // B keeps a copy to mend A's from, and runs no task.
    let b_id = b.peer_id();
    ok(&b.cli(&["node", "drain", &b_id]), "node drain");
    wait_for("A to see B drained", Duration::from_secs(10), || {
        let nodes = a.json(&["nodes", "--json"]);
        let list = nodes.as_array().unwrap();
        let seen = list
            .iter()
            .any(|n| n["id"] == b_id.as_str() && n["draining"] == true);
        seen.then_some(())
    });
    let before = du(&[&a.dir]);
    let id = put(a, &input);
    let b_copy = cluster.tmp.path().join("b-copy");
    ok(
        &b.cli(&["get", &id, "--out", b_copy.to_str().unwrap()]),
        "get on B",
    );

    let dir = cluster.tmp.path();
    let from_store = format!("{{ path = \"big.bin\", id = \"{id}\" }}");
    let read = "sha256sum -b < big.bin";
    for seen in run_tasks(a, dir, "four", 4, &from_store, read) {
        assert_eq!(seen, sum, "every task saw its input");
    }
    let used = du(&[&a.dir]) - before;
    assert!(
        used <= size + size / 10,
        "A's data dir grew by {used} bytes for a {size}-byte input put once and used by 4 tasks"
    );

    // Tasks of the node's own account can write what it can: one changes
    // its input, which is the store's copy.
    let change = "chmod u+w big.bin && printf changed | dd of=big.bin bs=1 seek=5 conv=notrunc 2>/dev/null && echo changed";
    assert_eq!(
        run_tasks(a, dir, "change", 1, &from_store, change),
        ["changed"]
    );
    let out = cluster.tmp.path().join("a-copy");
    let args = ["get", &id, "--out", out.to_str().unwrap()];
    let refused = a.cli(&args);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("were changed"),
        "A does not hand out the changed copy: {why}"
    );
    // The next task gets the blob as it was: A fetched the changed chunk
    // again (from B) before staging it.
    assert_eq!(run_tasks(a, dir, "after", 1, &from_store, read), [sum]);
    ok(&a.cli(&args), "get on A after the mend");
    assert_eq!(hash_file(&out), hash_file(&input));
}
