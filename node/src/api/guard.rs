//! The API's front door: connections and what is checked before a route
//! runs.
//!
//! Owns accepting connections (at most [`MAX_CONNECTIONS`] at once, over
//! TLS when `api::tls` says so, each closed if its handshake or a
//! request's head takes longer than [`HEADER_TIMEOUT`]), the
//! bearer-token check in front of every route (before any body is read,
//! compared in constant time): the node's token opens every route, a
//! running task's token only those in [`TASK_ROUTES`]; and reading bodies
//! (each part within [`BODY_TIMEOUT`] of the last, at most [`MAX_BODY`] in
//! all), except for the [`STREAMED_ROUTES`], which read their own bodies
//! part by part with [`next_part`]. The routes the caller opens with
//! [`Access::opening`] (the portal's pages, which check the browser's
//! session cookie themselves) pass without a token; every other route,
//! and a path that matches none, takes one. Must not know what the routes
//! do beyond those lists.

use crate::api::ApiError;
use crate::task_tokens::TaskTokens;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Connections served at once; more wait in the listen backlog until one
/// closes (a slow client's within [`HEADER_TIMEOUT`]).
pub const MAX_CONNECTIONS: usize = 128;
/// Time allowed for a request's head, and for an idle kept-alive
/// connection's next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause allowed while a body arrives.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A job's JSON may be several times its encoded size (`MAX_JOB_BYTES`).
pub const MAX_BODY: usize = 64 << 20;

/// What a task's own token (`PEERBATCH_TOKEN` inside a command the node
/// runs) may call, by method and route pattern: reading jobs, tasks, logs,
/// nodes, packages, the node's status and the API's description (`/v1/openapi.json`),
/// submitting jobs, and storing and
/// reading blobs whose bytes travel in the body. Every other route — those a new engineer adds included — is refused to task tokens
/// (403) until listed here. Routes that read or write files by path act as
/// the node's account, so they must never be listed.
pub const TASK_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/tasks"),
    ("GET", "/v1/jobs/{job}/tasks/{task}/log"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/packages"),
    ("PUT", "/v1/blobs/stream"),
    ("GET", "/v1/blobs/{id}/bytes"),
    ("GET", "/v1/openapi.json"),
];

/// Routes whose body may be larger than [`MAX_BODY`]: it is handed to the
/// route unread, which reads it with [`next_part`] and bounds it itself.
pub const STREAMED_ROUTES: &[(&str, &str)] = &[("PUT", "/v1/blobs/stream")];

/// Who may call the API in this run of the node: the holder of its own
/// token (every route), and running commands with their task tokens
/// ([`TASK_ROUTES`] only).
pub struct Access {
    node: Vec<u8>,
    tasks: TaskTokens,
    /// Routes that take no token ([`Access::opening`]).
    open: &'static [(&'static str, &'static str)],
}

/// Marks a request made with a task's own token, for routes that treat
/// tasks differently (a blob a task stores is not kept for good).
#[derive(Clone, Copy)]
pub struct TaskCaller;

/// Whom a request's `Authorization` header names.
enum Caller {
    Node,
    Task,
    Unknown,
}

impl Access {
    pub fn new(token: &str, tasks: TaskTokens) -> Access {
        Access {
            node: format!("Bearer {token}").into_bytes(),
            tasks,
            open: &[],
        }
    }

    /// These routes (method and pattern) pass without a token: their
    /// handlers check the caller themselves.
    pub fn opening(self, open: &'static [(&'static str, &'static str)]) -> Access {
        Access { open, ..self }
    }

    fn caller(&self, request: &Request) -> Caller {
        let given = request
            .headers()
            .get("authorization")
            .map_or(&[][..], |v| v.as_bytes());
        if bool::from(given.ct_eq(&self.node)) {
            Caller::Node
        } else if self.tasks.admits(given) {
            Caller::Task
        } else {
            Caller::Unknown
        }
    }
}

/// `routes` behind the token check and the body reader.
pub fn guard(routes: Router, access: Access) -> Router {
    routes
        .layer(middleware::from_fn(read_body))
        .layer(middleware::from_fn_with_state(
            Arc::new(access),
            check_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn check_token(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str();
    if route(&request).is_some_and(|r| access.open.contains(&(method, r))) {
        return next.run(request).await;
    }
    match access.caller(&request) {
        Caller::Node => next.run(request).await,
        Caller::Task => match task_may_not(&request) {
            None => {
                request.extensions_mut().insert(TaskCaller);
                next.run(request).await
            }
            Some(refusal) => refuse(StatusCode::FORBIDDEN, refusal),
        },
        Caller::Unknown => refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong access token (see DATA_DIR/token or PEERBATCH_TOKEN; it changes at each start of the node)".into(),
        ),
    }
}

/// Why a task token may not make this request, if it may not.
fn task_may_not(request: &Request) -> Option<String> {
    let method = request.method().as_str();
    let route = route(request);
    let listed = route.is_some_and(|r| TASK_ROUTES.contains(&(method, r)));
    (!listed).then(|| {
        format!(
            "{method} {}: a task's token (PEERBATCH_TOKEN inside a task) cannot use this route; \
             task tokens may only read jobs, tasks, logs, nodes, packages, status and the API's \
             description (/v1/openapi.json), submit jobs, \
             and store or read blobs through PUT /v1/blobs/stream and GET /v1/blobs/{{id}}/bytes",
            route.unwrap_or(request.uri().path())
        )
    })
}

/// The route pattern a request matched, if any.
fn route(request: &Request) -> Option<&str> {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
}

/// Reads the whole body before the route runs (but for the
/// [`STREAMED_ROUTES`]), refusing one that pauses too long or grows too
/// large.
async fn read_body(request: Request, next: Next) -> Response {
    let method = request.method().as_str();
    if route(&request).is_some_and(|r| STREAMED_ROUTES.contains(&(method, r))) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match read_all(body, MAX_BODY).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// A whole request body, refused if it pauses too long ([`next_part`])
/// or grows past `limit` bytes.
pub async fn read_all(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(part) = next_part(&mut stream).await? {
        if bytes.len() + part.len() > limit {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {} MiB", limit >> 20),
            ));
        }
        bytes.extend_from_slice(&part);
    }
    Ok(Bytes::from(bytes))
}

/// The next part of a request body (`None` at its end), refusing a body
/// that pauses for more than [`BODY_TIMEOUT`] or breaks off.
pub async fn next_part(stream: &mut BodyDataStream) -> Result<Option<Bytes>, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(part))) => Ok(Some(part)),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
        Err(_) => Err(ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body stopped arriving for {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn refuse(code: StatusCode, msg: String) -> Response {
    ApiError(code, msg).into_response()
}

/// Serves `app` on `listener` until the process ends, over TLS when
/// `tls` is given (a client that does not complete the handshake within
/// [`HEADER_TIMEOUT`] — one speaking plain HTTP, say — is dropped).
pub async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("HTTP API cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, app).await,
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, app).await,
                    Ok(Err(e)) => tracing::debug!("HTTPS API handshake failed: {e}"),
                    Err(_) => tracing::debug!("HTTPS API handshake timed out"),
                },
            }
            drop(slot);
        });
    }
}

/// Serves one connection's requests.
async fn connection<I>(io: I, app: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("HTTP API connection ended: {e}");
    }
}
