//! `POST /v1/jobs/file`: a job written as a job file (TOML text, or the
//! same keys as JSON), parsed, staged and submitted by the node itself —
//! for programs that are not the CLI (the Python client) and would
//! otherwise have to rebuild the job-file format.
//!
//! Owns that route and [`NodeStager`], the node-side answer to
//! `draft::Stager`: it stores sources by path (the route is the node's
//! account's only, never a task token's: `api::guard::TASK_ROUTES` does not
//! list it) and looks packages and jobs up in the ledger. Must not parse
//! job files (`jobfile`) or know the staging rules (`draft`).

use crate::api::files::{package_list, regular_files};
use crate::api::types::{JobFile, Package, Submitted};
use crate::api::{absolute, bad_request, keep, submit_spec, ApiError, ApiResult, ApiState};
use crate::driver::command::Jobs;
use crate::store::blobs::BlobStore;
use anyhow::{anyhow, Result};
use axum::extract::State;
use axum::Json;
use peerbatch_protocol::{BlobId, JobId, JobSpec};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

/// Parses, stages and submits a job file.
#[utoipa::path(post, path = "/v1/jobs/file", tag = "jobs", request_body = JobFile,
    responses((status = 200, body = Submitted)))]
pub async fn submit_file(
    State(s): State<ApiState>,
    Json(body): Json<JobFile>,
) -> ApiResult<Json<Submitted>> {
    let dir = absolute("dir", body.dir)?;
    let text = match (body.toml, body.job) {
        (Some(text), None) => text,
        (None, Some(job)) => toml::to_string(&job)
            .map_err(|e| bad_request(format!("job: not a job file's keys and values: {e}")))?,
        _ => return Err(bad_request("give exactly one of toml and job".into())),
    };
    let file = body.name.unwrap_or_else(|| "job".into());
    let stager = NodeStager {
        blobs: s.data.blobs.clone(),
        state: s.clone(),
        runtime: Handle::current(),
    };
    let spec = tokio::task::spawn_blocking(move || finish(&stager, &file, &text, &dir))
        .await
        .map_err(|e| bad_request(e.to_string()))?
        .map_err(|e| bad_request(format!("{e:#}")))?;
    submit_spec(&s, spec).await.map(Json)
}

fn finish(stager: &NodeStager, file: &str, text: &str, dir: &Path) -> Result<JobSpec> {
    let default_name = file.strip_suffix(".toml").unwrap_or(file);
    let draft = crate::jobfile::parse_in(file, text, default_name, dir)?;
    crate::draft::finish(stager, draft)
}

/// Finishes a draft inside the node (on a blocking thread: it waits for
/// the driver through `runtime`).
pub struct NodeStager {
    blobs: BlobStore,
    state: ApiState,
    runtime: Handle,
}

fn refused(e: ApiError) -> anyhow::Error {
    anyhow!(e.1)
}

impl NodeStager {
    /// Records a stored blob as a user's: never reclaimed.
    fn kept(&self, id: BlobId) -> Result<BlobId> {
        keep(&self.state, id).map_err(refused)?;
        Ok(id)
    }
}

impl crate::draft::Stager for NodeStager {
    fn shares_files(&self) -> bool {
        true
    }

    fn store(&self, path: &Path) -> Result<BlobId> {
        let (id, _) = self.blobs.put_path(path)?;
        self.kept(id)
    }

    fn store_entries(&self, entries: Vec<(String, PathBuf)>) -> Result<BlobId> {
        let files = regular_files(entries).map_err(refused)?;
        let (id, _) = self.blobs.put_files(files)?;
        self.kept(id)
    }

    fn packages(&self) -> Result<Vec<Package>> {
        let list = package_list(&self.state);
        self.runtime.block_on(list).map_err(refused)
    }

    fn job_id(&self, name: &str) -> Result<JobId> {
        let job = name.to_string();
        let id = self.state.driver.call(|reply| Jobs::Resolve { job, reply });
        let id = self.runtime.block_on(id).map_err(|e| refused(e.into()))?;
        id.map_err(|e| anyhow!(e))
    }
}
