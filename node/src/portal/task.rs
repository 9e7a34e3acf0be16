//! The task page (`/jobs/{job}/tasks/{task}`): its state, node, attempt and
//! how it ended; every attempt (`attempts`) with its logs; its stdout and
//! stderr (followed live while it runs, through the API's follow path; the
//! end of each shown once it ended, the whole downloadable); and its
//! output files, each downloadable.
//!
//! Owns that page and the log and file routes (a log followed live, a
//! log or a stored file downloaded); fetches bytes through the API's fetch
//! and follow paths, from whichever node has them.

use super::attempts::{attempts, Attempt};
use super::html::{self, esc};
use super::session::Session;
use super::{PageResult, PortalError, PortalResult, PortalState};
use crate::api::{self, follow, not_found, ApiState};
use crate::driver::command::{Mesh, Tasks};
use crate::fetch::Fetcher;
use crate::store::ledger::LedgerStore;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use libp2p::PeerId;
use peerbatch_protocol::content::Object;
use peerbatch_protocol::{BlobId, EventStore, TaskRef, TaskState};
use serde::Deserialize;
use std::fmt::Write;

/// The end of a log shown on the page; the rest is in its download.
pub const SHOWN_LOG_BYTES: usize = 64 << 10;

/// What the page needs of a task, read from the ledger in one go.
struct Facts {
    task: TaskRef,
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
    store: LedgerStore,
}

async fn facts(s: &ApiState, job: String, task: String) -> PortalResult<Facts> {
    let show = |reply| Tasks::Show {
        job,
        task: task.clone(),
        reply,
    };
    let found = s.driver.call(show).await??;
    let unknown = || not_found(format!("task {task:?} is unknown here"));
    let view = found.entry.ok_or_else(unknown)?.view;
    let result = view.result.as_ref();
    Ok(Facts {
        task: view.task,
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
        peers: s.driver.call(|reply| Mesh::Peers { reply }).await?,
        fetcher: s.data.fetcher.clone(),
        store: s.data.ledger.clone(),
    })
}

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path((job, task)): Path<(String, String)>,
) -> PageResult {
    let f = facts(&s.api, job.clone(), task.clone()).await?;
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
    body.push_str(&attempts_table(&f, &base).await?);
    body.push_str(&outputs(&f).await);
    body.push_str("</section>");
    for name in ["stdout", "stderr"] {
        body.push_str(&log_section(&f, &base, name).await);
    }
    Ok(html::page(&format!("Task {task}"), &session.csrf, &body))
}

/// The attempts of the task, from the job's stored events, each with how
/// it ended and links to its logs.
async fn attempts_table(f: &Facts, base: &str) -> PortalResult<String> {
    let list = read_attempts(f).await?;
    let mut out = String::from(
        "<h2>Attempts</h2><table class=attempts><thead><tr><th>attempt</th><th>node</th>\
         <th>ended</th><th>duration</th><th>logs</th></tr></thead><tbody>",
    );
    for a in &list {
        let ended = match (&a.result, a.reclaimed) {
            (Some(r), _) => match r.outcome.exit_code() {
                Some(code) => format!("exit code {code}"),
                None => html::outcome(&r.outcome),
            },
            (None, true) => "lease ran out".into(),
            (None, false) if a.number == f.attempt && f.state == TaskState::Running => {
                "running".into()
            }
            (None, false) => "—".into(),
        };
        let logs = match &a.result {
            Some(_) => format!(
                "<a href=\"{base}/stdout?attempt={n}\" download>stdout</a> \
                 <a href=\"{base}/stderr?attempt={n}\" download>stderr</a>",
                n = a.number
            ),
            None => "—".into(),
        };
        let _ = write!(
            out,
            "<tr data-attempt={}><td>{}</td><td>{}</td><td class=ended>{}</td><td>{}</td><td>{logs}</td></tr>",
            a.number,
            a.number,
            html::peer(&api::node_name(&a.node)),
            esc(&ended),
            a.result
                .as_ref()
                .map_or_else(|| "—".into(), |r| html::duration(r.duration_ms)),
        );
    }
    out.push_str("</tbody></table>");
    Ok(out)
}

/// The task's attempts, read from the store off the driver's thread.
async fn read_attempts(f: &Facts) -> PortalResult<Vec<Attempt>> {
    let (store, task) = (f.store.clone(), f.task);
    tokio::task::spawn_blocking(move || attempts(task, &store.job_events(&task.job)))
        .await
        .map_err(|e| PortalError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A log: followed live by the page's script while the task has not
/// ended (`data-follow`), else the end of its stored bytes with a
/// download of the whole.
async fn log_section(f: &Facts, base: &str, name: &str) -> String {
    if f.ended.is_none() && !f.state.terminal() {
        return format!(
            "<h2>{name}</h2><pre class=log id={name} data-follow=\"{base}/{name}?follow=true\">\
             ({}: its output appears here as it is written)</pre>",
            f.state.name()
        );
    }
    let blob = if name == "stderr" { f.stderr } else { f.stdout };
    let shown = log_text(f, blob).await;
    format!(
        "<h2>{name} <a class=download href=\"{base}/{name}\" download>download</a></h2>\
         <pre class=log id={name}>{}</pre>",
        esc(&shown)
    )
}

/// The end of a captured stream, or why there is nothing to show yet.
async fn log_text(f: &Facts, blob: Option<BlobId>) -> String {
    if f.ended.is_none() {
        return format!("({}: no output)", f.state.name());
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

/// Which log the log route answers with.
#[derive(Deserialize)]
pub struct LogQuery {
    /// Stream the running attempt's bytes as they are written.
    follow: Option<bool>,
    /// That attempt's log instead of the task's canonical one.
    attempt: Option<u32>,
}

/// `GET /jobs/{job}/tasks/{task}/{stdout|stderr}`: the whole log, as a
/// download (of attempt `attempt`, if given); with `follow=true`, the
/// running attempt's bytes from the first as they are written (the page's
/// script reads it), ending when the attempt ends.
pub async fn log(
    State(s): State<PortalState>,
    Path((job, task, stream)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
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
    let f = facts(&s.api, job, task).await?;
    if q.follow == Some(true) {
        return Ok(follow::follow(&s.api, f.task, stderr).await?);
    }
    let blob = match q.attempt {
        Some(number) => {
            let list = read_attempts(&f).await?;
            let result = list
                .into_iter()
                .find(|a| a.number == number)
                .and_then(|a| a.result)
                .ok_or_else(|| {
                    PortalError(
                        StatusCode::NOT_FOUND,
                        format!("attempt {number} has not ended with a result"),
                    )
                })?;
            if stderr {
                result.stderr
            } else {
                result.stdout
            }
        }
        None if f.ended.is_none() => {
            return Err(PortalError(
                StatusCode::NOT_FOUND,
                format!("the task has not finished yet ({})", f.state.name()),
            ))
        }
        None if stderr => f.stderr,
        None => f.stdout,
    };
    let response = api::log_bytes(&s.api, blob).await?;
    let name = match q.attempt {
        Some(n) => format!("{stream}-attempt-{n}.txt"),
        None => format!("{stream}.txt"),
    };
    Ok(attachment(response, &name))
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
