//! The executor: runs task attempts.
//!
//! Owns an attempt's course (its directory, staging, running, collecting),
//! the `PEERBATCH_*` environment of a task, and turning an attempt's end
//! into a result: outputs and captured streams stored as blobs. Making and
//! removing working directories is `workdir`'s; staging inputs, packages
//! and outputs is `stage`'s; running the process, its limits and killing
//! its tree are `sandbox`'s.
//! Must not decide what to run or when; the protocol core does, through
//! the driver.

use crate::functions::triggers::Prelude;
use crate::jobprep::JobPrep;
use crate::live_logs::{LiveLogs, Tap};
use crate::sandbox::{Run, Sandbox};
use crate::stage::{StagedInput, Stager};
use crate::store::blobs::BlobStore;
use crate::workdir::{AttemptDir, Finished, WorkDirs};
use libp2p::PeerId;
use peerbatch_protocol::exit::{verdict, Verdict};
use peerbatch_protocol::{BlobId, Command, Outcome, ResolvedTask, TaskRef, TaskResult};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
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
    /// For a function's fired job: its stdin and back-off.
    pub prelude: Option<Prelude>,
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

#[derive(Clone)]
pub struct Executor {
    dirs: WorkDirs,
    blobs: BlobStore,
    stager: Stager,
    jobprep: JobPrep,
    sandbox: Sandbox,
    node: String,
    done: mpsc::UnboundedSender<TaskResult>,
    /// Names attempt directories: unique while the node runs (`WORK` is
    /// cleared at start).
    next: Arc<AtomicU64>,
    /// The running attempts' output, for followers.
    live: LiveLogs,
}

/// How an attempt ended and what of it was stored.
struct Ended {
    outcome: Outcome,
    outputs: Option<BlobId>,
    stdout: Option<BlobId>,
    stderr: Option<BlobId>,
    /// No process of the attempt is left (see [`crate::sandbox::Ran`]).
    tree_gone: bool,
}

impl Executor {
    pub fn new(
        work_root: PathBuf,
        blobs: BlobStore,
        stager: Stager,
        jobprep: JobPrep,
        sandbox: Sandbox,
        node: String,
        done: mpsc::UnboundedSender<TaskResult>,
    ) -> Executor {
        let blobs_for_live = blobs.clone();
        Executor {
            dirs: WorkDirs::new(work_root),
            blobs,
            stager,
            jobprep,
            sandbox,
            node,
            done,
            next: Arc::default(),
            live: LiveLogs::new(blobs_for_live),
        }
    }

    /// The live output of the attempts running here.
    pub fn live(&self) -> &LiveLogs {
        &self.live
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
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let taps = self.live.open(a.task, a.attempt);
        let ended = match self.dirs.create(n, &self.sandbox) {
            Err(e) => self.not_started(e),
            Ok(d) => {
                let ended = self.run_in(&a, &d, kill, taps).await;
                let how = Finished {
                    had_packages: !a.spec.packages.is_empty(),
                    tree_gone: ended.tree_gone,
                };
                self.dirs.finish(d, how);
                ended
            }
        };
        (self.live).ended(a.task, a.attempt, [ended.stdout, ended.stderr]);
        TaskResult {
            task: a.task,
            attempt: a.attempt,
            outcome: ended.outcome,
            stdout: ended.stdout,
            stderr: ended.stderr,
            outputs: ended.outputs,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// An attempt that never ran: the reason is its stderr.
    fn not_started(&self, e: String) -> Ended {
        Ended {
            stderr: self.blobs.put_bytes(e.as_bytes()).ok(),
            outcome: Outcome::FailedToStart(e),
            outputs: None,
            stdout: None,
            tree_gone: false,
        }
    }

    async fn run_in(
        &self,
        a: &Attempt,
        d: &AttemptDir,
        kill: oneshot::Receiver<()>,
        live: [Tap; 2],
    ) -> Ended {
        if let Err(e) = self.stage(a, d).await {
            return self.not_started(e);
        }
        let stdin = match self.prelude(a, d).await {
            Ok(stdin) => stdin,
            Err(e) => return self.not_started(e),
        };
        let env = self.peerbatch_env(a, d);
        let mut ran = self
            .sandbox
            .run(
                Run {
                    command: &a.spec.command,
                    dir: &d.dir,
                    stdout: &d.stdout,
                    stderr: &d.stderr,
                    env: &a.spec.env,
                    peerbatch_env: env,
                    limit_ms: a.spec.max_wall_clock_ms,
                    memory_mb: a.spec.resources.memory_mb,
                    live: Some(live),
                    stdin: stdin.as_deref(),
                },
                kill,
            )
            .await;
        if let Some(path) = &stdin {
            let _ = std::fs::remove_file(path);
        }
        let (outcome, outputs) = match ran.outcome {
            Outcome::FailedToStart(e) => return self.not_started(e),
            outcome => match self.collect(a, d, outcome).await {
                Ok(collected) => collected,
                Err(e) => {
                    ran.stderr.append(&format!("\npeerbatch: {e}\n"));
                    (Outcome::OutputsFailed(e), None)
                }
            },
        };
        Ended {
            outcome,
            outputs,
            stdout: crate::captures::keep(&self.blobs, ran.stdout),
            stderr: crate::captures::keep(&self.blobs, ran.stderr),
            tree_gone: ran.tree_gone,
        }
    }

    async fn stage(&self, a: &Attempt, d: &AttemptDir) -> Result<(), String> {
        self.jobprep
            .ensure(a.task.job, a.preparation.as_ref(), a.release.as_ref())
            .await?;
        self.stager
            .prepare(&a.inputs, &a.spec.packages, &a.peers, &d.dir, &d.packages)
            .await?;
        if a.inputs.is_empty() {
            return Ok(());
        }
        self.sandbox
            .hand_over(&d.dir)
            .map_err(|e| format!("cannot hand {} to the task: {e}", d.dir.display()))
    }

    /// Waits out a fired job's back-off and writes its stdin beside the
    /// working directory: the file's path, if it has one.
    async fn prelude(&self, a: &Attempt, d: &AttemptDir) -> Result<Option<PathBuf>, String> {
        let Some(p) = &a.prelude else {
            return Ok(None);
        };
        tokio::time::sleep(p.delay).await;
        let Some(bytes) = &p.stdin else {
            return Ok(None);
        };
        let path = d.stdout.with_extension("stdin");
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(path))
    }

    /// Stores the outputs of a successful attempt.
    async fn collect(
        &self,
        a: &Attempt,
        d: &AttemptDir,
        outcome: Outcome,
    ) -> Result<(Outcome, Option<BlobId>), String> {
        let success = verdict(&outcome, &a.spec.exit_codes) == Verdict::Success;
        if !success || a.spec.outputs.is_empty() {
            return Ok((outcome, None));
        }
        let (stager, patterns, dir) = (self.stager.clone(), a.spec.outputs.clone(), d.dir.clone());
        let stored = tokio::task::spawn_blocking(move || stager.collect(&patterns, &dir))
            .await
            .map_err(|e| e.to_string())??;
        Ok((outcome, stored))
    }

    fn peerbatch_env(&self, a: &Attempt, d: &AttemptDir) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PEERBATCH_JOB_ID", a.task.job.to_string()),
            ("PEERBATCH_JOB_NAME", a.job_name.clone()),
            ("PEERBATCH_TASK_ID", a.spec.id.clone()),
            ("PEERBATCH_ATTEMPT", a.attempt.to_string()),
            ("PEERBATCH_NODE", self.node.clone()),
            ("PEERBATCH_WORK_DIR", d.dir.display().to_string()),
            ("PEERBATCH_PACKAGES", d.packages.display().to_string()),
            ("PEERBATCH_SLOTS", a.spec.resources.slots.to_string()),
            ("PEERBATCH_GPUS", a.spec.resources.gpus.to_string()),
        ];
        if let Some(index) = a.spec.index {
            env.push(("PEERBATCH_TASK_INDEX", index.to_string()));
        }
        if let Some(g) = &a.gang {
            env.extend([
                ("PEERBATCH_RANK", g.rank.to_string()),
                ("PEERBATCH_INSTANCES", g.hosts.len().to_string()),
                ("PEERBATCH_HOSTS", g.hosts.join(",")),
                ("PEERBATCH_NODE_IDS", g.node_ids.join(",")),
            ]);
        }
        env
    }
}
