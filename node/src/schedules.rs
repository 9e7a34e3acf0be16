//! Firing job schedules on this node by its wall clock.
//!
//! Owns deciding which occurrence of each schedule is due (interval or cron
//! in local time), who fires it (the node ranked first for the occurrence
//! fires at once, the k-th after k seconds, so usually one node does), and
//! submitting the template for it. Missed occurrences are not replayed:
//! only the latest due one fires. Must not decide what makes firing
//! idempotent; the ledger does (an occurrence's job id comes from it).

use peerbatch_protocol::schedule::{occurrence_job_id, Occurrence, Recurrence};
use peerbatch_protocol::trigger::{Issuer, Origin};
use peerbatch_protocol::{Core, EventStore, JobSpec, Millis, TaskRef};

/// How long the k-th ranked node waits, per rank, before firing itself.
pub const FIRE_STEP_MS: u64 = 1000;

pub use peerbatch_protocol::trigger::parse_cron;

/// The latest occurrence in `(after_ms, now_ms]`, if any.
pub fn latest_due(rec: &Recurrence, after_ms: u64, now_ms: u64) -> Result<Option<u64>, String> {
    match rec {
        Recurrence::Every { ms, start_ms } => {
            if *ms == 0 || now_ms < *start_ms {
                return Ok(None);
            }
            let at = start_ms + (now_ms - start_ms) / ms * ms;
            Ok((at > after_ms).then_some(at))
        }
        Recurrence::Cron(expr) => {
            let schedule = parse_cron(expr)?;
            let local = |ms: u64| {
                chrono::DateTime::from_timestamp_millis(ms as i64)
                    .map(|t| t.with_timezone(&chrono::Local))
            };
            let Some(from) = local(after_ms) else {
                return Ok(None);
            };
            Ok(schedule
                .after(&from)
                .map(|t| t.timestamp_millis() as u64)
                .take_while(|t| *t <= now_ms)
                .last())
        }
    }
}

/// Submits the due occurrence of every schedule this node should fire now.
pub fn fire_due<S: EventStore>(core: &mut Core<S>, now: Millis, wall_ms: u64) {
    let ledger = core.ledger();
    let due: Vec<JobSpec> = ledger
        .schedules(wall_ms)
        .filter_map(|s| {
            // An interval fires at its start too; a cron only after being added.
            let first = match s.recurrence {
                Recurrence::Every { start_ms, .. } => start_ms.saturating_sub(1),
                Recurrence::Cron(_) => s.added_ms,
            };
            let after = ledger
                .last_fired(&Issuer::Schedule(s.name.clone()), wall_ms)
                .map_or(first, |t| t.max(first));
            let at = match latest_due(&s.recurrence, after, wall_ms) {
                Ok(at) => at?,
                Err(e) => {
                    tracing::warn!("schedule {}: {e}", s.name);
                    return None;
                }
            };
            let occurrence = Occurrence {
                schedule: s.name.clone(),
                at_ms: at,
            };
            let job = occurrence_job_id(&occurrence);
            if ledger.job(&job).is_some() {
                return None;
            }
            let rank = core.rank_for(TaskRef { job, index: 0 }) as u64;
            if wall_ms < at + rank * FIRE_STEP_MS {
                return None;
            }
            Some(JobSpec {
                origin: Some(Origin::Schedule(occurrence)),
                ..s.template.clone()
            })
        })
        .collect();
    for spec in due {
        let name = match &spec.origin {
            Some(Origin::Schedule(o)) => Some(o.schedule.clone()),
            _ => None,
        };
        match core.submit(now, spec, wall_ms) {
            Ok((job, _)) => tracing::info!("schedule {} fired job {job}", name.unwrap_or_default()),
            Err(e) => tracing::warn!("schedule {} cannot fire: {e}", name.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron_give_the_latest_due_occurrence() {
        let every = Recurrence::Every {
            ms: 1000,
            start_ms: 10_000,
        };
        assert_eq!(latest_due(&every, 0, 9_999), Ok(None));
        assert_eq!(latest_due(&every, 9_999, 10_000), Ok(Some(10_000)));
        assert_eq!(latest_due(&every, 10_000, 12_500), Ok(Some(12_000)));
        assert_eq!(latest_due(&every, 12_000, 12_900), Ok(None));
        // Every minute at second 0: the latest minute boundary.
        let cron = Recurrence::Cron("* * * * *".into());
        assert_eq!(latest_due(&cron, 60_000, 185_000), Ok(Some(180_000)));
        assert_eq!(latest_due(&cron, 180_000, 185_000), Ok(None));
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }
}
