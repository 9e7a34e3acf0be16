//! What an event must look like to enter the ledger, whoever signed it.
//!
//! Owns the checks that depend on an event alone: a submitted job passes
//! the same `JobSpec::validate` as a local submit; batches, lists and
//! texts stay within bounds; names follow their rules. Every node applies
//! them to every event (its own, a peer's, one read back from its store)
//! and drops an event that fails, so an invalid event never reaches the
//! fold anywhere. Must not judge who wrote an event or what it means
//! against other events — that is the fold's (`ledger`), which keeps facts
//! and decides at view time, whatever order they came in.

use crate::event::{EventBody, NodeInfo, Outcome, TaskResult};
use crate::gang::GangStep;
use crate::job::{Command, JobError, JobSpec};
use crate::schedule::Recurrence;

/// Most claims (or reclaims) in one event.
pub const MAX_CLAIMS_PER_EVENT: usize = 2_000;
/// Most results in one event.
pub const MAX_RESULTS_PER_EVENT: usize = 400;
/// Longest free text in an event: a failure reason.
pub const MAX_REASON_BYTES: usize = 4_096;
/// Most labels a node announces, and the longest key or value.
pub const MAX_LABELS: usize = 256;
pub const MAX_LABEL_BYTES: usize = 1_024;
/// Most dial addresses a node announces, and the longest.
pub const MAX_ADDRS: usize = 64;
pub const MAX_ADDR_BYTES: usize = 1_024;
/// Longest version string, cron expression or command of a pool.
pub const MAX_SHORT_TEXT: usize = 1_024;
/// Most hosts a gang invite names: one per instance of a task.
pub const MAX_GANG_HOSTS: usize = crate::job::MAX_INSTANCES;

/// Why an event may not enter the ledger.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("submitted job: {0}")]
    Job(#[from] JobError),
    #[error("{what}: {count} entries, at most {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{0}: empty")]
    Empty(&'static str),
    #[error("{what}: {len} bytes, at most {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{0}")]
    Name(String),
    #[error("a schedule's template must not name an occurrence")]
    TemplateWithOrigin,
    #[error("a schedule's interval must not be 0")]
    ZeroInterval,
    #[error(transparent)]
    Function(#[from] crate::function::FunctionError),
}

/// Checks one event body against the rules every node applies.
pub fn check(body: &EventBody) -> Result<(), InvalidEvent> {
    match body {
        EventBody::JobSubmitted { job, .. } => Ok(job.validate()?),
        EventBody::JobCancelled { .. }
        | EventBody::JobForgotten { .. }
        | EventBody::DrainRequested { .. } => Ok(()),
        EventBody::Claims { claims } | EventBody::Reclaimed { claims } => {
            count("claims", claims.len(), MAX_CLAIMS_PER_EVENT)
        }
        EventBody::Finished { results } => {
            count("results", results.len(), MAX_RESULTS_PER_EVENT)?;
            results.iter().try_for_each(check_result)
        }
        EventBody::NodeAnnounce { info, .. } => check_info(info),
        EventBody::PoolDefined {
            name, start_task, ..
        } => {
            crate::schedule::check_name(name).map_err(InvalidEvent::Name)?;
            check_command(start_task)
        }
        EventBody::StartTaskFinished { pool, result, .. } => {
            crate::schedule::check_name(pool).map_err(InvalidEvent::Name)?;
            check_outcome(&result.outcome)
        }
        EventBody::ScheduleAdded {
            name,
            recurrence,
            template,
            ..
        } => check_schedule(name, recurrence, template),
        EventBody::ScheduleRemoved { name, .. } => {
            crate::schedule::check_name(name).map_err(InvalidEvent::Name)
        }
        EventBody::PackageAdded { name, version, .. } => crate::files::check_package(name, version)
            .map_err(|e| InvalidEvent::Name(e.to_string())),
        EventBody::Function(f) => Ok(crate::function::check(f)?),
        EventBody::Gang { step, .. } => match step {
            GangStep::Invite { hosts, .. } => count("gang hosts", hosts.len(), MAX_GANG_HOSTS),
            GangStep::Exited { result } => check_result(result),
            GangStep::Join { .. } | GangStep::Decline { .. } => Ok(()),
        },
    }
}

/// Cuts a failure reason to the length every node accepts (at a
/// character boundary), so that a node's own result is never refused.
pub fn fit_reason(outcome: &mut Outcome) {
    if let Outcome::FailedToStart(text) | Outcome::OutputsFailed(text) = outcome {
        if text.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
    }
}

fn count(what: &'static str, count: usize, limit: usize) -> Result<(), InvalidEvent> {
    if count == 0 {
        return Err(InvalidEvent::Empty(what));
    }
    if count > limit {
        return Err(InvalidEvent::TooMany { what, count, limit });
    }
    Ok(())
}

fn text(what: &'static str, text: &str, limit: usize) -> Result<(), InvalidEvent> {
    if text.len() > limit {
        return Err(InvalidEvent::TooLong {
            what,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

fn check_result(result: &TaskResult) -> Result<(), InvalidEvent> {
    check_outcome(&result.outcome)
}

fn check_outcome(outcome: &Outcome) -> Result<(), InvalidEvent> {
    match outcome {
        Outcome::FailedToStart(reason) | Outcome::OutputsFailed(reason) => {
            text("failure reason", reason, MAX_REASON_BYTES)
        }
        Outcome::Exited(_) | Outcome::Signaled(_) | Outcome::TimedOut => Ok(()),
    }
}

/// The bounds on a node's labels: how many, and how long each key and
/// value. A node checks its own at start, so its announce is never refused.
pub fn check_labels(labels: &[(String, String)]) -> Result<(), InvalidEvent> {
    if labels.len() > MAX_LABELS {
        return Err(InvalidEvent::TooMany {
            what: "labels",
            count: labels.len(),
            limit: MAX_LABELS,
        });
    }
    for (key, value) in labels {
        text("label key", key, MAX_LABEL_BYTES)?;
        text("label value", value, MAX_LABEL_BYTES)?;
    }
    Ok(())
}

fn check_info(info: &NodeInfo) -> Result<(), InvalidEvent> {
    check_labels(&info.labels)?;
    if info.addrs.len() > MAX_ADDRS {
        return Err(InvalidEvent::TooMany {
            what: "addresses",
            count: info.addrs.len(),
            limit: MAX_ADDRS,
        });
    }
    for addr in &info.addrs {
        text("address", addr, MAX_ADDR_BYTES)?;
    }
    text("version", &info.version, MAX_SHORT_TEXT)
}

fn check_command(command: &Command) -> Result<(), InvalidEvent> {
    if command.is_empty() {
        return Err(InvalidEvent::Empty("start task command"));
    }
    Ok(())
}

fn check_schedule(
    name: &str,
    recurrence: &Recurrence,
    template: &JobSpec,
) -> Result<(), InvalidEvent> {
    crate::schedule::check_name(name).map_err(InvalidEvent::Name)?;
    match recurrence {
        Recurrence::Every { ms: 0, .. } => return Err(InvalidEvent::ZeroInterval),
        Recurrence::Every { .. } => {}
        Recurrence::Cron(expr) => text("cron expression", expr, MAX_SHORT_TEXT)?,
    }
    if template.origin.is_some() {
        return Err(InvalidEvent::TemplateWithOrigin);
    }
    Ok(template.validate()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_at_a_character_boundary_within_the_bound() {
        let mut outcome = Outcome::FailedToStart("é".repeat(MAX_REASON_BYTES));
        fit_reason(&mut outcome);
        let Outcome::FailedToStart(reason) = &outcome else {
            unreachable!()
        };
        assert_eq!(reason.len(), MAX_REASON_BYTES);
        assert!(check_outcome(&outcome).is_ok());
        let mut odd = Outcome::OutputsFailed(format!("x{}", "é".repeat(MAX_REASON_BYTES)));
        fit_reason(&mut odd);
        assert!(check_outcome(&odd).is_ok());
    }
}
