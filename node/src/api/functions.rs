//! HTTP routes for functions: deploy a version, list them, show one, roll
//! back, remove, and `ANY /fn/NAME/...`, which invokes one.
//!
//! Owns those routes (their JSON shapes are `api::types`'), turning an
//! HTTP request into a [`Call`] (bounded body, headers without
//! credentials) and a [`Reply`] back into a response, and reading what a
//! call needs from the driver into a [`Plan`]. Running and routing calls
//! is `functions`'; like every handler, these keep no state.

use crate::api::files::store_tree;
use crate::api::types::{
    DeployFunction, Function, FunctionChanged, FunctionVersion, RollbackFunction, WarmWorkers,
};
use crate::api::{absolute, bad_request, node_name, not_found, ApiError, ApiResult, ApiState};
use crate::driver::command::Functions;
use crate::functions::triggers;
use crate::functions::{Call, Reply, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES};
use crate::wallclock::wall_ms;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use peerbatch_protocol::function::{self as f, FunctionEvent, FunctionSpec, FunctionView, Version};
use peerbatch_protocol::trigger::DEFAULT_MAX_ATTEMPTS;
use peerbatch_protocol::{BlobId, Command};

/// Headers never handed to a handler: the caller's credentials.
const CREDENTIALS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-functions-key",
];

fn version_of(v: &Version, serving: bool) -> FunctionVersion {
    FunctionVersion {
        number: v.number,
        id: v.event.to_string(),
        bundle: v.spec.bundle.to_string(),
        command: match &v.spec.command {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv.join(" "),
        },
        triggers: v.spec.triggers.iter().map(triggers::text).collect(),
        timeout_ms: v.spec.timeout_ms,
        retry: v.spec.retry,
        max_attempts: v.spec.max_attempts,
        warm: v.spec.warm.map(|w| WarmWorkers {
            min_warm: w.min_warm,
            max_per_node: w.max_per_node,
            idle_timeout_ms: w.idle_timeout_ms,
        }),
        deployed_by: node_name(&v.deployed_by),
        deployed_ms: v.at_ms,
        serving,
    }
}

fn function_of(view: &FunctionView) -> Function {
    Function {
        name: view.name.clone(),
        owner: node_name(&view.owner),
        serving: view.serving().map(|v| v.number),
        versions: (view.versions.iter().enumerate())
            .map(|(i, v)| version_of(v, view.active == Some(i)))
            .collect(),
    }
}

/// Every function the mesh knows, with its versions.
#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, body = Vec<Function>)))]
pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Vec<Function>>> {
    let views = s.driver.call(|reply| Functions::List { reply }).await?;
    Ok(Json(views.iter().map(function_of).collect()))
}

/// One function and its versions.
#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    responses((status = 200, body = Function)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Function>> {
    let view = s
        .driver
        .call(|reply| Functions::Show { name, reply })
        .await??;
    Ok(Json(function_of(&view)))
}

/// Stores a directory or archive as the bundle of a new version of a
/// function, which then serves its calls everywhere.
#[utoipa::path(post, path = "/v1/functions", tag = "functions", request_body = DeployFunction,
    responses((status = 200, body = FunctionChanged)))]
pub async fn deploy(
    State(s): State<ApiState>,
    Json(body): Json<DeployFunction>,
) -> ApiResult<Json<FunctionChanged>> {
    let triggers = (body.triggers.iter())
        .map(|t| triggers::parse(t).map_err(bad_request))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut spec = FunctionSpec {
        bundle: BlobId([0; 32]),
        command: Command::Shell(body.command),
        triggers,
        timeout_ms: body.timeout_ms.unwrap_or(f::DEFAULT_TIMEOUT_MS),
        retry: body.retry,
        max_attempts: body.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        warm: body.warm.map(|w| f::Warm {
            min_warm: w.min_warm,
            max_per_node: w.max_per_node,
            idle_timeout_ms: w.idle_timeout_ms,
        }),
    };
    let name = body.name;
    let deployed = |spec| FunctionEvent::Deployed {
        name: name.clone(),
        spec,
        at_ms: wall_ms(),
    };
    f::check(&deployed(spec.clone())).map_err(|e| bad_request(e.to_string()))?;
    let (bundle, files) = store_tree(&s, absolute("path", body.path)?).await?;
    spec.bundle = bundle;
    let changed = change(&s, deployed(spec)).await?;
    Ok(Json(FunctionChanged {
        bundle: Some(bundle.to_string()),
        files: Some(files),
        ..changed
    }))
}

/// Serves an earlier version of a function again.
#[utoipa::path(post, path = "/v1/functions/{name}/rollback", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    request_body = RollbackFunction,
    responses((status = 200, body = FunctionChanged)))]
pub async fn rollback(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<RollbackFunction>,
) -> ApiResult<Json<FunctionChanged>> {
    let show = |reply| Functions::Show {
        name: name.clone(),
        reply,
    };
    let view = s.driver.call(show).await??;
    let found = view.versions.iter().find(|v| v.number == body.version);
    let to = found
        .map(|v| v.event)
        .ok_or_else(|| not_found(format!("function {name} has no version {}", body.version)))?;
    let event = FunctionEvent::RolledBack {
        name,
        to,
        at_ms: wall_ms(),
    };
    change(&s, event).await.map(Json)
}

/// Stops serving a function (its versions stay in the ledger).
#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    responses((status = 200, body = FunctionChanged)))]
pub async fn remove(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<FunctionChanged>> {
    let event = FunctionEvent::Removed {
        name,
        at_ms: wall_ms(),
    };
    change(&s, event).await.map(Json)
}

/// Publishes a change; answers the version serving afterwards.
async fn change(s: &ApiState, event: FunctionEvent) -> ApiResult<FunctionChanged> {
    let name = event.name().to_string();
    let serving = s
        .driver
        .call(|reply| Functions::Change { event, reply })
        .await??;
    Ok(FunctionChanged {
        name,
        serving,
        bundle: None,
        files: None,
    })
}

/// Invokes a function: the request body goes to the handler on stdin,
/// its stdout comes back.
#[utoipa::path(method(get, post, put, delete, patch), path = "/fn/{name}", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    request_body(content = String, description = "handed to the handler on stdin",
        content_type = "application/octet-stream"),
    responses((status = 200, description = "the handler's stdout (500: it failed; 503 with \
        Retry-After: no node has room; 504: it ran past its time-out)", body = String,
        content_type = "application/octet-stream")))]
pub async fn invoke(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = call_of(String::from("/"), method, &uri, &headers, body);
    invoke_call(s, name, call).await
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
    let call = call_of(format!("/{path}"), method, &uri, &headers, body);
    invoke_call(s, name, call).await
}

async fn invoke_call(s: ApiState, name: String, call: ApiResult<Call>) -> Response {
    let call = match call {
        Ok(call) => call,
        Err(e) => return e.into_response(),
    };
    let plan = s.driver.call(|reply| Functions::Plan { name, reply }).await;
    match plan {
        Ok(Ok(plan)) => response_of(s.functions.call(plan, call).await),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn call_of(
    path: String,
    method: Method,
    uri: &Uri,
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
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body: body.to_vec(),
    })
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
