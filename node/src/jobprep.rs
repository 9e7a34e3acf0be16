//! Job preparation and release on this node: a job's `preparation` command
//! runs here before its first task of the job (again after a failure), and
//! its `release` command once the job has ended, on every node that
//! prepared it.
//!
//! Owns which jobs are prepared here and their runs (under
//! `DATA/jobs/JOB`). Must not decide when a job has ended; the driver asks
//! the core and calls [`JobPrep::release_ended`].

use crate::sandbox::Sandbox;
use crate::store::blobs::BlobStore;
use peerbatch_protocol::{Command, JobId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct JobPrep {
    dir: PathBuf,
    node: String,
    blobs: BlobStore,
    sandbox: Sandbox,
    /// Jobs prepared here, with their release command; one lock per job so
    /// tasks starting together prepare it once.
    prepared: Arc<Mutex<BTreeMap<JobId, Option<Command>>>>,
    locks: Arc<Mutex<BTreeMap<JobId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl JobPrep {
    pub fn new(dir: PathBuf, node: String, blobs: BlobStore, sandbox: Sandbox) -> JobPrep {
        JobPrep {
            dir,
            node,
            blobs,
            sandbox,
            prepared: Arc::default(),
            locks: Arc::default(),
        }
    }

    /// Runs the job's preparation here unless it already succeeded.
    pub async fn ensure(
        &self,
        job: JobId,
        preparation: Option<&Command>,
        release: Option<&Command>,
    ) -> Result<(), String> {
        let Some(command) = preparation else {
            self.remember(job, release);
            return Ok(());
        };
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(job).or_default().clone()
        };
        let _held = lock.lock().await;
        if self.is_prepared(&job) {
            return Ok(());
        }
        let env = self.env(job);
        let result = crate::side::run(
            &self.sandbox,
            command,
            &self.dir.join(job.to_string()).join("prep"),
            env,
            &self.blobs,
        )
        .await;
        if !result.outcome.success() {
            let stderr = result
                .stderr
                .and_then(|b| self.blobs.read_blob(&b).ok().flatten())
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default();
            return Err(format!(
                "job preparation failed ({:?}): {stderr}",
                result.outcome
            ));
        }
        self.remember(job, release);
        Ok(())
    }

    fn is_prepared(&self, job: &JobId) -> bool {
        let prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        prepared.contains_key(job)
    }

    fn remember(&self, job: JobId, release: Option<&Command>) {
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        prepared.entry(job).or_insert_with(|| release.cloned());
    }

    /// Runs the release of every prepared job in `ended` and forgets it.
    pub fn release_ended(&self, ended: &BTreeSet<JobId>) {
        let due: Vec<(JobId, Option<Command>)> = {
            let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
            let jobs: Vec<JobId> = prepared
                .keys()
                .filter(|j| ended.contains(j))
                .copied()
                .collect();
            jobs.into_iter()
                .filter_map(|j| prepared.remove(&j).map(|c| (j, c)))
                .collect()
        };
        for (job, release) in due {
            let Some(command) = release else { continue };
            let (dir, blobs, sandbox) = (
                self.dir.join(job.to_string()).join("release"),
                self.blobs.clone(),
                self.sandbox.clone(),
            );
            let env = self.env(job);
            tokio::spawn(async move {
                let result = crate::side::run(&sandbox, &command, &dir, env, &blobs).await;
                tracing::info!("release of job {job} ended: {:?}", result.outcome);
            });
        }
    }

    fn env(&self, job: JobId) -> Vec<(&'static str, String)> {
        vec![
            ("PEERBATCH_JOB_ID", job.to_string()),
            ("PEERBATCH_NODE", self.node.clone()),
        ]
    }

    /// Jobs prepared (or run) here whose release is still to come.
    pub fn jobs(&self) -> Vec<JobId> {
        let prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        prepared.keys().copied().collect()
    }
}
