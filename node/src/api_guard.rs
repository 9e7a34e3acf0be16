//! The API's front door: connections and what is checked before a route
//! runs.
//!
//! Owns accepting connections (at most [`MAX_CONNECTIONS`] at once, each
//! closed if a request's head takes longer than [`HEADER_TIMEOUT`]), the
//! bearer-token check in front of every route (before any body is read,
//! compared in constant time) and reading bodies (each part within
//! [`BODY_TIMEOUT`] of the last, at most [`MAX_BODY`] in all). Must not
//! know what the routes do.

use crate::api::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
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
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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

/// The access token of this run of the node.
pub struct Token(String);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(format!("Bearer {token}"))
    }

    fn admits(&self, request: &Request) -> bool {
        let given = request
            .headers()
            .get("authorization")
            .map_or(&[][..], |v| v.as_bytes());
        given.ct_eq(self.0.as_bytes()).into()
    }
}

/// `routes` behind the token check and the body reader.
pub fn guard(routes: Router, token: Token) -> Router {
    routes
        .layer(middleware::from_fn(read_body))
        .layer(middleware::from_fn_with_state(Arc::new(token), check_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn check_token(State(token): State<Arc<Token>>, request: Request, next: Next) -> Response {
    if token.admits(&request) {
        next.run(request).await
    } else {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong access token (see DATA_DIR/token or PEERBATCH_TOKEN; it changes at each start of the node)".into(),
        )
        .into_response()
    }
}

/// Reads the whole body before the route runs, refusing one that pauses
/// too long or grows too large.
async fn read_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    loop {
        let part = match tokio::time::timeout(BODY_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(part))) => part,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {e}"),
                )
            }
            Err(_) => {
                let secs = BODY_TIMEOUT.as_secs();
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body stopped arriving for {secs} s"),
                );
            }
        };
        if bytes.len() + part.len() > MAX_BODY {
            let mib = MAX_BODY >> 20;
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {mib} MiB"),
            );
        }
        bytes.extend_from_slice(&part);
    }
    let body = Body::from(Bytes::from(bytes));
    next.run(Request::from_parts(parts, body)).await
}

fn refuse(code: StatusCode, msg: String) -> Response {
    ApiError(code, msg).into_response()
}

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Router) {
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
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("HTTP API connection ended: {e}");
            }
            drop(slot);
        });
    }
}
