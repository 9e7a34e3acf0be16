//! A job manager: a task that drives the mesh through its node's API, the
//! way an Azure Batch job manager task does — on real processes.

use peerbatch_tests::{ok, tasks, wait_for, Cluster, FAST};
use std::time::Duration;

#[test]
fn a_task_submits_a_job_through_its_nodes_api_waits_for_it_and_reads_it_back() {
    let cluster = Cluster::start(2, FAST);
    let inner = cluster.file(
        "inner.toml",
        r#"
name = "inner"
[[tasks]]
id = "w"
range = "1..=3"
command = "echo part {index}"
"#,
    );
    let outer = cluster.file(
        "manager.toml",
        &format!(
            r#"
name = "manager"
[[tasks]]
id = "manager"
max_retries = 0
command = '''
set -e
job=$(peerbatch submit {inner} --wait)
peerbatch tasks "$job" --json > inner-tasks.json
peerbatch tasks "$PEERBATCH_JOB_ID" --json > own-tasks.json
echo "$job"
'''
outputs = ["*.json"]
"#,
            inner = inner.display()
        ),
    );
    let node = &cluster.nodes[0];
    let job = ok(&node.cli(&["submit", outer.to_str().unwrap()]), "submit");
    let manager = wait_for("the manager to end", Duration::from_secs(60), || {
        let list = tasks(node, &job);
        let t = list.as_array()?.first()?.clone();
        (t["state"] != "running" && t["state"] != "pending").then_some(t)
    });
    assert_eq!(manager["state"], "succeeded", "{manager}");
    let inner_job = ok(&node.cli(&["logs", &job, "manager"]), "logs");
    let inner_tasks = tasks(&cluster.nodes[1], inner_job.trim());
    let states: Vec<&str> = inner_tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded"; 3], "{inner_tasks}");
    assert_eq!(
        ok(&node.cli(&["logs", inner_job.trim(), "w2"]), "logs").trim(),
        "part 2"
    );

    // What the manager read through the API is what the mesh shows.
    let out = cluster.tmp.path().join("out");
    ok(
        &node.cli(&["get", &job, "--out", out.to_str().unwrap()]),
        "get",
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manager/inner-tasks.json")).unwrap())
            .unwrap();
    assert_eq!(seen.as_array().map(Vec::len), Some(3), "{seen}");
    let own: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manager/own-tasks.json")).unwrap())
            .unwrap();
    assert_eq!(own[0]["id"], "manager", "{own}");
    assert_eq!(own[0]["state"], "running", "it saw itself running: {own}");
}
