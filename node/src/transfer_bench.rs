//! `peerbatch bench transfer`: data-plane figures on local clusters of real
//! node processes with a cluster key.
//!
//! Owns the method and what it prints: the chunker (`put`) against one
//! thread of blake3 over the same file (and `b3sum --num-threads 1` when it
//! is on PATH), a two-node transfer, tasks whose input only the other node
//! holds, and a spread of one blob to every node of a larger cluster
//! against a two-node transfer of the same blob. Must not assert anything:
//! it measures and reports.

use crate::api::types::{
    Drain, Drained, Export, ExportBlob, ExportStarted, ExportState, Job, Node, PutPath, Status,
    StoredBlob, Submitted,
};
use crate::cli::text::{opt, seg};
use crate::client::Client;
use crate::cluster::LocalCluster;
use crate::store::reclaim::parse_size;
use anyhow::{bail, Context, Result};
use clap::Args;
use peerbatch_protocol::files::{Input, Source};
use peerbatch_protocol::job::{Command, JobSpec, TaskGroup, TaskSpec};
use peerbatch_protocol::BlobId;
use rand::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct TransferOpts {
    /// Size of the two-node transfer (e.g. 1GiB, 200MiB, or bytes).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Two-node transfers to time (a fresh receiving store each time).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also spread one blob from one node to all others of a cluster of
    /// this many nodes (0: skip).
    #[arg(long, default_value_t = 0)]
    pub spread: usize,
    /// Size of the spread blob.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub spread_size: u64,
    /// Also time tasks whose input is the two-node transfer's blob, run
    /// on the node that lacks it (this many; 0: skip).
    #[arg(long, default_value_t = 0)]
    pub task_runs: usize,
}

const MB: f64 = 1e6;

/// Writes `size` random bytes at `path`.
fn random_file(path: &Path, size: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Seconds one thread of blake3 takes over the file (read in 1 MiB pieces).
fn blake3_one_thread(path: &Path) -> Result<f64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = blake3::Hasher::new();
    let started = Instant::now();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds `b3sum --num-threads 1 FILE` takes, if b3sum is on PATH.
fn b3sum(path: &Path) -> Option<f64> {
    let started = Instant::now();
    let out = std::process::Command::new("b3sum")
        .args(["--num-threads", "1"])
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| started.elapsed().as_secs_f64())
}

fn put(client: &Client, path: &Path) -> Result<(String, f64)> {
    let started = Instant::now();
    let body = PutPath {
        path: path.into(),
        name: None,
    };
    let r: StoredBlob = client.post_unbounded("/v1/blobs", &body)?;
    Ok((r.id.to_string(), started.elapsed().as_secs_f64()))
}

/// Starts an export of `id` at `out` on `client`'s node (keeping a copy
/// of the chunks in its store when `store`); returns its number.
fn start_get(client: &Client, id: &str, out: &Path, store: bool) -> Result<u64> {
    let body = ExportBlob {
        out: out.into(),
        store,
    };
    let r: ExportStarted = client.post(&format!("/v1/blobs/{}/export", seg(id)), &body)?;
    Ok(r.export)
}

/// Waits until every `(client, export)` is done; returns each one's seconds
/// since `started`.
fn wait_gets(gets: &[(&Client, u64)], started: Instant) -> Result<Vec<f64>> {
    let mut done = vec![None; gets.len()];
    while done.iter().any(Option::is_none) {
        for (i, (client, number)) in gets.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let e: Export = client.get(&format!("/v1/exports/{number}"))?;
            match e.state {
                ExportState::Running => {}
                ExportState::Done => done[i] = Some(started.elapsed().as_secs_f64()),
                ExportState::Failed => bail!("export {number} failed: {}", opt(&e.error)),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(done.into_iter().flatten().collect())
}

/// Removes every chunk a node holds and its input cache (which may hold
/// other names of its data files), so that its next get fetches it all.
fn forget_chunks(cluster: &LocalCluster, node: usize) -> Result<()> {
    let dir = &cluster.nodes[node].dir;
    for d in [dir.chunks_dir(), dir.input_cache_dir()] {
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("cannot empty {}", d.display()))?;
        }
    }
    Ok(())
}

/// CPU seconds (user + system) each of the cluster's node processes has used.
fn nodes_cpu(cluster: &LocalCluster) -> Vec<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let used = |pid: u32| -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which ends with the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / ticks)
    };
    cluster
        .nodes
        .iter()
        .map(|n| used(n.child.id()).unwrap_or(0.0))
        .collect()
}

fn served(client: &Client) -> Result<u64> {
    Ok(client.get::<Status>("/v1/status")?.chunks_served)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Bytes `du` counts on disk for `paths` together (a file linked at two
/// of them counts once).
fn du(paths: &[&Path]) -> Result<u64> {
    let out = std::process::Command::new("du")
        .args(["-s", "-c", "-B1"])
        .args(paths)
        .output()
        .context("cannot run du")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next());
    total
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("du printed {text:?}"))
}

/// One two-node get of `id` onto node 2 with an empty store: seconds, and
/// the bytes node 2's data dir and the output use on disk together.
fn two_node_get(
    cluster: &LocalCluster,
    clients: &[Client],
    id: &str,
    out: &Path,
    store: bool,
) -> Result<(f64, u64)> {
    forget_chunks(cluster, 1)?;
    let started = Instant::now();
    let number = start_get(&clients[1], id, out, store)?;
    let secs = wait_gets(&[(&clients[1], number)], started)?[0];
    let disk = du(&[&cluster.nodes[1].dir.root, out])?;
    std::fs::remove_file(out)?;
    Ok((secs, disk))
}

fn clients(cluster: &LocalCluster) -> Result<Vec<Client>> {
    cluster.nodes.iter().map(|n| n.client()).collect()
}

pub fn run(opts: TransferOpts) -> Result<()> {
    let root =
        std::env::temp_dir().join(format!("peerbatch-bench-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = measure(&opts, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn measure(opts: &TransferOpts, root: &Path) -> Result<()> {
    let file = root.join("input");
    random_file(&file, opts.size)?;
    let mib = opts.size as f64 / (1 << 20) as f64;
    println!(
        "input: {mib:.0} MiB of random bytes; nodes on loopback with a cluster key, one process each"
    );

    let cluster = LocalCluster::start(&root.join("two"), 2, 1, false)?;
    cluster.wait_meshed(Duration::from_secs(30))?;
    let clients = clients(&cluster)?;
    let hash_secs = blake3_one_thread(&file)?;
    let (id, put_secs) = put(&clients[0], &file)?;
    // The same file again: copied and hashed, every chunk already stored.
    let (_, hash_only_secs) = put(&clients[0], &file)?;
    let rate = |secs: f64| opts.size as f64 / secs / MB;
    println!(
        "chunker: put of {mib:.0} MiB (split, hash, store) {put_secs:.2} s = {:.0} MB/s; put of it again (split, copy and hash; nothing kept) {hash_only_secs:.2} s = {:.0} MB/s",
        rate(put_secs),
        rate(hash_only_secs),
    );
    println!(
        "         blake3 on one thread in this process: {hash_secs:.2} s = {:.0} MB/s",
        rate(hash_secs)
    );
    if let Some(b3) = b3sum(&file) {
        println!(
            "         b3sum --num-threads 1 (whole process): {b3:.2} s = {:.0} MB/s; chunker hashing / b3sum = {:.2}",
            rate(b3),
            b3 / hash_only_secs
        );
    }
    rounds(opts, &cluster, &clients, &id, root)?;
    drop(cluster);

    if opts.spread >= 2 {
        spread(opts, root)?;
    }
    Ok(())
}

/// One kind of thing a round times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `get`: fetch, verify, keep in the store, link or write the file.
    Get,
    /// `get --no-store`: fetch, verify, write the file.
    NoStore,
    /// A task whose input is the blob: fetch, stage, run `true`.
    Task,
}

/// What the runs of one mode measured.
#[derive(Default)]
struct Tally {
    secs: Vec<f64>,
    /// CPU seconds of both nodes, of the sender and of the receiver.
    cpu: Vec<f64>,
    sender: Vec<f64>,
    receiver: Vec<f64>,
    /// The most `du` counted for the receiving data dir and the output.
    disk: u64,
}

/// Times `--runs` gets of each kind and `--task-runs` tasks in rounds,
/// each round in a shuffled order, with the page cache written back and
/// dropped (when root) before each, so that no kind always follows the
/// put or another kind's writes; then prints each kind's figures.
fn rounds(
    opts: &TransferOpts,
    cluster: &LocalCluster,
    clients: &[Client],
    id: &str,
    root: &Path,
) -> Result<()> {
    use rand::seq::SliceRandom;
    let blob = BlobId::parse(id).with_context(|| format!("the node named blob {id:?}"))?;
    if opts.task_runs > 0 {
        // Node 1 only serves: the task runs on node 2, which lacks the blob.
        let _: Drained = clients[0].post("/v1/nodes/self/drain", &Drain { drain: true })?;
        wait_drained(&clients[1])?;
    }
    let held = cluster.nodes[0].dir.chunks_dir().join("large").join(id);
    let out = root.join("out");
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut tallies: Vec<(Mode, Tally)> = Vec::new();
    let (mut order, mut dropped) = (Vec::new(), true);
    for round in 0..opts.runs.max(opts.task_runs) {
        let mut modes = Vec::new();
        if round < opts.runs {
            modes.extend([Mode::Get, Mode::NoStore]);
        }
        if round < opts.task_runs {
            modes.push(Mode::Task);
        }
        modes.shuffle(&mut rng);
        order.push(modes.clone());
        for mode in modes {
            dropped &= settle(&held);
            let before = nodes_cpu(cluster);
            let (secs, disk) = match mode {
                Mode::Get => two_node_get(cluster, clients, id, &out, true)?,
                Mode::NoStore => two_node_get(cluster, clients, id, &out, false)?,
                Mode::Task => task_input(cluster, clients, blob, round)?,
            };
            let used: Vec<f64> = nodes_cpu(cluster)
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .collect();
            let tally = match tallies.iter().position(|(m, _)| *m == mode) {
                Some(i) => &mut tallies[i].1,
                None => {
                    tallies.push((mode, Tally::default()));
                    &mut tallies.last_mut().expect("just pushed").1
                }
            };
            tally.secs.push(secs);
            tally.disk = tally.disk.max(disk);
            tally.sender.push(used[0]);
            tally.receiver.push(used[1]);
            tally.cpu.push(used.iter().sum());
        }
    }
    println!(
        "rounds (each in a shuffled order; before each run: sync, page cache dropped{}, the sender's data file read back in, 3 s for the VM to settle): {}",
        if dropped { "" } else { " (not: not root)" },
        order
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    tallies.sort_by_key(|(m, _)| *m as u8);
    let median_of = |mode: Mode| {
        tallies
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, t)| median(t.secs.clone()))
    };
    for (mode, tally) in &tallies {
        print_tally(opts.size, *mode, tally);
    }
    if let (Some(get), Some(no_store)) = (median_of(Mode::Get), median_of(Mode::NoStore)) {
        println!(
            "get / get --no-store (rate, medians): {:.2}",
            no_store / get
        );
    }
    if let (Some(task), Some(no_store)) = (median_of(Mode::Task), median_of(Mode::NoStore)) {
        println!(
            "task input / get --no-store (time, medians): {:.2}",
            task / no_store
        );
    }
    Ok(())
}

/// Writes dirty pages back and drops the page cache (when root; says
/// whether it could), then reads `held` (the sender's data file) back in
/// and waits 3 s: this VM hands freed pages back to its host about 2 s
/// after they are freed, so every run starts with the same kind of memory.
fn settle(held: &Path) -> bool {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    if let Ok(mut f) = std::fs::File::open(held) {
        let _ = std::io::copy(&mut f, &mut std::io::sink());
    }
    std::thread::sleep(Duration::from_secs(3));
    dropped
}

fn print_tally(size: u64, mode: Mode, t: &Tally) {
    let rate = |secs: f64| size as f64 / secs / MB;
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (lo, hi) = (
        t.secs.iter().copied().fold(f64::INFINITY, f64::min),
        t.secs.iter().copied().fold(0.0, f64::max),
    );
    let what = match mode {
        Mode::Get => "two-node get (fetch, verify, store, link the file out)",
        Mode::NoStore => "two-node get --no-store (fetch, verify, write the file)",
        Mode::Task => "task input: submit until a task (`true`) whose input is the blob, held only by the other node, finished",
    };
    let m = median(t.secs.clone());
    println!(
        "{what}: median {m:.2} s = {:.0} MB/s (range {lo:.2}–{hi:.2} s = {:.0}–{:.0} MB/s; {} runs: {})",
        rate(m),
        rate(hi),
        rate(lo),
        t.secs.len(),
        list(&t.secs),
    );
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    println!(
        "         CPU of both node processes per run: median {:.2} s ({}); with that much CPU free, a run needs at least CPU / cores = {:.2} s",
        median(t.cpu.clone()),
        list(&t.cpu),
        median(t.cpu.clone()) / cores,
    );
    let gib = size as f64 / (1u64 << 30) as f64;
    let per_gib = |v: &[f64]| v.iter().map(|x| x / gib).collect::<Vec<_>>();
    println!(
        "         CPU per GiB: sender median {:.2} s ({}), receiver median {:.2} s ({})",
        median(per_gib(&t.sender)),
        list(&per_gib(&t.sender)),
        median(per_gib(&t.receiver)),
        list(&per_gib(&t.receiver)),
    );
    let what = match mode {
        Mode::Task => "the task's node's data dir (its input staged)",
        _ => "the receiving data dir and the output together",
    };
    println!(
        "         on disk after each run (du of {what}): at most {:.0} MiB, {:.2} × the file",
        t.disk as f64 / (1 << 20) as f64,
        t.disk as f64 / size as f64,
    );
}

/// Runs one task on node 2 whose input is `blob`, which only node 1
/// holds, with node 2's chunk store and input cache emptied first;
/// returns the seconds from submit until the task (`true`) succeeded,
/// and the bytes node 2's data dir then uses on disk.
fn task_input(
    cluster: &LocalCluster,
    clients: &[Client],
    blob: BlobId,
    round: usize,
) -> Result<(f64, u64)> {
    forget_chunks(cluster, 1)?;
    let mut task = TaskSpec::new("t", Command::Argv(vec!["true".into()]), 0);
    task.inputs = vec![Input {
        path: "input".into(),
        source: Source::Blob(blob),
        within: String::new(),
    }];
    let spec = JobSpec::new(format!("input-{round}"), vec![TaskGroup::One(task)]);
    let started = Instant::now();
    let r: Submitted = clients[1].post("/v1/jobs", &spec)?;
    let job = r.job_id;
    wait_succeeded(&clients[1], &job)?;
    let secs = started.elapsed().as_secs_f64();
    Ok((secs, du(&[&cluster.nodes[1].dir.root])?))
}

/// Polls job `job` on `client`'s node every 10 ms until a task of it
/// succeeded; fails if one failed.
fn wait_succeeded(client: &Client, job: &str) -> Result<()> {
    loop {
        let j: Job = client.get(&format!("/v1/jobs/{}", seg(job)))?;
        if j.failed > 0 {
            bail!("the task of job {job} failed");
        }
        if j.succeeded > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `client`'s node sees every other node as draining.
fn wait_drained(client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: Vec<Node> = client.get("/v1/nodes")?;
        if nodes.iter().filter(|n| !n.is_self).all(|n| n.draining) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node 1 was not seen draining within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spread(opts: &TransferOpts, root: &Path) -> Result<()> {
    let n = opts.spread;
    let file = root.join("spread-input");
    random_file(&file, opts.spread_size)?;
    let mib = opts.spread_size as f64 / (1 << 20) as f64;
    let cluster = LocalCluster::start(&root.join("spread"), n, 1, false)?;
    cluster.wait_meshed(Duration::from_secs(30))?;
    let clients = clients(&cluster)?;
    let (id, _) = put(&clients[0], &file)?;
    let out = |i: usize| -> PathBuf { root.join(format!("spread-out-{i}")) };
    let (mut alone, mut spreads, mut served_by) = (Vec::new(), Vec::new(), vec![0; n]);
    for _ in 0..opts.runs.max(1) {
        alone.push(two_node_get(&cluster, &clients, &id, &out(1), true)?.0);
        for i in 1..n {
            forget_chunks(&cluster, i)?;
        }
        let before: Vec<u64> = clients.iter().map(served).collect::<Result<_>>()?;
        let started = Instant::now();
        let mut gets = Vec::new();
        for (i, client) in clients.iter().enumerate().skip(1) {
            gets.push((client, start_get(client, &id, &out(i), true)?));
        }
        let last = wait_gets(&gets, started)?.into_iter().fold(0.0, f64::max);
        spreads.push(last);
        for (i, client) in clients.iter().enumerate() {
            served_by[i] += served(client)? - before[i];
            if i > 0 {
                std::fs::remove_file(out(i))?;
            }
        }
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "spread: {mib:.0} MiB from node 1 to the other {} nodes at once, until the last has it: median {:.2} s ({}); one two-node get of it: median {:.2} s ({}); ratio {:.2}",
        n - 1,
        median(spreads.clone()),
        list(&spreads),
        median(alone.clone()),
        list(&alone),
        median(spreads.clone()) / median(alone.clone())
    );
    println!(
        "        chunks served during the spreads, per node: {}",
        served_by
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
