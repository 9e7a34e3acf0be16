//! Data-plane benchmark on a LAN of hosts with network cards of a set speed.
//!
//! `cargo bench -p peerbatch-tests --bench lan_transfer [-- --rate 1gbit
//! --size 512MiB --nodes 4 --runs 3]` (root: it makes network namespaces).
//! Each host is a network namespace on one bridge; its link is limited to
//! `--rate` in each direction with a token bucket on both ends of its veth,
//! so that on one machine the hosts' network cards, not their shared CPUs,
//! bound a transfer, as on a lab's LAN. One release-built `peerbatch node`
//! with a cluster key runs per host. Prints, per run: a two-node get of a
//! `--size` blob of random bytes (whole `peerbatch get` command, empty
//! store), then the same blob got by every other node at once from the one
//! that stored it, until the last has it, and the chunks each node served
//! meanwhile. Owns only this method and what it prints; it asserts
//! nothing.

use peerbatch_tests::{ok, wait_for, Lan, Node};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

struct Opts {
    rate: String,
    size: u64,
    nodes: usize,
    runs: usize,
}

fn parse_size(text: &str) -> u64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().expect("--size: a number with B, KiB, MiB or GiB");
    n * match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("--size: unit {other:?} is not B, KiB, MiB or GiB"),
    }
}

/// Reads the options after `--`; cargo's own `--bench` flag is skipped.
fn opts() -> Opts {
    let mut o = Opts {
        rate: "1gbit".into(),
        size: 512 << 20,
        nodes: 4,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rate" => o.rate = value(),
            "--size" => o.size = parse_size(&value()),
            "--nodes" => o.nodes = value().parse().expect("--nodes: a number"),
            "--runs" => o.runs = value().parse().expect("--runs: a number"),
            "--bench" => {}
            other => panic!("unknown option {other} (--rate, --size, --nodes, --runs)"),
        }
    }
    assert!(
        o.nodes >= 3,
        "--nodes: at least 3 (a source and two receivers)"
    );
    o
}

/// `size` pseudo-random bytes at `path` (blake3's output stream).
fn random_file(path: &Path, size: u64) {
    let mut stream = blake3::Hasher::new().update(&rand_seed()).finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.fill(&mut block[..n]);
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// Different bytes every run, so no store anywhere already holds them.
fn rand_seed() -> [u8; 16] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&now.as_nanos().to_le_bytes()[..8]);
    seed[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    seed
}

fn spawn_get(node: &Node, id: &str, out: &Path) -> Child {
    node.command(&["get", id, "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start peerbatch get")
}

/// Runs `peerbatch get` on every node in `on` at once; seconds until each
/// one has the file, in the order of `on`.
fn get_all(nodes: &[Node], on: &[usize], id: &str, out: &Path) -> Vec<f64> {
    for &i in on {
        forget_chunks(&nodes[i]);
        let _ = std::fs::remove_file(out.join(format!("n{i}")));
    }
    let started = Instant::now();
    let children: Vec<(usize, Child)> = on
        .iter()
        .map(|&i| (i, spawn_get(&nodes[i], id, &out.join(format!("n{i}")))))
        .collect();
    let mut finished = vec![0.0; children.len()];
    let mut running = children;
    while !running.is_empty() {
        running.retain_mut(|(i, child)| match child.try_wait().unwrap() {
            None => true,
            Some(status) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                assert!(status.success(), "get on node {} failed: {stderr}", *i + 1);
                let at = on.iter().position(|j| j == i).unwrap();
                finished[at] = started.elapsed().as_secs_f64();
                false
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    finished
}

/// CPU seconds (user + system) the node processes have used.
fn nodes_cpu(nodes: &[Node]) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    nodes
        .iter()
        .filter_map(|n| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", n.pid())).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks)
        })
        .sum()
}

/// Empties a node's chunk store, so that its next get fetches everything.
fn forget_chunks(node: &Node) {
    let chunks = node.dir.join("chunks");
    if chunks.exists() {
        std::fs::remove_dir_all(&chunks).unwrap();
    }
}

fn served(node: &Node) -> u64 {
    node.status()["chunks_served"].as_u64().unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let o = opts();
    let tmp = tempfile::tempdir().unwrap();
    let lan = Lan::new("bx", o.nodes);
    lan.limit_links(&o.rate);
    let key = tmp.path().join("cluster.key");
    ok(
        &std::process::Command::new(peerbatch_tests::bin())
            .args(["keygen", "--out"])
            .arg(&key)
            .output()
            .unwrap(),
        "keygen",
    );
    let key = key.to_str().unwrap().to_string();
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let listen = format!("/ip4/10.77.0.{}/tcp/4001", i + 1);
            let mut args = vec!["--listen", &listen, "--no-mdns", "--cluster-key", &key];
            args.extend(["--join", "/ip4/10.77.0.1/tcp/4001"]);
            Node::start_with(&tmp.path().join(format!("n{i}")), Some(host), &args)
        })
        .collect();
    wait_for(
        "every node to see every other as live",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| n.live_nodes() == o.nodes)
                .then_some(())
        },
    );
    let file = tmp.path().join("input");
    random_file(&file, o.size);
    let id = ok(&nodes[0].cli(&["put", file.to_str().unwrap()]), "put");
    let out: PathBuf = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mib = o.size as f64 / f64::from(1 << 20);
    println!(
        "{} hosts (network namespaces on one bridge), each link {} each way; a {mib:.0} MiB blob stored on node 1",
        o.nodes, o.rate
    );
    let receivers: Vec<usize> = (1..o.nodes).collect();
    let (mut alone, mut spread, mut served_by) = (Vec::new(), Vec::new(), vec![0; o.nodes]);
    for run in 1..=o.runs {
        let cpu = nodes_cpu(&nodes);
        alone.push(get_all(&nodes, &[1], &id, &out)[0]);
        let (before, cpu_alone) = (
            nodes.iter().map(served).collect::<Vec<u64>>(),
            nodes_cpu(&nodes) - cpu,
        );
        let cpu = nodes_cpu(&nodes);
        let each = get_all(&nodes, &receivers, &id, &out);
        let cpu_spread = nodes_cpu(&nodes) - cpu;
        spread.push(each.iter().copied().fold(0.0, f64::max));
        for (i, node) in nodes.iter().enumerate() {
            served_by[i] += served(node) - before[i];
        }
        println!(
            "run {run}: two-node get {:.2} s = {:.0} MB/s ({cpu_alone:.1} CPU-s); spread to {} nodes {:.2} s (each: {}; {cpu_spread:.1} CPU-s)",
            alone[run - 1],
            o.size as f64 / alone[run - 1] / 1e6,
            receivers.len(),
            spread[run - 1],
            list(&each),
        );
    }
    let (a, s) = (median(alone.clone()), median(spread.clone()));
    println!(
        "two-node get: median {a:.2} s = {:.0} MB/s ({})",
        o.size as f64 / a / 1e6,
        list(&alone)
    );
    println!(
        "spread from node 1 to the other {} nodes at once, until the last has it: median {s:.2} s ({}); ratio to the two-node get {:.2}",
        receivers.len(),
        list(&spread),
        s / a
    );
    let chunks = served_by.iter().sum::<u64>().max(1);
    println!(
        "chunks served during the spreads, per node: {} (node 1: {:.0} %)",
        served_by
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        100.0 * served_by[0] as f64 / chunks as f64
    );
}
