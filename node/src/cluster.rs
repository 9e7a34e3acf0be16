//! A local cluster of real `peerbatch node` processes on loopback.
//!
//! Owns starting N nodes (each its own process, data dir and log file),
//! waiting until they form a mesh, and stopping them. Used by `demo` and
//! `bench`; must not submit work or judge results.

use crate::api::types::{Invite, Node};
use crate::client::Client;
use crate::paths::DataDir;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalNode {
    pub dir: DataDir,
    pub child: Child,
}

pub struct LocalCluster {
    pub root: PathBuf,
    pub nodes: Vec<LocalNode>,
    keep: bool,
    slots: u32,
    /// Flags every node process is started with, after the cluster's own.
    node_args: Vec<String>,
    /// The first node's invitation token, once it is up.
    token: Option<String>,
}

impl LocalNode {
    pub fn client(&self) -> Result<Client> {
        Client::connect(&self.dir, None, &Default::default())
    }
}

fn wait_for_file(path: &Path, child: &mut Child, log: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return Ok(text);
            }
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("node exited with {status} before it was up; its log:\n{tail}");
        }
        if Instant::now() > deadline {
            bail!("node did not write {} within 30 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl LocalCluster {
    /// Starts `n` nodes under `root` with `slots` slots: the first makes the key of a new
    /// cluster, the others join it with its invitation token; `keep` leaves the directory
    /// behind on drop.
    pub fn start(root: &Path, n: usize, slots: u32, keep: bool) -> Result<LocalCluster> {
        Self::start_with(root, n, slots, keep, Vec::new())
    }

    /// As [`LocalCluster::start`], with `node_args` added to every node's
    /// command line (say `--clock-skew 1s`).
    pub fn start_with(
        root: &Path,
        n: usize,
        slots: u32,
        keep: bool,
        node_args: Vec<String>,
    ) -> Result<LocalCluster> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let mut cluster = LocalCluster {
            root: root.to_path_buf(),
            nodes: Vec::new(),
            keep,
            slots,
            node_args,
            token: None,
        };
        for _ in 0..n {
            cluster.add_node()?;
        }
        Ok(cluster)
    }

    /// Starts one more node in a fresh data dir; it joins with the first
    /// node's invitation token (the first node makes the cluster's key).
    pub fn add_node(&mut self) -> Result<()> {
        let dir = DataDir {
            root: self.root.join(format!("node{}", self.nodes.len() + 1)),
        };
        dir.create()?;
        let child = self.spawn(&dir, self.token.as_deref())?;
        let node = LocalNode { dir, child };
        if self.token.is_none() {
            let invite: Invite = node.client()?.get("/v1/invite")?;
            self.token = Some(invite.token);
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Stops node `i`: SIGTERM, then SIGKILL after 5 s.
    pub fn stop_node(&mut self, i: usize) -> Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        terminate(&mut node.child);
        Ok(())
    }

    /// Starts stopped node `i` again on its data dir; returns once it
    /// listens and its API answers.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let dir = self.nodes.get(i).context("no such node")?.dir.clone();
        let _ = std::fs::remove_file(dir.listen_file());
        let _ = std::fs::remove_file(dir.api_file());
        self.nodes[i].child = self.spawn(&dir, None)?;
        Ok(())
    }

    /// Starts a node process on `dir`, joining with `token` if given, and
    /// waits until it listens and serves its API.
    fn spawn(&self, dir: &DataDir, token: Option<&str>) -> Result<Child> {
        let exe = std::env::current_exe().context("cannot find the peerbatch executable")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.log_file())?;
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&dir.root)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .args(["--slots", &self.slots.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        cmd.args(crate::sandbox::local_task_account());
        cmd.args(&self.node_args);
        if let Some(token) = token {
            cmd.args(["--join-token", token]);
        }
        let mut child = cmd.spawn().context("cannot start a node process")?;
        wait_for_file(&dir.listen_file(), &mut child, &dir.log_file())?;
        wait_for_file(&dir.api_file(), &mut child, &dir.log_file())?;
        Ok(child)
    }

    /// Waits until every node is connected to all others and knows them all.
    pub fn wait_meshed(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.nodes.len();
        loop {
            let mut ready = 0;
            for node in &self.nodes {
                let nodes: Vec<Node> = node.client()?.get("/v1/nodes")?;
                let live = nodes.iter().filter(|n| n.live).count();
                if live == want {
                    ready += 1;
                }
            }
            if ready == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {want} nodes did not form a mesh within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            signal_term(&node.child);
        }
        for node in &mut self.nodes {
            reap(&mut node.child);
        }
        self.nodes.clear();
    }
}

/// Sends SIGTERM to a child process of ours.
fn signal_term(child: &Child) {
    // SAFETY: kill only sends SIGTERM to our own, not yet reaped child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// Waits up to 5 s for a child to exit, then kills it.
fn reap(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops one child: SIGTERM, then SIGKILL after 5 s.
fn terminate(child: &mut Child) {
    signal_term(child);
    reap(child);
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
