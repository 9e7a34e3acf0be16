//! Function triggers that go through the ledger, on real nodes: queue
//! messages each processed and a poison message dead-lettered, a timer
//! fired once per occurrence with two nodes up, a put under a prefix
//! invoking its function once.

use peerbatch_tests::{deploy_fn, ok, wait_for, Cluster, Node, FAST};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// A handler that appends `$PEERBATCH_NODE`, the trigger's variables and
/// its stdin to `log`; a message `poison` makes it fail instead.
fn handler(log: &std::path::Path) -> String {
    format!(
        "msg=$(cat); if [ \"$msg\" = poison ]; then echo cannot digest poison >&2; exit 1; fi; \
         echo \"$PEERBATCH_FN_TRIGGER $PEERBATCH_FN_TIME_MS $PEERBATCH_FN_BLOB \
         $PEERBATCH_FN_BLOB_NAME msg=$msg on=$PEERBATCH_NODE\" >> {}",
        log.display()
    )
}

/// Deploys function `name` on `node` with `handler`'s command and
/// `extra` flags; answers the log file its handler appends to.
fn deploy(cluster: &Cluster, node: &Node, name: &str, extra: &[&str]) -> PathBuf {
    let dir = cluster.tmp.path().join(format!("{name}-bundle"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README"), "a bundle").unwrap();
    let log = cluster.tmp.path().join(format!("{name}.log"));
    deploy_fn(node, name, &dir, &handler(&log), extra);
    log
}

/// Waits until `node` knows function `name`.
fn wait_known(node: &Node, name: &str) {
    wait_for(
        "the function to reach the node",
        Duration::from_secs(90),
        || {
            node.cli(&["fn", "versions", name])
                .status
                .success()
                .then_some(())
        },
    );
}

/// `peerbatch fn enqueue NAME` on `node` with `message` on stdin.
fn enqueue(node: &Node, name: &str, message: &[u8]) -> std::process::Output {
    let mut child = (node.command(&["fn", "enqueue", name]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused message may be cut off unread.
    let _ = child.stdin.take().unwrap().write_all(message);
    child.wait_with_output().unwrap()
}

fn lines(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().map(str::to_string).collect()
}

/// The jobs `node` lists whose name starts with `prefix`.
fn jobs_named(node: &Node, prefix: &str) -> Vec<Value> {
    let jobs = node.json(&["jobs", "--json"]);
    let all = jobs.as_array().cloned().unwrap_or_default();
    let named = all
        .into_iter()
        .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with(prefix)));
    named.collect()
}

#[test]
fn queue_messages_are_each_processed_and_a_poison_message_is_dead_lettered_after_its_attempts() {
    let cluster = Cluster::start(2, FAST);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let log = deploy(
        &cluster,
        n1,
        "work",
        &["--trigger", "queue", "--max-attempts", "3"],
    );
    wait_known(n2, "work");

    for i in 0..5 {
        let out = enqueue(n2, "work", format!("m{i}").as_bytes());
        ok(&out, "fn enqueue");
    }
    ok(&enqueue(n1, "work", b"poison"), "fn enqueue poison");
    let too_big = enqueue(n2, "work", &vec![b'x'; 70 << 10]);
    assert!(!too_big.status.success());
    let why = String::from_utf8_lossy(&too_big.stderr);
    assert!(why.contains("65536 bytes"), "{why}");

    let queue = wait_for("the queue to drain", Duration::from_secs(120), || {
        let q = n1.json(&["fn", "queue", "work", "--json"]);
        let dead = q["dead_letters"].as_array()?.len();
        (q["done"] == 5 && dead == 1 && q["pending"] == 0 && q["running"] == 0).then_some(q)
    });
    let letter = &queue["dead_letters"][0];
    assert_eq!(letter["attempts"], 3, "{queue}");
    let error = letter["error"].as_str().unwrap();
    assert!(error.contains("exited with code 1"), "{error}");
    assert!(error.contains("cannot digest poison"), "{error}");
    let handled = lines(&log);
    for i in 0..5 {
        let msg = format!("msg=m{i} ");
        assert!(
            handled.iter().any(|l| l.contains(&msg)),
            "m{i} unhandled: {handled:?}"
        );
    }
    // Node 2 sees the same queue, and a function without the trigger takes no message.
    let q2 = n2.json(&["fn", "queue", "work", "--json"]);
    assert_eq!(
        (
            q2["done"].clone(),
            q2["dead_letters"][0]["attempts"].clone()
        ),
        (5.into(), 3.into())
    );
    deploy(&cluster, n1, "plain", &[]);
    let refused = enqueue(n1, "plain", b"hi");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("has no queue trigger"), "{why}");
}

#[test]
fn a_timer_fires_exactly_once_per_occurrence_with_two_nodes_up() {
    let cluster = Cluster::start(2, FAST);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let log = deploy(&cluster, n1, "tick", &["--trigger", "timer:every 2s"]);
    wait_known(n2, "tick");

    let times = wait_for("four occurrences", Duration::from_secs(120), || {
        let times: Vec<u64> = (lines(&log).iter())
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|t| t.parse().ok())
                    .unwrap()
            })
            .collect();
        (times.len() >= 4).then_some(times)
    });
    let first = times[0];
    let mut sorted = times.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        times.len(),
        "an occurrence ran twice: {times:?}"
    );
    let expected: Vec<u64> = (0..times.len() as u64).map(|k| first + 2_000 * k).collect();
    assert_eq!(times, expected, "occurrences were skipped");
    // Both nodes list one job per occurrence.
    for node in [n1, n2] {
        let jobs = wait_for(
            "the jobs to reach the node",
            Duration::from_secs(60),
            || {
                let jobs = jobs_named(node, "fn tick timer");
                (jobs.len() >= times.len()).then_some(jobs)
            },
        );
        let mut at: Vec<u64> = (jobs.iter())
            .filter_map(|j| j["occurrence_ms"].as_u64())
            .collect();
        at.sort();
        let before = at.len();
        at.dedup();
        assert_eq!(at.len(), before, "two jobs for one occurrence: {at:?}");
    }
}

#[test]
fn a_put_under_a_blob_triggers_prefix_invokes_its_function_once() {
    let cluster = Cluster::start(2, FAST);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let log = deploy(&cluster, n1, "catch", &["--trigger", "blob:uploads/"]);
    wait_known(n2, "catch");

    let file = cluster.file("a.txt", "some bytes");
    let other = cluster.file("b.txt", "other bytes");
    let put = |name: &str, path: &PathBuf| {
        let out = n2.cli(&["put", "--name", name, path.to_str().unwrap()]);
        ok(&out, "put").trim().to_string()
    };
    put("elsewhere/b.txt", &other);
    let blob = put("uploads/a.txt", &file);

    let job = wait_for("the put's job to succeed", Duration::from_secs(90), || {
        let jobs = jobs_named(n1, "fn catch blob");
        let done = jobs.iter().find(|j| j["state"] == "succeeded")?;
        Some((done.clone(), jobs.len()))
    });
    assert_eq!(job.1, 1, "a put fired more than one job");
    let handled = lines(&log);
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(
        handled[0].starts_with(&format!("blob  {blob} uploads/a.txt msg= on=")),
        "{handled:?}"
    );
}
