//! The executor: runs task attempts as child processes.
//!
//! Owns per-attempt working directories, the `PEERBATCH_*` environment,
//! stdout/stderr capture into the chunk store, wall-clock limits and killing
//! the whole process group on timeout or on request. Staging inputs,
//! packages and outputs is `stage`'s. Must not decide what to run or when;
//! the protocol core does, through the driver.

use crate::jobprep::JobPrep;
use crate::stage::{StagedInput, Stager};
use crate::store::blobs::BlobStore;
use libp2p::PeerId;
use peerbatch_protocol::exit::{verdict, Verdict};
use peerbatch_protocol::{BlobId, Command, Outcome, ResolvedTask, TaskRef, TaskResult};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What one attempt needs to run.
pub struct Attempt {
    pub task: TaskRef,
    pub attempt: u32,
    pub job_name: String,
    pub spec: ResolvedTask,
    /// The spec's inputs with `from_task` resolved to blobs.
    pub inputs: Vec<StagedInput>,
    /// Where to fetch inputs and packages from.
    pub peers: Vec<PeerId>,
    /// The job's preparation and release commands.
    pub preparation: Option<Command>,
    pub release: Option<Command>,
    /// For an instance of a multi-instance task: where the gang runs.
    pub gang: Option<GangEnv>,
}

/// What an instance of a multi-instance task is told about its gang.
pub struct GangEnv {
    /// `PEERBATCH_RANK`: 0 for the primary.
    pub rank: u32,
    /// `PEERBATCH_HOSTS`: each member's address (IP), in rank order.
    pub hosts: Vec<String>,
    /// `PEERBATCH_NODE_IDS`: each member's peer id, in rank order.
    pub node_ids: Vec<String>,
}

/// A working directory with its capture files. Reused by later attempts
/// when left empty, so a short task costs no inode creation.
struct Scratch {
    dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// `$PEERBATCH_PACKAGES`: links to unpacked packages, made per attempt.
    packages: PathBuf,
}

#[derive(Clone)]
pub struct Executor {
    work_root: PathBuf,
    blobs: BlobStore,
    stager: Stager,
    jobprep: JobPrep,
    node: String,
    /// Set for every task before its own `env` (the node's API for job
    /// managers, `PATH`).
    base_env: Arc<Vec<(String, String)>>,
    done: mpsc::UnboundedSender<TaskResult>,
    scratch: Arc<Mutex<(Vec<Scratch>, usize)>>,
}

impl Executor {
    pub fn new(
        work_root: PathBuf,
        blobs: BlobStore,
        stager: Stager,
        jobprep: JobPrep,
        node: String,
        base_env: Vec<(String, String)>,
        done: mpsc::UnboundedSender<TaskResult>,
    ) -> Executor {
        Executor {
            work_root,
            blobs,
            stager,
            jobprep,
            node,
            base_env: Arc::new(base_env),
            done,
            scratch: Arc::default(),
        }
    }

    fn acquire(&self) -> Result<Scratch, String> {
        let mut pool = self.scratch.lock().map_err(|_| "scratch pool poisoned")?;
        if let Some(s) = pool.0.pop() {
            return Ok(s);
        }
        pool.1 += 1;
        let base = self.work_root.join(pool.1.to_string());
        let dir = base.join("work");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch {
            dir,
            stdout: base.join("stdout"),
            stderr: base.join("stderr"),
            packages: base.join("packages"),
        })
    }

    /// Returns a scratch to the pool, emptying its directory if the task left files.
    fn release(&self, s: Scratch) {
        let _ = std::fs::remove_dir_all(&s.packages);
        let empty = std::fs::read_dir(&s.dir).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            let cleared = std::fs::remove_dir_all(&s.dir).and_then(|_| std::fs::create_dir(&s.dir));
            if let Err(e) = cleared {
                tracing::warn!("cannot clear {}: {e}", s.dir.display());
                return;
            }
        }
        if let Ok(mut pool) = self.scratch.lock() {
            pool.0.push(s);
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

    async fn run(&self, a: Attempt, kill: oneshot::Receiver<()>) -> TaskResult {
        let started = Instant::now();
        let scratch = self.acquire();
        let mut outputs = None;
        let outcome = match &scratch {
            Err(e) => Outcome::FailedToStart(e.clone()),
            Ok(s) => match self.stage_and_spawn(&a, s).await {
                Err(e) => Outcome::FailedToStart(e),
                Ok(child) => {
                    let outcome = wait(child, a.spec.max_wall_clock_ms, kill).await;
                    match self.collect(&a, s, outcome).await {
                        Ok((outcome, stored)) => {
                            outputs = stored;
                            outcome
                        }
                        Err(e) => Outcome::OutputsFailed(e),
                    }
                }
            },
        };
        let (stdout, stderr) = match (&outcome, &scratch) {
            (Outcome::FailedToStart(e), _) | (_, Err(e)) => {
                (None, self.blobs.put_bytes(e.as_bytes()).ok())
            }
            (Outcome::OutputsFailed(e), Ok(s)) => {
                let mut stderr = std::fs::read(&s.stderr).unwrap_or_default();
                stderr.extend_from_slice(format!("\npeerbatch: {e}\n").as_bytes());
                (self.keep(&s.stdout), self.blobs.put_bytes(&stderr).ok())
            }
            (_, Ok(s)) => (self.keep(&s.stdout), self.keep(&s.stderr)),
        };
        if let Ok(s) = scratch {
            self.release(s);
        }
        TaskResult {
            task: a.task,
            attempt: a.attempt,
            outcome,
            stdout,
            stderr,
            outputs,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn stage_and_spawn(
        &self,
        a: &Attempt,
        s: &Scratch,
    ) -> Result<tokio::process::Child, String> {
        self.jobprep
            .ensure(a.task.job, a.preparation.as_ref(), a.release.as_ref())
            .await?;
        self.stager
            .prepare(&a.inputs, &a.spec.packages, &a.peers, &s.dir, &s.packages)
            .await?;
        self.spawn(a, s).await
    }

    /// Stores the outputs of a successful attempt.
    async fn collect(
        &self,
        a: &Attempt,
        s: &Scratch,
        outcome: Outcome,
    ) -> Result<(Outcome, Option<BlobId>), String> {
        let success = verdict(&outcome, &a.spec.exit_codes) == Verdict::Success;
        if !success || a.spec.outputs.is_empty() {
            return Ok((outcome, None));
        }
        let (stager, patterns, dir) = (self.stager.clone(), a.spec.outputs.clone(), s.dir.clone());
        let stored = tokio::task::spawn_blocking(move || stager.collect(&patterns, &dir))
            .await
            .map_err(|e| e.to_string())??;
        Ok((outcome, stored))
    }

    async fn spawn(&self, a: &Attempt, s: &Scratch) -> Result<tokio::process::Child, String> {
        let dir = &s.dir;
        let open = |p: &PathBuf| {
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
        };
        let (out, err) = (open(&s.stdout)?, open(&s.stderr)?);
        let path = a
            .spec
            .env
            .iter()
            .chain(self.base_env.iter())
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let mut cmd = process(&a.spec.command, path)?;
        cmd.current_dir(dir)
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .envs(a.spec.env.iter().map(|(k, v)| (k, v)))
            .env("PEERBATCH_JOB_ID", a.task.job.to_string())
            .env("PEERBATCH_JOB_NAME", &a.job_name)
            .env("PEERBATCH_TASK_ID", &a.spec.id)
            .env("PEERBATCH_ATTEMPT", a.attempt.to_string())
            .env("PEERBATCH_NODE", &self.node)
            .env("PEERBATCH_WORK_DIR", dir)
            .env("PEERBATCH_PACKAGES", &s.packages)
            .env("PEERBATCH_SLOTS", a.spec.resources.slots.to_string())
            .env("PEERBATCH_GPUS", a.spec.resources.gpus.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if let Some(index) = a.spec.index {
            cmd.env("PEERBATCH_TASK_INDEX", index.to_string());
        }
        if let Some(g) = &a.gang {
            cmd.env("PEERBATCH_RANK", g.rank.to_string())
                .env("PEERBATCH_INSTANCES", g.hosts.len().to_string())
                .env("PEERBATCH_HOSTS", g.hosts.join(","))
                .env("PEERBATCH_NODE_IDS", g.node_ids.join(","));
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
        if std::fs::metadata(path).ok()?.len() == 0 {
            return None;
        }
        let bytes = std::fs::read(path).ok()?;
        match self.blobs.put_bytes(&bytes) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(
                    "could not store {}: {:#}",
                    path.display(),
                    anyhow::Error::from(e)
                );
                None
            }
        }
    }
}

/// The process a command runs as: a shell line under `/bin/sh -c`, or a
/// program with its arguments.
/// The process for `command`. With `path` (the `PATH` the process will
/// get, when it differs from the node's), a bare program name is looked up
/// there first: a command whose `PATH` is changed and whose program is not
/// a path cannot be started with `posix_spawn`, and the `fork` the standard
/// library falls back to costs a large node several times as much per task.
pub(crate) fn process(
    command: &Command,
    path: Option<&str>,
) -> Result<tokio::process::Command, String> {
    Ok(match command {
        Command::Shell(line) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        Command::Argv(argv) => {
            let (program, args) = argv.split_first().ok_or("empty command")?;
            let found = path.filter(|_| !program.contains('/')).and_then(|p| {
                std::env::split_paths(p)
                    .map(|d| d.join(program))
                    .find(|f| f.is_file())
            });
            let mut c = match found {
                Some(file) => tokio::process::Command::new(file),
                None => tokio::process::Command::new(program),
            };
            c.args(args);
            c
        }
    })
}

pub(crate) async fn wait(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_program_is_looked_up_in_the_tasks_path_so_it_can_be_spawned_directly() {
        let argv = Command::Argv(vec!["sh".into(), "-c".into(), "true".into()]);
        let found = process(&argv, Some("/nonexistent:/bin:/usr/bin")).unwrap();
        assert_eq!(found.as_std().get_program(), "/bin/sh");
        let unchanged = process(&argv, None).unwrap();
        assert_eq!(unchanged.as_std().get_program(), "sh");
        let missing = Command::Argv(vec!["no-such-program".into()]);
        let kept = process(&missing, Some("/bin")).unwrap();
        assert_eq!(kept.as_std().get_program(), "no-such-program");
    }
}
