//! Turning a parsed job file into a job the mesh can run: stores its local
//! sources on the local node and resolves its packages to their blobs.
//!
//! Owns the client side of staging: which local files become which blobs,
//! and one tree per templated source (`frames/{index}.png` → a tree whose
//! entries are the indices). Must not parse job files (`jobfile` does) or
//! reach into a node except through its API.

use crate::cli::BadInput;
use crate::client::Client;
use crate::jobfile::{JobDraft, LocalSource};
use anyhow::{Context, Result};
use peerbatch_protocol::job::{JobSpec, TaskGroup, TaskSpec};
use peerbatch_protocol::{BlobId, Source};
use serde_json::json;
use std::path::Path;

/// Stages every local source and resolves every package; the result is
/// validated and ready to submit.
pub fn finish(client: &Client, mut draft: JobDraft) -> Result<JobSpec> {
    for source in &draft.stage {
        let indices = indices(&draft.spec, source.group);
        let blob = stage(client, source, &indices)?;
        let input = spec_mut(&mut draft.spec, source.group)
            .and_then(|s| s.inputs.get_mut(source.input))
            .context("a staged source points at no input")?;
        input.source = Source::Blob(blob);
    }
    if !draft.packages.is_empty() {
        let known = client.get("/v1/packages")?;
        for slot in &draft.packages {
            let package = spec_mut(&mut draft.spec, slot.group)
                .and_then(|s| s.packages.get_mut(slot.package))
                .context("a package slot points at no package")?;
            let found = known.as_array().into_iter().flatten().find(|p| {
                p["name"] == package.name.as_str() && p["version"] == package.version.as_str()
            });
            let blob = found
                .and_then(|p| p["blob"].as_str())
                .and_then(BlobId::parse)
                .ok_or_else(|| {
                    BadInput(format!(
                        "package {}@{} is not known to the mesh; add it with `peerbatch package add {} {} PATH`",
                        package.name, package.version, package.name, package.version
                    ))
                })?;
            package.blob = blob;
        }
    }
    draft.spec.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok(draft.spec)
}

fn spec_mut(spec: &mut JobSpec, group: usize) -> Option<&mut TaskSpec> {
    match spec.groups.get_mut(group)? {
        TaskGroup::One(s) | TaskGroup::Array { template: s, .. } => Some(s),
    }
}

/// The index values of an array group; `[]` for a single task.
fn indices(spec: &JobSpec, group: usize) -> Vec<i64> {
    match spec.groups.get(group) {
        Some(g @ TaskGroup::Array { start, step, .. }) => {
            (0..g.len() as i64).map(|k| start + k * step).collect()
        }
        _ => Vec::new(),
    }
}

/// Stores one source: a file or tree as is, or — with `{index}` in an
/// array — one file per index as a tree whose entries are the indices.
fn stage(client: &Client, source: &LocalSource, indices: &[i64]) -> Result<BlobId> {
    let text = source.path.to_string_lossy();
    let blob = if text.contains("{index}") && !indices.is_empty() {
        let mut entries = Vec::with_capacity(indices.len());
        for i in indices {
            let path = text.replace("{index}", &i.to_string());
            entries.push((i.to_string(), existing(Path::new(&path))?));
        }
        client.post_unbounded("/v1/blobs/entries", &json!({ "entries": entries }))?
    } else {
        let path = existing(&source.path)?;
        client.post_unbounded("/v1/blobs", &json!({ "path": path }))?
    };
    blob["id"]
        .as_str()
        .and_then(BlobId::parse)
        .context("the node did not answer with a blob id")
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
    crate::cli::absolute(path)
}
