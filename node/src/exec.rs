//! The executor: runs task attempts as child processes.
//!
//! Owns per-attempt working directories, the `PEERBATCH_*` environment,
//! stdout/stderr capture into the chunk store, wall-clock limits and killing
//! the whole process group on timeout or on request. Must not decide what to
//! run or when; the protocol core does, through the driver.

use crate::store::blobs::BlobStore;
use peerbatch_protocol::{BlobId, Command, Outcome, ResolvedTask, TaskRef};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// An attempt that ended, as reported back to the driver.
pub struct Exited {
    pub task: TaskRef,
    pub attempt: u32,
    pub outcome: Outcome,
    pub stdout: Option<BlobId>,
    pub stderr: Option<BlobId>,
    pub duration_ms: u64,
}

/// What one attempt needs to run.
pub struct Attempt {
    pub task: TaskRef,
    pub attempt: u32,
    pub job_name: String,
    pub spec: ResolvedTask,
}

#[derive(Clone)]
pub struct Executor {
    work_root: PathBuf,
    blobs: BlobStore,
    node: String,
    done: mpsc::UnboundedSender<Exited>,
}

impl Executor {
    pub fn new(
        work_root: PathBuf,
        blobs: BlobStore,
        node: String,
        done: mpsc::UnboundedSender<Exited>,
    ) -> Executor {
        Executor {
            work_root,
            blobs,
            node,
            done,
        }
    }

    /// Starts an attempt; the returned sender kills it.
    pub fn start(&self, attempt: Attempt) -> oneshot::Sender<()> {
        let (kill_tx, kill_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let exited = this.run(attempt, kill_rx).await;
            // The driver outlives its executors; a closed channel means shutdown.
            let _ = this.done.send(exited);
        });
        kill_tx
    }

    async fn run(&self, a: Attempt, kill: oneshot::Receiver<()>) -> Exited {
        let started = Instant::now();
        let base = self
            .work_root
            .join(a.task.job.to_string())
            .join(format!("{}-{}", a.task.index, a.attempt));
        let dir = base.join("work");
        let out_path = base.join("stdout");
        let err_path = base.join("stderr");
        let outcome = match self.spawn(&a, &dir, &out_path, &err_path).await {
            Err(e) => Outcome::FailedToStart(e),
            Ok(child) => wait(child, a.spec.max_wall_clock_ms, kill).await,
        };
        let stdout = self.keep(&out_path);
        let stderr = match &outcome {
            Outcome::FailedToStart(e) => self.blobs.put_bytes(e.as_bytes()).ok(),
            _ => self.keep(&err_path),
        };
        if let Err(e) = std::fs::remove_dir_all(&base) {
            tracing::debug!("could not remove {}: {e}", base.display());
        }
        Exited {
            task: a.task,
            attempt: a.attempt,
            outcome,
            stdout,
            stderr,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn spawn(
        &self,
        a: &Attempt,
        dir: &PathBuf,
        out_path: &PathBuf,
        err_path: &PathBuf,
    ) -> Result<tokio::process::Child, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let open = |p: &PathBuf| {
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
        };
        let (out, err) = (open(out_path)?, open(err_path)?);
        let mut cmd = match &a.spec.command {
            Command::Shell(line) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c
            }
            Command::Argv(argv) => {
                let (program, args) = argv.split_first().ok_or("empty command")?;
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
        };
        cmd.current_dir(dir)
            .envs(a.spec.env.iter().map(|(k, v)| (k, v)))
            .env("PEERBATCH_JOB_ID", a.task.job.to_string())
            .env("PEERBATCH_JOB_NAME", &a.job_name)
            .env("PEERBATCH_TASK_ID", &a.spec.id)
            .env("PEERBATCH_ATTEMPT", a.attempt.to_string())
            .env("PEERBATCH_NODE", &self.node)
            .env("PEERBATCH_WORK_DIR", dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if let Some(index) = a.spec.index {
            cmd.env("PEERBATCH_TASK_INDEX", index.to_string());
        }
        cmd.spawn().map_err(|e| {
            let program = match &a.spec.command {
                Command::Shell(_) => "/bin/sh".to_string(),
                Command::Argv(argv) => argv.first().cloned().unwrap_or_default(),
            };
            format!("cannot start {program}: {e}")
        })
    }

    /// Stores a captured stream; empty output is recorded as none.
    fn keep(&self, path: &PathBuf) -> Option<BlobId> {
        let bytes = std::fs::read(path).ok()?;
        if bytes.is_empty() {
            return None;
        }
        match self.blobs.put_bytes(&bytes) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!("could not store {}: {e:#}", path.display());
                None
            }
        }
    }
}

async fn wait(
    mut child: tokio::process::Child,
    limit_ms: Option<u64>,
    kill: oneshot::Receiver<()>,
) -> Outcome {
    let limit = async {
        match limit_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    let timed_out = tokio::select! {
        status = child.wait() => return status_outcome(status),
        _ = limit => true,
        _ = kill => false,
    };
    if let Some(pid) = child.id() {
        // SAFETY: killpg only sends a signal; the group id is our child's pid,
        // which we have not reaped yet, so it cannot have been reused.
        unsafe {
            libc::killpg(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let status = child.wait().await;
    if timed_out {
        Outcome::TimedOut
    } else {
        status_outcome(status)
    }
}

fn status_outcome(status: std::io::Result<std::process::ExitStatus>) -> Outcome {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(sig)) => Outcome::Signaled(sig),
            (None, None) => Outcome::Exited(-1),
        },
        Err(e) => Outcome::FailedToStart(format!("waiting for the process failed: {e}")),
    }
}
