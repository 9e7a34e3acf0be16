//! HTTP routes for job schedules: list, add (interval or cron, with a job
//! template), remove.
//!
//! Owns those JSON shapes and checking a cron expression before it enters
//! the ledger. Firing is `schedules`'s; like every handler, these ask the
//! driver and keep no state.

use crate::api::{ask, bad_request, not_found, ApiResult, ApiState};
use axum::extract::{Path, State};
use axum::Json;
use peerbatch_protocol::schedule::Recurrence;
use peerbatch_protocol::JobSpec;
use serde::Deserialize;
use serde_json::{json, Value};

pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    ask(&s, |d| {
        let ledger = d.core.ledger();
        let wall = crate::wallclock::wall_ms();
        let list = ledger
            .schedules(wall)
            .map(|sc| {
                let (every_ms, cron) = match &sc.recurrence {
                    Recurrence::Every { ms, .. } => (Some(*ms), None),
                    Recurrence::Cron(expr) => (None, Some(expr.clone())),
                };
                json!({
                    "name": sc.name,
                    "every_ms": every_ms,
                    "cron": cron,
                    "job_name": sc.template.name,
                    "tasks": sc.template.task_count(),
                    "added_ms": sc.added_ms,
                    "last_fired_ms": ledger.last_fired(&sc.name, wall),
                })
            })
            .collect();
        Json(Value::Array(list))
    })
    .await
}

#[derive(Deserialize)]
pub struct AddBody {
    name: String,
    every_ms: Option<u64>,
    cron: Option<String>,
    template: JobSpec,
}

pub async fn add(State(s): State<ApiState>, Json(body): Json<AddBody>) -> ApiResult<Json<Value>> {
    let recurrence = match (body.every_ms, body.cron) {
        (Some(ms), None) if ms >= 1000 => Recurrence::Every {
            ms,
            start_ms: crate::wallclock::wall_ms(),
        },
        (Some(_), None) => {
            return Err(bad_request("a schedule fires at most once a second".into()))
        }
        (None, Some(expr)) => {
            crate::schedules::parse_cron(&expr).map_err(bad_request)?;
            Recurrence::Cron(expr)
        }
        _ => return Err(bad_request("give exactly one of every_ms or cron".into())),
    };
    let name = body.name;
    let template = body.template;
    ask(&s, move |d| {
        let now = d.now();
        d.core
            .add_schedule(
                now,
                &name,
                recurrence,
                template,
                crate::wallclock::wall_ms(),
            )
            .map_err(bad_request)?;
        Ok(Json(json!({ "name": name })))
    })
    .await?
}

pub async fn remove(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    ask(&s, move |d| {
        let now = d.now();
        if d.core.remove_schedule(now, &name, crate::wallclock::wall_ms()) {
            Ok(Json(json!({ "name": name, "removed": true })))
        } else {
            Err(not_found(format!(
                "no schedule {name:?} that this node may remove (the node that added it or an admin node may)"
            )))
        }
    })
    .await?
}
