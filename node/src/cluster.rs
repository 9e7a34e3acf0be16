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
}

impl LocalNode {
    pub fn client(&self) -> Result<Client> {
        Client::connect(&self.dir, None)
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
        let exe = std::env::current_exe().context("cannot find the peerbatch executable")?;
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let mut cluster = LocalCluster {
            root: root.to_path_buf(),
            nodes: Vec::new(),
            keep,
        };
        let mut token: Option<String> = None;
        for i in 0..n {
            let dir = DataDir {
                root: root.join(format!("node{}", i + 1)),
            };
            dir.create()?;
            let log = std::fs::File::create(dir.log_file())?;
            let mut cmd = Command::new(&exe);
            cmd.arg("node")
                .arg("--data-dir")
                .arg(&dir.root)
                .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
                .args(["--slots", &slots.to_string()])
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            cmd.args(crate::sandbox::local_task_account());
            if let Some(token) = &token {
                cmd.args(["--join-token", token]);
            }
            let mut child = cmd.spawn().context("cannot start a node process")?;
            wait_for_file(&dir.listen_file(), &mut child, &dir.log_file())?;
            wait_for_file(&dir.api_file(), &mut child, &dir.log_file())?;
            let node = LocalNode { dir, child };
            if token.is_none() {
                let invite: Invite = node.client()?.get("/v1/invite")?;
                token = Some(invite.token);
            }
            cluster.nodes.push(node);
        }
        Ok(cluster)
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
            // SAFETY: kill only sends SIGTERM to our own, not yet reaped child.
            unsafe {
                libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            let deadline = Instant::now() + Duration::from_secs(5);
            while node.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        self.nodes.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
