//! Faults on real processes: a network partition between namespaces, a
//! node stopped past its lease, kill -9 during heavy ledger writes, a
//! corrupted database, and a full disk. After each, every node must agree
//! on every task's one canonical result.

use peerbatch_tests::{ok, tasks, wait_converged, wait_for, Cluster, Lan, Node, FAST};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn submit_array(node: &Node, n: u32, cmd: &str) -> String {
    ok(
        &node.cli(&["run", "--array", &format!("1-{n}"), "--", "sh", "-c", cmd]),
        "run",
    )
}

fn succeeded(node: &Node, job: &str) -> u64 {
    node.json(&["job", job, "--json"])["succeeded"]
        .as_u64()
        .unwrap_or(0)
}

fn attempts_started(nodes: &[&Node]) -> u64 {
    nodes
        .iter()
        .map(|n| n.status()["attempts_started"].as_u64().unwrap_or(0))
        .sum()
}

fn signal(node: &Node, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} failed");
}

#[test]
fn a_partition_2_3_keeps_both_sides_working_and_they_agree_after_healing() {
    let lan = Lan::new("pt", 5);
    let tmp = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| Node::start_with(&tmp.path().join(format!("n{i}")), Some(host), FAST))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_for(
        "five nodes to find each other",
        Duration::from_secs(60),
        || nodes.iter().all(|n| n.live_nodes() == 5).then_some(()),
    );
    let job = submit_array(&nodes[0], 1000, "sleep 0.1");
    wait_for(
        "every node to hold the job and work to start",
        Duration::from_secs(30),
        || {
            let everywhere = nodes
                .iter()
                .all(|n| n.cli(&["job", &job, "--json"]).status.success());
            (everywhere && succeeded(&nodes[4], &job) >= 20).then_some(())
        },
    );

    lan.partition(&[0, 1]);
    let split = Instant::now();
    let before = (succeeded(&nodes[0], &job), succeeded(&nodes[4], &job));
    std::thread::sleep(Duration::from_secs(20).saturating_sub(split.elapsed()));
    let after = (succeeded(&nodes[0], &job), succeeded(&nodes[4], &job));
    assert!(
        after.0 > before.0,
        "the 2-node side stalled: {before:?} → {after:?}"
    );
    assert!(
        after.1 > before.1,
        "the 3-node side stalled: {before:?} → {after:?}"
    );

    lan.heal();
    let healed = Instant::now();
    let list = wait_converged(&all, &job, "succeeded", Duration::from_secs(120));
    let converged = healed.elapsed();
    assert_eq!(list.as_array().unwrap().len(), 1000);
    let duplicates = attempts_started(&all).saturating_sub(1000);
    eprintln!(
        "partition 2|3 for 20 s: {duplicates} duplicate executions per 1000 tasks; \
         every node agreed {:.1} s after healing",
        converged.as_secs_f64()
    );
}

#[test]
fn a_node_stopped_past_its_lease_is_fenced_kills_its_stale_attempt_and_results_stay_single() {
    let cluster = Cluster::start(3, FAST);
    let all: Vec<&Node> = cluster.nodes.iter().collect();
    let marks = cluster.tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Each attempt that runs to its end leaves one line.
    let cmd = format!(
        "sleep 10; echo $PEERBATCH_ATTEMPT >> {}/$PEERBATCH_TASK_ID",
        marks.display()
    );
    let job = submit_array(&cluster.nodes[0], 4, &cmd);
    let running = wait_for("every task to run", Duration::from_secs(20), || {
        let list = tasks(&cluster.nodes[0], &job);
        let all_running = list
            .as_array()
            .is_some_and(|a| a.iter().all(|t| t["state"] == "running"));
        all_running.then_some(list)
    });
    let ids: Vec<String> = cluster.nodes.iter().map(Node::peer_id).collect();
    let (victim, held): (usize, Vec<String>) = (0..3)
        .map(|i| {
            let held = running
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["node"] == ids[i].as_str())
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>();
            (i, held)
        })
        .max_by_key(|(_, held)| held.len())
        .unwrap();
    let node = &cluster.nodes[victim];
    signal(node, "-STOP");
    std::thread::sleep(Duration::from_secs(5)); // lease 2 s + grace + rank steps
    signal(node, "-CONT");

    let list = wait_converged(&all, &job, "succeeded", Duration::from_secs(60));
    for task in &held {
        let t = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == task.as_str())
            .unwrap();
        // The stale attempt 0 was fenced; attempt 1 may run anywhere,
        // the woken node included.
        assert!(t["attempt"].as_u64().unwrap() >= 1, "{t}");
        let lines = std::fs::read_to_string(marks.join(task)).unwrap();
        assert_eq!(
            lines.lines().count(),
            1,
            "task {task} ran to its end more than once: {lines:?}"
        );
    }
    assert!(
        node.status()["attempts_fenced"].as_u64().unwrap() >= held.len() as u64,
        "the stopped node did not fence its stale attempts"
    );
}

#[test]
fn kill_9_during_heavy_ledger_writes_twenty_times_and_a_corrupt_database_is_rebuilt() {
    let mut cluster = Cluster::start(3, FAST);
    let job = submit_array(&cluster.nodes[0], 3000, "true");
    for round in 0..20u64 {
        std::thread::sleep(Duration::from_millis(150 + (round * 97) % 350));
        let node = &mut cluster.nodes[2];
        node.kill9();
        node.restart();
        wait_for(
            "the killed node to start again",
            Duration::from_secs(20),
            || {
                node.cli(&["status", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    let all: Vec<&Node> = cluster.nodes.iter().collect();
    let list = wait_converged(&all, &job, "succeeded", Duration::from_secs(180));
    assert_eq!(list.as_array().unwrap().len(), 3000);

    // A database that no longer opens is set aside and rebuilt from peers.
    let node = &mut cluster.nodes[2];
    node.kill9();
    let db = node.dir.join("db");
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"this is not a sled database").unwrap();
        }
    }
    node.restart();
    let all: Vec<&Node> = cluster.nodes.iter().collect();
    let rebuilt = wait_converged(&all, &job, "succeeded", Duration::from_secs(60));
    assert_eq!(rebuilt, list);
    let set_aside = std::fs::read_dir(&cluster.nodes[2].dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("db.broken-"));
    assert!(set_aside, "the broken database was not kept aside");
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk also refuses the node's log. Writing it must not cost the node
/// anything: the log library's fallback, a message on standard error, panics
/// when that fails too, and killed whichever task was logging, the node or
/// an attempt whose end then never reached the ledger.
#[test]
fn a_node_whose_log_cannot_be_written_runs_and_reports_every_task() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start_logging_to(&tmp.path().join("a"), FAST, Path::new("/dev/full"));
    let job = submit_array(&a, 20, "echo $PEERBATCH_TASK_INDEX; echo to stderr >&2");
    let list = wait_converged(&[&a], &job, "succeeded", Duration::from_secs(60));
    assert_eq!(list.as_array().unwrap().len(), 20);
}

#[test]
fn a_full_disk_stops_claiming_says_why_and_recovers_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("small"), "40m");
    let b = Node::start(&tmp.path().join("b"), FAST);
    let mut args: Vec<&str> = FAST.to_vec();
    let join = b.addr();
    args.extend(["--join", join.as_str()]);
    let a = Node::start(&disk.0.join("a"), &args);
    wait_for("two live nodes", Duration::from_secs(30), || {
        (a.live_nodes() == 2 && b.live_nodes() == 2).then_some(())
    });
    let job = submit_array(&b, 600, "sleep 0.02; echo $PEERBATCH_TASK_INDEX");
    wait_for("work to start", Duration::from_secs(20), || {
        (succeeded(&b, &job) >= 20).then_some(())
    });

    // Fill the disk under A's data dir.
    let filler = disk.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=100"])
        .arg(format!("of={}", filler.display()))
        .output();
    let st: Value = wait_for("A to stop claiming", Duration::from_secs(20), || {
        let st = a.status();
        (st["claiming"] == false).then_some(st)
    });
    let why = st["storage_error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("No space left on device"), "{st}");
    let during = succeeded(&b, &job);
    wait_for(
        "B to go on while A is full",
        Duration::from_secs(20),
        || (succeeded(&b, &job) > during + 20).then_some(()),
    );

    std::fs::remove_file(&filler).unwrap();
    wait_for("A to claim again", Duration::from_secs(20), || {
        let st = a.status();
        (st["claiming"] == true && st["storage_error"].is_null()).then_some(())
    });
    let list = wait_converged(&[&a, &b], &job, "succeeded", Duration::from_secs(120));
    assert_eq!(list.as_array().unwrap().len(), 600);
}
