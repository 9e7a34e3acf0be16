//! Commands that are not task attempts: pool start tasks and job
//! preparation and release.
//!
//! Owns running one such command in a directory of its own (given to the
//! task account), with the `PEERBATCH_*` environment it is given and a
//! wall-clock limit, through the same sandbox as tasks, and storing its
//! stdout and stderr (captured beside the directory, out of the command's
//! reach) as blobs. Must not decide when they run; `pools` and `jobprep` do.

use crate::sandbox::{Ran, Run, Sandbox};
use crate::store::blobs::BlobStore;
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::{Command, Outcome};
use std::path::Path;
use std::time::{Duration, Instant};

/// The longest any side command may run.
const LIMIT: Duration = Duration::from_secs(3600);

/// Runs `command` in `dir` (created if needed) with `env` added.
pub async fn run(
    sandbox: &Sandbox,
    command: &Command,
    dir: &Path,
    env: Vec<(&'static str, String)>,
    blobs: &BlobStore,
) -> SideResult {
    let started = Instant::now();
    let capture = |stream: &str| {
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{stream}"));
        dir.with_file_name(name)
    };
    let (stdout, stderr) = (capture("stdout"), capture("stderr"));
    let ran = match sandbox.make_dir(dir) {
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
        Ok(()) => {
            let mut env = env;
            env.push(("PEERBATCH_WORK_DIR", dir.display().to_string()));
            let (_never, kill) = tokio::sync::oneshot::channel::<()>();
            let run = Run {
                command,
                dir,
                stdout: &stdout,
                stderr: &stderr,
                env: &[],
                peerbatch_env: env,
                limit_ms: Some(LIMIT.as_millis() as u64),
                memory_mb: 0,
                live: None,
                stdin: None,
            };
            Ok(sandbox.run(run, kill).await)
        }
    };
    let (outcome, stdout, stderr) = match ran {
        Err(e)
        | Ok(Ran {
            outcome: Outcome::FailedToStart(e),
            ..
        }) => {
            let stderr = blobs.put_bytes(e.as_bytes()).ok();
            (Outcome::FailedToStart(e), None, stderr)
        }
        Ok(ran) => (
            ran.outcome,
            crate::captures::keep(blobs, ran.stdout),
            crate::captures::keep(blobs, ran.stderr),
        ),
    };
    SideResult {
        outcome,
        stdout,
        stderr,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}
