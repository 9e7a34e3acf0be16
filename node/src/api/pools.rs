//! HTTP routes for pools: define a pool's start task, list pools with each
//! member node's start-task result, and read a node's start-task output.
//!
//! Owns those routes (their JSON shapes are `api::types`'). Running start tasks is `pools`'s; like every
//! handler, these ask the driver and keep no state.

use crate::api::types::{DefinePool, Named, Pool, PoolMember, StreamQuery};
use crate::api::{ask, bad_request, log_bytes, node_name, not_found, ApiResult, ApiState};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use peerbatch_protocol::Command;

/// Every pool with each member node's start-task result.
#[utoipa::path(get, path = "/v1/pools", tag = "pools",
    responses((status = 200, body = Vec<Pool>)))]
pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Vec<Pool>>> {
    ask(&s, |d| {
        let ledger = d.core.ledger();
        let list = ledger
            .pools(crate::wallclock::wall_ms())
            .map(|p| {
                let nodes = ledger
                    .nodes()
                    .filter(|(id, info)| {
                        info.labels.iter().any(|(k, v)| k == "pool" && *v == p.name)
                            || ledger.start_result(&p.event, id).is_some()
                    })
                    .map(|(id, _)| {
                        let r = ledger.start_result(&p.event, id);
                        PoolMember {
                            node: node_name(id),
                            start_task: match r {
                                None => "pending".to_string(),
                                Some(r) if r.outcome.success() => "succeeded".to_string(),
                                Some(r) => format!("failed: {:?}", r.outcome),
                            },
                        }
                    })
                    .collect();
                Pool {
                    name: p.name.clone(),
                    start_task: command_text(&p.start_task),
                    wait_for_success: p.wait_for_success,
                    nodes,
                }
            })
            .collect();
        Json(list)
    })
    .await
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
    ask(&s, move |d| {
        let now = d.now();
        d.core
            .define_pool(
                now,
                &body.name,
                Command::Shell(body.start_task),
                body.wait_for_success,
                crate::wallclock::wall_ms(),
            )
            .map_err(bad_request)?;
        Ok(Json(Named { name: body.name }))
    })
    .await?
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
    let found = ask(&s, move |d| {
        let ledger = d.core.ledger();
        let p = ledger
            .pools(crate::wallclock::wall_ms())
            .find(|p| p.name == pool)
            .ok_or_else(|| not_found(format!("no pool {pool:?}")))?;
        let id = ledger
            .nodes()
            .map(|(id, _)| *id)
            .find(|id| node_name(id).starts_with(&node))
            .ok_or_else(|| not_found(format!("no node {node:?}")))?;
        let r = ledger.start_result(&p.event, &id).ok_or_else(|| {
            not_found(format!("node {node} has not run the start task of {pool}"))
        })?;
        let blob = if stderr { r.stderr } else { r.stdout };
        Ok((blob, d.connected_peers(), d.fetcher.clone()))
    })
    .await??;
    let (blob, peers, fetcher) = found;
    log_bytes(blob, &peers, &fetcher).await
}
