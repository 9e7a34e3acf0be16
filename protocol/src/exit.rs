//! Exit conditions: what an attempt's exit code means for its task and job.
//!
//! Owns how an attempt ended (`Outcome`, `TaskResult`), the rule type (`exit_codes`
//! ranges mapped to actions) and the one
//! function that turns an outcome into a verdict under those rules, used by
//! the fold and by the node deciding whether to store outputs. Must not
//! look at retries left or other attempts; the fold does.

use crate::ids::{BlobId, TaskRef};
use serde::{Deserialize, Serialize};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    FailedToStart(String),
    /// The process exited 0 but its outputs could not be stored.
    OutputsFailed(String),
}

/// The result of one attempt, as its node reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: TaskRef,
    pub attempt: u32,
    pub outcome: Outcome,
    pub stdout: Option<BlobId>,
    pub stderr: Option<BlobId>,
    /// A tree of the files the task's output patterns matched.
    pub outputs: Option<BlobId>,
    pub duration_ms: u64,
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// The exit code a user sees: the process's own, or 128 + signal.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Exited(code) => Some(*code),
            Outcome::Signaled(sig) => Some(128 + sig),
            Outcome::TimedOut | Outcome::FailedToStart(_) | Outcome::OutputsFailed(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitAction {
    /// Count the attempt as failed and run it again while retries are left.
    Retry,
    /// Fail the task now, whatever retries are left.
    FailTask,
    /// Fail the task and skip every task of the job that has not ended.
    FailJob,
    /// Count the attempt as a success.
    Ignore,
}

/// Exit codes `from..=to` mean `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRule {
    pub from: i32,
    pub to: i32,
    pub action: ExitAction,
}

/// What one attempt's outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retry,
    FailTask,
    FailJob,
}

/// The first rule whose range holds the exit code decides; without one,
/// exit 0 is a success and anything else is retried. Outcomes without an
/// exit code (timed out, failed to start or to store outputs) are retried.
pub fn verdict(outcome: &Outcome, rules: &[ExitRule]) -> Verdict {
    let Some(code) = outcome
        .exit_code()
        .filter(|_| !matches!(outcome, Outcome::OutputsFailed(_)))
    else {
        return Verdict::Retry;
    };
    match rules.iter().find(|r| (r.from..=r.to).contains(&code)) {
        Some(r) => match r.action {
            ExitAction::Retry => Verdict::Retry,
            ExitAction::FailTask => Verdict::FailTask,
            ExitAction::FailJob => Verdict::FailJob,
            ExitAction::Ignore => Verdict::Success,
        },
        None if code == 0 => Verdict::Success,
        None => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_codes_and_defaults_apply_otherwise() {
        let rules = [
            ExitRule {
                from: 3,
                to: 3,
                action: ExitAction::Ignore,
            },
            ExitRule {
                from: 10,
                to: 19,
                action: ExitAction::FailTask,
            },
            ExitRule {
                from: 42,
                to: 42,
                action: ExitAction::FailJob,
            },
            ExitRule {
                from: 0,
                to: 0,
                action: ExitAction::Retry,
            },
        ];
        assert_eq!(verdict(&Outcome::Exited(3), &rules), Verdict::Success);
        assert_eq!(verdict(&Outcome::Exited(12), &rules), Verdict::FailTask);
        assert_eq!(verdict(&Outcome::Exited(42), &rules), Verdict::FailJob);
        assert_eq!(verdict(&Outcome::Exited(0), &rules), Verdict::Retry);
        assert_eq!(verdict(&Outcome::Exited(0), &[]), Verdict::Success);
        assert_eq!(verdict(&Outcome::Exited(1), &[]), Verdict::Retry);
        assert_eq!(verdict(&Outcome::TimedOut, &rules), Verdict::Retry);
        assert_eq!(verdict(&Outcome::Signaled(9), &[]), Verdict::Retry);
    }
}
