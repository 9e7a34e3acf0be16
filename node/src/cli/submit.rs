//! Submitting a job from the CLI and, when asked, waiting for it with a
//! progress bar until every task is done.
//!
//! Owns `submit` (shared by `submit`, `run` and `demo`) and the wait. Must not
//! build job specs: callers hand it one.

use crate::api::types::{Job, JobState, Submitted};
use crate::cli::text::seg;
use crate::client::Client;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peerbatch_protocol::JobSpec;
use std::time::Duration;

/// Submits a job, prints its id on stdout, and optionally waits for it.
pub fn submit(client: &Client, spec: JobSpec, wait: bool) -> Result<()> {
    let r: Submitted = client.post("/v1/jobs", &spec)?;
    let job = r.job_id;
    println!("{job}");
    let (peers, held) = (r.peers_connected, r.replicated_to);
    if peers > 0 && held == 0 {
        eprintln!("warning: job {job} is stored on this node but no peer confirmed holding it yet; it will spread when they sync");
    } else if peers == 0 {
        eprintln!("note: this node has no peers; job {job} runs here until others join");
    }
    if wait {
        let end = wait_job(client, &job)?;
        if end.state != JobState::Succeeded {
            bail!(
                "job {job} ended {}: {} failed, {} cancelled",
                end.state.name(),
                end.failed,
                end.cancelled
            );
        }
    }
    Ok(())
}

/// Shows a live progress bar until every task of `job` is terminal.
pub fn wait_job(client: &Client, job: &str) -> Result<Job> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks done  {msg}",
        )
        .context("progress template")?,
    );
    loop {
        let j: Job = client.get(&format!("/v1/jobs/{}", seg(job)))?;
        bar.set_length(j.tasks.into());
        bar.set_position(j.done().into());
        bar.set_message(format!("{} running, {} failed", j.running, j.failed));
        if j.tasks > 0 && j.state.ended() {
            bar.finish();
            eprintln!(
                "job {job} {}: {} succeeded, {} failed, {} cancelled, {} skipped",
                j.state.name(),
                j.succeeded,
                j.failed,
                j.cancelled,
                j.skipped
            );
            return Ok(j);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
