//! `peerbatch logs JOB TASK --follow` on real processes: a task's output
//! streamed while it runs, from a node other than the one running it.

use peerbatch_tests::{ok, wait_for, Cluster, Node, FAST};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A cluster of a follower node and a runner node labelled `role=runner`,
/// so that a task constrained to `role=runner` runs away from the follower.
fn follower_and_runner() -> (Cluster, Node) {
    let cluster = Cluster::start(1, FAST);
    let join = cluster.nodes[0].addr();
    let mut args = FAST.to_vec();
    args.extend(["--label", "role=runner", "--join", join.as_str()]);
    let runner = Node::start(&cluster.tmp.path().join("runner"), &args);
    wait_for("the two nodes to mesh", Duration::from_secs(30), || {
        (cluster.nodes[0].live_nodes() == 2 && runner.live_nodes() == 2).then_some(())
    });
    (cluster, runner)
}

/// A job whose one task runs on the runner: prints `line 1` and a line of
/// 100,000 `x` (past what a capture holds in memory), waits until `go`
/// exists, then prints lines 2 to 5 a few hundred ms apart (and a line on
/// stderr).
fn talking_job(cluster: &Cluster, go: &Path) -> std::path::PathBuf {
    let go = go.display();
    cluster.file(
        "talk.toml",
        &format!(
            "[[tasks]]\nid = \"talk\"\nconstraints = [\"role=runner\"]\ncommand = \"\"\"\
             echo line 1; head -c 100000 /dev/zero | tr '\\\\0' x; echo; while [ ! -e {go} ]; do sleep 0.05; done; \
             for i in 2 3 4 5; do sleep 0.3; echo line $i; done; echo bye >&2\"\"\"\n"
        ),
    )
}

fn follow(node: &Node, job: &str, args: &[&str]) -> Child {
    let mut all = vec!["logs", job, "talk", "--follow"];
    all.extend_from_slice(args);
    node.command(&all)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start logs --follow")
}

fn state(node: &Node, job: &str) -> String {
    let list = node.json(&["tasks", job, "--json"]);
    list[0]["state"].as_str().unwrap().to_string()
}

#[test]
fn a_followed_log_shows_lines_while_the_task_runs_on_another_node_and_ends_with_it() {
    let (cluster, runner) = follower_and_runner();
    let node = &cluster.nodes[0];
    let go = cluster.tmp.path().join("go");
    let file = talking_job(&cluster, &go);
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    // Followed from before the task starts: the stream starts at its first byte.
    let mut stdout = follow(node, &job, &[]);
    let mut lines = BufReader::new(stdout.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    assert_eq!(first, "line 1");
    let long = lines.next().expect("a second line").unwrap();
    assert_eq!(
        long,
        "x".repeat(100_000),
        "the spilled capture, while it runs"
    );
    assert_eq!(
        state(node, &job),
        "running",
        "lines arrived while the task runs"
    );
    let running_on = node.json(&["tasks", &job, "--json"])[0]["node"].clone();
    assert_eq!(
        running_on,
        runner.peer_id(),
        "the task runs on the other node"
    );
    std::fs::write(&go, "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(rest, ["line 2", "line 3", "line 4", "line 5"]);
    let status = stdout.wait().unwrap();
    assert!(status.success(), "logs --follow exits 0 when the task ends");
    assert_eq!(
        state(node, &job),
        "succeeded",
        "the stream ended with the task"
    );
    let stored = ok(&node.cli(&["logs", &job, "talk"]), "logs");
    let followed = format!("{first}\n{long}\n{}", rest.join("\n"));
    assert_eq!(followed, stored, "the whole log");
    let err = follow(node, &job, &["--stderr"])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&err.stdout),
        "bye\n",
        "a finished task's stderr, followed"
    );
}

/// Opens a `follow=true` request on `node` and returns its status with
/// the connection still open.
fn open_follow(node: &Node, job: &str) -> (u16, TcpStream) {
    let addr = std::fs::read_to_string(node.dir.join("api")).unwrap();
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    let mut stream = TcpStream::connect(addr.trim()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "GET /v1/jobs/{job}/tasks/talk/log?follow=true HTTP/1.1\r\nHost: node\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token.trim()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&got);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (code, stream)
}

#[test]
fn a_node_streams_at_most_16_live_logs_at_once_and_refuses_the_next() {
    let (cluster, _runner) = follower_and_runner();
    let node = &cluster.nodes[0];
    let go = cluster.tmp.path().join("go");
    let file = talking_job(&cluster, &go);
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let open: Vec<TcpStream> = (0..16)
        .map(|i| {
            let (code, stream) = open_follow(node, &job);
            assert_eq!(code, 200, "follower {i}");
            stream
        })
        .collect();
    let (code, _) = open_follow(node, &job);
    assert_eq!(code, 429, "the 17th follower is refused");
    drop(open);
    std::fs::write(&go, "").unwrap();
    wait_for(
        "a follower's place to free",
        Duration::from_secs(30),
        || {
            let (code, _) = open_follow(node, &job);
            (code == 200).then_some(())
        },
    );
}
