//! `peerbatch bench`: throughput, latency, memory and ledger size figures on
//! a local cluster of real node processes.
//!
//! Owns the benchmark's method and what it prints. Must not assert anything:
//! it measures and reports.

use crate::api::types::{Job, Status, Submitted, Task};
use crate::cli::text::opt;
use crate::client::Client;
use crate::cluster::LocalCluster;
use anyhow::{Context, Result};
use clap::Args;
use peerbatch_protocol::job::{Command, JobSpec, TaskGroup, TaskSpec};
use peerbatch_protocol::TaskState;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchOpts {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    #[command(flatten)]
    pub tasks: TaskOpts,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// Data plane: the chunker, a two-node transfer, a spread to many nodes.
    Transfer(crate::transfer_bench::TransferOpts),
}

/// The task benchmark (the default).
#[derive(Args, Debug)]
pub struct TaskOpts {
    /// Number of local nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Trivial (`true`) tasks in the throughput run.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: i64,
    /// Slots per node.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// Samples of submit-to-first-start latency.
    #[arg(long, default_value_t = 5)]
    pub latency_samples: usize,
    /// Also run a chain of this many `true` tasks, each depending on the
    /// one before, and compare it with the independent run.
    #[arg(long, default_value_t = 0)]
    pub chain: usize,
    /// Also time gang starts of a task with this many instances (needs as
    /// many nodes): submit until every instance runs.
    #[arg(long, default_value_t = 0)]
    pub gang: u32,
    /// Instead of the runs above, measure memory over this many finished
    /// `true` tasks (in jobs of `--job-size`): each node's RSS after each
    /// job and after a minute idle, `tasks JOB --json` of the last job,
    /// a node's restart and a fresh node's catch-up.
    #[arg(long, default_value_t = 0)]
    pub finished: u64,
    /// Tasks per job in the `--finished` run.
    #[arg(long, default_value_t = 100_000)]
    pub job_size: u64,
    /// Seconds the `--finished` run leaves the nodes idle before measuring RSS again.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// In the `--finished` run, give each job this retention in seconds:
    /// the nodes (started with `--clock-skew 1s`) forget each job that long
    /// after its submit. The run then waits until every node has forgotten
    /// every job and prints each node's data dir, RSS and heap, and a
    /// restart, instead of `tasks --json`, the restart and the catch-up.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention: Option<u64>,
    /// Leave the `--finished` run's data dirs behind (their path is
    /// printed), to look at or start again afterwards.
    #[arg(long)]
    pub keep_data: bool,
}

/// A job of `n` `true` tasks where each depends on the one before.
fn chain(n: usize) -> JobSpec {
    let groups = (0..n)
        .map(|i| {
            let mut t = TaskSpec::new(format!("c{i}"), Command::Argv(vec!["true".into()]), 3);
            if i > 0 {
                t.depends_on = vec![format!("c{}", i - 1)];
            }
            TaskGroup::One(t)
        })
        .collect();
    JobSpec::new("chain", groups)
}

/// Submits `spec` on the first node and waits until every node knows all
/// `total` results; returns the time from submit, and the job id.
pub(crate) fn timed_run(
    clients: &[Client],
    spec: &JobSpec,
    total: u64,
) -> Result<(Duration, Duration, String)> {
    let t0 = Instant::now();
    let r: Submitted = clients[0].post("/v1/jobs", spec)?;
    let id = r.job_id;
    let acked = t0.elapsed();
    let mut finished_at = vec![None; clients.len()];
    let bar = indicatif::ProgressBar::new(total);
    while finished_at.iter().any(Option::is_none) {
        for (i, c) in clients.iter().enumerate() {
            if finished_at[i].is_none() {
                // A node the submit has not reached yet does not know the job.
                let done = done_on(c, &id).unwrap_or(0);
                if i == 0 {
                    bar.set_position(done);
                }
                if done == total {
                    finished_at[i] = Some(t0.elapsed());
                }
            }
        }
        // Coarse polling: the figure's resolution, and little CPU taken from the nodes.
        std::thread::sleep(Duration::from_millis(25));
    }
    bar.finish_and_clear();
    let last = finished_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    Ok((last, acked, id))
}

/// A process's resident memory in KiB: all of it (`VmRSS`) and its
/// anonymous part (`RssAnon`: heap and stacks, not the mapped binary).
pub(crate) fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let [all, anon] = proc_status_kib(pid, ["VmRSS:", "RssAnon:"])?;
    Some((all, anon))
}

/// The most a process has held resident since it started (`VmHWM`), KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, ["VmHWM:"]).map(|[peak]| peak)
}

/// Fields of `/proc/PID/status` given in KiB, by name (with the colon).
fn proc_status_kib<const N: usize>(pid: u32, names: [&str; N]) -> Option<[u64; N]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = field(name)?;
    }
    Some(out)
}

/// Every node's RSS in MiB with its anonymous part, comma-separated.
pub(crate) fn rss_line(cluster: &LocalCluster) -> String {
    cluster
        .nodes
        .iter()
        .filter_map(|n| rss_kib(n.child.id()))
        .map(|(all, anon)| {
            format!(
                "{:.1} (anon {:.1})",
                all as f64 / 1024.0,
                anon as f64 / 1024.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each node's heap allocated, in MiB, as its status says.
pub(crate) fn heap_line(clients: &[Client]) -> Result<String> {
    let mut line = Vec::new();
    for client in clients {
        let status: Status = client.get("/v1/status")?;
        line.push(match status.heap_allocated {
            Some(bytes) => format!("{:.1}", bytes as f64 / (1 << 20) as f64),
            None => "?".into(),
        });
    }
    Ok(line.join(", "))
}

pub(crate) fn clients(cluster: &LocalCluster) -> Result<Vec<Client>> {
    cluster.nodes.iter().map(|n| n.client()).collect()
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub(crate) fn job(name: &str, command: Command, start: i64, end: i64) -> JobSpec {
    JobSpec::array(name, TaskSpec::new("", command, 3), start, end)
}

pub(crate) fn done_on(client: &Client, job: &str) -> Result<u64> {
    let j: Job = client.get(&format!("/v1/jobs/{job}"))?;
    Ok(u64::from(j.succeeded + j.failed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The throughput and latency run: `peerbatch bench` without `--finished`
/// or a subcommand.
pub fn tasks(opts: TaskOpts) -> Result<()> {
    let root = std::env::temp_dir().join(format!("peerbatch-bench-{}", std::process::id()));
    let cluster = LocalCluster::start(&root, opts.nodes.max(1), opts.slots, false)?;
    cluster.wait_meshed(Duration::from_secs(30))?;
    let clients: Vec<Client> = cluster
        .nodes
        .iter()
        .map(|n| n.client())
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "nodes: {} × {} slots, loopback, one process each",
        opts.nodes, opts.slots
    );
    println!("idle RSS per node: {} MiB", rss_line(&cluster));

    // Submit to first task start: the task prints its own start time.
    let mut latencies = Vec::new();
    for i in 0..opts.latency_samples {
        let client = &clients[i % clients.len()];
        let before = wall_ns();
        let r: Submitted = client.post(
            "/v1/jobs",
            &job(
                "latency",
                Command::Argv(vec!["date".into(), "+%s%N".into()]),
                1,
                1,
            ),
        )?;
        let id = r.job_id;
        while done_on(client, &id)? < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = client.get_bytes(&format!("/v1/jobs/{id}/tasks/1/log"))?;
        let started: u128 = String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .context("latency task printed no time")?;
        latencies.push(started.saturating_sub(before) as f64 / 1e6);
    }
    println!(
        "submit -> first task start: median {:.1} ms (min {:.1}, max {:.1}, {} samples)",
        median(latencies.clone()),
        latencies.iter().cloned().fold(f64::INFINITY, f64::min),
        latencies.iter().cloned().fold(0.0, f64::max),
        latencies.len()
    );

    let before: Status = clients[0].get("/v1/status")?;
    let total = opts.tasks as u64;
    let spec = job(
        "throughput",
        Command::Argv(vec!["true".into()]),
        1,
        opts.tasks,
    );
    let (last, acked, id) = timed_run(&clients, &spec, total)?;
    println!("throughput: {} `true` tasks, submit -> last result known on every node: {:.2} s = {:.0} tasks/s (submit acknowledged after {:.0} ms)",
        total, last.as_secs_f64(), total as f64 / last.as_secs_f64(), acked.as_secs_f64() * 1e3);
    let tasks: Vec<Task> = clients[0].get(&format!("/v1/jobs/{id}/tasks"))?;
    let mut per_node = std::collections::BTreeMap::<String, u64>::new();
    let mut failed = 0;
    for t in &tasks {
        *per_node.entry(opt(&t.node)).or_default() += 1;
        failed += u64::from(t.state != TaskState::Succeeded);
    }
    println!(
        "tasks per node: {:?}; not succeeded: {failed}",
        per_node.values().collect::<Vec<_>>()
    );
    let mut started = 0;
    let mut fenced = 0;
    for c in &clients {
        let st: Status = c.get("/v1/status")?;
        started += st.attempts_started;
        fenced += st.attempts_fenced;
    }
    println!(
        "attempts started: {started} for {} tasks ({fenced} fenced duplicates)",
        total + opts.latency_samples as u64
    );
    let after: Status = clients[0].get("/v1/status")?;
    let events = after.events.saturating_sub(before.events);
    let event_bytes = after.event_bytes.saturating_sub(before.event_bytes);
    println!(
        "ledger: {events} events, {event_bytes} bytes of events for {total} tasks = {:.1} bytes/task (sled on disk: {} MiB)",
        event_bytes as f64 / total as f64,
        after.ledger_bytes >> 20
    );
    println!("RSS per node after the run: {} MiB", rss_line(&cluster));
    if opts.chain > 0 {
        let n = opts.chain as u64;
        let (took, _, _) = timed_run(&clients, &chain(opts.chain), n)?;
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "chain: {n} `true` tasks, each after the one before: {:.2} s = {rate:.0} tasks/s ({:.1} ms per link; independent tasks ran {:.0}× faster)",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e3 / n as f64,
            (total as f64 / last.as_secs_f64()) / rate
        );
    }
    if opts.gang > 0 {
        gang_latency(&clients, opts.gang, opts.latency_samples)?;
    }
    Ok(())
}

/// Submit to gang start of an `instances`-instance task, `samples` times:
/// each instance prints its start time (the primary then waits a second,
/// so that the others' exits are recorded before its end stops them).
fn gang_latency(clients: &[Client], instances: u32, samples: usize) -> Result<()> {
    let mut all_running = Vec::new();
    let mut first_running = Vec::new();
    for i in 0..samples {
        let client = &clients[i % clients.len()];
        let script = "date +%s%N; [ \"$PEERBATCH_RANK\" = 0 ] && sleep 1; true";
        let mut t = TaskSpec::new("gang", Command::Shell(script.into()), 0);
        t.resources.instances = instances;
        let spec = JobSpec::new("gang", vec![TaskGroup::One(t)]);
        let before = wall_ns();
        let r: Submitted = client.post("/v1/jobs", &spec)?;
        let id = r.job_id;
        while done_on(client, &id)? < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut starts = Vec::new();
        for rank in 0..instances {
            let out = client.get_bytes(&format!("/v1/jobs/{id}/tasks/gang/log?rank={rank}"))?;
            let started: u128 = String::from_utf8_lossy(&out)
                .trim()
                .parse()
                .with_context(|| format!("instance {rank} printed no time"))?;
            starts.push(started.saturating_sub(before) as f64 / 1e6);
        }
        all_running.push(starts.iter().cloned().fold(0.0, f64::max));
        first_running.push(starts.iter().cloned().fold(f64::INFINITY, f64::min));
    }
    println!(
        "gang of {instances}: submit -> every instance running: median {:.1} ms (min {:.1}, max {:.1}); -> first instance: median {:.1} ms ({} samples)",
        median(all_running.clone()),
        all_running.iter().cloned().fold(f64::INFINITY, f64::min),
        all_running.iter().cloned().fold(0.0, f64::max),
        median(first_running),
        all_running.len()
    );
    Ok(())
}
