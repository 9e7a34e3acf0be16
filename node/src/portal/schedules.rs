//! The schedules page (`/schedules`): each schedule with its next firing
//! and a remove button, and a form to add one.
//!
//! Owns that page's markup and working out the next firing; reads through
//! the API's handlers.

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
    let list = json(api::schedules::list(State(s.api.clone())).await)?;
    let now = crate::wallclock::wall_ms();
    let mut body = String::from(
        "<section id=schedules data-live><table><thead><tr><th>name</th><th>when</th><th>job</th>\
         <th>tasks</th><th>last fired</th><th>next firing</th><th></th></tr></thead><tbody>",
    );
    for sc in list.as_array().into_iter().flatten() {
        let name = text(&sc["name"]);
        let when = match sc["every_ms"].as_u64() {
            Some(ms) => format!("every {}", html::duration(ms)),
            None => format!("cron {}", text(&sc["cron"])),
        };
        let _ = write!(
            body,
            "<tr data-schedule=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&name),
            esc(&name),
            esc(&when),
            esc(&text(&sc["job_name"])),
            sc["tasks"],
            sc["last_fired_ms"].as_u64().map_or_else(|| "never".into(), html::when),
            next_firing(sc, now).map_or_else(|| "—".into(), html::when),
            html::button(
                &format!("/schedules/{}/remove", html::seg(&name)),
                &session.csrf,
                &[],
                "Remove"
            ),
        );
    }
    let _ = write!(
        body,
        "</tbody></table></section><h2>Add a schedule</h2>\
         <form method=post action=\"/schedules\" class=stacked><input type=hidden name=csrf value=\"{}\">\
         <label>name <input name=name required></label>\
         <label>every (e.g. 10m) <input name=every></label><label>or cron (e.g. 0 0 2 * * *) <input name=cron></label>\
         <label>job file (TOML)<textarea name=toml rows=10 required></textarea></label>\
         <button>Add schedule</button></form>",
        esc(&session.csrf)
    );
    Ok(html::page("Schedules", &session.csrf, &body))
}

/// When a schedule fires next, after `now` (wall-clock milliseconds).
fn next_firing(sc: &Value, now: u64) -> Option<u64> {
    if let Some(every) = sc["every_ms"].as_u64().filter(|ms| *ms > 0) {
        let from = sc["last_fired_ms"]
            .as_u64()
            .or_else(|| sc["added_ms"].as_u64())?;
        let behind = now.saturating_sub(from) / every;
        return Some(from + (behind + 1) * every);
    }
    let cron = peerbatch_protocol::trigger::parse_cron(sc["cron"].as_str()?).ok()?;
    let after = chrono::DateTime::from_timestamp_millis(now as i64)?;
    cron.after(&after)
        .next()
        .map(|t| t.timestamp_millis() as u64)
}
