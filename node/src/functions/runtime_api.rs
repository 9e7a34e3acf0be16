//! The AWS Lambda runtime API (version 2018-06-01) one warm worker calls,
//! on a loopback port of its own, so a worker sees only its own calls.
//!
//! Owns the API's routes and their shapes as Lambda's runtime clients
//! expect them (`GET /2018-06-01/runtime/invocation/next` long-polls and
//! answers the event with `Lambda-Runtime-Aws-Request-Id`,
//! `-Deadline-Ms`, `-Invoked-Function-Arn`, `-Trace-Id`; `POST
//! …/invocation/{id}/response` and `…/error`, `POST …/init/error` answer
//! 202 `{"status":"OK"}`; refusals are `{"errorMessage","errorType"}`),
//! their bounds (request bodies, connections, header time), the event an
//! HTTP call becomes (API Gateway's payload format 2.0) and reading what a
//! handler posts back (a proxy response object, or a raw body) into a
//! [`Reply`]. Everything it learns goes to the worker's supervisor as an
//! [`Ask`]; must not start, stop or time workers (`warm` does).

use super::{Call, Reply, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Connections one worker's API serves at once (a runtime client uses one
/// or two).
const MAX_CONNECTIONS: usize = 8;
/// A request's head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest error report (`…/error`, `…/init/error`) read.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Longest error text kept from a report.
const MAX_ERROR_TEXT: usize = 4 * 1024;

/// What the worker's process asked its API, for the supervisor.
pub enum Ask {
    /// `GET …/invocation/next`: answered with the next call when there is one.
    Next(oneshot::Sender<Next>),
    /// `POST …/invocation/{id}/response` or `…/error`.
    Answer {
        id: String,
        answer: Answer,
        ack: oneshot::Sender<Ack>,
    },
    /// `POST …/init/error`: the handler cannot start.
    InitError(String),
}

/// What a handler posted for a call.
pub enum Answer {
    Response(Vec<u8>),
    /// `errorType: errorMessage`, cut to 4 KiB.
    Error(String),
}

/// Whether the supervisor took an answer.
pub enum Ack {
    Accepted,
    /// No call of that id is waiting for an answer from this worker.
    UnknownId,
}

/// One call as `…/invocation/next` hands it over.
pub struct Next {
    pub id: String,
    /// The event: the call as API Gateway's payload format 2.0.
    pub event: Vec<u8>,
    /// When the call is killed, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    pub arn: String,
}

/// A worker's API, listening while it lives.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl RuntimeApi {
    /// Listens on a fresh loopback port; every request becomes an [`Ask`] on `asks`.
    pub async fn bind(asks: mpsc::Sender<Ask>) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(|| async { refusal(StatusCode::NOT_FOUND, "NotFound", "no such route") })
            .with_state(asks);
        let accept = tokio::spawn(accept(listener, app));
        Ok(RuntimeApi { addr, accept })
    }
}

impl Drop for RuntimeApi {
    /// Stops listening and ends every connection (their tasks are the accept task's).
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, app: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorResponse {
    error_message: String,
    error_type: &'static str,
}

fn refusal(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    let body = ErrorResponse {
        error_message: message.into(),
        error_type: kind,
    };
    (status, Json(body)).into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(BTreeMap::from([("status", "OK")])),
    )
        .into_response()
}

/// The worker is being stopped: the runtime should exit.
fn stopping() -> Response {
    let why = "this worker is stopping";
    refusal(StatusCode::INTERNAL_SERVER_ERROR, "Runtime.Stopping", why)
}

async fn next(State(asks): State<mpsc::Sender<Ask>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if asks.send(Ask::Next(tx)).await.is_err() {
        return stopping();
    }
    let Ok(next) = rx.await else {
        return stopping();
    };
    let deadline = next.deadline_ms.to_string();
    let trace = format!(
        "Root=1-{:08x}-{:024x};Sampled=0",
        next.deadline_ms / 1000,
        { rand::random::<u128>() >> 32 }
    );
    let headers = [
        ("content-type", "application/json".to_string()),
        ("lambda-runtime-aws-request-id", next.id),
        ("lambda-runtime-deadline-ms", deadline),
        ("lambda-runtime-invoked-function-arn", next.arn),
        ("lambda-runtime-trace-id", trace),
    ];
    let mut response = next.event.into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

async fn response(
    State(asks): State<mpsc::Sender<Ask>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        let why = format!("a response is at most {} MiB", MAX_BODY_BYTES >> 20);
        return refusal(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", why);
    };
    answer(asks, id, Answer::Response(bytes.to_vec())).await
}

async fn error(
    State(asks): State<mpsc::Sender<Ask>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let text = error_text(&headers, body).await;
    answer(asks, id, Answer::Error(text)).await
}

async fn init_error(
    State(asks): State<mpsc::Sender<Ask>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let text = error_text(&headers, body).await;
    match asks.send(Ask::InitError(text)).await {
        Ok(()) => accepted(),
        Err(_) => stopping(),
    }
}

async fn answer(asks: mpsc::Sender<Ask>, id: String, answer: Answer) -> Response {
    let (ack, acked) = oneshot::channel();
    let asked = Ask::Answer {
        id: id.clone(),
        answer,
        ack,
    };
    if asks.send(asked).await.is_err() {
        return stopping();
    }
    match acked.await {
        Ok(Ack::Accepted) => accepted(),
        Ok(Ack::UnknownId) => {
            let why = format!("no call {id:?} waits for an answer from this worker");
            refusal(StatusCode::BAD_REQUEST, "InvalidRequestID", why)
        }
        Err(_) => stopping(),
    }
}

/// An error report as Lambda's runtime clients send it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorRequest {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_type: String,
}

/// `errorType: errorMessage` of a report (the type from the
/// `Lambda-Runtime-Function-Error-Type` header if the body has none), cut
/// to [`MAX_ERROR_TEXT`] at a character boundary.
async fn error_text(headers: &HeaderMap, body: Body) -> String {
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let report = serde_json::from_slice::<ErrorRequest>(&bytes).unwrap_or(ErrorRequest {
        error_message: String::from_utf8_lossy(&bytes).into_owned(),
        error_type: String::new(),
    });
    let header = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok());
    let kind = match (report.error_type.as_str(), header) {
        ("", Some(h)) => h,
        ("", None) => "Unknown",
        (t, _) => t,
    };
    let mut text = format!("{kind}: {}", report.error_message);
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An HTTP call as API Gateway's payload format 2.0 hands it to Lambda.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpEvent<'a> {
    version: &'static str,
    route_key: &'static str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    /// Names lower case; repeated headers joined by `,`.
    headers: BTreeMap<&'a str, String>,
    /// Repeated parameters joined by `,`.
    query_string_parameters: BTreeMap<String, String>,
    request_context: RequestContext<'a>,
    /// Text, or base64 when the body is not UTF-8.
    body: String,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    http: HttpContext<'a>,
    request_id: &'a str,
    route_key: &'static str,
    stage: &'static str,
    time_epoch: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpContext<'a> {
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
}

/// The event of `call` (API Gateway's payload format 2.0), JSON-encoded.
pub fn http_event(call: &Call, request_id: &str, now_ms: u64) -> Vec<u8> {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in &call.headers {
        join(headers.entry(k.as_str()).or_default(), v);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&call.query).unwrap_or_default();
    for (k, v) in pairs {
        join(query.entry(k).or_default(), &v);
    }
    let (body, is_base64_encoded) = match std::str::from_utf8(&call.body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&call.body),
            true,
        ),
    };
    let event = HttpEvent {
        version: "2.0",
        route_key: "$default",
        raw_path: &call.path,
        raw_query_string: &call.query,
        headers,
        query_string_parameters: query,
        request_context: RequestContext {
            http: HttpContext {
                method: &call.method,
                path: &call.path,
                protocol: "HTTP/1.1",
            },
            request_id,
            route_key: "$default",
            stage: "$default",
            time_epoch: now_ms,
        },
        body,
        is_base64_encoded,
    };
    serde_json::to_vec(&event).unwrap_or_default()
}

fn join(into: &mut String, value: &str) {
    if !into.is_empty() {
        into.push(',');
    }
    into.push_str(value);
}

/// A proxy response (API Gateway's payload format 2.0): what a handler
/// returns to set the status and headers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyResponse {
    status_code: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    cookies: Vec<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

/// Headers a handler may not set: the node frames the response itself.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// What a handler posted to `…/response`, as the call's answer: a JSON
/// object with `statusCode` is a proxy response; anything else is the
/// body of a 200.
pub fn reply_of(posted: Vec<u8>) -> Result<Reply, String> {
    let Ok(proxy) = serde_json::from_slice::<ProxyResponse>(&posted) else {
        return Ok(Reply {
            status: 200,
            headers: Vec::new(),
            body: posted,
            node: None,
        });
    };
    if !(200..=599).contains(&proxy.status_code) {
        return Err(format!(
            "its statusCode {} is not 200 to 599",
            proxy.status_code
        ));
    }
    let body = proxy.body.unwrap_or_default();
    let body = if proxy.is_base64_encoded {
        (base64::engine::general_purpose::STANDARD.decode(body.trim()))
            .map_err(|e| format!("its body is marked base64 but is not: {e}"))?
    } else {
        body.into_bytes()
    };
    let cookies = proxy.cookies.into_iter().map(|c| ("set-cookie".into(), c));
    let headers = proxy.headers.into_iter().chain(cookies);
    let headers = headers
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, v)| header_ok(k, v))
        .take(MAX_HEADERS)
        .collect();
    Ok(Reply {
        status: proxy.status_code,
        headers,
        body,
        node: None,
    })
}

/// Whether a handler's response header may go to the caller.
pub fn header_ok(name: &str, value: &str) -> bool {
    value.len() <= MAX_HEADER_BYTES
        && !FRAMING.contains(&name)
        && HeaderName::from_bytes(name.as_bytes()).is_ok()
        && HeaderValue::from_str(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(call: &Call) -> serde_json::Value {
        serde_json::from_slice(&http_event(call, "id", 1)).unwrap()
    }

    fn call(body: &[u8]) -> Call {
        Call {
            method: "POST".into(),
            path: "/a/b".into(),
            query: "x=1&x=2&y=%20z".into(),
            headers: vec![("accept".into(), "a".into()), ("accept".into(), "b".into())],
            body: body.to_vec(),
        }
    }

    #[test]
    fn an_http_call_becomes_an_api_gateway_v2_event() {
        let event = event_of(&call(b"hi"));
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/a/b");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["queryStringParameters"]["y"], " z");
        assert_eq!(event["headers"]["accept"], "a,b");
        assert_eq!(event["body"], "hi");
        assert_eq!(event["isBase64Encoded"], false);
        let binary = event_of(&call(&[0xff, 0]));
        assert_eq!(binary["body"], "/wA=");
        assert_eq!(binary["isBase64Encoded"], true);
    }

    #[test]
    fn a_proxy_response_sets_status_and_headers_and_anything_else_is_the_body() {
        let proxy = br#"{"statusCode":201,"headers":{"X-A":"1","Content-Length":"9"},"body":"aGk=","isBase64Encoded":true}"#;
        let reply = reply_of(proxy.to_vec()).unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.headers, vec![("x-a".to_string(), "1".to_string())]);
        assert_eq!(reply.body, b"hi");
        let raw = reply_of(b"{\"hello\":1}".to_vec()).unwrap();
        assert_eq!((raw.status, raw.body), (200, b"{\"hello\":1}".to_vec()));
        assert!(reply_of(br#"{"statusCode":99}"#.to_vec()).is_err());
    }
}
