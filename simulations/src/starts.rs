//! What must hold when a node starts an attempt, judged on that node's
//! own ledger at that moment: it shows the attempt running; for a first
//! attempt, every task the task waits for (`depends_on`, `*`) has ended,
//! and succeeded unless the job runs its dependents anyway, and so has
//! every task of each job of its `after` that the node still holds. A
//! retry is not held back by what it waits for (the fold gates attempt 0
//! only: the first attempt's node saw them end), so a node behind on
//! them may run it.
//!
//! Owns these checks. Must not change the world: it only reads a core.
//! Each returns the broken invariant as text beginning with its kind.

use crate::disk::SimStore;
use peerbatch_protocol::core::Progress;
use peerbatch_protocol::job::OnDependencyFailure;
use peerbatch_protocol::{Core, JobId, TaskRef, TaskState};

/// Checks a start of `attempt` of `task` on `core`'s node.
pub fn check_start(core: &Core<SimStore>, task: TaskRef, attempt: u32) -> Result<(), String> {
    let view = core.view(task);
    let shown = view.as_ref().map(|v| (v.state, v.attempt));
    if shown != Some((TaskState::Running, attempt)) {
        return Err(format!(
            "start: attempt {attempt} of {task:?} started on a node that shows it as {shown:?}"
        ));
    }
    if attempt > 0 {
        return Ok(());
    }
    let Some(record) = core.ledger().job(&task.job) else {
        return Err(format!(
            "start: {task:?} started on a node that does not know its job"
        ));
    };
    let strict = record.spec.on_dependency_failure != OnDependencyFailure::Run;
    if let Some(graph) = &record.deps {
        let others = record.task_count - 1;
        if graph.waits_for_all(task.index) {
            ended(core.progress(&task.job), others, strict)
                .map_err(|why| format!("deps: {task:?} waits for every other task, {why}"))?;
        }
        for dep in graph.deps(task.index) {
            let dep = TaskRef {
                job: task.job,
                index: *dep,
            };
            let state = core.view(dep).map(|v| v.state);
            let fine =
                state.is_some_and(|s| s == TaskState::Succeeded || (!strict && s.terminal()));
            if !fine {
                return Err(format!("deps: {task:?} started while {dep:?} is {state:?}"));
            }
        }
    }
    for after in &record.spec.after {
        check_after(core, task, after, strict)?;
    }
    Ok(())
}

/// Every task of job `after` ended (and succeeded, if `strict`), unless
/// the node no longer holds the job.
fn check_after(
    core: &Core<SimStore>,
    task: TaskRef,
    after: &JobId,
    strict: bool,
) -> Result<(), String> {
    let Some(other) = core.ledger().job(after) else {
        return match core.ledger().is_forgotten(after) {
            true => Ok(()),
            false => Err(format!(
                "after: {task:?} started before its node knew job {after}"
            )),
        };
    };
    ended(core.progress(after), other.task_count, strict)
        .map_err(|why| format!("after: {task:?} started after job {after}, but {why}"))
}

/// Whether at least `count` tasks of `progress` ended (succeeded, if
/// `strict`); if not, why.
fn ended(progress: Progress, count: u32, strict: bool) -> Result<(), String> {
    let have = if strict {
        progress.succeeded
    } else {
        progress.done()
    };
    if have < count {
        let what = if strict { "succeeded" } else { "ended" };
        return Err(format!(
            "only {have} of {count} tasks {what} ({progress:?})"
        ));
    }
    Ok(())
}
