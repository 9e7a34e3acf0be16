//! The job page (`/jobs/{job}`): its progress, dependencies, task groups
//! (with their gangs and dependencies), a cancel button, and its task table
//! — state, node, attempt, duration, exit code or how else the attempt
//! ended — sorted and paginated on the node, so that a job of 100,000 tasks
//! renders a page as fast as one of ten.
//!
//! Owns that page and its task query (rows are gathered cheaply for every
//! task, sorted, and only the shown page is resolved to task ids).

use super::html::{self, esc, text};
use super::session::Session;
use super::{json, PageResult, PortalState};
use crate::api;
use crate::driver::command::{JobTasks, Tasks};
use axum::extract::{Path, Query, State};
use axum::Extension;
use peerbatch_protocol::TaskView;
use serde::Deserialize;
use std::fmt::Write;

/// Tasks on one page of the table.
pub const PAGE_SIZE: usize = 100;

/// The columns the table sorts by.
const SORTS: &[&str] = &["task", "state", "node", "attempt", "duration", "exit"];

#[derive(Deserialize, Default, Clone)]
pub struct TableQuery {
    #[serde(default)]
    page: usize,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: bool,
    #[serde(default)]
    state: String,
}

/// One row of the task table.
struct Row {
    id: String,
    state: &'static str,
    attempt: u32,
    node: Option<String>,
    duration_ms: Option<u64>,
    /// The exit code, or how else the attempt ended (`timed_out`, …).
    ended: Option<String>,
    outputs: bool,
}

/// A page of rows, the number of tasks the filter kept, and each group's
/// description.
struct Table {
    rows: Vec<Row>,
    matched: usize,
    groups: Vec<String>,
}

pub async fn page(
    State(s): State<PortalState>,
    Extension(session): Extension<Session>,
    Path(job): Path<String>,
    Query(q): Query<TableQuery>,
) -> PageResult {
    let path = Path(api::types::JobPath { job: job.clone() });
    let info = json(api::job(State(s.api.clone()), path).await)?;
    let job_id = text(&info["id"]);
    let list = |reply| Tasks::List { job: job_id, reply };
    let table = table(&s.api.driver.call(list).await??, &q);
    let mut body = format!(
        "<section id=summary data-live><dl><dt>name</dt><dd>{}</dd><dt>state</dt><dd class=job-state>{}</dd>\
         <dt>priority</dt><dd>{}</dd><dt>progress</dt><dd class=progress>{}</dd>",
        esc(&text(&info["name"])),
        esc(&text(&info["state"])),
        info["priority"],
        html::progress(&info),
    );
    let after: Vec<String> = info["after"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !after.is_empty() {
        let links: Vec<String> = after
            .iter()
            .map(|a| format!("<a href=\"/jobs/{}\">{}</a>", html::seg(a), esc(a)))
            .collect();
        let _ = write!(
            body,
            "<dt>after</dt><dd>{} (if one fails: {})</dd>",
            links.join(", "),
            esc(&text(&info["on_dependency_failure"]))
        );
    }
    if let Some(why) = info["unschedulable"].as_str() {
        let _ = write!(
            body,
            "<dt>unschedulable</dt><dd class=error>{}</dd>",
            esc(why)
        );
    }
    let _ = write!(
        body,
        "</dl>{}</section><h2>Task groups</h2><ul>{}</ul>",
        html::button(
            &format!("/jobs/{}/cancel", html::seg(&job)),
            &session.csrf,
            &[],
            "Cancel job"
        ),
        table
            .groups
            .iter()
            .map(|g| format!("<li>{g}</li>"))
            .collect::<String>()
    );
    body.push_str(&task_table(&job, &q, &table));
    Ok(html::page(
        &format!("Job {}", text(&info["name"])),
        &session.csrf,
        &body,
    ))
}

/// The task table section with its sort links and pages.
fn task_table(job: &str, q: &TableQuery, table: &Table) -> String {
    let base = format!("/jobs/{}", html::seg(job));
    let link = |page: usize, sort: &str, desc: bool| {
        format!(
            "{base}?page={page}&amp;sort={sort}&amp;desc={desc}&amp;state={}",
            html::seg(&q.state)
        )
    };
    let mut out = format!(
        "<section id=tasks data-live><h2>Tasks</h2><p>{} tasks",
        table.matched
    );
    let pages = table.matched.div_ceil(PAGE_SIZE).max(1);
    let _ = write!(out, ", page {} of {pages}", q.page + 1);
    if q.page > 0 {
        let _ = write!(
            out,
            " <a href=\"{}\">previous</a>",
            link(q.page - 1, &q.sort, q.desc)
        );
    }
    if q.page + 1 < pages {
        let _ = write!(
            out,
            " <a class=next href=\"{}\">next</a>",
            link(q.page + 1, &q.sort, q.desc)
        );
    }
    out.push_str("</p><table class=tasks><thead><tr>");
    for column in SORTS {
        let desc = q.sort == *column && !q.desc;
        let _ = write!(
            out,
            "<th><a href=\"{}\">{column}</a></th>",
            link(0, column, desc)
        );
    }
    out.push_str("<th>outputs</th></tr></thead><tbody>");
    for r in &table.rows {
        let task = format!("{base}/tasks/{}", html::seg(&r.id));
        let _ = write!(
            out,
            "<tr data-task=\"{}\"><td><a href=\"{task}\">{}</a></td><td class=\"state s-{}\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.id),
            r.state,
            r.state,
            r.node.as_deref().map_or_else(|| "—".into(), html::peer),
            r.attempt,
            r.duration_ms.map_or_else(|| "—".into(), html::duration),
            esc(r.ended.as_deref().unwrap_or("—")),
            if r.outputs { format!("<a href=\"{task}#outputs\">files</a>") } else { "—".into() },
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The page of the job's task table that `q` asks for.
fn table(found: &JobTasks, q: &TableQuery) -> Table {
    let record = &found.record;
    let mut views: Vec<&TaskView> = (found.views.iter())
        .filter(|v| q.state.is_empty() || v.state.name() == q.state)
        .collect();
    sort(&mut views, &q.sort);
    if q.desc {
        views.reverse();
    }
    let matched = views.len();
    let rows = views
        .iter()
        .skip(q.page.saturating_mul(PAGE_SIZE))
        .take(PAGE_SIZE)
        .map(|v| row(record, v))
        .collect();
    let groups = record.spec.groups.iter().map(group_text).collect();
    Table {
        rows,
        matched,
        groups,
    }
}

fn sort(views: &mut [&TaskView], by: &str) {
    match by {
        "state" => views.sort_by_key(|v| v.state.name()),
        "node" => views.sort_by_key(|v| v.node),
        "attempt" => views.sort_by_key(|v| v.attempt),
        "duration" => views.sort_by_key(|v| v.result.as_ref().map(|r| r.duration_ms)),
        "exit" => views.sort_by_key(|v| v.result.as_ref().map(|r| r.outcome.exit_code())),
        _ => {}
    }
}

fn row(record: &peerbatch_protocol::ledger::JobRecord, v: &TaskView) -> Row {
    let result = v.result.as_ref();
    Row {
        id: record
            .spec
            .task(v.task.index)
            .map_or_else(|| v.task.index.to_string(), |t| t.id),
        state: v.state.name(),
        attempt: v.attempt,
        node: v.node.as_ref().map(api::node_name),
        duration_ms: result.map(|r| r.duration_ms),
        ended: result.map(|r| match r.outcome.exit_code() {
            Some(code) => code.to_string(),
            None => html::outcome(&r.outcome),
        }),
        outputs: result.is_some_and(|r| r.outputs.is_some()),
    }
}

/// A task group as a line: its id, size, gang and dependencies.
fn group_text(g: &peerbatch_protocol::job::TaskGroup) -> String {
    let spec = g.spec();
    let mut out = format!("<b>{}</b>: {} task(s)", esc(&spec.id), g.len());
    if spec.resources.instances > 1 {
        let _ = write!(out, ", each a gang of {} nodes", spec.resources.instances);
    }
    if !spec.depends_on.is_empty() {
        let _ = write!(out, ", depends on {}", esc(&spec.depends_on.join(", ")));
    }
    if !spec.resources.constraints.is_empty() {
        let labels: Vec<String> = spec
            .resources
            .constraints
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(out, ", on nodes labelled {}", esc(&labels.join(", ")));
    }
    out
}
