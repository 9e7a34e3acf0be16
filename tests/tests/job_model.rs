//! The job model beyond single tasks: exit conditions, schedules, node
//! operations — on real processes.

use peerbatch_tests::{ok, refused_start, tasks, wait_for, Cluster, Node, FAST};
use serde_json::Value;
use std::time::{Duration, Instant};

fn task_state(list: &Value, id: &str) -> (String, u64) {
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {list}"));
    (
        t["state"].as_str().unwrap().to_string(),
        t["attempt"].as_u64().unwrap(),
    )
}

fn wait_job_end(node: &Node, job: &str) -> Value {
    wait_for("the job to end", Duration::from_secs(60), || {
        let j = node.json(&["job", job, "--json"]);
        (j["state"] != "running" && j["state"] != "pending").then_some(j)
    })
}

#[test]
fn exit_code_rules_ignore_fail_a_task_at_once_or_fail_the_whole_job() {
    let cluster = Cluster::start(2, FAST);
    let node = &cluster.nodes[0];
    let rules = r#"exit_codes = [
  { codes = 3, action = "ignore" },
  { codes = "10-19", action = "fail_task" },
  { codes = 42, action = "fail_job" },
]"#;
    let file = cluster.file(
        "rules.toml",
        &format!(
            "[[tasks]]\nid = \"ignored\"\ncommand = \"exit 3\"\n{rules}\n\
             [[tasks]]\nid = \"fatal\"\ncommand = \"exit 12\"\nmax_retries = 5\n{rules}\n"
        ),
    );
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let end = wait_job_end(node, &job);
    let list = tasks(node, &job);
    assert_eq!(task_state(&list, "ignored"), ("succeeded".into(), 0));
    assert_eq!(
        task_state(&list, "fatal"),
        ("failed".into(), 0),
        "no retry for 12"
    );
    assert_eq!(end["state"], "failed");

    let file = cluster.file(
        "failjob.toml",
        &format!(
            "[[tasks]]\nid = \"trigger\"\ncommand = \"sleep 0.5; exit 42\"\n{rules}\n\
             [[tasks]]\nid = \"long-\"\nrange = \"1..=3\"\ncommand = \"sleep 60\"\n\
             [[tasks]]\nid = \"later\"\ncommand = \"true\"\ndepends_on = [\"long-1\"]\n"
        ),
    );
    let started = Instant::now();
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let end = wait_job_end(node, &job);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "running tasks were not stopped"
    );
    assert_eq!(end["state"], "failed", "{end}");
    assert_eq!(end["skipped"], 4, "{end}");
    let list = tasks(node, &job);
    assert_eq!(task_state(&list, "trigger").0, "failed");
    assert_eq!(task_state(&list, "long-2").0, "skipped");
}

/// A schedule every 2 s on a two-node mesh: after N periods there are
/// exactly N jobs, one per occurrence, consecutive, none twice; the other
/// node may not remove it; removing it from the node that added it stops it.
#[test]
fn a_recurring_schedule_fires_each_occurrence_exactly_once() {
    let cluster = Cluster::start(2, FAST);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let file = cluster.file(
        "tick.toml",
        "name = \"tick\"\n[[tasks]]\ncommand = \"echo tick\"\n",
    );
    ok(
        &a.cli(&[
            "schedule",
            "add",
            "ticker",
            file.to_str().unwrap(),
            "--every",
            "2s",
        ]),
        "schedule add",
    );
    let listed = wait_for("the schedule to reach b", Duration::from_secs(5), || {
        let l = b.json(&["schedule", "list", "--json"]);
        (!l.as_array().unwrap().is_empty()).then_some(l)
    });
    assert_eq!(listed[0]["every_ms"], 2000);
    std::thread::sleep(Duration::from_secs(9));
    // Only the node that added it (or an admin) may remove it.
    let refused = b.cli(&["schedule", "remove", "ticker"]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("added it"),
        "{why}"
    );
    ok(&a.cli(&["schedule", "remove", "ticker"]), "schedule remove");
    std::thread::sleep(Duration::from_secs(1));
    let occurrences = |node: &Node| -> Vec<u64> {
        let mut at: Vec<u64> = node
            .json(&["jobs", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["schedule"] == "ticker")
            .map(|j| j["occurrence_ms"].as_u64().unwrap())
            .collect();
        at.sort();
        at
    };
    let fired = occurrences(a);
    assert!(
        (4..=6).contains(&fired.len()),
        "{} jobs in ~9 s at 2 s: {fired:?}",
        fired.len()
    );
    for pair in fired.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            2000,
            "occurrences skipped or doubled: {fired:?}"
        );
    }
    assert_eq!(occurrences(b), fired, "both nodes hold the same jobs");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        occurrences(a).len(),
        fired.len(),
        "a removed schedule fired again"
    );
}

/// `node drain NODE`: another node (not an admin) may not drain it and
/// is told why; drained by itself, the node finishes what it has and
/// starts nothing new while the others finish the job; `node resume`
/// brings it back.
#[test]
fn a_drained_node_takes_no_new_tasks_until_resumed_and_others_may_not_drain_it() {
    let cluster = Cluster::start(3, FAST);
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[2]];
    let c_id = c.peer_id();
    let started = |n: &Node| n.status()["attempts_started"].as_u64().unwrap();
    let job = ok(
        &a.cli(&["run", "--array", "1-60", "--", "sleep", "0.5"]),
        "run",
    );
    wait_for("c to start work", Duration::from_secs(20), || {
        (started(c) > 0).then_some(())
    });
    let refused = a.cli(&["node", "drain", &c_id]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("itself or an admin"),
        "{why}"
    );
    ok(&c.cli(&["node", "drain", &c_id]), "node drain");
    wait_for("c to drain", Duration::from_secs(10), || {
        let seen_by_a = a
            .json(&["nodes", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == c_id.as_str() && n["draining"] == true);
        (seen_by_a && c.status()["unavailable"] == "drained by request").then_some(())
    });
    // What c had claimed starts within a task's time; nothing after that.
    std::thread::sleep(Duration::from_secs(2));
    let at_drain = started(c);
    let end = wait_job_end(a, &job);
    assert_eq!(end["state"], "succeeded");
    assert_eq!(started(c), at_drain, "a drained node started new tasks");

    ok(&c.cli(&["node", "resume", &c_id[..12]]), "node resume");
    wait_for("c to take tasks again", Duration::from_secs(10), || {
        c.status()["unavailable"].is_null().then_some(())
    });
    let job = ok(
        &a.cli(&["run", "--array", "1-40", "--", "sleep", "0.3"]),
        "run",
    );
    wait_job_end(a, &job);
    assert!(started(c) > at_drain, "a resumed node took no tasks");
}

/// Tasks ask for slots, memory, GPUs and labels; each runs only where it
/// fits, and one no node can ever fit is reported with the reason.
#[test]
fn tasks_run_only_on_nodes_that_fit_them_and_misfits_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(
        &tmp.path().join("a"),
        &[
            FAST,
            &["--label", "pool=render", "--gpus", "1", "--memory", "4GiB"],
        ]
        .concat(),
    );
    let join = a.addr();
    let others: Vec<Node> = ["b", "c"]
        .iter()
        .map(|name| {
            let args = [
                FAST,
                &["--join", join.as_str(), "--gpus", "0", "--memory", "4GiB"],
            ]
            .concat();
            Node::start(&tmp.path().join(name), &args)
        })
        .collect();
    wait_for("three live nodes", Duration::from_secs(30), || {
        (a.live_nodes() == 3).then_some(())
    });
    let a_id = a.peer_id();
    let file = tmp.path().join("fit.toml");
    std::fs::write(
        &file,
        r#"
[[tasks]]
id = "render-"
range = "1..=6"
command = "echo $PEERBATCH_GPUS"
constraints = ["pool=render"]

[[tasks]]
id = "gpu"
command = "true"
gpus = 1

[[tasks]]
id = "wide-"
range = "1..=4"
command = "sleep 0.2"
slots = 2

[[tasks]]
id = "huge"
command = "true"
memory = "100GiB"
"#,
    )
    .unwrap();
    let job = ok(
        &others[0].cli(&["submit", file.to_str().unwrap()]),
        "submit",
    );
    let list = wait_for(
        "all but the misfit to finish",
        Duration::from_secs(30),
        || {
            let list = tasks(&others[1], &job);
            let done = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["state"] == "succeeded")
                .count();
            (done == 11).then_some(list)
        },
    );
    for t in list.as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        if id.starts_with("render-") || id == "gpu" {
            assert_eq!(t["node"], a_id.as_str(), "{t}");
        }
    }
    let (state, _) = task_state(&list, "huge");
    assert_eq!(state, "pending");
    let huge = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "huge")
        .unwrap();
    let why = huge["unschedulable"].as_str().unwrap_or_default();
    assert!(why.contains("102400 MB of memory"), "{huge}");
    let j = others[1].json(&["job", &job, "--json"]);
    assert!(
        j["unschedulable"]
            .as_str()
            .is_some_and(|w| w.contains("memory")),
        "{j}"
    );
}

/// A job-level wall clock: what is left of the job when it runs out is
/// cancelled everywhere and its running tasks are killed.
#[test]
fn a_job_past_its_wall_clock_is_cancelled() {
    let cluster = Cluster::start(2, FAST);
    let node = &cluster.nodes[1];
    let file = cluster.file(
        "deadline.toml",
        "max_wall_clock = \"3s\"\n[[tasks]]\nid = \"slow-\"\nrange = \"1..=6\"\ncommand = \"sleep 60\"\n",
    );
    let started = Instant::now();
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let end = wait_job_end(node, &job);
    let took = started.elapsed();
    assert_eq!(end["state"], "cancelled", "{end}");
    assert!(
        took >= Duration::from_secs(3),
        "cancelled before its deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "cancelled late: {took:?}");
    assert_eq!(end["max_wall_clock_ms"], 3000);
}

/// A pool's start task runs once on each node labelled with the pool;
/// with wait_for_success the pool's tasks land only on nodes whose start
/// task succeeded, and its output reads like a task's.
#[test]
fn a_pool_start_task_gates_its_nodes_and_its_output_is_viewable() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(
        &tmp.path().join("a"),
        &[FAST, &["--label", "pool=render"]].concat(),
    );
    let join = a.addr();
    let b = Node::start(
        &tmp.path().join("b"),
        &[FAST, &["--join", join.as_str()]].concat(),
    );
    wait_for("two live nodes", Duration::from_secs(30), || {
        (a.live_nodes() == 2 && b.live_nodes() == 2).then_some(())
    });
    ok(
        &b.cli(&[
            "pool",
            "add",
            "render",
            "--start-task",
            "echo renderer installed",
            "--wait-for-success",
        ]),
        "pool add",
    );
    let a_id = a.peer_id();
    wait_for("a's start task to succeed", Duration::from_secs(20), || {
        let pools = b.json(&["pool", "list", "--json"]);
        let done = pools[0]["nodes"].as_array().is_some_and(|n| {
            n.iter()
                .any(|n| n["node"] == a_id.as_str() && n["start_task"] == "succeeded")
        });
        done.then_some(())
    });
    let log = ok(
        &b.cli(&["pool", "logs", "render", &a_id[..16]]),
        "pool logs",
    );
    assert_eq!(log, "renderer installed");

    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let file = tmp.path().join("pooljob.toml");
    std::fs::write(
        &file,
        format!(
            "pool = \"render\"\npreparation = \"echo $PEERBATCH_NODE >> {m}/prep\"\nrelease = \"echo $PEERBATCH_NODE >> {m}/release\"\n\
             [[tasks]]\nid = \"r\"\nrange = \"1..=6\"\ncommand = \"echo $PEERBATCH_NODE\"\n",
            m = marks.display()
        ),
    )
    .unwrap();
    let job = ok(
        &b.cli(&["submit", file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    for t in tasks(&b, &job).as_array().unwrap() {
        assert_eq!(
            t["node"],
            a_id.as_str(),
            "a pool task ran outside the pool: {t}"
        );
    }
    let prep = std::fs::read_to_string(marks.join("prep")).unwrap();
    assert_eq!(prep, format!("{a_id}\n"), "prepared once, on the one node");
    let release = wait_for("the release to run", Duration::from_secs(10), || {
        std::fs::read_to_string(marks.join("release")).ok()
    });
    assert_eq!(release, prep, "released where it was prepared");
}

/// A label the mesh would refuse in the node's announce (too long, or too
/// many) stops the node at start (exit 2), naming the label and the bound,
/// instead of a node that never shows up right.
#[test]
fn a_node_refuses_at_start_labels_beyond_what_the_mesh_accepts() {
    let long_value = format!("site={}", "v".repeat(1025));
    let long_key = format!("{}=x", "k".repeat(1025));
    let many: Vec<String> = (0..255).map(|i| format!("l{i}=x")).collect();
    let cases: [(Vec<&str>, &[&str]); 3] = [
        (
            vec!["--label", &long_value],
            &["site=vvv", "label value", "1024"],
        ),
        (
            vec!["--label", &long_key],
            &["--label kkk", "label key", "1024"],
        ),
        (
            many.iter().flat_map(|l| ["--label", l.as_str()]).collect(),
            &["labels", "257", "256"],
        ),
    ];
    for (labels, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let args = [&["--insecure-open", "--allow-root-tasks"], &labels[..]].concat();
        let (code, stderr) = refused_start(dir.path(), &args);
        assert_eq!(code, Some(2), "{expected:?}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{part:?} is not named:\n{stderr}");
        }
    }
}
