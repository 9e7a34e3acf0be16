//! The functions pages: `/functions`, every function the mesh knows with
//! the version it serves, its triggers and how often it is called; and
//! `/functions/{name}`, one function's versions, its calls' figures on
//! each node, and its recent calls with the end of their stderr.
//!
//! Owns those pages' markup; reads through the API's handlers
//! (`api::functions`, `api::function_calls`), whose typed answers it
//! renders. Calls are no ledger events, so the live parts are marked
//! `data-poll` too: the script fetches them again every few seconds.

use super::html::{self, esc};
use super::session::Session;
use super::{PageResult, PortalState};
use crate::api;
use crate::api::function_calls;
use crate::api::types::{
    CallFigures, CallsQuery, Function, FunctionCall, FunctionVersion, Unanswered,
};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use std::fmt::Write;

/// Recent calls a function's page shows.
pub const CALLS_SHOWN: u32 = 50;

pub async fn list(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let Json(functions) = api::functions::list(State(s.api.clone())).await?;
    let Json(summary) = function_calls::summary(State(s.api.clone())).await?;
    let mut body = String::from(
        "<section id=functions data-live data-poll><table><thead><tr><th>name</th>\
         <th>serving</th><th>triggers</th><th>mode</th><th>calls/min</th><th>calls</th>\
         <th>failed</th><th>p50</th></tr></thead><tbody>",
    );
    for f in &functions {
        let figures = summary.functions.iter().find(|c| c.name == f.name);
        let figures = figures.map(|c| c.total).unwrap_or_default();
        body.push_str(&row(f, &figures));
    }
    body.push_str("</tbody></table>");
    body.push_str(&unanswered(&summary.unanswered));
    body.push_str("</section>");
    Ok(html::page("Functions", &session.csrf, &body))
}

/// A function's row: name, what serves, how often it is called.
fn row(f: &Function, c: &CallFigures) -> String {
    let serving = serving(f);
    format!(
        "<tr data-function=\"{name}\"><td><a href=\"/functions/{seg}\">{name}</a></td>\
         <td>{}</td><td>{}</td><td>{}</td><td class=rate>{}</td><td class=calls>{}</td>\
         <td>{}</td><td>{}</td></tr>",
        serving.map_or_else(|| "none".into(), |v| format!("v{}", v.number)),
        esc(&serving.map(|v| v.triggers.join(", ")).unwrap_or_default()),
        serving.map_or("—", mode),
        c.last_minute,
        c.calls,
        failed(c),
        ms(c.p50_ms),
        name = esc(&f.name),
        seg = html::seg(&f.name),
    )
}

fn serving(f: &Function) -> Option<&FunctionVersion> {
    f.versions.iter().find(|v| v.serving)
}

fn mode(v: &FunctionVersion) -> &'static str {
    match v.warm {
        Some(_) => "warm",
        None => "per call",
    }
}

/// Calls that failed: 4xx, 5xx, busy and timed out.
fn failed(c: &CallFigures) -> u64 {
    let s = &c.by_status;
    s.client_error + s.server_error + s.busy + s.timed_out
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), html::duration)
}

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> PageResult {
    let Json(f) = api::functions::show(State(s.api.clone()), Path(name.clone())).await?;
    let query = Query(CallsQuery {
        limit: Some(CALLS_SHOWN),
    });
    let Json(calls) = function_calls::calls(State(s.api.clone()), Path(name), query).await?;
    let mut body = String::from("<section id=versions data-live><h2>Versions</h2>");
    body.push_str(&versions(&f));
    body.push_str("</section><section id=calls data-live data-poll><h2>Calls</h2>");
    body.push_str(&figures(&calls.total, &calls.nodes));
    body.push_str(&unanswered(&calls.unanswered));
    body.push_str(
        "<h2>Recent calls</h2><table class=recent><thead><tr><th>started</th>\
         <th>node</th><th>version</th><th>status</th><th>took</th><th>log</th></tr></thead><tbody>",
    );
    for c in calls.calls.iter().rev() {
        body.push_str(&call_row(c));
    }
    body.push_str("</tbody></table></section>");
    Ok(html::page(
        &format!("Function {}", f.name),
        &session.csrf,
        &body,
    ))
}

fn versions(f: &Function) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>version</th><th></th><th>command</th><th>triggers</th>\
         <th>mode</th><th>time-out</th><th>deployed by</th><th>deployed</th></tr></thead><tbody>",
    );
    for v in f.versions.iter().rev() {
        let _ = write!(
            out,
            "<tr data-version=\"{}\"><td>v{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.number,
            v.number,
            if v.serving { "serving" } else { "" },
            esc(&v.command),
            esc(&v.triggers.join(", ")),
            mode(v),
            html::duration(v.timeout_ms),
            html::peer(&v.deployed_by),
            html::when(v.deployed_ms),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The calls' figures in all and on each node.
fn figures(total: &CallFigures, nodes: &[crate::api::types::NodeCallFigures]) -> String {
    let mut out = String::from(
        "<table class=figures><thead><tr><th>node</th><th>calls</th><th>last minute</th>\
         <th>2xx</th><th>4xx</th><th>5xx</th><th>503</th><th>504</th><th>mean</th><th>p50</th>\
         <th>p99</th><th>max</th></tr></thead><tbody>",
    );
    out.push_str(&figures_row("all nodes", total));
    for n in nodes {
        out.push_str(&figures_row(&html::peer(&n.node), &n.figures));
    }
    out.push_str("</tbody></table>");
    out
}

/// `who` is markup.
fn figures_row(who: &str, c: &CallFigures) -> String {
    let s = &c.by_status;
    format!(
        "<tr><td>{who}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        c.calls,
        c.last_minute,
        s.ok,
        s.client_error,
        s.server_error,
        s.busy,
        s.timed_out,
        ms(c.mean_ms),
        ms(c.p50_ms),
        ms(c.p99_ms),
        ms(c.max_ms),
    )
}

/// A recent call, its stderr and (failed) answer under it.
fn call_row(c: &FunctionCall) -> String {
    let call = &c.call;
    let class = if call.status < 400 {
        "s-succeeded"
    } else {
        "s-failed"
    };
    let via = call
        .via
        .as_ref()
        .map_or_else(String::new, |v| format!(" via {}", html::peer(v)));
    let mut log = esc(&call.stderr);
    if !call.answer.is_empty() {
        log.push_str(&esc(&call.answer));
    }
    format!(
        "<tr class=call><td>{}</td><td>{}{via}</td><td>v{}</td><td class=\"state {class}\">{}</td>\
         <td>{}</td><td><pre class=\"log short\">{log}</pre></td></tr>",
        html::when(call.at_ms),
        html::peer(&c.node),
        call.version,
        call.status,
        html::duration(call.duration_ms),
    )
}

/// The nodes whose calls are missing, if any.
fn unanswered(missing: &[Unanswered]) -> String {
    let mut out = String::new();
    for u in missing {
        let _ = write!(
            out,
            "<p class=error>node {} did not answer ({}): its calls are missing</p>",
            html::peer(&u.node),
            esc(&u.why)
        );
    }
    out
}
