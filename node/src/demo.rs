//! `peerbatch demo`: a real job on a real three-node cluster, start to finish.
//!
//! Owns the demo's script: start local nodes, submit an example array job
//! from the last node, show progress, where tasks ran and a log fetched from
//! another node, then stop everything. Must not use anything a user's own
//! cluster would not (it drives the nodes through their HTTP API).

use crate::api::types::{Job, Status, Task};
use crate::cli::submit::submit;
use crate::cli::text::opt;
use crate::cluster::LocalCluster;
use anyhow::Result;
use clap::Args;
use peerbatch_protocol::job::{Command, JobSpec, TaskSpec};
use peerbatch_protocol::TaskState;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DemoOpts {
    /// Number of local nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Number of tasks in the example job.
    #[arg(long, default_value_t = 24)]
    pub tasks: i64,
    /// Keep the nodes' data directories afterwards.
    #[arg(long)]
    pub keep: bool,
}

fn short(peer: &str) -> String {
    let n = peer.len();
    format!("…{}", &peer[n.saturating_sub(8)..])
}

pub fn run(opts: DemoOpts) -> Result<()> {
    let root = std::env::temp_dir().join(format!("peerbatch-demo-{}", std::process::id()));
    eprintln!(
        "Starting {} peerbatch nodes on loopback under {} …",
        opts.nodes,
        root.display()
    );
    let cluster = LocalCluster::start(&root, opts.nodes.max(1), 2, opts.keep)?;
    eprintln!(
        "node1 made a new cluster key ({}); the others joined with its `peerbatch invite` token",
        cluster.nodes[0].dir.cluster_key_file().display()
    );
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("waiting for the nodes to find each other");
    spinner.enable_steady_tick(Duration::from_millis(100));
    cluster.wait_meshed(Duration::from_secs(30))?;
    spinner.finish_and_clear();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let status: Status = node.client()?.get("/v1/status")?;
        eprintln!(
            "  node{} {}  data dir {}",
            i + 1,
            status.node,
            node.dir.root.display()
        );
    }
    let submitter = cluster.nodes.len();
    eprintln!("\nSubmitting a {}-task job from node{submitter}; every node claims tasks through the replicated ledger:", opts.tasks);
    let template = TaskSpec {
        max_wall_clock_ms: Some(60_000),
        ..TaskSpec::new("square-", Command::Shell(
                    "echo \"task $PEERBATCH_TASK_ID (attempt $PEERBATCH_ATTEMPT) on node $PEERBATCH_NODE\"; sleep 0.2; echo \"{index} squared is $(({index} * {index}))\"".into(),
                ), 3)
    };
    let spec = JobSpec::array("demo-squares", template, 1, opts.tasks.max(1));
    let client = cluster.nodes[submitter - 1].client()?;
    submit(&client, spec, true)?;
    let first = cluster.nodes[0].client()?;
    let jobs: Vec<Job> = first.get("/v1/jobs")?;
    let job = jobs.last().map(|j| j.id.clone()).unwrap_or_default();
    // node1 may need a moment to hold the last results.
    let mut tasks: Vec<Task> = first.get(&format!("/v1/jobs/{job}/tasks"))?;
    for _ in 0..50 {
        if tasks.iter().all(|t| t.state == TaskState::Succeeded) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        tasks = first.get(&format!("/v1/jobs/{job}/tasks"))?;
    }
    let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
    for t in &tasks {
        *per_node.entry(opt(&t.node)).or_default() += 1;
    }
    eprintln!("\nWhere the tasks ran (as node1 sees it):");
    for (node, count) in &per_node {
        eprintln!("  {} ran {count} tasks", short(node));
    }
    let asked: Status = first.get("/v1/status")?;
    let pick = tasks
        .iter()
        .find(|t| t.node.as_ref() != Some(&asked.node))
        .or(tasks.first())
        .map(|t| t.id.clone())
        .unwrap_or_else(|| "square-1".into());
    eprintln!(
        "\n$ peerbatch logs {job} {pick}   (asked on node1; fetched from the node that ran it)"
    );
    let log = first.get_bytes(&format!("/v1/jobs/{job}/tasks/{pick}/log"))?;
    eprint!("{}", String::from_utf8_lossy(&log));
    eprintln!(
        "\nTry it on your own machines: `peerbatch node` on one, `peerbatch invite` there, \
         `peerbatch node --join-token TOKEN` on the others, then \
         `peerbatch run --array 1-100 -- echo {{index}}`."
    );
    eprintln!("Stopping the demo nodes.");
    Ok(())
}
