//! Tasks with their data: inputs staged by `submit`, outputs collected and
//! downloaded with `get JOB`, `from_task` chains, packages, and every way a
//! path could escape refused.

use peerbatch_tests::{ok, tasks, wait_converged, wait_for, Cluster, Node, FAST};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn job_state(node: &Node, job: &str) -> Value {
    node.json(&["job", job, "--json"])
}

fn wait_job_done(node: &Node, job: &str) -> Value {
    wait_for("the job to end", Duration::from_secs(60), || {
        let j = job_state(node, job);
        let s = j["state"].as_str().unwrap_or("").to_string();
        matches!(s.as_str(), "succeeded" | "failed" | "cancelled").then_some(j)
    })
}

#[test]
fn staged_inputs_reach_every_task_and_get_job_downloads_every_output_elsewhere() {
    let cluster = Cluster::start(3, FAST);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let root = cluster.tmp.path();
    fs::create_dir_all(root.join("frames")).unwrap();
    for i in 1..=6 {
        fs::write(
            root.join(format!("frames/{i}.txt")),
            format!("frame number {i}\n"),
        )
        .unwrap();
    }
    // A shared input of 3 MiB: fetched once per node, linked into each task.
    let shared: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    fs::write(root.join("shared.bin"), &shared).unwrap();
    let job_file = cluster.file(
        "fanout.toml",
        r#"
name = "fanout"
[[tasks]]
id = "f"
range = "1..=6"
command = "mkdir -p out && cat in.txt shared.bin > out/both.bin && tr a-z A-Z < in.txt > upper.txt && echo scratch > not-an-output.log"
inputs = [
  { path = "in.txt", source = "frames/{index}.txt" },
  { path = "shared.bin", source = "shared.bin" },
]
outputs = ["*.txt", "out"]
"#,
    );
    let job = ok(
        &c.cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    let list = wait_converged(&[a, b, c], &job, "succeeded", Duration::from_secs(60));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["outputs"].is_string()),
        "{list}"
    );

    let out = root.join("results");
    let refused = b.cli(&["get", "--no-store", &job, "--out", out.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("--no-store applies to a blob id"), "{why}");
    ok(
        &b.cli(&["get", &job, "--out", out.to_str().unwrap()]),
        "get JOB",
    );
    for i in 1..=6 {
        let dir = out.join(format!("f{i}"));
        let input = format!("frame number {i}\n");
        assert_eq!(
            fs::read_to_string(dir.join("upper.txt")).unwrap(),
            input.to_uppercase()
        );
        assert_eq!(fs::read_to_string(dir.join("in.txt")).unwrap(), input);
        let mut both = input.into_bytes();
        both.extend_from_slice(&shared);
        assert!(
            fs::read(dir.join("out/both.bin")).unwrap() == both,
            "f{i}/out/both.bin"
        );
        assert!(!dir.join("not-an-output.log").exists());
        assert!(!dir.join("shared.bin").exists());
    }

    // Each node that ran tasks holds the shared input once, however many ran there.
    let shared_id = ok(
        &a.cli(&["put", root.join("shared.bin").to_str().unwrap()]),
        "put",
    );
    for node in &cluster.nodes {
        let copies = fs::read_dir(node.dir.join("inputs"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&shared_id))
                    .count()
            })
            .unwrap_or(0);
        assert!(
            copies <= 1,
            "{copies} cached copies of the shared input on one node"
        );
    }
}

#[test]
fn from_task_outputs_feed_a_reducer_and_a_failure_skips_its_dependents() {
    let cluster = Cluster::start(3, FAST);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let job_file = cluster.file(
        "mapreduce.toml",
        r#"
name = "mapreduce"
[[tasks]]
id = "reduce"
command = "cat h0 h1 h2 > total.txt"
depends_on = ["m0..m2"]
inputs = [
  { from_task = "m0", path = "h0", within = "hits.txt" },
  { from_task = "m1", path = "h1", within = "hits.txt" },
  { from_task = "m2", path = "h2", within = "hits.txt" },
]
outputs = ["total.txt"]
[[tasks]]
id = "m"
range = "0..=2"
command = "grep 5 in.txt > hits.txt"
inputs = [{ from_task = "split", path = "in.txt", within = "part{index}" }]
outputs = ["hits.txt"]
[[tasks]]
id = "split"
command = "seq 1 30 > all.txt && split -l 10 -d -a 1 all.txt part"
outputs = ["part*"]
[[tasks]]
id = "doomed"
command = "exit 3"
max_retries = 0
[[tasks]]
id = "after-doomed"
command = "echo never"
depends_on = ["doomed"]
"#,
    );
    let job = ok(&a.cli(&["submit", job_file.to_str().unwrap()]), "submit");
    let end = wait_job_done(b, &job);
    assert_eq!(end["state"], "failed", "{end}");
    assert_eq!(end["succeeded"], 5, "{end}");
    assert_eq!(end["failed"], 1, "{end}");
    assert_eq!(end["skipped"], 1, "{end}");
    let list = tasks(b, &job);
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state("after-doomed"), "skipped");
    assert_eq!(state("reduce"), "succeeded");

    let out = cluster.tmp.path().join("mr");
    ok(
        &b.cli(&["get", &job, "--out", out.to_str().unwrap()]),
        "get JOB",
    );
    assert_eq!(
        fs::read_to_string(out.join("reduce/total.txt")).unwrap(),
        "5\n15\n25\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("split/part1")).unwrap(),
        (11..=20).map(|n| format!("{n}\n")).collect::<String>()
    );
}

/// A tar archive with one entry named `name` (written raw, so that names
/// a careful writer refuses can be tested).
fn tar_with(path: &Path, name: &str, body: &[u8]) {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&header).unwrap();
    f.write_all(body).unwrap();
    f.write_all(&vec![0u8; (512 - body.len() % 512) % 512])
        .unwrap();
    f.write_all(&[0u8; 1024]).unwrap();
}

#[test]
fn packages_unpack_once_per_node_and_escaping_paths_are_refused_everywhere() {
    let cluster = Cluster::start(2, FAST);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let root = cluster.tmp.path();

    // A package from a directory, used by tasks on both nodes.
    let pkg = root.join("hello-pkg");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    fs::write(
        pkg.join("bin/hello"),
        "#!/bin/sh\necho hello from the package\n",
    )
    .unwrap();
    fs::set_permissions(pkg.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    ok(
        &a.cli(&["package", "add", "hello", "1.0", pkg.to_str().unwrap()]),
        "package add",
    );
    let listed = wait_for(
        "the package to reach node b",
        Duration::from_secs(10),
        || {
            let l = b.json(&["package", "list", "--json"]);
            (l.as_array().map_or(0, Vec::len) == 1).then_some(l)
        },
    );
    assert_eq!(listed[0]["name"], "hello");
    // Versions are immutable: other content under 1.0 is refused.
    fs::write(pkg.join("extra"), "x").unwrap();
    let again = a.cli(&["package", "add", "hello", "1.0", pkg.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists with other content"),
        "{}",
        stderr(&again)
    );

    let job_file = cluster.file(
        "pkg.toml",
        r#"
[[tasks]]
id = "p"
range = "1..=4"
command = "$PEERBATCH_PACKAGES/hello/bin/hello"
packages = ["hello@1.0"]
"#,
    );
    let job = ok(
        &b.cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    for i in 1..=4 {
        let log = ok(&a.cli(&["logs", &job, &format!("p{i}")]), "logs");
        assert_eq!(log, "hello from the package");
    }
    let missing = cluster.file(
        "nopkg.toml",
        "[[tasks]]\ncommand = \"true\"\npackages = [\"nope@2\"]\n",
    );
    let out = a.cli(&["submit", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("package nope@2 is not known"),
        "{}",
        stderr(&out)
    );

    // Archives: a good one unpacks; one whose entry climbs out is refused, naming it.
    let good = root.join("tool.tar");
    tar_with(&good, "./tool.sh", b"echo tool\n");
    ok(
        &a.cli(&["package", "add", "tool", "2", good.to_str().unwrap()]),
        "package add tar",
    );
    let evil = root.join("evil.tar");
    tar_with(&evil, "../../evil.sh", b"echo gotcha\n");
    let out = a.cli(&["package", "add", "evil", "1", evil.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("entry \"../../evil.sh\""),
        "{}",
        stderr(&out)
    );
    assert!(!root.join("evil.sh").exists() && !Path::new("/tmp/evil.sh").exists());

    // Inputs and outputs that escape are refused at submit, with their place.
    for (bad, says) in [
        (
            r#"inputs = [{ path = "../x", source = "pkg.toml" }]"#,
            "input path \"../x\"",
        ),
        (
            r#"inputs = [{ path = "/etc/x", source = "pkg.toml" }]"#,
            "input path \"/etc/x\"",
        ),
        (
            r#"inputs = [{ from_task = "t1", path = "x", within = "../../y" }]"#,
            "input path \"../../y\"",
        ),
        (r#"outputs = ["../*"]"#, "output pattern \"../*\""),
    ] {
        let file = cluster.file(
            "bad.toml",
            &format!("[[tasks]]\ncommand = \"true\"\n{bad}\n"),
        );
        let out = a.cli(&["submit", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
    }

    // An output that is a symlink out of the working directory fails the task.
    let leak = cluster.file(
        "leak.toml",
        "[[tasks]]\nid = \"leak\"\ncommand = \"ln -s /etc/hostname stolen.txt\"\noutputs = [\"*.txt\"]\nmax_retries = 0\n",
    );
    let job = ok(&a.cli(&["submit", leak.to_str().unwrap()]), "submit");
    let end = wait_job_done(a, &job);
    assert_eq!(end["state"], "failed", "{end}");
    let log = ok(&a.cli(&["logs", &job, "leak", "--stderr"]), "logs");
    assert!(
        log.contains(
            "output stolen.txt is a symbolic link to /etc/hostname, outside the working directory"
        ),
        "{log}"
    );
}

/// A node over `--store-limit` removes a package it unpacked once no
/// unfinished job uses it, with the package's chunks.
#[test]
fn an_unpacked_package_no_job_needs_is_removed_when_the_store_is_over_its_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let limit = ["--store-limit", "2MiB"];
    let a = Node::start(&tmp.path().join("a"), &[FAST, &limit].concat());
    let join = a.addr();
    let b_args = [
        FAST,
        &limit,
        &["--join", join.as_str(), "--label", "role=b"],
    ]
    .concat();
    let b = Node::start(&tmp.path().join("b"), &b_args);
    wait_for("two live nodes", Duration::from_secs(30), || {
        (a.live_nodes() == 2).then_some(())
    });
    let pkg = tmp.path().join("big-pkg");
    fs::create_dir_all(&pkg).unwrap();
    fs::write(
        pkg.join("run.sh"),
        "#!/bin/sh\nwc -c < \"$(dirname \"$0\")/data\"\n",
    )
    .unwrap();
    fs::set_permissions(pkg.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(pkg.join("data"), data).unwrap();
    ok(
        &a.cli(&["package", "add", "big", "1.0", pkg.to_str().unwrap()]),
        "package add",
    );
    let listed = wait_for("the package to reach b", Duration::from_secs(10), || {
        let l = b.json(&["package", "list", "--json"]);
        (l.as_array().map_or(0, Vec::len) == 1).then_some(l)
    });
    let blob = listed[0]["blob"].as_str().unwrap().to_string();
    let job_file = tmp.path().join("big.toml");
    fs::write(
        &job_file,
        "[[tasks]]\nid = \"p\"\nrange = \"1..=2\"\ncommand = \"$PEERBATCH_PACKAGES/big/run.sh\"\npackages = [\"big@1.0\"]\nconstraints = [\"role=b\"]\n",
    )
    .unwrap();
    let job = ok(
        &a.cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    assert_eq!(ok(&a.cli(&["logs", &job, "p1"]), "logs"), "3145728");
    let unpacked = b.dir.join("packages").join(&blob);
    assert!(unpacked.join("run.sh").exists(), "unpacked once on b");

    // The job is over; new chunks on b start a reclaim pass.
    let more = tmp.path().join("more");
    fs::write(&more, vec![7u8; 1 << 20]).unwrap();
    ok(&b.cli(&["put", more.to_str().unwrap()]), "put on b");
    wait_for(
        "b to remove the unpacked package",
        Duration::from_secs(20),
        || (!unpacked.exists()).then_some(()),
    );
    assert!(
        b.status()["reclaim"]["freed_bytes"].as_u64().unwrap_or(0) >= 2 << 20,
        "the package's chunks went too: {}",
        b.status()["reclaim"]
    );
}
