//! Dependencies between jobs (`after`) and what a failed dependency does
//! (`on_dependency_failure`), on real processes.

use peerbatch_tests::{ok, tasks, wait_for, Cluster, Node, FAST};
use serde_json::Value;
use std::time::Duration;

fn states(node: &Node, job: &str) -> Vec<String> {
    tasks(node, job)
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_job_end(node: &Node, job: &str) -> Value {
    wait_for("the job to end", Duration::from_secs(60), || {
        let j = node.json(&["job", job, "--json"]);
        let state = j["state"].as_str()?.to_string();
        (state != "running" && state != "pending").then_some(j)
    })
}

#[test]
fn a_job_after_another_waits_for_it_and_a_failed_one_skips_or_fails_its_waiters() {
    let cluster = Cluster::start(2, FAST);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let submit = |node: &Node, name: &str, body: &str| {
        let file = cluster.file(&format!("{name}.toml"), body);
        ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit")
    };

    // `after` by name: the second job's tasks stay blocked until the
    // first job has succeeded, then run.
    let first = submit(
        a,
        "first",
        "name = \"first\"\n[[tasks]]\nid = \"slow\"\ncommand = \"sleep 2\"\n",
    );
    let second = submit(
        b,
        "second",
        "name = \"second\"\nafter = [\"first\"]\n[[tasks]]\nid = \"then\"\nrange = \"1..=2\"\ncommand = \"echo after\"\n",
    );
    assert_eq!(states(b, &second), ["blocked", "blocked"]);
    let end = wait_job_end(b, &second);
    assert_eq!(end["state"], "succeeded", "{end}");
    assert_eq!(end["after"][0], first.as_str(), "{end}");
    assert_eq!(states(a, &first), ["succeeded"]);

    // A failed job: its waiters are skipped by default, failed on request;
    // a failed task inside a job does the same to its dependents.
    let broken = submit(
        a,
        "broken",
        "name = \"broken\"\n[[tasks]]\nid = \"x\"\ncommand = \"exit 1\"\nmax_retries = 0\n",
    );
    let skipped = submit(
        a,
        "skipped",
        &format!("after = [\"{broken}\"]\n[[tasks]]\nid = \"s\"\ncommand = \"true\"\n"),
    );
    let failed = submit(
        b,
        "failed",
        &format!(
            "after = [\"{}\"]\non_dependency_failure = \"fail\"\n[[tasks]]\nid = \"f\"\ncommand = \"true\"\n",
            &broken[..8]
        ),
    );
    let anyway = submit(
        b,
        "anyway",
        &format!(
            "after = [\"{broken}\"]\non_dependency_failure = \"run\"\n[[tasks]]\nid = \"r\"\ncommand = \"true\"\n"
        ),
    );
    let inner = submit(
        a,
        "inner",
        "on_dependency_failure = \"fail\"\n[[tasks]]\nid = \"x\"\ncommand = \"exit 1\"\nmax_retries = 0\n[[tasks]]\nid = \"y\"\ncommand = \"true\"\ndepends_on = [\"x\"]\n",
    );
    // Skipped tasks never ran, so their job did not succeed either.
    assert_eq!(wait_job_end(b, &skipped)["state"], "failed");
    assert_eq!(states(b, &skipped), ["skipped"]);
    assert_eq!(wait_job_end(b, &anyway)["state"], "succeeded");
    assert_eq!(wait_job_end(b, &failed)["state"], "failed");
    assert_eq!(states(b, &failed), ["failed"]);
    assert_eq!(wait_job_end(b, &inner)["state"], "failed");
    assert_eq!(states(b, &inner), ["failed", "failed"]);

    // A job nobody knows is refused at submit, by name.
    let file = cluster.file(
        "nowhere.toml",
        "after = [\"no-such-job\"]\n[[tasks]]\nid = \"n\"\ncommand = \"true\"\n",
    );
    let out = a.cli(&["submit", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("after: job \"no-such-job\""), "{err}");
}
