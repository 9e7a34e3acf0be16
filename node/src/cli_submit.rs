//! Submitting a job from the CLI and, when asked, waiting for it with a
//! progress bar until every task is done.
//!
//! Owns `submit` (shared by `submit`, `run` and `demo`) and the wait. Must not
//! build job specs: callers hand it one.

use crate::cli_text::{s, seg};
use crate::client::Client;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peerbatch_protocol::JobSpec;
use serde_json::Value;
use std::time::Duration;

/// Submits a job, prints its id on stdout, and optionally waits for it.
pub fn submit(client: &Client, spec: JobSpec, wait: bool) -> Result<()> {
    let body = serde_json::to_value(&spec)?;
    let r = client.post("/v1/jobs", &body)?;
    let job = s(&r["job_id"]);
    println!("{job}");
    let (peers, held) = (
        r["peers_connected"].as_u64().unwrap_or(0),
        r["replicated_to"].as_u64().unwrap_or(0),
    );
    if peers > 0 && held == 0 {
        eprintln!("warning: job {job} is stored on this node but no peer confirmed holding it yet; it will spread when they sync");
    } else if peers == 0 {
        eprintln!("note: this node has no peers; job {job} runs here until others join");
    }
    if wait {
        let final_state = wait_job(client, &job)?;
        if final_state["state"] != "succeeded" {
            bail!(
                "job {job} ended {}: {} failed, {} cancelled",
                s(&final_state["state"]),
                final_state["failed"],
                final_state["cancelled"]
            );
        }
    }
    Ok(())
}

/// Shows a live progress bar until every task of `job` is terminal.
pub fn wait_job(client: &Client, job: &str) -> Result<Value> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks done  {msg}",
        )
        .context("progress template")?,
    );
    loop {
        let j = client.get(&format!("/v1/jobs/{}", seg(job)))?;
        let total = j["tasks"].as_u64().unwrap_or(0);
        let done = ["succeeded", "failed", "cancelled", "skipped"]
            .iter()
            .map(|k| j[*k].as_u64().unwrap_or(0))
            .sum::<u64>();
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!("{} running, {} failed", j["running"], j["failed"]));
        if total > 0 && done == total {
            bar.finish();
            eprintln!(
                "job {job} {}: {} succeeded, {} failed, {} cancelled, {} skipped",
                s(&j["state"]),
                j["succeeded"],
                j["failed"],
                j["cancelled"],
                j["skipped"]
            );
            return Ok(j);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
