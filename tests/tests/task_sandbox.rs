//! What a task can reach on the node that runs it: its environment, the
//! node's key files, its working directory, its processes and its logs —
//! on real processes.

use peerbatch_tests::{ok, refused_start, wait_tasks_ended, Cluster, Node, FAST};
use serde_json::Value;
use std::path::Path;

/// `FAST` with one slot, so that tasks run one after another.
const ONE_SLOT: &[&str] = &[
    "--slots",
    "1",
    "--lease-ms",
    "2000",
    "--heartbeat-ms",
    "400",
];

/// Submits a job file on `node` and waits until its every task ended.
fn run_job(node: &Node, file: &Path) -> (String, Value) {
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let list = wait_tasks_ended(node, &job);
    (job, list)
}

fn logs(node: &Node, job: &str, task: &str, stream: &[&str]) -> String {
    let mut args = vec!["logs", job, task];
    args.extend_from_slice(stream);
    ok(&node.cli(&args), "logs")
}

#[test]
fn a_task_sees_its_own_environment_and_peerbatch_variables_but_not_the_nodes() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let file = cluster.file(
        "env.toml",
        "[[tasks]]\nid = \"env\"\ncommand = \"env | sort\"\nenv = { OWN = \"mine\" }\n",
    );
    let (job, list) = run_job(node, &file);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let env = logs(node, &job, "env", &[]);
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    // The harness starts the node with RUST_LOG and cargo's variables.
    for leaked in ["RUST_LOG", "CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached the task:\n{env}"
        );
    }
    assert!(env.lines().any(|l| l == "OWN=mine"), "{env}");
    for wanted in ["PATH", "HOME", "LANG", "PEERBATCH_TASK_ID", "PEERBATCH_API"] {
        assert!(names.contains(&wanted), "{wanted} is missing:\n{env}");
    }
    let allowed = |n: &&str| {
        n.starts_with("PEERBATCH_")
            || ["OWN", "PATH", "HOME", "LANG", "PWD", "SHLVL", "_"].contains(n)
    };
    let others: Vec<&&str> = names.iter().filter(|n| !allowed(n)).collect();
    assert!(others.is_empty(), "unexpected variables {others:?}:\n{env}");
}

#[test]
fn a_task_run_as_another_user_cannot_read_the_nodes_key_or_token() {
    let cluster = Cluster::start(1, &[FAST, &["--run-as", "nobody"]].concat());
    let node = &cluster.nodes[0];
    let dir = node.dir.display();
    cluster.file("data.txt", "original\n");
    let file = cluster.file(
        "keys.toml",
        &format!(
            "[[tasks]]\nid = \"keys\"\ncommand = '''\n\
             id -un\n\
             for f in node.key token; do cat {dir}/$f >/dev/null 2>&1 && echo \"read $f\"; done\n\
             echo spoiled 2>/dev/null > data/data.txt && echo \"changed its input\"\n\
             cat data/data.txt\n\
             touch here data/there && echo wrote\n'''\n\
             inputs = [{{ path = \"data/data.txt\", source = \"./data.txt\" }}]\n"
        ),
    );
    let (job, list) = run_job(node, &file);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    assert_eq!(logs(node, &job, "keys", &[]), "nobody\noriginal\nwrote");
}

#[test]
fn a_node_run_as_root_refuses_to_run_tasks_as_root_unless_allowed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    if std::fs::metadata(dir.path()).unwrap().uid() != 0 {
        return;
    }
    let (code, stderr) = refused_start(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--run-as") && stderr.contains("--allow-root-tasks"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("node.key").exists(),
        "it refused before starting"
    );
}

#[test]
fn a_background_child_of_a_task_that_exited_is_killed_before_the_next_task_runs() {
    let cluster = Cluster::start(1, ONE_SLOT);
    let node = &cluster.nodes[0];
    let leak = cluster.tmp.path().join("leak");
    let first = cluster.file(
        "first.toml",
        &format!(
            "[[tasks]]\nid = \"parent\"\ncommand = \"(sleep 2; echo late > late.txt; echo alive > {}) & exit 0\"\n",
            leak.display()
        ),
    );
    let (_, list) = run_job(node, &first);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let second = cluster.file(
        "second.toml",
        "[[tasks]]\nid = \"next\"\ncommand = \"sleep 4; echo mine > mine.txt\"\noutputs = [\"*\"]\n",
    );
    let (job, list) = run_job(node, &second);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let out = cluster.tmp.path().join("out");
    ok(
        &node.cli(&["get", &job, "--out", out.to_str().unwrap()]),
        "get",
    );
    let mut stored: Vec<String> = std::fs::read_dir(out.join("next"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["mine.txt"],
        "the next job stored another task's file"
    );
    assert!(!leak.exists(), "the background child outlived its task");
}

#[test]
fn each_attempt_gets_a_fresh_empty_working_directory_that_is_removed_after() {
    let cluster = Cluster::start(1, ONE_SLOT);
    let node = &cluster.nodes[0];
    let file = cluster.file(
        "dirs.toml",
        "[[tasks]]\nid = \"d\"\nrange = \"1..=3\"\n\
         command = \"echo $PWD; ls -A | wc -l; touch left-behind\"\n",
    );
    let (job, list) = run_job(node, &file);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "succeeded"),
        "{list}"
    );
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let out = logs(node, &job, &format!("d{i}"), &[]);
        let (dir, count) = out.split_once('\n').unwrap();
        assert_eq!(
            count.trim(),
            "0",
            "d{i} started in a directory with files: {out}"
        );
        assert!(!Path::new(dir).exists(), "{dir} was left behind");
        dirs.push(dir.to_string());
    }
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 3, "attempts shared a directory: {dirs:?}");
}

/// The node kills every process a task left, and keeps an ended attempt's
/// empty directory for a later attempt only when none can be left: here
/// the task's shell
/// starts a new session whose own child starts another (closing its
/// output, as daemons do), so killing the first runaway leaves the second
/// alive a moment, and it writes into the directory it started in.
#[test]
fn a_process_that_escaped_its_task_never_writes_into_a_later_tasks_directory() {
    let cluster = Cluster::start(1, ONE_SLOT);
    let node = &cluster.nodes[0];
    let leak = cluster.tmp.path().join("leak");
    let escape = cluster.file(
        "escape.toml",
        &r#"[[tasks]]
id = "escape"
command = """setsid sh -c 'setsid sh -c "sleep 2; echo late > late.txt; echo alive > LEAK" >/dev/null 2>&1 & sleep 30' & sleep 0.5"""
"#
        .replace("LEAK", leak.to_str().unwrap()),
    );
    let (_, list) = run_job(node, &escape);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let next = cluster.file(
        "next.toml",
        "[[tasks]]\nid = \"next\"\ncommand = \"sleep 4; ls -A\"\n",
    );
    let (job, list) = run_job(node, &next);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    assert_eq!(
        logs(node, &job, "next", &[]),
        "",
        "the next task's directory held another task's file"
    );
    assert!(
        !leak.exists(),
        "the twice-escaped process outlived its task"
    );
}

#[test]
fn a_task_that_opens_its_directory_to_everyone_leaves_the_next_one_private() {
    let cluster = Cluster::start(1, ONE_SLOT);
    let node = &cluster.nodes[0];
    let open = cluster.file(
        "open.toml",
        "[[tasks]]\nid = \"open\"\ncommand = \"chmod 777 .\"\n",
    );
    let (_, list) = run_job(node, &open);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let next = cluster.file(
        "mode.toml",
        "[[tasks]]\nid = \"mode\"\ncommand = \"stat -c %a .\"\n",
    );
    let (job, _) = run_job(node, &next);
    assert_eq!(logs(node, &job, "mode", &[]), "700");
}

#[test]
fn stdout_beyond_the_cap_is_cut_with_a_mark_saying_so() {
    let cluster = Cluster::start(1, &[FAST, &["--max-log", "1MiB"]].concat());
    let node = &cluster.nodes[0];
    let file = cluster.file(
        "loud.toml",
        "[[tasks]]\nid = \"loud\"\ncommand = \"yes abcdefg | head -c 3000000; echo done >&2\"\n",
    );
    let (job, list) = run_job(node, &file);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let out = node.cli(&["logs", &job, "loud"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("abcdefg\nabcdefg\n"));
    let (kept, mark) = text.split_at(1 << 20);
    assert!(!kept.contains("peerbatch"), "the mark comes after the cap");
    assert!(
        mark.contains("truncated") && mark.contains("3000000 bytes"),
        "{mark}"
    );
    assert!(text.len() < (1 << 20) + 200, "{} bytes kept", text.len());
    assert_eq!(logs(node, &job, "loud", &["--stderr"]), "done");
}

/// Runs a one-task job file on a new one-node cluster and checks that its
/// task failed with `outcome`; returns the cluster, the job and the task.
fn run_failing(job_file: &str, outcome: &str) -> (Cluster, String, Value) {
    let cluster = Cluster::start(1, FAST);
    let file = cluster.file("job.toml", job_file);
    let (job, list) = run_job(&cluster.nodes[0], &file);
    let t = list[0].clone();
    assert_eq!(t["state"], "failed", "{t}");
    assert_eq!(t["outcome"], outcome, "{t}");
    (cluster, job, t)
}

#[test]
fn a_task_whose_program_cannot_be_executed_fails_to_start_saying_why() {
    let (cluster, job, _) = run_failing(
        "[[tasks]]\nid = \"gone\"\ncommand = [\"no-such-program\", \"--flag\"]\nmax_retries = 0\n",
        "failed_to_start",
    );
    let stderr = logs(&cluster.nodes[0], &job, "gone", &["--stderr"]);
    assert!(
        stderr.contains("cannot start no-such-program: cannot execute it: No such file"),
        "{stderr}"
    );
}

#[test]
fn a_task_killed_at_its_wall_clock_limit_shows_timed_out_with_the_limit() {
    let (cluster, job, t) = run_failing(
        "[[tasks]]\nid = \"slow\"\ncommand = \"echo started; sleep 60\"\nmax_wall_clock = \"1s\"\nmax_retries = 0\n",
        "timed_out",
    );
    let node = &cluster.nodes[0];
    assert_eq!(t["wall_clock_limit_ms"], 1000, "{t}");
    let table = ok(&node.cli(&["tasks", &job]), "tasks");
    assert!(table.contains("timed_out after 1s"), "{table}");
    assert_eq!(logs(node, &job, "slow", &[]), "started");
    let stderr = logs(node, &job, "slow", &["--stderr"]);
    assert!(
        stderr.contains("timed_out") && stderr.contains("wall-clock limit of 1s"),
        "{stderr}"
    );
}

#[test]
fn a_task_that_overwrites_its_staged_input_does_not_change_what_later_tasks_get() {
    let cluster = Cluster::start(1, ONE_SLOT);
    let node = &cluster.nodes[0];
    cluster.file("data.txt", "original\n");
    let input = "inputs = [{ path = \"data.txt\", source = \"./data.txt\" }]\n";
    let spoil = cluster.file(
        "spoil.toml",
        &format!("[[tasks]]\nid = \"spoil\"\ncommand = \"echo spoiled > data.txt\"\n{input}"),
    );
    run_job(node, &spoil);
    let read = cluster.file(
        "read.toml",
        &format!("[[tasks]]\nid = \"read\"\ncommand = \"cat data.txt\"\n{input}"),
    );
    let (job, list) = run_job(node, &read);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    assert_eq!(logs(node, &job, "read", &[]), "original");
}

#[test]
fn a_package_archive_that_unpacks_beyond_the_nodes_cap_is_refused() {
    let cluster = Cluster::start(1, &[FAST, &["--max-package-size", "64KiB"]].concat());
    let node = &cluster.nodes[0];
    let root = cluster.tmp.path();
    std::fs::write(root.join("zeros"), vec![0u8; 1 << 20]).unwrap();
    let made = std::process::Command::new("tar")
        .args(["czf", "bomb.tar.gz", "zeros"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(made.success());
    let bomb = root.join("bomb.tar.gz");
    assert!(
        std::fs::metadata(&bomb).unwrap().len() < 64 << 10,
        "small packed"
    );
    let out = node.cli(&["package", "add", "bomb", "1.0", bomb.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-package-size"), "{stderr}");
    let list = node.json(&["package", "list", "--json"]);
    assert_eq!(list, serde_json::json!([]), "{list}");
    let left = std::fs::read_dir(node.dir.join("unpack")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the partial unpack was left behind");
}

#[test]
fn a_task_cannot_read_the_cluster_key_through_the_api_but_still_lists_jobs() {
    let cluster = Cluster::start(1, &[FAST, &["--run-as", "nobody"]].concat());
    let node = &cluster.nodes[0];
    let invite = node.invite();
    let file = cluster.file(
        "invite.toml",
        "[[tasks]]\nid = \"invite\"\ncommand = '''\n\
         peerbatch invite --json 2>&1\n\
         peerbatch jobs --json > jobs.json && echo listed\n'''\n",
    );
    let (job, list) = run_job(node, &file);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let out = logs(node, &job, "invite", &[]);
    assert!(
        out.contains("403") && out.contains("GET /v1/invite"),
        "the task was not refused the invite route:\n{out}"
    );
    let key = std::fs::read_to_string(peerbatch_tests::shared_key()).unwrap();
    let secret = key.lines().last().unwrap();
    assert!(
        !out.contains("pbjoin1") && !out.contains(&invite) && !out.contains(secret),
        "the cluster key reached the task:\n{out}"
    );
    assert!(
        out.ends_with("listed"),
        "the task could not list jobs:\n{out}"
    );
}

#[test]
fn a_task_run_as_another_user_stores_and_gets_blobs_and_submits_a_job_with_a_local_source() {
    let cluster = Cluster::start(1, &[FAST, &["--run-as", "nobody"]].concat());
    let node = &cluster.nodes[0];
    let given = cluster.file("given.txt", "handed to the task\n");
    let blob = ok(&node.cli(&["put", given.to_str().unwrap()]), "put");
    let file = cluster.file(
        "blobs.toml",
        &format!(
            "[[tasks]]\nid = \"blobs\"\ncommand = '''\n\
             set -e\n\
             peerbatch get {blob} --out got.txt 2>/dev/null\n\
             cat got.txt\n\
             echo 'made by the task' > made.txt\n\
             made=$(peerbatch put made.txt)\n\
             peerbatch get $made --out back.txt 2>/dev/null\n\
             cmp made.txt back.txt && echo 'got back what it put'\n\
             printf '[[tasks]]\\nid = \"follow\"\\ncommand = \"cat in.txt\"\\n\
             inputs = [{{ path = \"in.txt\", source = \"./made.txt\" }}]\\n' > follow.toml\n\
             peerbatch submit follow.toml > follow.id\n\
             echo \"follow-up $(cat follow.id)\"\n\
             peerbatch package add tool 1 made.txt 2>&1 || true\n'''\n"
        ),
    );
    let (job, list) = run_job(node, &file);
    let out = logs(node, &job, "blobs", &[]);
    assert_eq!(list[0]["state"], "succeeded", "{list}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        ["handed to the task", "got back what it put"],
        "{out}"
    );
    let follow = lines[2]
        .strip_prefix("follow-up ")
        .unwrap_or_else(|| panic!("the task submitted no follow-up job:\n{out}"));
    // A route that reads a path as the node stays closed to the task.
    assert!(
        lines[3].contains("403") && lines[3].contains("POST /v1/packages"),
        "{out}"
    );
    let follow_list = wait_tasks_ended(node, follow);
    assert_eq!(follow_list[0]["state"], "succeeded", "{follow_list}");
    assert_eq!(logs(node, follow, "follow", &[]), "made by the task");
}

#[test]
fn a_blob_a_task_stores_is_reclaimable_cache_while_one_the_user_stores_is_kept() {
    let limit = ["--run-as", "nobody", "--store-limit", "1GiB"];
    let cluster = Cluster::start(1, &[FAST, &limit].concat());
    let node = &cluster.nodes[0];
    let mine = cluster.file("mine.txt", "the user's\n");
    let kept = ok(&node.cli(&["put", mine.to_str().unwrap()]), "put");
    let file = cluster.file(
        "cache.toml",
        "[[tasks]]\nid = \"cache\"\ncommand = '''\n\
         echo \"the task's\" > made.txt\n\
         peerbatch put made.txt\n'''\n",
    );
    let (job, list) = run_job(node, &file);
    assert_eq!(list[0]["state"], "succeeded", "{list}");
    let cached = logs(node, &job, "cache", &[]);
    let listed = std::fs::read_to_string(node.dir.join("kept")).unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    assert!(listed.contains(&kept.as_str()), "{listed:?}");
    assert!(!listed.contains(&cached.as_str()), "{cached} was kept");
}
