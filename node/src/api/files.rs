//! HTTP routes of the data plane beyond single blobs: trees listed file by
//! file (array sources), a job's outputs downloaded as one tree, and
//! application packages (including unpacking `.tar`/`.tar.gz` archives with
//! their paths checked).
//!
//! Owns those routes and the archive reader (their JSON shapes are
//! `api::types`'). Routes are registered in
//! `api`; like every handler, these ask the driver for protocol state and
//! must not keep any of their own.

use crate::api::types::{
    AddPackage, ExportOutputs, JobPath, OutputsExportStarted, Package, PackageAdded, PutEntries,
    StoredBlob,
};
use crate::api::{
    absolute, bad_request, keep, node_name, not_found, ApiError, ApiResult, ApiState,
};
use crate::driver::command::{JobTasks, Mesh, Packages, Tasks};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use peerbatch_protocol::content::{check_path, Object, Tree, TreeEntry};
use peerbatch_protocol::ledger::PackageRecord;
use peerbatch_protocol::{BlobId, TaskState};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn blob_error(e: crate::store::blobs::BlobError) -> ApiError {
    bad_request(format!("{:#}", anyhow::Error::from(e)))
}

/// Stores local files under the given tree paths as one tree.
#[utoipa::path(post, path = "/v1/blobs/entries", tag = "blobs", request_body = PutEntries,
    responses((status = 200, body = StoredBlob)))]
pub async fn put_entries(
    State(s): State<ApiState>,
    Json(body): Json<PutEntries>,
) -> ApiResult<Json<StoredBlob>> {
    let files = regular_files(body.entries)?;
    let blobs = s.data.blobs.clone();
    let started = std::time::Instant::now();
    let (id, stats) = tokio::task::spawn_blocking(move || blobs.put_files(files))
        .await
        .map_err(internal)?
        .map_err(blob_error)?;
    keep(&s, id)?;
    Ok(Json(StoredBlob::new(id, stats, started)))
}

/// `(path in the tree, absolute local file)` entries checked: safe tree
/// paths, absolute regular files; with each file's mode.
pub(crate) fn regular_files(
    entries: Vec<(String, PathBuf)>,
) -> ApiResult<Vec<(String, PathBuf, u32)>> {
    let mut files = Vec::with_capacity(entries.len());
    for (name, path) in entries {
        check_path(&name).map_err(|e| bad_request(e.to_string()))?;
        let path = absolute("entry", path)?;
        let meta =
            fs::metadata(&path).map_err(|e| bad_request(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(bad_request(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        files.push((name, path, meta.permissions().mode() & 0o777));
    }
    Ok(files)
}

/// Starts downloading every succeeded task's outputs of a job to
/// `out/TASK/...`; answers with an export number to poll.
#[utoipa::path(post, path = "/v1/jobs/{job}/outputs/export", tag = "jobs",
    params(JobPath), request_body = ExportOutputs,
    responses((status = 200, body = OutputsExportStarted)))]
pub async fn export_outputs(
    State(s): State<ApiState>,
    Path(JobPath { job }): Path<JobPath>,
    Json(body): Json<ExportOutputs>,
) -> ApiResult<Json<OutputsExportStarted>> {
    let out = absolute("out", body.out)?;
    crate::store::blobs::check_out(&out).map_err(blob_error)?;
    let found = s.driver.call(|reply| Tasks::List { job, reply }).await??;
    let (outputs, total, succeeded) = succeeded_outputs(&found);
    let job = found.record.id;
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    let (fetcher, blobs) = (&s.data.fetcher, &s.data.blobs);
    if outputs.is_empty() {
        return Err(not_found(format!(
            "job {job} has no task outputs yet ({succeeded} of {total} tasks succeeded)"
        )));
    }
    let mut entries = Vec::new();
    for (task, blob) in &outputs {
        let tree = match fetcher.fetch_object(*blob, &peers).await {
            Ok(Object::Tree(tree)) => tree,
            Ok(Object::File(_)) => {
                return Err(bad_request(format!(
                    "outputs {blob} of task {task:?} are not a tree"
                )))
            }
            Err(e) => {
                return Err(ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!("outputs of task {task:?}: {:#}", anyhow::Error::from(e)),
                ))
            }
        };
        for e in tree.entries {
            entries.push(TreeEntry {
                path: format!("{task}/{}", e.path),
                ..e
            });
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let (tree, _) = blobs.put_tree_object(Tree { entries }).map_err(|e| {
        bad_request(format!(
            "task ids do not make a safe directory tree: {:#}",
            anyhow::Error::from(e)
        ))
    })?;
    let export = fetcher.start_export(tree, out, peers, true);
    Ok(Json(OutputsExportStarted {
        export,
        job_id: job.to_string(),
        tree: tree.to_string(),
        tasks: total,
        succeeded,
        tasks_with_outputs: outputs.len(),
    }))
}

/// The outputs of a job's succeeded tasks, by task id; the number of its
/// tasks and of those that succeeded.
fn succeeded_outputs(found: &JobTasks) -> (Vec<(String, BlobId)>, u32, u32) {
    let mut outputs = Vec::new();
    let (mut total, mut succeeded) = (0u32, 0u32);
    for view in &found.views {
        total += 1;
        if view.state != TaskState::Succeeded {
            continue;
        }
        succeeded += 1;
        let name = found.record.spec.task(view.task.index).map(|t| t.id);
        if let (Some(name), Some(blob)) = (name, view.result.as_ref().and_then(|r| r.outputs)) {
            outputs.push((name, blob));
        }
    }
    (outputs, total, succeeded)
}

/// Every package version the mesh knows.
#[utoipa::path(get, path = "/v1/packages", tag = "packages",
    responses((status = 200, body = Vec<Package>)))]
pub async fn packages(State(s): State<ApiState>) -> ApiResult<Json<Vec<Package>>> {
    package_list(&s).await.map(Json)
}

/// Every package version the ledger holds.
pub(crate) async fn package_list(s: &ApiState) -> ApiResult<Vec<Package>> {
    let packages = s.driver.call(|reply| Packages::List { reply }).await?;
    let package = |p: PackageRecord| Package {
        name: p.name,
        version: p.version,
        blob: p.blob.to_string(),
        added_by: node_name(&p.added_by),
        added_ms: p.added_ms,
    };
    Ok(packages.into_iter().map(package).collect())
}

/// Stores a directory or archive as a package version and tells the mesh.
#[utoipa::path(post, path = "/v1/packages", tag = "packages", request_body = AddPackage,
    responses((status = 200, body = PackageAdded)))]
pub async fn add_package(
    State(s): State<ApiState>,
    Json(body): Json<AddPackage>,
) -> ApiResult<Json<PackageAdded>> {
    peerbatch_protocol::files::check_package(&body.name, &body.version)
        .map_err(|e| bad_request(e.to_string()))?;
    let (blob, files) = store_tree(&s, absolute("path", body.path)?).await?;
    let add = |reply| Packages::Add {
        name: body.name.clone(),
        version: body.version.clone(),
        blob,
        reply,
    };
    let new = s.driver.call(add).await??;
    Ok(Json(PackageAdded {
        name: body.name,
        version: body.version,
        blob: blob.to_string(),
        files,
        new,
    }))
}

/// Stores the directory or `.tar`/`.tar.gz`/`.tgz` archive at `path` as
/// one tree blob kept on this node for good (a package's or a function
/// bundle's content); answers the blob and its count of files.
pub(crate) async fn store_tree(s: &ApiState, path: PathBuf) -> ApiResult<(BlobId, u64)> {
    let blobs = s.data.blobs.clone();
    let unpack_to = s.unpack.clone();
    let stored = tokio::task::spawn_blocking(move || -> Result<(BlobId, u64), String> {
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            let (id, stats) = blobs
                .put_path(&path)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
            return Ok((id, stats.files));
        }
        let staging = unpack_to.fresh_dir(&path)?;
        let result = unpack(&path, &staging, unpack_to.max_bytes).and_then(|_| {
            blobs
                .put_path(&staging)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        });
        let _ = fs::remove_dir_all(&staging);
        result.map(|(id, stats)| (id, stats.files))
    })
    .await
    .map_err(internal)?
    .map_err(bad_request)?;
    let (blob, files) = stored;
    keep(s, blob)?;
    Ok((blob, files))
}

/// Where archives are unpacked (under the data dir) and the most bytes
/// one may unpack to.
#[derive(Clone, Debug)]
pub struct Unpack {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl Unpack {
    /// A fresh, private directory to unpack `archive` into.
    fn fresh_dir(&self, archive: &std::path::Path) -> Result<PathBuf, String> {
        let dir = self.dir.join(format!("{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&self.dir)
            .and_then(|_| fs::create_dir(&dir))
            .and_then(|_| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("cannot unpack {}: {e}", archive.display()))?;
        Ok(dir)
    }
}

/// Unpacks a `.tar`, `.tar.gz` or `.tgz` into `dir`, refusing entries that
/// are links, special files, or paths that escape `dir`, and archives whose
/// files hold more than `max_bytes` in all.
fn unpack(archive: &std::path::Path, dir: &std::path::Path, max_bytes: u64) -> Result<(), String> {
    let mut room = max_bytes;
    let name = archive.display().to_string();
    let file = fs::File::open(archive).map_err(|e| format!("{name}: {e}"))?;
    let reader: Box<dyn std::io::Read> = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if name.ends_with(".tar") {
        Box::new(file)
    } else {
        return Err(format!(
            "{name}: a package is a directory or a .tar, .tar.gz or .tgz archive"
        ));
    };
    let mut tar = tar::Archive::new(reader);
    let entries = tar.entries().map_err(|e| format!("{name}: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{name}: {e}"))?;
        let raw = entry.path().map_err(|e| format!("{name}: {e}"))?;
        let text = raw.to_string_lossy().into_owned();
        let rel = text
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if rel.is_empty() {
            continue;
        }
        check_path(&rel).map_err(|e| format!("{name}: entry {text:?}: {e}"))?;
        let target = dir.join(&rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            let mut out =
                fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            let copied = std::io::copy(&mut (&mut entry).take(room + 1), &mut out)
                .map_err(|e| format!("{name}: entry {text:?}: {e}"))?;
            room = room.checked_sub(copied).ok_or_else(|| {
                format!("{name}: unpacks to more than {max_bytes} bytes (the node's --max-package-size)")
            })?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", target.display()))?;
        } else {
            return Err(format!(
                "{name}: entry {text:?} is a link or special file; packages hold only files and directories"
            ));
        }
    }
    Ok(())
}
