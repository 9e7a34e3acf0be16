//! The pools page (`/pools`): each pool's start task and, node by node,
//! how its start task ended.
//!
//! Owns that page's markup; reads through the API's handlers.

use super::html::{self, esc, text};
use super::session::Session;
use super::{json, PageResult, PortalState};
use crate::api;
use axum::extract::State;
use axum::Extension;
use std::fmt::Write;

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let pools = json(api::pools::list(State(s.api.clone())).await)?;
    let mut body = String::from("<section id=pools data-live>");
    let list = pools.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        body.push_str("<p>No pools. Define one with <code>peerbatch pool define</code>.</p>");
    }
    for pool in &list {
        let _ = write!(
            body,
            "<h2>{}</h2><p>start task: <code>{}</code>{}</p><table><thead><tr><th>node</th>\
             <th>start task</th></tr></thead><tbody>",
            esc(&text(&pool["name"])),
            esc(&text(&pool["start_task"])),
            if pool["wait_for_success"] == true {
                " (nodes wait for it to succeed)"
            } else {
                ""
            },
        );
        for node in pool["nodes"].as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td></tr>",
                html::peer(&text(&node["node"])),
                esc(&text(&node["start_task"]))
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    Ok(html::page("Pools", &session.csrf, &body))
}
