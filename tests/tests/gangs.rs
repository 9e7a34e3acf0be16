//! Multi-instance tasks on real processes: a gang of four on a five-node
//! mesh, all instances at once, the primary's exit code the task's; a gang
//! larger than the mesh is reported unschedulable.

use peerbatch_tests::{ok, tasks, wait_for, Cluster, FAST};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn a_four_instance_task_runs_on_four_distinct_nodes_at_once_and_reports_the_primary() {
    let cluster = Cluster::start(5, FAST);
    cluster.wait_meshed();
    let marks = cluster.tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Each instance leaves a line, then waits until all four have: they
    // can only all finish if they run at the same time. The primary ends
    // last (its end stops the others).
    let job_file = cluster.file(
        "mpi.toml",
        &format!(
            r#"
name = "mpi"
[[tasks]]
id = "ring"
instances = 4
max_retries = 0
command = '''
echo "$PEERBATCH_NODE $PEERBATCH_INSTANCES $PEERBATCH_HOSTS $PEERBATCH_NODE_IDS" > {m}/rank-$PEERBATCH_RANK
for i in $(seq 1 400); do [ $(ls {m} | wc -l) -ge 4 ] && break; sleep 0.05; done
[ $(ls {m} | wc -l) -ge 4 ] || exit 99
echo "rank $PEERBATCH_RANK of $PEERBATCH_INSTANCES"
[ "$PEERBATCH_RANK" = 0 ] || {{ touch {m}/done-$PEERBATCH_RANK; exit 3; }}
for i in $(seq 1 400); do [ $(ls {m} | wc -l) -ge 7 ] && break; sleep 0.05; done
sleep 1
'''

[[tasks]]
id = "too-wide"
instances = 6
command = "true"
"#,
            m = marks.display()
        ),
    );
    let submitter = &cluster.nodes[4];
    let job = ok(
        &submitter.cli(&["submit", job_file.to_str().unwrap()]),
        "submit",
    );
    let reader = &cluster.nodes[1];
    let ring = wait_for("the gang to end", Duration::from_secs(60), || {
        let list = tasks(reader, &job);
        let ring = list.as_array()?.iter().find(|t| t["id"] == "ring")?.clone();
        let exits = ring["hosts"].as_array()?.iter().skip(1);
        let all_exited =
            exits.clone().count() == 3 && exits.clone().all(|h| !h["exit_code"].is_null());
        (ring["state"] == "succeeded" && all_exited).then_some(ring)
    });

    // The primary exited 0; the others' exit 3 is theirs, not the task's.
    assert_eq!(ring["exit_code"], 0, "{ring}");
    assert_eq!(ring["instances"], 4, "{ring}");
    let hosts = ring["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["node"], ring["node"], "rank 0 is the primary");
    for h in &hosts[1..] {
        assert_eq!(h["exit_code"], 3, "{ring}");
    }
    let nodes: BTreeSet<&str> = hosts.iter().map(|h| h["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 4, "four distinct nodes: {ring}");

    // Every instance was told the same gang, and ran where the ledger says.
    let lines: Vec<String> = (0..4)
        .map(|r| std::fs::read_to_string(marks.join(format!("rank-{r}"))).unwrap())
        .collect();
    let told: BTreeSet<String> = lines
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.trim().to_string())
        .collect();
    assert_eq!(told.len(), 1, "{lines:?}");
    let told = told.into_iter().next().unwrap();
    let fields: Vec<&str> = told.split(' ').collect();
    assert_eq!(fields[0], "4");
    assert_eq!(fields[1].split(',').count(), 4, "PEERBATCH_HOSTS: {told}");
    let ids: Vec<&str> = fields[2].split(',').collect();
    for (rank, line) in lines.iter().enumerate() {
        let node = line.split(' ').next().unwrap();
        assert_eq!(node, ids[rank], "rank {rank} ran on its host");
        assert_eq!(node, hosts[rank]["node"], "rank {rank}");
    }

    // Each instance's output is there to read, by rank.
    for rank in ["0", "2"] {
        let out = ok(
            &reader.cli(&["logs", &job, "ring", "--rank", rank]),
            "logs --rank",
        );
        assert_eq!(out.trim(), format!("rank {rank} of 4"));
    }

    // Six instances on five nodes: never claimed, and the reason is shown.
    let list = tasks(reader, &job);
    let wide = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "too-wide")
        .unwrap();
    assert_eq!(wide["state"], "pending", "{wide}");
    assert_eq!(wide["attempt"], 0, "{wide}");
    let why = wide["unschedulable"].as_str().unwrap_or_default();
    assert!(why.contains("needs 6 nodes at once, 5 of 5 fit"), "{wide}");
}
