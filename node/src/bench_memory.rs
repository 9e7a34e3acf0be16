//! `peerbatch bench --finished N`: what a node keeps as finished work piles
//! up — each node's RSS 3 s after each job of `true` tasks and after a minute
//! idle, `tasks JOB --json` of the last finished job, a node's restart and
//! a fresh node's catch-up over the whole ledger; with `--retention`, the
//! forgetting run of `bench_forget` after the jobs instead.
//!
//! Owns this benchmark's method and what it prints. Must not assert
//! anything: it measures and reports.

use crate::api::types::{Job, Status};
use crate::bench::{clients, heap_line, job, peak_rss_kib, rss_line, timed_run, TaskOpts};
use crate::client::Client;
use crate::cluster::LocalCluster;
use anyhow::{bail, Context, Result};
use peerbatch_protocol::job::Command;
use std::time::{Duration, Instant};

/// How long after a job's end its RSS is read: past `Config::seal_after_ms`.
const SEALED_AFTER: Duration = Duration::from_secs(3);

/// How long a restarted or fresh node may take to know every task.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);

pub fn run(opts: &TaskOpts) -> Result<()> {
    let root = std::env::temp_dir().join(format!("peerbatch-bench-{}", std::process::id()));
    let node_args = match opts.retention {
        Some(_) => crate::bench_forget::NODE_ARGS.map(String::from).to_vec(),
        None => Vec::new(),
    };
    let mut cluster = LocalCluster::start_with(
        &root,
        opts.nodes.max(1),
        opts.slots,
        opts.keep_data,
        node_args,
    )?;
    if opts.keep_data {
        println!("data dirs under {} (kept)", root.display());
    }
    cluster.wait_meshed(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "nodes: {} × {} slots, loopback, one process each; {} `true` tasks in jobs of {}",
        opts.nodes, opts.slots, opts.finished, opts.job_size
    );
    println!(
        "idle RSS per node: {} MiB, heap allocated {} MiB",
        rss_line(&cluster),
        heap_line(&clients(&cluster)?)?
    );
    let last = finish_jobs(&cluster, opts)?;
    if opts.retention.is_some() {
        return crate::bench_forget::run(&mut cluster, opts);
    }
    std::thread::sleep(Duration::from_secs(opts.idle_secs));
    println!(
        "RSS per node after {} s idle: {} MiB, heap allocated {} MiB",
        opts.idle_secs,
        rss_line(&cluster),
        heap_line(&clients(&cluster)?)?
    );
    time_tasks_json(&cluster, &last)?;
    time_restart(&mut cluster, opts.finished)?;
    time_catch_up(&mut cluster, opts.finished)?;
    Ok(())
}

/// Runs the jobs one after another, printing RSS after each; returns the
/// last job's id.
fn finish_jobs(cluster: &LocalCluster, opts: &TaskOpts) -> Result<String> {
    let clients = clients(cluster)?;
    let (mut done, mut last) = (0u64, String::new());
    let t0 = Instant::now();
    while done < opts.finished {
        let n = opts.job_size.min(opts.finished - done).max(1);
        let mut spec = job("finished", Command::Argv(vec!["true".into()]), 1, n as i64);
        if let Some(secs) = opts.retention {
            spec.retention_ms = secs * 1000;
        }
        let (took, _, id) = timed_run(&clients, &spec, n)?;
        done += n;
        last = id;
        // A finished job is sealed (out of memory) a second after its end.
        std::thread::sleep(SEALED_AFTER);
        let status: Status = clients[0].get("/v1/status")?;
        println!(
            "{done} finished tasks ({:.0} s, this job {:.0} tasks/s): RSS per node {} MiB, heap allocated {} MiB (node 1: {} jobs sealed, {} task views held, {} events, {} of them live)",
            t0.elapsed().as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            rss_line(cluster),
            heap_line(&clients)?,
            status.sealed_jobs,
            status.held_views,
            status.events,
            status.held_event_ids
        );
    }
    Ok(last)
}

/// Times `peerbatch tasks JOB --json` (the CLI, as a user runs it) on node 1.
fn time_tasks_json(cluster: &LocalCluster, job: &str) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the peerbatch executable")?;
    let dir = &cluster.nodes[0].dir.root;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = std::process::Command::new(&exe)
            .arg("--data-dir")
            .arg(dir)
            .args(["tasks", job, "--json"])
            .output()
            .context("cannot run peerbatch tasks")?;
        times.push(t0.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!(
                "peerbatch tasks failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        bytes = out.stdout.len();
    }
    println!(
        "`peerbatch tasks {job} --json` of the last job on node 1 ({} KiB): {}",
        bytes >> 10,
        times
            .iter()
            .map(|t| format!("{:.2} s", t))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Tasks finished (succeeded or failed) over every job a node knows.
fn done_everywhere(client: &Client) -> Result<u64> {
    let jobs: Vec<Job> = client.get("/v1/jobs")?;
    Ok(jobs.iter().map(|j| u64::from(j.succeeded + j.failed)).sum())
}

/// Waits until node `i` knows at least `total` finished tasks.
fn wait_known(cluster: &LocalCluster, i: usize, total: u64) -> Result<()> {
    let client = cluster.nodes[i].client()?;
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    while done_everywhere(&client)? < total {
        if Instant::now() > deadline {
            bail!(
                "node {} did not learn {total} finished tasks in time",
                i + 1
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// Stops the last node and starts it again: time from its start until it
/// knows every finished task again (from its own store).
fn time_restart(cluster: &mut LocalCluster, total: u64) -> Result<()> {
    let i = cluster.nodes.len() - 1;
    cluster.stop_node(i)?;
    let t0 = Instant::now();
    cluster.start_node(i)?;
    let up = t0.elapsed();
    wait_known(cluster, i, total)?;
    let peak = peak_rss_kib(cluster.nodes[i].child.id()).unwrap_or(0);
    println!(
        "restart of node {}: API up after {:.2} s, every finished task known after {:.2} s, its peak RSS {:.1} MiB; RSS {} MiB",
        i + 1,
        up.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        peak as f64 / 1024.0,
        rss_line(cluster)
    );
    Ok(())
}

/// Starts a fresh node: time from its start until it has caught up with
/// every finished task from its peers.
fn time_catch_up(cluster: &mut LocalCluster, total: u64) -> Result<()> {
    let t0 = Instant::now();
    cluster.add_node()?;
    let i = cluster.nodes.len() - 1;
    wait_known(cluster, i, total)?;
    let took = t0.elapsed();
    let status: Status = cluster.nodes[i].client()?.get("/v1/status")?;
    println!(
        "fresh node {}: caught up with {total} finished tasks ({} events) in {:.2} s; RSS per node {} MiB",
        i + 1,
        status.events,
        took.as_secs_f64(),
        rss_line(cluster)
    );
    Ok(())
}
