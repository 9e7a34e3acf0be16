//! Job schedules: a job template submitted again at every occurrence of a
//! recurrence, exactly once across the mesh.
//!
//! Owns the schedule and occurrence types and the rule that makes firing
//! idempotent: a job submitted for an occurrence takes its id from
//! (schedule, occurrence time) rather than from its event, so two nodes
//! that fire the same occurrence submit the *same* job, and the ledger's
//! existing rule (of two submits of one job id, the lower event id wins)
//! keeps one, and which occurrence is the latest due at a given wall-clock
//! time (`Recurrence::latest_due`). Must not read clocks: the core passes
//! in the time and decides who fires (`core::wall`).

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recurrence {
    /// Every `ms` milliseconds of wall-clock time from `start_ms`.
    Every { ms: u64, start_ms: u64 },
    /// A cron expression (minute hour day-of-month month day-of-week, in
    /// the firing node's local time; 6 fields start with seconds).
    Cron(String),
}

/// The occurrence a scheduled job was submitted for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    pub schedule: String,
    /// Wall-clock time of the occurrence (ms since the Unix epoch).
    pub at_ms: u64,
}

/// The time zone cron expressions are read in: the node's own (the
/// default), or UTC (the simulator, for replays that do not depend on the
/// machine).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CronZone {
    #[default]
    Local,
    Utc,
}

impl Recurrence {
    /// Whether `at_ms` can be an occurrence: on an interval's grid, at or
    /// after its start. Any time can be a cron occurrence here (cron is
    /// evaluated by the node, not by the protocol).
    pub fn has_occurrence(&self, at_ms: u64) -> bool {
        match self {
            Recurrence::Every { ms, start_ms } => {
                *ms > 0 && at_ms >= *start_ms && (at_ms - start_ms).is_multiple_of(*ms)
            }
            Recurrence::Cron(_) => true,
        }
    }

    /// The latest occurrence in `(after_ms, now_ms]`, if any, a cron
    /// expression read in `zone`. Missed occurrences before it are not
    /// replayed.
    pub fn latest_due(
        &self,
        after_ms: u64,
        now_ms: u64,
        zone: CronZone,
    ) -> Result<Option<u64>, String> {
        match self {
            Recurrence::Every { ms, start_ms } => {
                if *ms == 0 || now_ms < *start_ms {
                    return Ok(None);
                }
                let at = start_ms + (now_ms - start_ms) / ms * ms;
                Ok((at > after_ms).then_some(at))
            }
            Recurrence::Cron(expr) => {
                let cron = parse_cron(expr)?;
                Ok(match zone {
                    CronZone::Local => last_between(&cron, chrono::Local, after_ms, now_ms),
                    CronZone::Utc => last_between(&cron, chrono::Utc, after_ms, now_ms),
                })
            }
        }
    }
}

/// The last time `cron` names in `(after_ms, now_ms]`, read in `zone`.
fn last_between<Z: chrono::TimeZone>(
    cron: &cron::Schedule,
    zone: Z,
    after_ms: u64,
    now_ms: u64,
) -> Option<u64> {
    let from = chrono::DateTime::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
    (cron.after(&from.with_timezone(&zone)))
        .map(|t| t.timestamp_millis() as u64)
        .take_while(|t| *t <= now_ms)
        .last()
}

/// Longest cron expression.
pub const MAX_CRON_BYTES: usize = 256;

/// A cron expression: 5 fields (minute hour day month weekday) or 6 with
/// seconds first (7 with years last), at most [`MAX_CRON_BYTES`].
/// Parsing reads no clock; `Recurrence::latest_due` evaluates it.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    if expr.len() > MAX_CRON_BYTES {
        return Err(format!(
            "cron expression of {} bytes; at most {MAX_CRON_BYTES}",
            expr.len()
        ));
    }
    let full = match expr.split_whitespace().count() {
        5 => format!("0 {expr}"),
        6 | 7 => expr.to_string(),
        _ => {
            return Err(format!(
                "cron {expr:?} must have 5 fields (minute hour day month weekday)"
            ))
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("cron {expr:?}: {e}"))
}

/// The job id every submit for `occurrence` gets.
pub fn occurrence_job_id(occurrence: &Occurrence) -> JobId {
    let mut h = blake3::Hasher::new();
    h.update(b"peerbatch schedule occurrence\0");
    h.update(occurrence.schedule.as_bytes());
    h.update(&[0]);
    h.update(&occurrence.at_ms.to_le_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.finalize().as_bytes()[..8]);
    JobId(id)
}

/// A schedule name: 1 to 64 letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schedule name {name:?} must be 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_occurrence_one_job_id() {
        let at = |schedule: &str, at_ms| Occurrence {
            schedule: schedule.into(),
            at_ms,
        };
        assert_eq!(
            occurrence_job_id(&at("nightly", 5)),
            occurrence_job_id(&at("nightly", 5))
        );
        assert_ne!(
            occurrence_job_id(&at("nightly", 5)),
            occurrence_job_id(&at("nightly", 6))
        );
        assert_ne!(
            occurrence_job_id(&at("nightly", 5)),
            occurrence_job_id(&at("hourly", 5))
        );
        assert!(check_name("render-nightly").is_ok());
        let every = Recurrence::Every {
            ms: 1_000,
            start_ms: 500,
        };
        assert!(every.has_occurrence(500) && every.has_occurrence(2_500));
        assert!(!every.has_occurrence(0) && !every.has_occurrence(2_499));
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn intervals_and_cron_give_the_latest_due_occurrence() {
        let every = Recurrence::Every {
            ms: 1000,
            start_ms: 10_000,
        };
        let due = |r: &Recurrence, after, now| r.latest_due(after, now, CronZone::Utc);
        assert_eq!(due(&every, 0, 9_999), Ok(None));
        assert_eq!(due(&every, 9_999, 10_000), Ok(Some(10_000)));
        assert_eq!(due(&every, 10_000, 12_500), Ok(Some(12_000)));
        assert_eq!(due(&every, 12_000, 12_900), Ok(None));
        // Every minute at second 0: the latest minute boundary.
        let cron = Recurrence::Cron("* * * * *".into());
        assert_eq!(due(&cron, 60_000, 185_000), Ok(Some(180_000)));
        assert_eq!(due(&cron, 180_000, 185_000), Ok(None));
        // 02:30 every day, in UTC.
        let nightly = Recurrence::Cron("30 2 * * *".into());
        let day = 86_400_000;
        let at = 2 * 3_600_000 + 30 * 60_000;
        assert_eq!(due(&nightly, 0, 3 * day), Ok(Some(2 * day + at)));
        assert!(Recurrence::Cron("61 * * * *".into())
            .latest_due(0, 1, CronZone::Utc)
            .is_err());
    }
}
