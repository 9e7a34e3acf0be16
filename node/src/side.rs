//! Commands that are not task attempts: pool start tasks and job
//! preparation and release.
//!
//! Owns running one such command in a directory of its own, with the
//! `PEERBATCH_*` environment it is given, its process group killed on a
//! wall-clock limit, and its stdout and stderr stored as blobs. Must not
//! decide when they run; `pools` and `jobprep` do.

use crate::store::blobs::BlobStore;
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::{Command, Outcome};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The longest any side command may run.
const LIMIT: Duration = Duration::from_secs(3600);

/// Runs `command` in `dir` (created if needed) with `env` added.
pub async fn run(
    command: &Command,
    dir: &Path,
    env: &[(&str, String)],
    blobs: &BlobStore,
) -> SideResult {
    let started = Instant::now();
    let outcome = match spawn(command, dir, env) {
        Ok(child) => {
            let (_never, kill) = tokio::sync::oneshot::channel::<()>();
            crate::exec::wait(child, Some(LIMIT.as_millis() as u64), kill).await
        }
        Err(e) => Outcome::FailedToStart(e),
    };
    let keep = |name: &str| {
        let bytes = std::fs::read(dir.join(name))
            .ok()
            .filter(|b| !b.is_empty())?;
        blobs.put_bytes(&bytes).ok()
    };
    let (stdout, stderr) = match &outcome {
        Outcome::FailedToStart(e) => (None, blobs.put_bytes(e.as_bytes()).ok()),
        _ => (keep(".stdout"), keep(".stderr")),
    };
    SideResult {
        outcome,
        stdout,
        stderr,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

fn spawn(
    command: &Command,
    dir: &Path,
    env: &[(&str, String)],
) -> Result<tokio::process::Child, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(name).display()))
    };
    let (out, err) = (file(".stdout")?, file(".stderr")?);
    let mut cmd = crate::exec::process(command, None)?;
    cmd.current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .env("PEERBATCH_WORK_DIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    cmd.spawn()
        .map_err(|e| format!("cannot start the command: {e}"))
}
