//! Function triggers that go through the ledger: a timer's occurrence, a
//! queue message, a blob put, each fired as a one-task job that runs the
//! function's handler, so it is claimed, leased, reclaimed and retried
//! like any task.
//!
//! Owns the [`Trigger`]s, what a job says about where it came from
//! ([`Origin`]: a schedule occurrence or a function [`Firing`]), a timer
//! occurrence's job id (a hash of function and time, so two nodes firing
//! one occurrence submit the same job and the lower event id wins, as for
//! schedules), the rules of triggers ([`check`]) and which trigger fires
//! a firing ([`Firing::fits`]); the job a firing runs is the version's
//! (`FunctionSpec::fired_job`). Must not read
//! clocks or decide when a timer is due (the node does) nor run anything.

use crate::ids::{BlobId, EventId, JobId};
pub use crate::schedule::{parse_cron, MAX_CRON_BYTES};
use crate::schedule::{Occurrence, Recurrence};
use serde::{Deserialize, Serialize};

/// Largest queue message (as an Azure Storage queue's).
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Most messages of one function waiting or running at once; an enqueue
/// past it is refused.
pub const MAX_BACKLOG: usize = 1_000;
/// Attempts at a message (or a timer's or blob's invocation) before it is
/// dead-lettered, unless the deploy says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Most attempts a deploy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest blob-name prefix.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Shortest timer interval.
pub const MIN_INTERVAL_MS: u64 = 1_000;
/// Longest blob name a put may give.
pub const MAX_BLOB_NAME_BYTES: usize = 1_024;

/// What invokes a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// `ANY /fn/NAME/...` on any node's API.
    Http,
    /// Each occurrence, once mesh-wide (an interval's grid starts at the
    /// epoch).
    Timer(Recurrence),
    /// Each message enqueued for the function, at least once.
    Queue,
    /// Each blob put under a name starting with `prefix`, at least once.
    Blob { prefix: String },
}

/// Where a job came from, when not straight from a user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// An occurrence of a job schedule (see `schedule`).
    Schedule(Occurrence),
    /// A trigger of a function (boxed: most jobs have no origin, and a
    /// firing is several times a schedule occurrence's size).
    Function(Box<Firing>),
}

/// What fired a job, for the ledger's bookkeeping of fired jobs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Issuer {
    Schedule(String),
    Function(String),
}

/// One firing of a function's trigger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Firing {
    pub function: String,
    /// The deploy event of the version that runs.
    pub version: EventId,
    pub cause: Cause,
}

/// Which trigger fired, with what it hands the handler.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// A timer's occurrence (ms since the Unix epoch).
    Timer { at_ms: u64 },
    /// A message, handed to the handler on stdin.
    Queue { message: Vec<u8> },
    /// A blob put under `name`.
    Blob { blob: BlobId, name: String },
}

impl Origin {
    /// What fired the job.
    pub fn issuer(&self) -> Issuer {
        match self {
            Origin::Schedule(o) => Issuer::Schedule(o.schedule.clone()),
            Origin::Function(f) => Issuer::Function(f.function.clone()),
        }
    }

    /// The occurrence time of a schedule's or a timer's job.
    pub fn occurrence_ms(&self) -> Option<u64> {
        match self {
            Origin::Schedule(o) => Some(o.at_ms),
            Origin::Function(f) => match f.cause {
                Cause::Timer { at_ms } => Some(at_ms),
                _ => None,
            },
        }
    }

    /// The message of a function queue's job.
    pub fn message(&self) -> Option<&[u8]> {
        match self {
            Origin::Function(f) => match &f.cause {
                Cause::Queue { message } => Some(message),
                _ => None,
            },
            Origin::Schedule(_) => None,
        }
    }

    /// The job id an occurrence's job gets whoever fires it; `None` for
    /// a message or a put, whose job takes its submit event's id.
    pub fn job_id(&self) -> Option<JobId> {
        match self {
            Origin::Schedule(o) => Some(crate::schedule::occurrence_job_id(o)),
            Origin::Function(f) => match f.cause {
                Cause::Timer { at_ms } => Some(timer_job_id(&f.function, at_ms)),
                _ => None,
            },
        }
    }
}

/// The job id of function `function`'s timer occurrence at `at_ms`.
pub fn timer_job_id(function: &str, at_ms: u64) -> JobId {
    let mut h = blake3::Hasher::new();
    h.update(b"peerbatch function timer\0");
    h.update(function.as_bytes());
    h.update(&[0]);
    h.update(&at_ms.to_le_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.finalize().as_bytes()[..8]);
    JobId(id)
}

impl Trigger {
    /// The trigger's kind, as `fn deploy --trigger` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Timer(_) => "timer",
            Trigger::Queue => "queue",
            Trigger::Blob { .. } => "blob",
        }
    }
}

impl Cause {
    /// The trigger's name, as `fn deploy --trigger` spells its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Timer { .. } => "timer",
            Cause::Queue { .. } => "queue",
            Cause::Blob { .. } => "blob",
        }
    }

    /// What the handler finds in `PEERBATCH_FN_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PEERBATCH_FN_TRIGGER".to_string(), self.kind().to_string())];
        match self {
            Cause::Timer { at_ms } => env.push(("PEERBATCH_FN_TIME_MS".into(), at_ms.to_string())),
            Cause::Queue { .. } => {}
            Cause::Blob { blob, name } => {
                env.push(("PEERBATCH_FN_BLOB".into(), blob.to_string()));
                env.push(("PEERBATCH_FN_BLOB_NAME".into(), name.clone()));
            }
        }
        env
    }
}

impl Firing {
    /// Whether one of `triggers` fires this firing.
    pub fn fits(&self, triggers: &[Trigger]) -> bool {
        triggers.iter().any(|t| match (t, &self.cause) {
            (Trigger::Timer(rec), Cause::Timer { at_ms }) => rec.has_occurrence(*at_ms),
            (Trigger::Queue, Cause::Queue { message }) => message.len() <= MAX_MESSAGE_BYTES,
            (Trigger::Blob { prefix }, Cause::Blob { name, .. }) => {
                name.len() <= MAX_BLOB_NAME_BYTES && name.starts_with(prefix.as_str())
            }
            _ => false,
        })
    }
}

/// Why a deploy's triggers may not enter the ledger.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("trigger {0} is given twice")]
    Twice(String),
    #[error("timer every {0} ms: the shortest interval is {MIN_INTERVAL_MS} ms")]
    ShortInterval(u64),
    #[error("{0}")]
    Cron(String),
    #[error("blob prefix {0:?}: give 1 to {MAX_PREFIX_BYTES} bytes without control characters")]
    Prefix(String),
    #[error("{0} attempts; give 1 to {MAX_ATTEMPTS}")]
    Attempts(u32),
}

/// Checks a version's triggers and attempts: no trigger twice, a timer's
/// cron parses and its interval is at least [`MIN_INTERVAL_MS`], a blob
/// prefix is 1 to [`MAX_PREFIX_BYTES`] bytes, 1 to [`MAX_ATTEMPTS`] attempts.
pub fn check(triggers: &[Trigger], max_attempts: u32) -> Result<(), TriggerError> {
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(TriggerError::Attempts(max_attempts));
    }
    for (i, t) in triggers.iter().enumerate() {
        if triggers[..i].contains(t) {
            return Err(TriggerError::Twice(format!("{t:?}")));
        }
        match t {
            Trigger::Http | Trigger::Queue => {}
            Trigger::Timer(Recurrence::Every { ms, .. }) if *ms < MIN_INTERVAL_MS => {
                return Err(TriggerError::ShortInterval(*ms))
            }
            Trigger::Timer(Recurrence::Every { .. }) => {}
            Trigger::Timer(Recurrence::Cron(expr)) => {
                parse_cron(expr).map_err(TriggerError::Cron)?;
            }
            Trigger::Blob { prefix } => {
                let bad = prefix.is_empty()
                    || prefix.len() > MAX_PREFIX_BYTES
                    || prefix.chars().any(char::is_control);
                if bad {
                    return Err(TriggerError::Prefix(prefix.clone()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_bounded_and_a_cron_must_parse() {
        let every = |ms| Trigger::Timer(Recurrence::Every { ms, start_ms: 0 });
        assert_eq!(check(&[every(30_000), Trigger::Queue], 5), Ok(()));
        assert_eq!(check(&[every(10)], 5), Err(TriggerError::ShortInterval(10)));
        let cron = |e: &str| Trigger::Timer(Recurrence::Cron(e.into()));
        assert_eq!(check(&[cron("*/5 * * * *")], 5), Ok(()));
        assert!(matches!(
            check(&[cron("61 * * * *")], 5),
            Err(TriggerError::Cron(_))
        ));
        assert!(matches!(
            check(&[cron("every day")], 5),
            Err(TriggerError::Cron(_))
        ));
        let twice = [Trigger::Queue, Trigger::Queue];
        assert!(matches!(check(&twice, 5), Err(TriggerError::Twice(_))));
        let blob = |p: &str| [Trigger::Blob { prefix: p.into() }];
        assert_eq!(check(&blob("uploads/"), 5), Ok(()));
        assert!(check(&blob(""), 5).is_err());
        assert!(check(&blob(&"x".repeat(MAX_PREFIX_BYTES + 1)), 5).is_err());
        assert_eq!(check(&[Trigger::Queue], 0), Err(TriggerError::Attempts(0)));
    }

    #[test]
    fn a_timer_occurrence_has_one_job_id_and_a_firing_fits_only_its_trigger() {
        let at = |function: &str, at_ms| {
            Origin::Function(Box::new(Firing {
                function: function.into(),
                version: EventId([1; 32]),
                cause: Cause::Timer { at_ms },
            }))
        };
        assert_eq!(at("tick", 60_000).job_id(), at("tick", 60_000).job_id());
        assert_ne!(at("tick", 60_000).job_id(), at("tick", 120_000).job_id());
        assert_ne!(at("tick", 60_000).job_id(), at("tock", 60_000).job_id());
        let schedule = Origin::Schedule(Occurrence {
            schedule: "tick".into(),
            at_ms: 60_000,
        });
        assert_ne!(schedule.job_id(), at("tick", 60_000).job_id());
        let put = |name: &str| Firing {
            function: "f".into(),
            version: EventId([1; 32]),
            cause: Cause::Blob {
                blob: BlobId([2; 32]),
                name: name.into(),
            },
        };
        let uploads = [Trigger::Blob {
            prefix: "uploads/".into(),
        }];
        assert!(put("uploads/a.csv").fits(&uploads));
        assert!(!put("other/a.csv").fits(&uploads));
        assert_eq!(Origin::Function(Box::new(put("uploads/a"))).job_id(), None);
        let queue = Firing {
            cause: Cause::Queue {
                message: vec![0; 3],
            },
            ..put("x")
        };
        assert!(!queue.fits(&uploads) && queue.fits(&[Trigger::Queue]));
    }
}
