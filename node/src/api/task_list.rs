//! `GET /v1/jobs/{job}/tasks`: a job's tasks, written out as they are
//! shaped, a chunk at a time.
//!
//! Owns that route and how the list is sent: the text of a 100,000-task
//! list (26 MB) is never held whole, nor a `Task` per task, and each node's
//! name is made once per answer, not once per task (a peer id is an
//! elliptic-curve point decoded and base58-encoded). Must not ask the
//! driver anything but the list.

use crate::api::types::{Gang as GangState, GangHost, JobPath, Task};
use crate::api::{node_name, outcome_of, ApiError, ApiResult, ApiState};
use crate::driver::command::{Gang, JobTasks, Tasks};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use peerbatch_protocol::ledger::JobRecord;
use peerbatch_protocol::{JobSpec, NodeId, TaskState, TaskView};
use std::collections::BTreeMap;

/// Tasks written per chunk of the answer.
const TASKS_PER_CHUNK: usize = 1024;

/// A job's tasks, in the order of its expansion.
#[utoipa::path(get, path = "/v1/jobs/{job}/tasks", tag = "jobs", params(JobPath),
    responses((status = 200, body = Vec<Task>)))]
pub(crate) async fn tasks(
    State(s): State<ApiState>,
    Path(JobPath { job }): Path<JobPath>,
) -> ApiResult<Response> {
    let found = s.driver.call(|reply| Tasks::List { job, reply }).await??;
    let chunks = TaskChunks {
        group_ends: group_ends(&found.record.spec),
        found,
        names: NodeNames::default(),
        next: 0,
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A job's task list as JSON text, [`TASKS_PER_CHUNK`] tasks at a time:
/// `[` before the first, `]` after the last.
struct TaskChunks {
    found: JobTasks,
    /// Where each task group ends (see [`group_ends`]).
    group_ends: Vec<u64>,
    names: NodeNames,
    /// The next task to write; past the last once `]` is written.
    next: usize,
}

impl TaskChunks {
    /// Task `i` as the API shows it.
    fn task(&mut self, i: usize) -> Task {
        let found = &self.found;
        let view = &found.views[i];
        let gang = found.gangs.get(&view.task.index);
        let group = group_of(&self.group_ends, view.task.index);
        let why_not = found.unschedulable[group].as_ref();
        task_of(&found.record, view, gang, why_not, &mut self.names)
    }
}

impl Iterator for TaskChunks {
    type Item = Result<Bytes, serde_json::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let total = self.found.views.len();
        if self.next > total {
            return None;
        }
        let end = (self.next + TASKS_PER_CHUNK).min(total);
        let mut out = Vec::with_capacity(256 * (end - self.next) + 2);
        if self.next == 0 {
            out.push(b'[');
        }
        for i in self.next..end {
            if i > 0 {
                out.push(b',');
            }
            let task = self.task(i);
            if let Err(e) = serde_json::to_writer(&mut out, &task) {
                return Some(Err(e));
            }
        }
        self.next = end;
        if end == total {
            out.push(b']');
            self.next = total + 1;
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// Each node's name as users see it, made once per answer.
#[derive(Default)]
struct NodeNames(BTreeMap<NodeId, String>);

impl NodeNames {
    fn name(&mut self, node: &NodeId) -> String {
        self.0
            .entry(*node)
            .or_insert_with(|| node_name(node))
            .clone()
    }
}

/// Where each of a job's task groups ends: the position after its last task.
fn group_ends(spec: &JobSpec) -> Vec<u64> {
    spec.groups
        .iter()
        .scan(0u64, |end, g| {
            *end += g.len();
            Some(*end)
        })
        .collect()
}

/// The index of the group holding task position `index`.
fn group_of(ends: &[u64], index: u32) -> usize {
    ends.partition_point(|end| *end <= u64::from(index))
        .min(ends.len().saturating_sub(1))
}

/// The replicated fields of a task: identical on every converged node.
/// `why_not` is why its group fits no node, if it does not.
fn task_of(
    record: &JobRecord,
    view: &TaskView,
    gang: Option<&Gang>,
    why_not: Option<&String>,
    names: &mut NodeNames,
) -> Task {
    let template = record.spec.template(view.task.index);
    let limit = template.and_then(|t| t.max_wall_clock_ms);
    let id = (record.spec.task_id(view.task.index)).unwrap_or_else(|| view.task.index.to_string());
    let waiting = matches!(view.state, TaskState::Pending | TaskState::Blocked);
    let mut task = Task {
        id,
        state: view.state,
        unschedulable: why_not.filter(|_| waiting).cloned(),
        attempt: view.attempt,
        node: view.node.as_ref().map(|n| names.name(n)),
        exit_code: view.result.as_ref().and_then(|r| r.outcome.exit_code()),
        outcome: view.result.as_ref().map(|r| outcome_of(&r.outcome)),
        wall_clock_limit_ms: limit,
        outputs: view
            .result
            .as_ref()
            .and_then(|r| r.outputs)
            .map(|b| b.to_string()),
        instances: None,
        gang: None,
        hosts: None,
    };
    let instances = template.map_or(1, |t| t.resources.instances);
    if instances > 1 {
        task.instances = Some(instances);
        task.gang = Some(match &view.gang {
            Some(g) if g.formed => GangState::Formed,
            Some(g) if g.declined => GangState::Declined,
            Some(_) => GangState::Forming,
            None => GangState::None,
        });
        let hosts = (gang.into_iter().flatten())
            .enumerate()
            .map(|(rank, (node, result))| GangHost {
                rank,
                node: names.name(node),
                exit_code: result.as_ref().and_then(|r| r.outcome.exit_code()),
            })
            .collect();
        task.hosts = Some(hosts);
    }
    task
}
