//! A real mesh runs a real job: several `peerbatch` processes on loopback.

use peerbatch_tests::{tasks, wait_converged, wait_for, Cluster, FAST};
use std::collections::BTreeMap;
use std::time::Duration;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn three_nodes_run_a_300_task_job_and_agree() {
    let cluster = Cluster::start(3, FAST);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let job_file = cluster.file(
        "job.toml",
        r#"
name = "squares"
[[tasks]]
id = "sq-"
command = "echo square of {index} is $(({index} * {index})) on $PEERBATCH_NODE"
range = "1..=300"
max_retries = 2
"#,
    );
    let out = c.cli(&["submit", job_file.to_str().unwrap(), "--wait"]);
    assert!(
        out.status.success(),
        "submit --wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = stdout(&out);
    assert_eq!(job.len(), 16, "submit prints the job id, got {job:?}");

    let list = wait_converged(&[a, b, c], &job, "succeeded", Duration::from_secs(60));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 300);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for t in list {
        assert_eq!(t["exit_code"], 0);
        *per_node
            .entry(t["node"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        per_node.len() > 1,
        "work ran on only one node: {per_node:?}"
    );

    // A task that ran on B, read through A.
    let b_id = b.peer_id();
    let on_b = list
        .iter()
        .find(|t| t["node"] == b_id.as_str())
        .expect("B ran at least one task");
    let id = on_b["id"].as_str().unwrap();
    let index: u64 = id.trim_start_matches("sq-").parse().unwrap();
    let log = a.cli(&["logs", &job, id]);
    assert!(
        log.status.success(),
        "logs failed: {}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert_eq!(
        stdout(&log),
        format!("square of {index} is {} on {b_id}", index * index)
    );

    let jobs = a.json(&["jobs", "--json"]);
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["succeeded"], 300);
}

#[test]
fn killed_node_loses_its_tasks_and_catches_up_after_restart() {
    let mut cluster = Cluster::start(3, FAST);
    let job_file = cluster.file(
        "slow.toml",
        "[[tasks]]\ncommand = \"sleep 1; echo done {index}\"\nrange = \"1..=24\"\n",
    );
    let out = cluster.nodes[0].cli(&["submit", job_file.to_str().unwrap()]);
    assert!(out.status.success());
    let job = stdout(&out);
    let b_id = cluster.nodes[1].peer_id();
    wait_for("B to run a task", Duration::from_secs(30), || {
        let list = tasks(&cluster.nodes[0], &job);
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "running" && t["node"] == b_id.as_str())
            .then_some(())
    });
    cluster.nodes[1].kill9();

    let (a, c) = (&cluster.nodes[0], &cluster.nodes[2]);
    let list = wait_converged(&[a, c], &job, "succeeded", Duration::from_secs(90));
    let reclaimed = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["attempt"].as_u64().unwrap() > 0)
        .count();
    assert!(reclaimed > 0, "some task that B held was retried elsewhere");

    cluster.nodes[1].restart();
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let again = wait_converged(&[a, b, c], &job, "succeeded", Duration::from_secs(60));
    assert_eq!(again, list);
}

#[test]
fn a_node_with_another_cluster_key_never_sees_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let key1 = tmp.path().join("key1");
    let key2 = tmp.path().join("key2");
    let keygen = |path: &std::path::Path| {
        let out = std::process::Command::new(peerbatch_tests::bin())
            .args(["keygen", "--out"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    keygen(&key1);
    keygen(&key2);
    let k1 = key1.to_str().unwrap();
    let k2 = key2.to_str().unwrap();
    let a = peerbatch_tests::Node::start(&tmp.path().join("a"), &["--cluster-key", k1]);
    let a_addr = a.addr();
    let b = peerbatch_tests::Node::start(
        &tmp.path().join("b"),
        &["--cluster-key", k1, "--join", &a_addr],
    );
    let outsider = peerbatch_tests::Node::start(
        &tmp.path().join("c"),
        &["--cluster-key", k2, "--join", &a_addr],
    );
    wait_for("A and B to mesh", Duration::from_secs(30), || {
        (a.live_nodes() == 2 && b.live_nodes() == 2).then_some(())
    });

    let out = a.cli(&["run", "--array", "1-20", "--wait", "--", "echo", "{index}"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = stdout(&out);
    wait_converged(&[&a, &b], &job, "succeeded", Duration::from_secs(30));

    assert_eq!(outsider.json(&["jobs", "--json"]), serde_json::json!([]));
    assert_eq!(outsider.live_nodes(), 1, "the outsider sees only itself");
    assert_eq!(a.live_nodes(), 2, "A never counted the outsider");

    // Both ends say why, once: the outsider of its dial, A of the connection it refused.
    let said = "refused: it does not hold this node's cluster key";
    for (node, way) in [(&outsider, "connection to"), (&a, "connection from")] {
        let log = std::fs::read_to_string(node.dir.join("test-node.log")).unwrap();
        let warnings: Vec<_> = log.lines().filter(|l| l.contains(said)).collect();
        assert_eq!(warnings.len(), 1, "{way}: {warnings:?}");
        assert!(warnings[0].contains(way), "{}", warnings[0]);
    }
}

#[test]
fn bad_job_files_are_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let node = peerbatch_tests::Node::start(&tmp.path().join("n"), &[]);
    let cases = [
        (
            "malformed.toml",
            "[[tasks]\ncommand = \"x\"\n",
            "malformed.toml:1:",
        ),
        (
            "unknown.toml",
            "[[tasks]]\ncommand = \"x\"\ncomand = \"y\"\n",
            "unknown.toml:3:1: unknown field `comand`",
        ),
        (
            "empty.toml",
            "[[tasks]]\ncommand = \"\"\n",
            "empty.toml:2:11: empty command",
        ),
        (
            "negative.toml",
            "[[tasks]]\ncommand = \"x\"\nmax_retries = -1\n",
            "negative.toml:3:15: max_retries must be",
        ),
        (
            "missing.toml",
            "[[tasks]]\ncommand = \"x\"\ninputs = [{ source = \"nowhere.txt\", path = \"in.txt\" }]\n",
            "missing.toml:3:22: input source ",
        ),
        (
            "per-task.toml",
            "[[tasks]]\ncommand = \"x\"\nrange = \"1..=2\"\n\
             inputs = [{ source = \"f{index}.txt\", path = \"in.txt\" }]\n",
            "per-task.toml:4:22: input source ",
        ),
    ];
    for (name, text, expected) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = node.cli(&["submit", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: exit status");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{name}: one line, got {err:?}"
        );
        assert!(err.contains(expected), "{name}: {err:?} lacks {expected:?}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        node.json(&["jobs", "--json"]),
        serde_json::json!([]),
        "nothing was submitted"
    );
}

#[test]
fn cancel_kills_running_tasks_on_every_node() {
    let cluster = Cluster::start(3, FAST);
    let marker = format!("pb-cancel-{}", std::process::id());
    let job_file = cluster.file(
        "long.toml",
        &format!("[[tasks]]\ncommand = \"sleep 60; echo {marker}\"\nrange = \"1..=6\"\n"),
    );
    let out = cluster.nodes[1].cli(&["submit", job_file.to_str().unwrap()]);
    assert!(out.status.success());
    let job = stdout(&out);
    let running_on = wait_for(
        "tasks to run on several nodes",
        Duration::from_secs(30),
        || {
            let list = tasks(&cluster.nodes[0], &job);
            let nodes: std::collections::BTreeSet<String> = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["state"] == "running")
                .map(|t| t["node"].as_str().unwrap().to_string())
                .collect();
            (nodes.len() > 1).then_some(nodes)
        },
    );
    assert!(running_on.len() > 1);
    let procs = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| String::from_utf8_lossy(c).contains(&marker))
            .count()
    };
    assert!(procs() > 0, "the tasks' processes are running");

    // Only the node that submitted the job (or an admin) may cancel it.
    let refused = cluster.nodes[2].cli(&["cancel", &job]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("submitted it"),
        "{why}"
    );
    let out = cluster.nodes[1].cli(&["cancel", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Vec<&peerbatch_tests::Node> = cluster.nodes.iter().collect();
    wait_converged(&nodes, &job, "cancelled", Duration::from_secs(30));
    wait_for(
        "every task process to be killed",
        Duration::from_secs(15),
        || (procs() == 0).then_some(()),
    );
    let jobs = cluster.nodes[0].json(&["jobs", "--json"]);
    assert_eq!(jobs[0]["state"], "cancelled");
}

#[test]
fn a_client_reaches_a_node_by_api_address_and_token() {
    let cluster = Cluster::start(1, &[]);
    let node = &cluster.nodes[0];
    let api = std::fs::read_to_string(node.dir.join("api")).unwrap();
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    let elsewhere = cluster.tmp.path().join("no-node-here");
    let run = |token: &str| {
        std::process::Command::new(peerbatch_tests::bin())
            .args([
                "--data-dir",
                elsewhere.to_str().unwrap(),
                "run",
                "--wait",
                "--",
                "echo",
                "hi",
            ])
            .env("PEERBATCH_API", api.trim())
            .env("PEERBATCH_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = run(token.trim());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = stdout(&out);
    let log = node.cli(&["logs", &job, "t1"]);
    assert_eq!(stdout(&log), "hi");
    let denied = run("wrong-token");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("access token"));
}
