//! Turning a parsed job file into a job the mesh can run: stores its local
//! sources on the local node and resolves its packages to their blobs and
//! the jobs it waits for (`after`: ids, prefixes or names) to their ids.
//!
//! Owns the rules of staging: which local files become which blobs, and
//! one tree per templated source (`frames/{index}.png` → a tree whose
//! entries are the indices). What it asks of a node is the [`Stager`]
//! trait: the CLI's `Client` answers it over the API, the API's job-file
//! route (`api::submit`) inside the node. Must not parse job files
//! (`jobfile` does).

use crate::api::types::{Job, Package, PutEntries, StoredBlob};
use crate::bad_input::BadInput;
use crate::client::Client;
use crate::jobfile::{JobDraft, LocalSource};
use anyhow::{Context, Result};
use peerbatch_protocol::job::{JobSpec, TaskGroup};
use peerbatch_protocol::{BlobId, JobId, Source};
use std::path::Path;
use std::path::PathBuf;

/// What finishing a draft asks of a node.
pub trait Stager {
    /// Whether the node may read the caller's files by path (needed for a
    /// source with one file per task).
    fn shares_files(&self) -> bool;
    /// Stores a local file or directory tree (which exists).
    fn store(&self, path: &Path) -> Result<BlobId>;
    /// Stores local files as one tree, each under its name.
    fn store_entries(&self, entries: Vec<(String, PathBuf)>) -> Result<BlobId>;
    /// Every package version the mesh knows.
    fn packages(&self) -> Result<Vec<Package>>;
    /// The id of the job `name` means (an id, a unique prefix, or a name).
    fn job_id(&self, name: &str) -> Result<JobId>;
}

impl Stager for Client {
    fn shares_files(&self) -> bool {
        Client::shares_files(self)
    }

    fn store(&self, path: &Path) -> Result<BlobId> {
        Ok(crate::cli::blobs::store(self, path, None)?.id)
    }

    fn store_entries(&self, entries: Vec<(String, PathBuf)>) -> Result<BlobId> {
        let stored: StoredBlob =
            self.post_unbounded("/v1/blobs/entries", &PutEntries { entries })?;
        Ok(stored.id)
    }

    fn packages(&self) -> Result<Vec<Package>> {
        self.get("/v1/packages")
    }

    fn job_id(&self, name: &str) -> Result<JobId> {
        let job: Job = self.get(&format!("/v1/jobs/{}", crate::cli::text::seg(name)))?;
        JobId::parse(&job.id).context("the node did not answer with a job id")
    }
}

/// Stages every local source and resolves every package; the result is
/// validated and ready to submit.
pub fn finish(node: &impl Stager, mut draft: JobDraft) -> Result<JobSpec> {
    for source in &draft.stage {
        let group = draft
            .spec
            .groups
            .get(source.group)
            .context("a staged source points at no task group")?;
        let (blob, per_task) = stage(node, source, group)?;
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
        let known = node.packages()?;
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
        let id = node
            .job_id(name)
            .map_err(|e| BadInput(format!("after: job {name:?}: {e:#}")))?;
        draft.spec.after.push(id);
    }
    draft.spec.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok(draft.spec)
}

/// Stores one source: a file or tree as is, or — with placeholders in an
/// array or sweep — one file per task as a tree whose entries are the
/// tasks' `{index}` values. True in the second case. What is wrong with
/// it is said at its place in the job file.
fn stage(node: &impl Stager, source: &LocalSource, group: &TaskGroup) -> Result<(BlobId, bool)> {
    let text = source.path.to_string_lossy();
    let refuse = |why: String| BadInput(source.at.error(format!("input source {why}")).to_string());
    let templated = text.contains('{') && !matches!(group, TaskGroup::One(_));
    if templated {
        if !node.shares_files() {
            return Err(refuse(format!(
                "{text}: a source with one file per task can only be staged by the \
                 node's own account, not with PEERBATCH_TOKEN (inside a task, say)"
            ))
            .into());
        }
        let mut entries = Vec::new();
        for k in 0..group.len() {
            let path = group.fill(k, &text);
            let name = group.index_value(k).unwrap_or(k as i64).to_string();
            let found = existing(Path::new(&path)).map_err(refuse)?;
            entries.push((name, found.into()));
        }
        Ok((node.store_entries(entries)?, true))
    } else {
        existing(&source.path).map_err(refuse)?;
        Ok((node.store(&source.path)?, false))
    }
}

/// The absolute form of a source that must exist, or why not.
fn existing(path: &Path) -> Result<String, String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(format!("{}: no such file or directory", path.display()));
    }
    crate::cli::text::absolute(path).map_err(|e| format!("{e:#}"))
}
