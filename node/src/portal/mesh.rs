//! The mesh page (`/`): every node the ledger knows, whether it is live,
//! its slots, labels, pool and drain state, with drain and resume buttons;
//! and this node's own load, claiming state, why it is not claiming, and
//! its store.
//!
//! Owns that page's markup; reads through the API's handlers only.

use super::html::{self, esc, text};
use super::session::Session;
use super::{json, PageResult, PortalState};
use crate::api;
use axum::extract::State;
use axum::Extension;
use serde_json::Value;
use std::fmt::Write;

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let nodes = json(api::nodes(State(s.api.clone())).await)?;
    let status = json(api::status(State(s.api.clone())).await)?;
    let mut body = String::from("<section id=here data-live>");
    body.push_str(&this_node(&status));
    body.push_str(
        "</section><section id=nodes data-live><h2>Nodes</h2><table><thead><tr>\
        <th>node</th><th>live</th><th>slots</th><th>memory</th><th>gpus</th><th>labels</th>\
        <th>pool</th><th>state</th><th>version</th><th></th></tr></thead><tbody>",
    );
    for node in nodes.as_array().into_iter().flatten() {
        body.push_str(&node_row(node, &status, &session.csrf));
    }
    body.push_str("</tbody></table></section>");
    Ok(html::page("Mesh", &session.csrf, &body))
}

/// What this node knows of itself only: load, claiming, store.
fn this_node(st: &Value) -> String {
    let claiming = if st["claiming"] == true {
        "claiming work".to_string()
    } else if st["draining"] == true {
        "not claiming: draining".to_string()
    } else {
        format!("not claiming: {}", text(&st["unavailable"]))
    };
    let mut out = format!(
        "<h2>This node</h2><dl><dt>id</dt><dd>{}</dd><dt>slots in use</dt><dd>{} running, {} claimed of {}</dd>\
         <dt>claiming</dt><dd class=claiming>{}</dd><dt>peers connected</dt><dd>{}</dd>\
         <dt>ledger</dt><dd>{} events, {}</dd>",
        esc(&text(&st["node"])),
        st["running"],
        st["claimed"],
        st["slots"],
        esc(&claiming),
        st["peers_connected"],
        st["events"],
        html::bytes(st["ledger_bytes"].as_u64().unwrap_or(0)),
    );
    if let Some(limit) = st["store_limit"].as_u64() {
        let _ = write!(out, "<dt>store limit</dt><dd>{}</dd>", html::bytes(limit));
    }
    if !st["storage_error"].is_null() {
        let _ = write!(
            out,
            "<dt>storage</dt><dd class=error>{}</dd>",
            esc(&text(&st["storage_error"]))
        );
    }
    out.push_str("</dl>");
    out
}

fn node_row(node: &Value, status: &Value, csrf: &str) -> String {
    let id = text(&node["id"]);
    let labels: Vec<String> = node["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let pool = labels
        .iter()
        .find_map(|l| l.strip_prefix("pool="))
        .unwrap_or("—")
        .to_string();
    let draining = node["draining"] == true;
    let state = match (draining, node["self"] == true) {
        (true, _) => "draining".to_string(),
        (false, true) if status["claiming"] != true => "not claiming".to_string(),
        _ => "active".to_string(),
    };
    let (action, label) = if draining {
        ("false", "Resume")
    } else {
        ("true", "Drain")
    };
    let live = if node["live"] == true {
        "live"
    } else {
        "silent"
    };
    let me = if node["self"] == true {
        " (this node)"
    } else {
        ""
    };
    format!(
        "<tr data-node=\"{}\"><td>{}{me}</td><td class={live}>{live}</td><td>{}</td><td>{} MiB</td><td>{}</td>\
         <td>{}</td><td>{}</td><td class=state>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&id),
        html::peer(&id),
        node["slots"],
        node["memory_mb"],
        node["gpus"],
        esc(&labels.join(", ")),
        esc(&pool),
        esc(&state),
        esc(&text(&node["version"])),
        html::button(
            &format!("/nodes/{}/drain", html::seg(&id)),
            csrf,
            &[("drain", action)],
            label
        ),
    )
}
