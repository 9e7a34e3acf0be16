//! The portal: HTML pages every node serves at `/` on its API address, to
//! watch and drive the whole mesh from a browser, offline (its assets are in
//! the binary) and without a JavaScript framework.
//!
//! Owns the pages (a file each: `mesh`, `jobs`, `job`, `task`, `pools`,
//! `schedules`, `packages`, `functions`), the forms that act (`actions`), the browser's
//! login and sessions (`session`), live updates (`events`) and the page
//! frame (`html`). Reads and acts only through the API's handlers and the
//! driver's commands (`driver::command`); must not hold protocol state, and
//! must not be reachable with a task's token (its pages take a session
//! cookie only; the login code is handed out on the node's own token).

mod actions;
mod attempts;
mod events;
mod functions;
mod html;
mod job;
mod jobs;
mod mesh;
mod packages;
mod pools;
mod schedules;
mod session;
mod task;

pub use session::Sessions;

use crate::api::{ApiError, ApiState};
use crate::driver::command::{Gone, Refusal};
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

#[derive(Clone)]
pub struct PortalState {
    pub api: ApiState,
    pub sessions: Arc<Sessions>,
}

/// A page that could not be shown, shown as a page.
pub struct PortalError(pub StatusCode, pub String);

impl From<ApiError> for PortalError {
    fn from(e: ApiError) -> PortalError {
        PortalError(e.0, e.1)
    }
}

impl From<Gone> for PortalError {
    fn from(e: Gone) -> PortalError {
        ApiError::from(e).into()
    }
}

impl From<Refusal> for PortalError {
    fn from(e: Refusal) -> PortalError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let body = format!("<p class=error>{}</p>", html::esc(&self.1));
        (
            self.0,
            html::bare(self.0.canonical_reason().unwrap_or("error"), &body),
        )
            .into_response()
    }
}

pub type PortalResult<T> = Result<T, PortalError>;

/// Every route of the portal, by method and pattern: the API's guard lets
/// these through without a token (`api::guard::Access::opening`), and
/// they take a session cookie instead ([`session::require`]), but for the
/// login page and the assets. A route missing here is refused by the
/// guard.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{job}"),
    ("POST", "/jobs/{job}/cancel"),
    ("GET", "/jobs/{job}/tasks/{task}"),
    ("GET", "/jobs/{job}/tasks/{task}/{stream}"),
    ("GET", "/files/{blob}/{name}"),
    ("POST", "/nodes/{node}/drain"),
    ("GET", "/submit"),
    ("POST", "/submit"),
    ("GET", "/pools"),
    ("GET", "/schedules"),
    ("POST", "/schedules"),
    ("POST", "/schedules/{name}/remove"),
    ("GET", "/packages"),
    ("GET", "/functions"),
    ("GET", "/functions/{name}"),
    ("GET", "/events"),
    ("GET", "/login"),
    ("GET", "/assets/{name}"),
];

/// The portal's routes (each listed in [`ROUTES`]). Login codes come from the API route
/// `POST /v1/portal/login` (`api::login`), so only the node's own token
/// gets one.
pub fn router(api: ApiState) -> Router {
    let state = PortalState {
        api,
        sessions: Default::default(),
    };
    let pages = Router::new()
        .route("/", get(mesh::page))
        .route("/jobs", get(jobs::page))
        .route("/jobs/{job}", get(job::page))
        .route("/jobs/{job}/cancel", post(actions::cancel))
        .route("/jobs/{job}/tasks/{task}", get(task::page))
        .route("/jobs/{job}/tasks/{task}/{stream}", get(task::log))
        .route("/files/{blob}/{name}", get(task::download))
        .route("/nodes/{node}/drain", post(actions::drain))
        .route("/submit", get(actions::submit_page).post(actions::submit))
        .route("/pools", get(pools::page))
        .route(
            "/schedules",
            get(schedules::page).post(actions::add_schedule),
        )
        .route("/schedules/{name}/remove", post(actions::remove_schedule))
        .route("/packages", get(packages::page))
        .route("/functions", get(functions::list))
        .route("/functions/{name}", get(functions::page))
        .route("/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(
            state.sessions.clone(),
            session::require,
        ));
    Router::new()
        .route("/login", get(session::login))
        .route("/assets/{name}", get(asset))
        .merge(pages)
        .with_state(state)
}

/// The stylesheet and script, from the binary.
async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "portal.css" => ("text/css", include_str!("assets/portal.css")),
        "portal.js" => ("text/javascript", include_str!("assets/portal.js")),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// An API handler's answer as JSON, whatever type it answers with.
pub(crate) fn json<T: Serialize>(answer: Result<Json<T>, ApiError>) -> PortalResult<Value> {
    let Json(v) = answer?;
    serde_json::to_value(v)
        .map_err(|e| PortalError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The page a handler rendered, or why not.
pub(crate) type PageResult = PortalResult<Html<String>>;
