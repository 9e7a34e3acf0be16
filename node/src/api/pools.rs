//! HTTP routes for pools: define a pool's start task, list pools with each
//! member node's start-task result, and read a node's start-task output.
//!
//! Owns those routes (their JSON shapes are `api::types`'). Running start tasks is `pools`'s; like every
//! handler, these ask the driver and keep no state.

use crate::api::types::{DefinePool, Named, Pool, PoolMember, StreamQuery};
use crate::api::{bad_request, log_bytes, node_name, ApiResult, ApiState};
use crate::driver::command::{PoolEntry, Pools};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::{Command, NodeId};

/// Every pool with each member node's start-task result.
#[utoipa::path(get, path = "/v1/pools", tag = "pools",
    responses((status = 200, body = Vec<Pool>)))]
pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Vec<Pool>>> {
    let pools = s.driver.call(|reply| Pools::List { reply }).await?;
    Ok(Json(pools.into_iter().map(pool_of).collect()))
}

/// A pool as the API shows it.
fn pool_of(p: PoolEntry) -> Pool {
    let member = |(id, result): (NodeId, Option<SideResult>)| PoolMember {
        node: node_name(&id),
        start_task: match result {
            None => "pending".to_string(),
            Some(r) if r.outcome.success() => "succeeded".to_string(),
            Some(r) => format!("failed: {:?}", r.outcome),
        },
    };
    Pool {
        name: p.record.name,
        start_task: command_text(&p.record.start_task),
        wait_for_success: p.record.wait_for_success,
        nodes: p.members.into_iter().map(member).collect(),
    }
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(argv) => argv.join(" "),
    }
}

/// Gives a pool a start task, run once by each node labelled `pool=NAME`.
#[utoipa::path(post, path = "/v1/pools", tag = "pools", request_body = DefinePool,
    responses((status = 200, body = Named)))]
pub async fn define(
    State(s): State<ApiState>,
    Json(body): Json<DefinePool>,
) -> ApiResult<Json<Named>> {
    if body.start_task.trim().is_empty() {
        return Err(bad_request("the start task is empty".into()));
    }
    let define = |reply| Pools::Define {
        name: body.name.clone(),
        start_task: Command::Shell(body.start_task),
        wait_for_success: body.wait_for_success,
        reply,
    };
    s.driver.call(define).await??;
    Ok(Json(Named { name: body.name }))
}

/// A member node's start-task stdout (or stderr), fetched from wherever it is.
#[utoipa::path(get, path = "/v1/pools/{name}/logs/{node}", tag = "pools",
    params(("name" = String, Path, description = "the pool"),
        ("node" = String, Path, description = "a peer id or a prefix of one"), StreamQuery),
    responses((status = 200, description = "the stream's bytes", body = Vec<u8>,
        content_type = "application/octet-stream")))]
pub async fn logs(
    State(s): State<ApiState>,
    Path((pool, node)): Path<(String, String)>,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Response> {
    let stderr = q.stream.as_deref() == Some("stderr");
    let find = |reply| Pools::StartResult { pool, node, reply };
    let result = s.driver.call(find).await??;
    log_bytes(&s, if stderr { result.stderr } else { result.stdout }).await
}
