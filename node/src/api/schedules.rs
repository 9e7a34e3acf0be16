//! HTTP routes for job schedules: list, add (interval or cron, with a job
//! template), remove.
//!
//! Owns those routes (their JSON shapes are `api::types`') and checking a cron expression before it enters
//! the ledger. Firing is `schedules`'s; like every handler, these ask the
//! driver and keep no state.

use crate::api::types::{AddSchedule, Named, Removed, Schedule};
use crate::api::{bad_request, ApiResult, ApiState};
use crate::driver::command::{ScheduleEntry, Schedules};
use axum::extract::{Path, State};
use axum::Json;
use peerbatch_protocol::schedule::Recurrence;

/// Every active schedule.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, body = Vec<Schedule>)))]
pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Vec<Schedule>>> {
    let schedules = s.driver.call(|reply| Schedules::List { reply }).await?;
    Ok(Json(schedules.into_iter().map(schedule_of).collect()))
}

/// A schedule as the API shows it.
fn schedule_of(entry: ScheduleEntry) -> Schedule {
    let sc = entry.record;
    let (every_ms, cron) = match sc.recurrence {
        Recurrence::Every { ms, .. } => (Some(ms), None),
        Recurrence::Cron(expr) => (None, Some(expr)),
    };
    Schedule {
        name: sc.name,
        every_ms,
        cron,
        job_name: sc.template.name.clone(),
        tasks: sc.template.task_count(),
        added_ms: sc.added_ms,
        last_fired_ms: entry.last_fired_ms,
    }
}

/// Adds a schedule: its job template is submitted at every occurrence,
/// once across the mesh.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = AddSchedule,
    responses((status = 200, body = Named)))]
pub async fn add(
    State(s): State<ApiState>,
    Json(body): Json<AddSchedule>,
) -> ApiResult<Json<Named>> {
    let recurrence = match (body.every_ms, body.cron) {
        (Some(ms), None) if ms >= 1000 => Recurrence::Every {
            ms,
            start_ms: crate::wallclock::wall_ms(),
        },
        (Some(_), None) => {
            return Err(bad_request("a schedule fires at most once a second".into()))
        }
        (None, Some(expr)) => {
            peerbatch_protocol::trigger::parse_cron(&expr).map_err(bad_request)?;
            Recurrence::Cron(expr)
        }
        _ => return Err(bad_request("give exactly one of every_ms or cron".into())),
    };
    let add = |reply| Schedules::Add {
        name: body.name.clone(),
        recurrence,
        template: Box::new(body.template),
        reply,
    };
    s.driver.call(add).await??;
    Ok(Json(Named { name: body.name }))
}

/// Stops a schedule (the jobs it submitted stay).
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    responses((status = 200, body = Removed)))]
pub async fn remove(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Removed>> {
    let remove = |reply| Schedules::Remove {
        name: name.clone(),
        reply,
    };
    s.driver.call(remove).await??;
    Ok(Json(Removed {
        name,
        removed: true,
    }))
}
