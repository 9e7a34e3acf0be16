//! The portal's forms: submit a job (pasted or uploaded TOML), cancel a
//! job, drain or resume a node, add or remove a schedule.
//!
//! Owns checking each form's CSRF token and turning a pasted job file into
//! a job (errors as `FILE:LINE:COL: what`, as the CLI shows them); the acts
//! themselves are the API's handlers. Must not read files from the node's
//! disk on a browser's behalf: a pasted job file may name no local source.

use super::html::{self, esc};
use super::session::{check_csrf, Session};
use super::{json, PageResult, PortalError, PortalResult, PortalState};
use crate::api::{self, ApiState};
use crate::driver::command::{Jobs, Packages};
use crate::jobfile::{self, JobDraft};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use peerbatch_protocol::ledger::PackageRecord;
use peerbatch_protocol::JobSpec;
use serde::Deserialize;

/// Where a pasted job file's relative `lines` and `files` are looked for:
/// nowhere (it has no directory on the node).
const PASTED_DIR: &str = "/nonexistent/peerbatch-portal-paste";

/// A form with only its CSRF token.
#[derive(Deserialize)]
pub struct Plain {
    csrf: String,
}

#[derive(Deserialize)]
pub struct SubmitForm {
    csrf: String,
    toml: String,
    /// The uploaded file's name, for error messages (`job.toml` if pasted).
    #[serde(default)]
    file: String,
}

pub async fn submit_page(Extension(session): Extension<Session>) -> PageResult {
    Ok(submit_form(&session, "", "", None))
}

fn submit_form(
    session: &Session,
    file: &str,
    toml: &str,
    error: Option<&str>,
) -> axum::response::Html<String> {
    let error = error.map_or_else(String::new, |e| {
        format!("<pre class=error id=submit-error>{}</pre>", esc(e))
    });
    let body = format!(
        "{error}<form method=post action=\"/submit\" class=stacked id=submit>\
         <input type=hidden name=csrf value=\"{}\"><input type=hidden name=file value=\"{}\">\
         <label>job file <input type=file accept=\".toml\" data-fills=toml></label>\
         <label>or paste it<textarea name=toml rows=16 required>{}</textarea></label>\
         <button>Submit</button></form>",
        esc(&session.csrf),
        esc(file),
        esc(toml)
    );
    html::page("Submit a job", &session.csrf, &body)
}

pub async fn submit(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Form(form): Form<SubmitForm>,
) -> PortalResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let file = if form.file.is_empty() {
        "job.toml"
    } else {
        form.file.as_str()
    };
    let refuse = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            submit_form(&session, file, &form.toml, Some(&e)),
        )
            .into_response()
    };
    let default_name = file.strip_suffix(".toml").unwrap_or(file);
    let draft = match jobfile::parse(
        file,
        &form.toml,
        default_name,
        std::path::Path::new(PASTED_DIR),
    ) {
        Ok(draft) => draft,
        Err(e) => return Ok(refuse(e.to_string())),
    };
    let spec = match finish(&s.api, draft).await? {
        Ok(spec) => spec,
        Err(e) => return Ok(refuse(format!("{file}: {e}"))),
    };
    let answer = match json(api::submit(State(s.api.clone()), Json(spec)).await) {
        Ok(answer) => answer,
        Err(e) => return Ok(refuse(format!("{file}: {}", e.1))),
    };
    let job = html::text(&answer["job_id"]);
    Ok(Redirect::to(&format!("/jobs/{}", html::seg(&job))).into_response())
}

/// A parsed job file made ready to submit on the node: its packages and
/// the jobs it waits for resolved from the ledger, or why not. A local
/// source is refused: the browser's files are not the node's.
async fn finish(s: &ApiState, mut draft: JobDraft) -> PortalResult<Result<JobSpec, String>> {
    let packages = s.driver.call(|reply| Packages::List { reply }).await?;
    if let Err(e) = no_local_source(&draft).and_then(|()| fill_packages(&mut draft, &packages)) {
        return Ok(Err(e));
    }
    for name in &draft.after {
        let job = name.clone();
        match s.driver.call(|reply| Jobs::Resolve { job, reply }).await? {
            Ok(id) => draft.spec.after.push(id),
            Err(e) => return Ok(Err(format!("after: {e}"))),
        }
    }
    Ok(draft
        .spec
        .validate()
        .map_err(|e| e.to_string())
        .map(|()| draft.spec))
}

fn no_local_source(draft: &JobDraft) -> Result<(), String> {
    match draft.stage.first() {
        Some(source) => Err(format!(
            "input source {}: a job submitted in the portal cannot name files on disk; \
             store them with `peerbatch put` and give their blob id, or use `peerbatch submit`",
            source.path.display()
        )),
        None => Ok(()),
    }
}

/// Gives each package the draft uses the blob of its version in `known`.
fn fill_packages(draft: &mut JobDraft, known: &[PackageRecord]) -> Result<(), String> {
    for slot in &draft.packages {
        let package = slot
            .in_spec(&mut draft.spec)
            .ok_or("a package slot points at no package")?;
        let found = known
            .iter()
            .find(|p| p.name == package.name && p.version == package.version);
        package.blob = found.map(|p| p.blob).ok_or_else(|| {
            format!(
                "package {}@{} is not known to the mesh; add it with `peerbatch package add`",
                package.name, package.version
            )
        })?;
    }
    Ok(())
}

pub async fn cancel(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path(job): Path<String>,
    Form(form): Form<Plain>,
) -> PortalResult<Redirect> {
    check_csrf(&session, &form.csrf)?;
    let path = Path(api::types::JobPath { job: job.clone() });
    json(api::cancel(State(s.api.clone()), path).await)?;
    Ok(Redirect::to(&format!("/jobs/{}", html::seg(&job))))
}

#[derive(Deserialize)]
pub struct DrainForm {
    csrf: String,
    drain: bool,
}

pub async fn drain(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path(node): Path<String>,
    Form(form): Form<DrainForm>,
) -> PortalResult<Redirect> {
    check_csrf(&session, &form.csrf)?;
    let body = api::types::Drain { drain: form.drain };
    json(api::drain_node(State(s.api.clone()), Path(node), Json(body)).await)?;
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    csrf: String,
    name: String,
    #[serde(default)]
    every: String,
    #[serde(default)]
    cron: String,
    toml: String,
}

pub async fn add_schedule(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Form(form): Form<ScheduleForm>,
) -> PortalResult<Redirect> {
    check_csrf(&session, &form.csrf)?;
    let bad = |e: String| PortalError(StatusCode::BAD_REQUEST, e);
    let every_ms = match form.every.trim() {
        "" => None,
        text => Some(jobfile::parse_duration_ms(text).map_err(|e| bad(format!("every: {e}")))?),
    };
    let cron = Some(form.cron.trim()).filter(|c| !c.is_empty());
    let file = format!("{}.toml", form.name);
    let draft = jobfile::parse(
        &file,
        &form.toml,
        &form.name,
        std::path::Path::new(PASTED_DIR),
    )
    .map_err(|e| bad(e.to_string()))?;
    let template = (finish(&s.api, draft).await?).map_err(|e| bad(format!("{file}: {e}")))?;
    let body = api::types::AddSchedule {
        name: form.name,
        every_ms,
        cron: cron.map(str::to_string),
        template,
    };
    json(api::schedules::add(State(s.api.clone()), Json(body)).await)?;
    Ok(Redirect::to("/schedules"))
}

pub async fn remove_schedule(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> PortalResult<Redirect> {
    check_csrf(&session, &form.csrf)?;
    json(api::schedules::remove(State(s.api.clone()), Path(name)).await)?;
    Ok(Redirect::to("/schedules"))
}
