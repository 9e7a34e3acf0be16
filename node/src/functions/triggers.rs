//! Function triggers that go through the ledger, on this node: enqueuing
//! a message, a blob put under a trigger's prefix, and what an attempt of
//! such a job needs besides its task (the message on stdin, the back-off
//! before a retry). Timers are fired by the core (`core::wall`).
//!
//! Owns parsing and printing `--trigger` values and the checks an enqueue
//! passes (message size, backlog). Each firing is submitted as the one-task
//! job the protocol's `FunctionSpec::fired_job` describes, so it is
//! claimed, leased, reclaimed and retried like any task and counts only if
//! the fold agrees it is that job. Must not decide when a timer fires nor
//! run handlers (the executor runs the task).

use peerbatch_protocol::function::{FunctionSpec, FunctionView, Trigger};
use peerbatch_protocol::job::JobError;
use peerbatch_protocol::schedule::Recurrence;
use peerbatch_protocol::trigger::{
    parse_cron, Cause, Firing, Origin, MAX_BACKLOG, MAX_BLOB_NAME_BYTES, MAX_MESSAGE_BYTES,
};
use peerbatch_protocol::{BlobId, Core, EventId, EventStore, JobId, Millis};
use std::time::Duration;

/// The wait before attempt 1 of a fired job; it doubles at each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a trigger could not fire.
#[derive(Debug, thiserror::Error)]
pub enum FireRefused {
    #[error("no function {0:?}")]
    Unknown(String),
    #[error("function {0} serves no version (it was removed)")]
    Removed(String),
    #[error("function {name} has no {kind} trigger; deploy it with --trigger {kind}")]
    NoTrigger { name: String, kind: &'static str },
    #[error("the message is {len} bytes; a message is at most {MAX_MESSAGE_BYTES} bytes")]
    TooLarge { len: usize },
    #[error("function {name} has {count} messages waiting or running, at most {MAX_BACKLOG}; enqueue more once some are done")]
    Backlog { name: String, count: usize },
    #[error("the blob name is {len} bytes; at most {MAX_BLOB_NAME_BYTES}")]
    LongName { len: usize },
    #[error(transparent)]
    Job(#[from] JobError),
}

/// A `--trigger`: `http`, `queue`, `timer:CRON` (5 fields, or 6 with
/// seconds first), `timer:every DURATION` (on a grid from the epoch) or
/// `blob:PREFIX`.
pub fn parse(text: &str) -> Result<Trigger, String> {
    let text = text.trim();
    if let Some(prefix) = text.strip_prefix("blob:") {
        return Ok(Trigger::Blob {
            prefix: prefix.to_string(),
        });
    }
    if let Some(when) = text.strip_prefix("timer:") {
        let when = when.trim();
        if let Some(every) = when.strip_prefix("every") {
            let ms = crate::jobfile::parse_duration_ms(every.trim())
                .map_err(|e| format!("trigger {text:?}: {e}"))?;
            return Ok(Trigger::Timer(Recurrence::Every { ms, start_ms: 0 }));
        }
        parse_cron(when).map_err(|e| format!("trigger {text:?}: {e}"))?;
        return Ok(Trigger::Timer(Recurrence::Cron(when.to_string())));
    }
    match text {
        "http" => Ok(Trigger::Http),
        "queue" => Ok(Trigger::Queue),
        _ => Err(format!(
            "trigger {text:?}: give http, queue, timer:\"CRON\", timer:\"every 30s\" or blob:PREFIX"
        )),
    }
}

/// A trigger as `parse` reads it.
pub fn text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Http => "http".into(),
        Trigger::Queue => "queue".into(),
        Trigger::Timer(Recurrence::Cron(expr)) => format!("timer:{expr}"),
        Trigger::Timer(Recurrence::Every { ms, .. }) => {
            format!("timer:every {}", crate::sandbox::duration_text(*ms))
        }
        Trigger::Blob { prefix } => format!("blob:{prefix}"),
    }
}

/// The serving version of function `name`: its deploy event and spec.
fn serving<S: EventStore>(
    core: &Core<S>,
    name: &str,
    wall_ms: u64,
) -> Result<(EventId, FunctionSpec), FireRefused> {
    let view = (core.ledger().function(name, wall_ms))
        .ok_or_else(|| FireRefused::Unknown(name.to_string()))?;
    let v = (view.serving()).ok_or_else(|| FireRefused::Removed(name.to_string()))?;
    Ok((v.event, v.spec.clone()))
}

/// Adds `message` to function `name`'s queue: a job through the ledger.
pub fn enqueue<S: EventStore>(
    core: &mut Core<S>,
    now: Millis,
    wall_ms: u64,
    name: &str,
    message: Vec<u8>,
) -> Result<(JobId, EventId), FireRefused> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(FireRefused::TooLarge { len: message.len() });
    }
    let (version, spec) = serving(core, name, wall_ms)?;
    if !spec.triggers.contains(&Trigger::Queue) {
        let (name, kind) = (name.to_string(), "queue");
        return Err(FireRefused::NoTrigger { name, kind });
    }
    let count = backlog(core, name);
    if count >= MAX_BACKLOG {
        let name = name.to_string();
        return Err(FireRefused::Backlog { name, count });
    }
    let firing = Firing {
        function: name.to_string(),
        version,
        cause: Cause::Queue { message },
    };
    Ok(core.submit(now, spec.fired_job(&firing), wall_ms)?)
}

/// Messages of function `name` not yet done or dead.
fn backlog<S: EventStore>(core: &Core<S>, name: &str) -> usize {
    let ledger = core.ledger();
    let queued = ledger.function_jobs(name).filter(|j| {
        let queue = j.spec.origin.as_ref().and_then(Origin::message).is_some();
        let p = core.progress(&j.id);
        queue && p.pending + p.blocked + p.running > 0
    });
    queued.count()
}

/// Invokes every function whose blob trigger's prefix `name` starts
/// with, for blob `blob` just put: the jobs submitted, by function.
pub fn blob_put<S: EventStore>(
    core: &mut Core<S>,
    now: Millis,
    wall_ms: u64,
    blob: BlobId,
    name: &str,
) -> Result<Vec<(String, JobId)>, FireRefused> {
    if name.len() > MAX_BLOB_NAME_BYTES {
        return Err(FireRefused::LongName { len: name.len() });
    }
    let ledger = core.ledger();
    let views: Vec<FunctionView> = (ledger.function_names())
        .filter_map(|f| ledger.function(f, wall_ms))
        .collect();
    let mut fired = Vec::new();
    for view in views {
        let Some(v) = view.serving() else { continue };
        let firing = Firing {
            function: view.name.clone(),
            version: v.event,
            cause: Cause::Blob {
                blob,
                name: name.to_string(),
            },
        };
        if v.spec.fires(&firing) {
            let (job, _) = core.submit(now, v.spec.fired_job(&firing), wall_ms)?;
            fired.push((view.name.clone(), job));
        }
    }
    Ok(fired)
}

/// What an attempt of a fired job needs besides its task.
#[derive(Default)]
pub struct Prelude {
    /// Handed to the handler on stdin (a queue message).
    pub stdin: Option<Vec<u8>>,
    /// Waited before the handler starts: the back-off of a retry.
    pub delay: Duration,
}

/// The prelude of attempt `attempt` of a job from `origin`, if it is a
/// function's: a retry waits 0.5 s, 1 s, 2 s, … up to a minute.
pub fn prelude(origin: Option<&Origin>, attempt: u32) -> Option<Prelude> {
    let Some(Origin::Function(firing)) = origin else {
        return None;
    };
    let stdin = match &firing.cause {
        Cause::Queue { message } => Some(message.clone()),
        _ => None,
    };
    let delay = match attempt {
        0 => Duration::ZERO,
        a => FIRST_BACKOFF
            .saturating_mul(1 << (a - 1).min(16))
            .min(MAX_BACKOFF),
    };
    Some(Prelude { stdin, delay })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_read_back_as_they_are_written() {
        for t in ["http", "queue", "timer:*/5 * * * *", "blob:uploads/"] {
            assert_eq!(text(&parse(t).unwrap()), t);
        }
        let every = parse("timer:every 30s").unwrap();
        let ms = 30_000;
        assert_eq!(every, Trigger::Timer(Recurrence::Every { ms, start_ms: 0 }));
        assert!(parse("timer:61 * * * *").unwrap_err().contains("timer:61"));
        assert!(parse("timer:every soon").is_err());
        assert!(parse("cron").unwrap_err().contains("give http, queue"));
    }

    #[test]
    fn a_retry_backs_off_doubling_up_to_a_minute() {
        let firing = Origin::Function(Box::new(Firing {
            function: "f".into(),
            version: EventId([0; 32]),
            cause: Cause::Queue {
                message: b"hi".to_vec(),
            },
        }));
        let delay = |a| prelude(Some(&firing), a).unwrap().delay;
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(1), Duration::from_millis(500));
        assert_eq!(delay(3), Duration::from_secs(2));
        assert_eq!(delay(40), MAX_BACKOFF);
        let stdin = prelude(Some(&firing), 0).unwrap().stdin;
        assert_eq!(stdin.as_deref(), Some(&b"hi"[..]));
        assert!(prelude(None, 1).is_none());
    }
}
