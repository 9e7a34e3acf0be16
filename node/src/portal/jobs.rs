//! The jobs page (`/jobs`): every job with a progress bar by state, its
//! priority and pool, filtered by state, name or pool.
//!
//! Owns that page's markup and filters; reads through the API's handlers.

use super::html::{self, esc, text};
use super::session::Session;
use super::{json, PageResult, PortalState};
use crate::api;
use crate::driver::command::{JobEntry, Jobs};
use axum::extract::{Query, State};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pool: String,
}

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Query(f): Query<Filter>,
) -> PageResult {
    let jobs = json(api::jobs(State(s.api.clone())).await)?;
    let pools = job_pools(s.api.driver.call(|reply| Jobs::List { reply }).await?);
    let mut rows = String::new();
    let mut shown = 0;
    for job in jobs.as_array().into_iter().flatten().rev() {
        let id = text(&job["id"]);
        let pool = pools.get(&id).map_or("", String::as_str);
        if !matches(&f, job, pool) {
            continue;
        }
        shown += 1;
        let _ = write!(
            rows,
            "<tr data-job=\"{}\"><td><a href=\"/jobs/{}\">{}</a></td><td>{}</td><td class=state>{}</td>\
             <td>{}</td><td>{}</td><td class=progress>{}</td><td>{}</td></tr>",
            esc(&id),
            html::seg(&id),
            esc(&id),
            esc(&text(&job["name"])),
            esc(&text(&job["state"])),
            job["priority"],
            esc(if pool.is_empty() { "—" } else { pool }),
            html::progress(job),
            html::when(job["submitted_ms"].as_u64().unwrap_or(0)),
        );
    }
    let body = format!(
        "{}<section id=jobs data-live><p>{shown} jobs</p><table><thead><tr><th>id</th><th>name</th>\
         <th>state</th><th>priority</th><th>pool</th><th>progress</th><th>submitted</th></tr></thead>\
         <tbody>{rows}</tbody></table></section>",
        filter_form(&f)
    );
    Ok(html::page("Jobs", &session.csrf, &body))
}

fn matches(f: &Filter, job: &Value, pool: &str) -> bool {
    (f.state.is_empty() || job["state"] == f.state.as_str())
        && (f.name.is_empty() || text(&job["name"]).contains(&f.name))
        && (f.pool.is_empty() || pool == f.pool)
}

fn filter_form(f: &Filter) -> String {
    let states = ["", "pending", "running", "succeeded", "failed", "cancelled"]
        .iter()
        .map(|s| {
            let sel = if *s == f.state { " selected" } else { "" };
            let label = if s.is_empty() { "any state" } else { s };
            format!("<option value=\"{s}\"{sel}>{label}</option>")
        })
        .collect::<String>();
    format!(
        "<form method=get class=filter><select name=state>{states}</select>\
         <input name=name placeholder=name value=\"{}\"><input name=pool placeholder=pool value=\"{}\">\
         <button>Filter</button></form>",
        esc(&f.name),
        esc(&f.pool)
    )
}

/// Each job's pool: the `pool` label its tasks require, if any.
fn job_pools(jobs: Vec<JobEntry>) -> BTreeMap<String, String> {
    (jobs.iter().map(|e| &e.record))
        .filter_map(|j| {
            let pool = j.spec.groups.iter().find_map(|g| {
                g.spec()
                    .resources
                    .constraints
                    .iter()
                    .find(|(k, _)| k == "pool")
                    .map(|(_, v)| v.clone())
            })?;
            Some((j.id.to_string(), pool))
        })
        .collect()
}
