//! Turning a parsed job file into a job the mesh can run: stores its local
//! sources on the local node and resolves its packages to their blobs and
//! the jobs it waits for (`after`: ids, prefixes or names) to their ids.
//!
//! Owns the client side of staging: which local files become which blobs,
//! and one tree per templated source (`frames/{index}.png` → a tree whose
//! entries are the indices). Must not parse job files (`jobfile` does) or
//! reach into a node except through its API.

use crate::api::types::{Job, Package, PutEntries, StoredBlob};
use crate::bad_input::BadInput;
use crate::client::Client;
use crate::jobfile::{JobDraft, LocalSource};
use anyhow::{Context, Result};
use peerbatch_protocol::job::{JobSpec, TaskGroup};
use peerbatch_protocol::{BlobId, JobId, Source};
use std::path::Path;

/// Stages every local source and resolves every package; the result is
/// validated and ready to submit.
pub fn finish(client: &Client, mut draft: JobDraft) -> Result<JobSpec> {
    for source in &draft.stage {
        let group = draft
            .spec
            .groups
            .get(source.group)
            .context("a staged source points at no task group")?;
        let (blob, per_task) = stage(client, source, group)?;
        let input = draft.spec.groups[source.group]
            .spec_mut()
            .inputs
            .get_mut(source.input)
            .context("a staged source points at no input")?;
        input.source = Source::Blob(blob);
        if per_task {
            input.within = "{index}".into();
        }
    }
    if !draft.packages.is_empty() {
        let known: Vec<Package> = client.get("/v1/packages")?;
        for slot in &draft.packages {
            let package = slot
                .in_spec(&mut draft.spec)
                .context("a package slot points at no package")?;
            let found = known
                .iter()
                .find(|p| p.name == package.name && p.version == package.version);
            let blob = found
                .and_then(|p| BlobId::parse(&p.blob))
                .ok_or_else(|| {
                    BadInput(format!(
                        "package {}@{} is not known to the mesh; add it with `peerbatch package add {} {} PATH`",
                        package.name, package.version, package.name, package.version
                    ))
                })?;
            package.blob = blob;
        }
    }
    for name in &draft.after {
        let job: Job = client
            .get(&format!("/v1/jobs/{}", crate::cli_text::seg(name)))
            .map_err(|e| BadInput(format!("after: job {name:?}: {e:#}")))?;
        let id = JobId::parse(&job.id).context("the node did not answer with a job id")?;
        draft.spec.after.push(id);
    }
    draft.spec.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok(draft.spec)
}

/// Stores one source: a file or tree as is, or — with placeholders in an
/// array or sweep — one file per task as a tree whose entries are the
/// tasks' `{index}` values. True in the second case.
fn stage(client: &Client, source: &LocalSource, group: &TaskGroup) -> Result<(BlobId, bool)> {
    let text = source.path.to_string_lossy();
    let templated = text.contains('{') && !matches!(group, TaskGroup::One(_));
    let blob: StoredBlob = if templated {
        if !client.shares_files() {
            return Err(BadInput(format!(
                "input source {text}: a source with one file per task can only be staged by the \
                 node's own account, not with PEERBATCH_TOKEN (inside a task, say)"
            ))
            .into());
        }
        let mut entries = Vec::new();
        for k in 0..group.len() {
            let path = group.fill(k, &text);
            let name = group.index_value(k).unwrap_or(k as i64).to_string();
            entries.push((name, existing(Path::new(&path))?.into()));
        }
        client.post_unbounded("/v1/blobs/entries", &PutEntries { entries })?
    } else {
        existing(&source.path)?;
        return Ok((crate::cli_blobs::store(client, &source.path)?.id, false));
    };
    Ok((blob.id, templated))
}

/// The absolute form of a source that must exist.
fn existing(path: &Path) -> Result<String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(BadInput(format!(
            "input source {}: no such file or directory",
            path.display()
        ))
        .into());
    }
    crate::cli_text::absolute(path)
}
