//! A ledger that forgets, on real processes: `peerbatch forget` from the
//! submitter makes every node drop the job and its logs and outputs, a
//! node that was down meanwhile does not bring it back, and anyone else's
//! forget is refused.

use peerbatch_tests::{ok, wait_converged, wait_for, Cluster, Node, FAST};
use std::path::Path;
use std::time::Duration;

/// How many chunk files under `node`'s store contain `needle`.
fn chunks_containing(node: &Node, needle: &str) -> usize {
    fn walk(dir: &Path, needle: &[u8], found: &mut usize) {
        let Ok(items) = std::fs::read_dir(dir) else {
            return;
        };
        for item in items.flatten() {
            let path = item.path();
            if path.is_dir() {
                walk(&path, needle, found);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                *found += 1;
            }
        }
    }
    let mut found = 0;
    walk(&node.dir.join("chunks"), needle.as_bytes(), &mut found);
    found
}

/// Whether `node` answers for `job` (`peerbatch job JOB`) or lists it.
fn knows(node: &Node, job: &str) -> bool {
    let listed = node.json(&["jobs", "--json"]);
    let listed = listed.as_array().unwrap().iter().any(|j| j["id"] == job);
    listed || node.cli(&["job", job, "--json"]).status.success()
}

#[test]
fn a_job_forgotten_by_its_submitter_leaves_every_node_with_its_blobs_and_a_node_down_meanwhile_does_not_bring_it_back(
) {
    let mut cluster = Cluster::start(3, FAST);
    let marker = format!("pb-forget-{}", std::process::id());
    let job_file = cluster.file(
        "job.toml",
        &format!(
            "[[tasks]]\nid = \"t\"\nrange = \"1..=6\"\noutputs = [\"out.txt\"]\n\
             command = \"echo {marker}-log-{{index}}; echo {marker}-out-{{index}} > out.txt\"\n"
        ),
    );
    // The same bytes as task 1's output, put by a user on A: they stay.
    let kept = cluster.file("kept.txt", &format!("{marker}-out-1\n"));
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[2]];
    ok(&a.cli(&["put", kept.to_str().unwrap()]), "put");
    let job = ok(
        &a.cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    let nodes: Vec<&Node> = cluster.nodes.iter().collect();
    wait_converged(&nodes, &job, "succeeded", Duration::from_secs(60));
    let shown = a.json(&["job", &job, "--json"]);
    let week = 7 * 24 * 3_600_000;
    assert_eq!(shown["retention_ms"], week);
    let submitted = shown["submitted_ms"].as_u64().unwrap();
    assert!(shown["forget_at_ms"].as_u64().unwrap() >= submitted + week);
    let logs: usize = nodes.iter().map(|n| chunks_containing(n, "-log-")).sum();
    let outs: usize = nodes.iter().map(|n| chunks_containing(n, "-out-")).sum();
    assert!(logs >= 6 && outs >= 6, "logs {logs}, outputs {outs} stored");

    // Neither a node that did not submit it…
    let refused = c.cli(&["forget", &job]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("submitted job"),
        "{why}"
    );
    assert!(nodes.iter().all(|n| knows(n, &job)));

    // …but the submitter, while B is down.
    cluster.nodes[1].kill9();
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[2]];
    let answer = a.json(&["forget", &job, "--json"]);
    assert_eq!(answer["job_id"], job);
    for node in [a, c] {
        wait_for(
            "the job, its logs and outputs to leave A and C",
            Duration::from_secs(30),
            || {
                let gone = !knows(node, &job)
                    && chunks_containing(node, &format!("{marker}-log-")) == 0
                    && chunks_containing(node, &format!("{marker}-out-"))
                        == usize::from(node.dir == a.dir);
                gone.then_some(())
            },
        );
    }
    assert!(a.cli(&["job", &job]).status.code() != Some(0));

    // B comes back with the job in its store, learns the request from its
    // peers and forgets it too; A and C do not take it back from B.
    cluster.nodes[1].restart();
    cluster.wait_meshed();
    let b = &cluster.nodes[1];
    wait_for(
        "B to forget the job and its blobs",
        Duration::from_secs(30),
        || {
            let gone = !knows(b, &job)
                && chunks_containing(b, &format!("{marker}-log-")) == 0
                && chunks_containing(b, &format!("{marker}-out-")) == 0;
            gone.then_some(())
        },
    );
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[2]];
    assert!(!knows(a, &job) && !knows(c, &job));
    assert_eq!(chunks_containing(a, &format!("{marker}-out-1")), 1);
}
