//! The task page (`/jobs/{job}/tasks/{task}`): its state, node, attempt and
//! how it ended; its stdout and stderr (the end of each shown, the whole
//! downloadable); and its output files, each downloadable.
//!
//! Owns that page and the two download routes (a log, a stored file);
//! fetches bytes through the API's fetch paths, from whichever node has
//! them.

use super::html::{self, esc};
use super::session::Session;
use super::{PageResult, PortalError, PortalState};
use crate::api::{self, ask, not_found, ApiError};
use crate::driver::Driver;
use crate::fetch::Fetcher;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use libp2p::PeerId;
use peerbatch_protocol::content::Object;
use peerbatch_protocol::{BlobId, TaskRef, TaskState};
use std::fmt::Write;

/// The end of a log shown on the page; the rest is in its download.
pub const SHOWN_LOG_BYTES: usize = 64 << 10;

/// What the page needs of a task, read from the ledger in one go.
struct Facts {
    state: TaskState,
    attempt: u32,
    node: Option<String>,
    ended: Option<String>,
    duration_ms: Option<u64>,
    stdout: Option<BlobId>,
    stderr: Option<BlobId>,
    outputs: Option<BlobId>,
    peers: Vec<PeerId>,
    fetcher: Fetcher,
}

fn facts(d: &mut Driver, job: &str, task: &str) -> Result<Facts, ApiError> {
    let id = d.resolve_job(job).map_err(not_found)?;
    let record = d
        .core
        .ledger()
        .job(&id)
        .ok_or_else(|| not_found(format!("no job {job}")))?;
    let index = record
        .spec
        .position_of(task)
        .ok_or_else(|| not_found(format!("job {id} has no task {task:?}")))?;
    let view = d
        .core
        .view(TaskRef { job: id, index })
        .ok_or_else(|| not_found(format!("task {task:?} is unknown here")))?;
    let result = view.result.as_ref();
    Ok(Facts {
        state: view.state,
        attempt: view.attempt,
        node: view.node.as_ref().map(api::node_name),
        ended: result.map(|r| match r.outcome.exit_code() {
            Some(code) => format!("exit code {code}"),
            None => html::outcome(&r.outcome),
        }),
        duration_ms: result.map(|r| r.duration_ms),
        stdout: result.and_then(|r| r.stdout),
        stderr: result.and_then(|r| r.stderr),
        outputs: result.and_then(|r| r.outputs),
        peers: d.connected_peers(),
        fetcher: d.fetcher.clone(),
    })
}

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path((job, task)): Path<(String, String)>,
) -> PageResult {
    let (j, t) = (job.clone(), task.clone());
    let f = ask(&s.api, move |d| facts(d, &j, &t)).await??;
    let base = format!("/jobs/{}/tasks/{}", html::seg(&job), html::seg(&task));
    let mut body = format!(
        "<p><a href=\"/jobs/{}\">← job</a></p><section id=facts data-live><dl>\
         <dt>state</dt><dd class=task-state>{}</dd><dt>attempt</dt><dd>{}</dd><dt>node</dt><dd>{}</dd>\
         <dt>ended</dt><dd>{}</dd><dt>duration</dt><dd>{}</dd></dl>",
        html::seg(&job),
        f.state.name(),
        f.attempt,
        f.node.as_deref().map_or_else(|| "—".into(), html::peer),
        esc(f.ended.as_deref().unwrap_or("—")),
        f.duration_ms.map_or_else(|| "—".into(), html::duration),
    );
    for (name, blob) in [("stdout", f.stdout), ("stderr", f.stderr)] {
        let shown = log_text(&f, blob).await;
        let _ = write!(
            body,
            "<h2>{name} <a class=download href=\"{base}/{name}\" download>download</a></h2>\
             <pre class=log id={name}>{}</pre>",
            esc(&shown)
        );
    }
    body.push_str(&outputs(&f).await);
    body.push_str("</section>");
    Ok(html::page(&format!("Task {task}"), &session.csrf, &body))
}

/// The end of a captured stream, or why there is nothing to show yet.
async fn log_text(f: &Facts, blob: Option<BlobId>) -> String {
    if f.ended.is_none() {
        return match f.state {
            TaskState::Running => format!(
                "(attempt {} is running; its output appears here when it ends)",
                f.attempt
            ),
            state => format!("({}: no output yet)", state.name()),
        };
    }
    let Some(blob) = blob else {
        return "(no output)".into();
    };
    match f.fetcher.fetch_bytes(blob, &f.peers).await {
        Ok(bytes) => {
            let from = bytes.len().saturating_sub(SHOWN_LOG_BYTES);
            let cut = if from > 0 {
                "…(the start is in the download)\n"
            } else {
                ""
            };
            format!("{cut}{}", String::from_utf8_lossy(&bytes[from..]))
        }
        Err(e) => format!("(cannot fetch the log: {:#})", anyhow::Error::from(e)),
    }
}

/// The task's output files, each a download link.
async fn outputs(f: &Facts) -> String {
    let Some(tree) = f.outputs else {
        return String::new();
    };
    let mut out = String::from("<h2 id=outputs>Outputs</h2><ul class=outputs>");
    match f.fetcher.fetch_object(tree, &f.peers).await {
        Ok(Object::Tree(t)) => {
            for e in t.entries {
                let name = e.path.rsplit('/').next().unwrap_or(&e.path);
                let _ = write!(
                    out,
                    "<li><a href=\"/files/{}/{}\" download>{}</a></li>",
                    e.blob,
                    html::seg(name),
                    esc(&e.path)
                );
            }
        }
        Ok(Object::File(_)) => {
            let _ = write!(
                out,
                "<li><a href=\"/files/{tree}/outputs\" download>outputs</a></li>"
            );
        }
        Err(e) => {
            let _ = write!(
                out,
                "<li class=error>{}</li>",
                esc(&format!("{:#}", anyhow::Error::from(e)))
            );
        }
    }
    out.push_str("</ul>");
    out
}

/// `GET /jobs/{job}/tasks/{task}/{stdout|stderr}`: the whole log, as a
/// download.
pub async fn log(
    State(s): State<PortalState>,
    Path((job, task, stream)): Path<(String, String, String)>,
) -> Result<Response, PortalError> {
    let stderr = match stream.as_str() {
        "stdout" => false,
        "stderr" => true,
        _ => {
            return Err(PortalError(
                StatusCode::NOT_FOUND,
                format!("no log {stream:?}"),
            ))
        }
    };
    let f = ask(&s.api, move |d| facts(d, &job, &task)).await??;
    if f.ended.is_none() {
        return Err(PortalError(
            StatusCode::NOT_FOUND,
            format!("the task has not finished yet ({})", f.state.name()),
        ));
    }
    let blob = if stderr { f.stderr } else { f.stdout };
    let response = api::log_bytes(blob, &f.peers, &f.fetcher).await?;
    Ok(attachment(response, &format!("{stream}.txt")))
}

/// `GET /files/{blob}/{name}`: a stored file's bytes, as a download named
/// `name`.
pub async fn download(
    State(s): State<PortalState>,
    Path((blob, name)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    let path = Path(api::types::BlobPath { id: blob });
    let response = api::stream::get_bytes(State(s.api.clone()), path).await?;
    Ok(attachment(response, &name))
}

/// `response` as a download saved under `name` (quotes and controls
/// replaced).
fn attachment(mut response: Response, name: &str) -> Response {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
