//! HTTP routes for functions: deploy a version, list them, show one, roll
//! back, remove (invoking one is `api::invoke`'s, its keys
//! `api::function_keys`').
//!
//! Owns those routes (their JSON shapes are `api::types`') and publishing
//! a change through the driver ([`change`]). Running and routing calls is
//! `functions`'; like every handler, these keep no state.

use crate::api::files::store_tree;
use crate::api::types::{
    DeployFunction, Function, FunctionChanged, FunctionVersion, RollbackFunction, WarmWorkers,
};
use crate::api::{absolute, bad_request, node_name, not_found, ApiResult, ApiState};
use crate::driver::command::Functions;
use crate::functions::triggers;
use crate::wallclock::wall_ms;
use axum::extract::{Path, State};
use axum::Json;
use peerbatch_protocol::function::{self as f, FunctionEvent, FunctionSpec, FunctionView, Version};
use peerbatch_protocol::trigger::DEFAULT_MAX_ATTEMPTS;
use peerbatch_protocol::{BlobId, Command};

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
pub(crate) async fn change(s: &ApiState, event: FunctionEvent) -> ApiResult<FunctionChanged> {
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
