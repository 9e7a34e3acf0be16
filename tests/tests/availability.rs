//! An office machine's availability policy on a real node: it offers its
//! slots only once nobody has touched the machine for N minutes.

use peerbatch_tests::{ok, tasks, wait_for, Cluster, FAST};
use std::fs::{File, FileTimes};
use std::time::{Duration, SystemTime};

/// Sets a file's access and change times `ago` in the past (what an input
/// device shows when nobody typed since).
fn last_input(path: &std::path::Path, ago: Duration) {
    let at = SystemTime::now() - ago;
    let file = File::options().write(true).open(path).unwrap();
    file.set_times(FileTimes::new().set_accessed(at).set_modified(at))
        .unwrap();
}

#[test]
fn a_node_idle_for_less_than_its_minutes_takes_nothing_and_then_takes_work() {
    let devices = tempfile::tempdir().unwrap();
    let keyboard = devices.path().join("event0");
    std::fs::write(&keyboard, "").unwrap();
    let pattern = devices.path().join("event*");
    let mut args = FAST.to_vec();
    let pattern = pattern.to_str().unwrap();
    args.extend(["--idle-minutes", "5", "--idle-devices", pattern]);
    let cluster = Cluster::start(1, &args);
    let node = &cluster.nodes[0];

    // Someone typed a minute ago: not idle for five.
    last_input(&keyboard, Duration::from_secs(60));
    let why = wait_for("the node to see the input", Duration::from_secs(20), || {
        let why = node.status()["unavailable"].as_str()?.to_string();
        let secs: u64 = why
            .strip_prefix("not idle: input ")?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        (secs >= 60).then_some(why)
    });
    assert!(why.contains("after 5 min without input"), "{why}");
    let file = cluster.file("work.toml", "[[tasks]]\nid = \"w\"\ncommand = \"true\"\n");
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tasks(node, &job)[0]["state"], "pending");

    // Six minutes without input: the node takes the task.
    last_input(&keyboard, Duration::from_secs(360));
    wait_for("the task to run", Duration::from_secs(20), || {
        (tasks(node, &job)[0]["state"] == "succeeded").then_some(())
    });
    assert!(node.status()["unavailable"].is_null());
}
