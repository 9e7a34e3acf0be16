//! Invoking a function over HTTP: `ANY /fn/NAME/...` on the node's API
//! (its token checked by `api::guard`) and on the functions listener
//! (`--functions-listen`, [`listener`]), which serves only those routes
//! and opens each call with one of the function's keys, given in the
//! `x-functions-key` header or the `code` query parameter (as Azure
//! Functions).
//!
//! Owns turning an HTTP request into a [`Call`] (bounded body, headers
//! without credentials, on the listener a query without `code`), reading
//! what a call needs from the driver into a [`Plan`] — which checks the
//! key, before the listener reads the body — and a [`Reply`] back into a
//! response. Running and routing calls is `functions`'; like every
//! handler, these keep no state.

use crate::api::{guard, not_found, ApiError, ApiResult, ApiState};
use crate::driver::command::{Functions, Refusal};
use crate::functions::route::Plan;
use crate::functions::{Call, Reply, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use peerbatch_protocol::function::keys::KeyHash;

/// Headers never handed to a handler: the caller's credentials.
const CREDENTIALS: &[&str] = &["authorization", "proxy-authorization", "cookie", KEY_HEADER];
/// Where a caller on the functions listener gives its function key, or
/// else in the [`CODE`] query parameter (never handed to the handler).
const KEY_HEADER: &str = "x-functions-key";
const CODE: &str = "code";

/// Invokes a function: the request body goes to the handler on stdin,
/// its stdout comes back. On the functions listener (`--functions-listen`)
/// the same route takes a function key (`x-functions-key: KEY` or
/// `?code=KEY`) instead of the node's token.
#[utoipa::path(method(get, post, put, delete, patch), path = "/fn/{name}", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    request_body(content = String, description = "handed to the handler on stdin",
        content_type = "application/octet-stream"),
    responses((status = 200, description = "the handler's stdout (500: it failed; 503 with \
        Retry-After: no node has room; 504: it ran past its time-out; on the functions \
        listener, 401: a missing, wrong or revoked function key)", body = String,
        content_type = "application/octet-stream")))]
pub async fn invoke(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = call_of(String::from("/"), method, query_of(&uri), &headers, body);
    respond(invoke_call(&s, name, call).await)
}

/// Invokes a function with a path after its name (`PEERBATCH_FN_PATH`).
#[utoipa::path(method(get, post, put, delete, patch), path = "/fn/{name}/{*path}",
    tag = "functions",
    params(("name" = String, Path, description = "the function"),
        ("path" = String, Path, description = "handed to the handler as PEERBATCH_FN_PATH")),
    request_body(content = String, description = "handed to the handler on stdin",
        content_type = "application/octet-stream"),
    responses((status = 200, description = "the handler's stdout, as for /fn/{name}",
        body = String, content_type = "application/octet-stream")))]
pub async fn invoke_path(
    State(s): State<ApiState>,
    Path((name, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = call_of(format!("/{path}"), method, query_of(&uri), &headers, body);
    respond(invoke_call(&s, name, call).await)
}

async fn invoke_call(s: &ApiState, name: String, call: ApiResult<Call>) -> ApiResult<Reply> {
    let call = call?;
    let plan = plan(s, name, None).await?;
    Ok(s.functions.call(plan, call).await)
}

/// The functions listener's routes: `ANY /fn/{name}` and `ANY
/// /fn/{name}/{*path}` with a function key, and nothing else.
pub fn listener(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/fn/{name}", any(keyed))
        .route("/fn/{name}/{*path}", any(keyed_path))
        .fallback(|| async {
            not_found("the functions listener serves only /fn/NAME/...".into()).into_response()
        })
        .with_state(state)
}

async fn keyed(State(s): State<ApiState>, Path(name): Path<String>, request: Request) -> Response {
    respond(keyed_call(&s, name, String::from("/"), request).await)
}

async fn keyed_path(
    State(s): State<ApiState>,
    Path((name, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    respond(keyed_call(&s, name, format!("/{path}"), request).await)
}

/// A call on the functions listener: its key must open the function
/// before its body is read (at most [`MAX_BODY_BYTES`]).
async fn keyed_call(
    s: &ApiState,
    name: String,
    path: String,
    request: Request,
) -> ApiResult<Reply> {
    let (parts, body) = request.into_parts();
    let (code, query) = split_code(parts.uri.query().unwrap_or_default());
    let presented = match parts.headers.get(KEY_HEADER) {
        Some(header) => header.as_bytes(),
        None => code.as_deref().unwrap_or_default().as_bytes(),
    };
    let key = KeyHash::presented(presented).map_err(|why| Refusal::Key {
        name: name.clone(),
        why,
    })?;
    let plan = plan(s, name, Some(key)).await?;
    let body = guard::read_all(body, MAX_BODY_BYTES).await?;
    let call = call_of(path, parts.method, query, &parts.headers, body)?;
    Ok(s.functions.call(plan, call).await)
}

/// What a call of `name` needs, once `key` (if given) opens it.
async fn plan(s: &ApiState, name: String, key: Option<KeyHash>) -> ApiResult<Plan> {
    let plan = s.driver.call(|reply| Functions::Plan { name, key, reply });
    Ok(plan.await??)
}

fn query_of(uri: &Uri) -> String {
    uri.query().unwrap_or_default().to_string()
}

/// A query's first `code` parameter (decoded), and the query without
/// any `code` parameter (the rest as the caller wrote it).
fn split_code(query: &str) -> (Option<String>, String) {
    let mut code = None;
    let mut rest = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let pair = serde_urlencoded::from_str::<Vec<(String, String)>>(piece).ok();
        match pair.and_then(|p| p.into_iter().next()) {
            Some((k, v)) if k == CODE => {
                code.get_or_insert(v);
            }
            _ => rest.push(piece),
        }
    }
    (code, rest.join("&"))
}

fn call_of(
    path: String,
    method: Method,
    query: String,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Call> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {} bytes; a function call carries at most {} MiB",
                body.len(),
                MAX_BODY_BYTES >> 20
            ),
        ));
    }
    let headers = (headers.iter())
        .filter(|(k, _)| !CREDENTIALS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .filter(|(_, v)| v.len() <= MAX_HEADER_BYTES)
        .take(MAX_HEADERS)
        .collect();
    Ok(Call {
        method: method.to_string(),
        path,
        query,
        headers,
        body: body.to_vec(),
    })
}

fn respond(reply: ApiResult<Reply>) -> Response {
    reply.map_or_else(IntoResponse::into_response, response_of)
}

fn response_of(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, reply.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // A warm handler's own headers (checked by `functions::runtime_api`).
    for (k, v) in reply.headers {
        let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) else {
            continue;
        };
        if k == header::CONTENT_TYPE {
            headers.insert(k, v);
        } else {
            headers.append(k, v);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(node) = reply.node.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert("x-peerbatch-node", node);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::split_code;

    #[test]
    fn the_code_parameter_is_taken_out_of_the_query_and_the_rest_kept_as_written() {
        let (code, rest) = split_code("x=1&code=a%2Bb&y=%20&code=other");
        assert_eq!(code.as_deref(), Some("a+b"));
        assert_eq!(rest, "x=1&y=%20");
        assert_eq!(split_code("x=1"), (None, "x=1".to_string()));
    }
}
