//! `peerbatch bench --finished N --retention SECS`: what stays of finished
//! work once the mesh has forgotten it — how long after the last job every
//! node has forgotten every job, then each node's data dir on disk, RSS and
//! heap, after a minute idle again, and a node's restart on what is left.
//!
//! Owns this run's waits and the disk figures it prints; the jobs are run
//! by `bench_memory`, which calls it. Must not assert anything: it measures and reports.

use crate::api::types::{Job, Status};
use crate::bench::{clients, heap_line, rss_line, TaskOpts};
use crate::cluster::LocalCluster;
use crate::paths::DataDir;
use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Flags of every node of this run: a job is forgotten a second after its
/// retention (the default margin for clock skew is five minutes).
pub const NODE_ARGS: [&str; 2] = ["--clock-skew", "1s"];

/// How long the nodes may take to forget every job after the last one ended.
const FORGET_LIMIT: Duration = Duration::from_secs(900);

pub fn run(cluster: &mut LocalCluster, opts: &TaskOpts) -> Result<()> {
    let t0 = Instant::now();
    wait_forgotten(cluster)?;
    println!(
        "every job forgotten on every node {:.1} s after the last job ended",
        t0.elapsed().as_secs_f64()
    );
    print_disk_and_memory(cluster, "once forgotten")?;
    std::thread::sleep(Duration::from_secs(opts.idle_secs));
    print_disk_and_memory(cluster, &format!("after {} s idle", opts.idle_secs))?;
    let i = cluster.nodes.len() - 1;
    cluster.stop_node(i)?;
    let t0 = Instant::now();
    cluster.start_node(i)?;
    println!(
        "restart of node {}: API up after {:.2} s; RSS {} MiB",
        i + 1,
        t0.elapsed().as_secs_f64(),
        rss_line(cluster)
    );
    Ok(())
}

/// Waits until no node lists a job or holds a sealed one, showing how many
/// jobs are left.
fn wait_forgotten(cluster: &LocalCluster) -> Result<()> {
    let clients = clients(cluster)?;
    let deadline = Instant::now() + FORGET_LIMIT;
    let bar = indicatif::ProgressBar::new_spinner();
    loop {
        let mut left = 0;
        for client in &clients {
            let jobs: Vec<Job> = client.get("/v1/jobs")?;
            let status: Status = client.get("/v1/status")?;
            left += jobs.len().max(status.sealed_jobs);
        }
        if left == 0 {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes still remember {left} jobs (summed over nodes) after {FORGET_LIMIT:?}"
            );
        }
        bar.set_message(format!("jobs not yet forgotten, summed over nodes: {left}"));
        bar.tick();
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each node's data dir on disk (its ledger, chunk store and log apart),
/// RSS, heap and the events it holds.
fn print_disk_and_memory(cluster: &LocalCluster, when: &str) -> Result<()> {
    let clients = clients(cluster)?;
    let mut dirs = Vec::new();
    let mut events = Vec::new();
    for (node, client) in cluster.nodes.iter().zip(&clients) {
        dirs.push(disk_line(&node.dir));
        events.push(client.get::<Status>("/v1/status")?.events.to_string());
    }
    println!(
        "{when}: data dir per node {}; RSS per node {} MiB, heap allocated {} MiB; events held {}",
        dirs.join("; "),
        rss_line(cluster),
        heap_line(&clients)?,
        events.join(", ")
    );
    Ok(())
}

/// `TOTAL MiB (ledger L, chunks C, log G)` of one node's data dir.
fn disk_line(dir: &DataDir) -> String {
    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / (1 << 20) as f64);
    format!(
        "{} MiB (ledger {}, chunks {}, log {})",
        mib(disk_bytes(&dir.root)),
        mib(disk_bytes(&dir.db_dir())),
        mib(disk_bytes(&dir.chunks_dir())),
        mib(disk_bytes(&dir.log_file()))
    )
}

/// Bytes on disk under `path` (blocks allocated, so sparse files count what
/// they take); 0 for what cannot be read.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| disk_bytes(&entry.path()))
        .sum()
}
