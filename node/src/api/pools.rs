//! HTTP routes for pools: define a pool's start task, list pools with each
//! member node's start-task result, and read a node's start-task output.
//!
//! Owns those JSON shapes. Running start tasks is `pools`'s; like every
//! handler, these ask the driver and keep no state.

use crate::api::{ask, bad_request, log_bytes, not_found, ApiResult, ApiState};
use crate::identity::peer_of;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use peerbatch_protocol::Command;
use serde::Deserialize;
use serde_json::{json, Value};

fn name_of(node: &peerbatch_protocol::NodeId) -> String {
    peer_of(node).map_or_else(|| node.to_string(), |p| p.to_string())
}

pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    ask(&s, |d| {
        let ledger = d.core.ledger();
        let list = ledger
            .pools(crate::wallclock::wall_ms())
            .map(|p| {
                let members: Vec<Value> = ledger
                    .nodes()
                    .filter(|(id, info)| {
                        info.labels.iter().any(|(k, v)| k == "pool" && *v == p.name)
                            || ledger.start_result(&p.event, id).is_some()
                    })
                    .map(|(id, _)| {
                        let r = ledger.start_result(&p.event, id);
                        json!({
                            "node": name_of(id),
                            "start_task": match r {
                                None => "pending".to_string(),
                                Some(r) if r.outcome.success() => "succeeded".to_string(),
                                Some(r) => format!("failed: {:?}", r.outcome),
                            },
                        })
                    })
                    .collect();
                json!({
                    "name": p.name,
                    "start_task": command_text(&p.start_task),
                    "wait_for_success": p.wait_for_success,
                    "nodes": members,
                })
            })
            .collect();
        Json(Value::Array(list))
    })
    .await
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(argv) => argv.join(" "),
    }
}

#[derive(Deserialize)]
pub struct DefineBody {
    name: String,
    start_task: String,
    #[serde(default)]
    wait_for_success: bool,
}

pub async fn define(
    State(s): State<ApiState>,
    Json(body): Json<DefineBody>,
) -> ApiResult<Json<Value>> {
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
        Ok(Json(json!({ "name": body.name })))
    })
    .await?
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    stream: Option<String>,
}

/// A member node's start-task stdout (or stderr), fetched from wherever it is.
pub async fn logs(
    State(s): State<ApiState>,
    Path((pool, node)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
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
            .find(|id| name_of(id).starts_with(&node))
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
