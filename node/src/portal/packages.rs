//! The packages page (`/packages`): every package version the mesh knows.
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
    let packages = json(api::files::packages(State(s.api.clone())).await)?;
    let mut body = String::from(
        "<section id=packages data-live><table><thead><tr><th>name</th><th>version</th>\
         <th>blob</th><th>added by</th><th>added</th></tr></thead><tbody>",
    );
    for p in packages.as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&text(&p["name"])),
            esc(&text(&p["version"])),
            esc(&text(&p["blob"])),
            html::peer(&text(&p["added_by"])),
            html::when(p["added_ms"].as_u64().unwrap_or(0)),
        );
    }
    body.push_str("</tbody></table></section>");
    Ok(html::page("Packages", &session.csrf, &body))
}
