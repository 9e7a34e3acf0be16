//! HTTP routes for the calls functions received: `GET
//! /v1/functions/{name}/calls` (a function's figures and newest calls)
//! and `GET /v1/function-calls` (every function's figures), gathered from
//! every connected node's record, since HTTP calls are no ledger events.
//!
//! Owns those routes and shaping the nodes' records (`functions::calls`)
//! into `api::types`: adding nodes' figures up, merging their calls
//! newest last and cutting them to the limit. Gathering is
//! `functions::route`'s (it waits a bounded time and names the nodes that
//! did not answer); like every handler, these keep no state.

use crate::api::types::{
    CallFigures, CallsQuery, CallsSummary, FunctionCall, FunctionCalls, FunctionFigures,
    NodeCallFigures, StatusCounts, Unanswered,
};
use crate::api::{bad_request, ApiResult, ApiState};
use crate::driver::command::{Functions, Mesh};
use crate::functions::calls::{CallsAsk, Stats, StatusClass, RECENT_CALLS};
use crate::functions::route::MeshCalls;
use axum::extract::{Path, Query, State};
use axum::Json;
use std::collections::BTreeMap;

/// Calls `GET /v1/functions/{name}/calls` answers unless asked otherwise.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most calls it answers.
pub const MAX_LIMIT: u32 = 1000;

/// A function's calls on every connected node that answered within a
/// few seconds: figures by node and in all, and its newest calls with
/// the end of their stderr.
#[utoipa::path(get, path = "/v1/functions/{name}/calls", tag = "functions",
    params(("name" = String, Path, description = "the function"), CallsQuery),
    responses((status = 200, body = FunctionCalls)))]
pub async fn calls(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<CallsQuery>,
) -> ApiResult<Json<FunctionCalls>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        let why = format!("limit {limit} is over {MAX_LIMIT}, the most calls answered");
        return Err(bad_request(why));
    }
    let show = |reply| Functions::Show {
        name: name.clone(),
        reply,
    };
    s.driver.call(show).await??;
    let ask = CallsAsk {
        name: Some(name.clone()),
        limit: limit.min(RECENT_CALLS as u32),
    };
    let mesh = gather(&s, ask).await?;
    let mut total = Stats::default();
    let mut nodes = Vec::new();
    let mut calls = Vec::new();
    for (node, answer) in &mesh.answered {
        let Some((_, stats)) = answer.functions.first() else {
            continue;
        };
        total.add(stats);
        nodes.push(NodeCallFigures {
            node: node.clone(),
            figures: figures(stats),
        });
        calls.extend(answer.calls.iter().map(|c| FunctionCall {
            node: node.clone(),
            call: c.clone(),
        }));
    }
    calls.sort_by(|a, b| {
        (a.call.at_ms, &a.node, a.call.seq).cmp(&(b.call.at_ms, &b.node, b.call.seq))
    });
    calls.drain(..calls.len().saturating_sub(limit as usize));
    Ok(Json(FunctionCalls {
        name,
        total: figures(&total),
        nodes,
        calls,
        unanswered: unanswered(&mesh),
    }))
}

/// Every function's call figures over every connected node that answered
/// within a few seconds, by name.
#[utoipa::path(get, path = "/v1/function-calls", tag = "functions",
    responses((status = 200, body = CallsSummary)))]
pub async fn summary(State(s): State<ApiState>) -> ApiResult<Json<CallsSummary>> {
    let ask = CallsAsk {
        name: None,
        limit: 0,
    };
    let mesh = gather(&s, ask).await?;
    let mut by_name: BTreeMap<&str, Stats> = BTreeMap::new();
    for (_, answer) in &mesh.answered {
        for (name, stats) in &answer.functions {
            by_name.entry(name).or_default().add(stats);
        }
    }
    let functions = by_name.into_iter().map(|(name, stats)| FunctionFigures {
        name: name.to_string(),
        total: figures(&stats),
    });
    Ok(Json(CallsSummary {
        functions: functions.collect(),
        unanswered: unanswered(&mesh),
    }))
}

/// This node's record and every connected peer's for `ask`.
async fn gather(s: &ApiState, ask: CallsAsk) -> ApiResult<MeshCalls> {
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    Ok(s.functions.calls_everywhere(ask, peers).await)
}

fn unanswered(mesh: &MeshCalls) -> Vec<Unanswered> {
    let missing = mesh.unanswered.iter().map(|(node, why)| Unanswered {
        node: node.clone(),
        why: why.to_string(),
    });
    missing.collect()
}

fn figures(stats: &Stats) -> CallFigures {
    let l = &stats.latency;
    CallFigures {
        calls: l.count,
        by_status: StatusCounts {
            ok: stats.count(StatusClass::Ok),
            redirect: stats.count(StatusClass::Redirect),
            client_error: stats.count(StatusClass::ClientError),
            server_error: stats.count(StatusClass::ServerError),
            busy: stats.count(StatusClass::Busy),
            timed_out: stats.count(StatusClass::TimedOut),
        },
        last_minute: stats.last_minute,
        mean_ms: l.mean_ms(),
        p50_ms: l.quantile_ms(0.5),
        p99_ms: l.quantile_ms(0.99),
        max_ms: (l.count > 0).then_some(l.max_ms),
    }
}
