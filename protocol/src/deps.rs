//! The dependency graph of one job: which tasks wait for which.
//!
//! Owns resolving `depends_on` entries (`t1`, ranges `t3..t9`, `*` for
//! every other task of the job — a reducer) and
//! `from_task` inputs to task positions, refusing missing ids, self
//! dependencies and cycles, and a topological order for folding task states
//! in one pass. Must not decide what a dependency's state means for its
//! dependents; the ledger's fold does.

use crate::files::Source;
use crate::job::{JobError, JobSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a dependency that will never succeed (failed, cancelled or
/// skipped — a task of `depends_on`, or a job of `after`) makes of the
/// tasks waiting for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnDependencyFailure {
    /// They are skipped (never run); the job can still succeed otherwise.
    #[default]
    Skip,
    /// They fail, and so does their job.
    Fail,
    /// They run anyway, as if it had succeeded (Azure Batch's `satisfy`):
    /// for a reducer or a report that should see what did work.
    Run,
}

/// Dependencies by task position, with the reverse edges and an order in
/// which every task comes after all of its dependencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepGraph {
    deps: Vec<Vec<u32>>,
    dependents: Vec<Vec<u32>>,
    order: Vec<u32>,
}

impl DepGraph {
    /// The graph of a job, or `None` when no task depends on another.
    pub fn build(job: &JobSpec) -> Result<Option<DepGraph>, JobError> {
        let declares = |s: &crate::job::TaskSpec| {
            !s.depends_on.is_empty() || s.inputs.iter().any(|i| matches!(i.source, Source::Task(_)))
        };
        if !job.groups.iter().any(|g| declares(g.spec())) {
            return Ok(None);
        }
        let count = job.task_count() as u32;
        let tasks: Vec<_> = (0..count).filter_map(|i| job.task(i)).collect();
        let ids: HashMap<&str, u32> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i as u32))
            .collect();
        let mut deps = vec![Vec::new(); count as usize];
        for (index, task) in tasks.iter().enumerate() {
            let index = index as u32;
            let mut mine = Vec::new();
            for entry in task.dependency_refs() {
                if entry == "*" {
                    mine.extend((0..count).filter(|i| *i != index));
                    continue;
                }
                resolve_entry(&ids, &task.id, entry, &mut mine)?;
            }
            mine.sort_unstable();
            mine.dedup();
            if mine.binary_search(&index).is_ok() {
                return Err(JobError::SelfDependency(task.id.clone()));
            }
            deps[index as usize] = mine;
        }
        let mut dependents = vec![Vec::new(); count as usize];
        for (task, ds) in deps.iter().enumerate() {
            for d in ds {
                dependents[*d as usize].push(task as u32);
            }
        }
        let order = topological(&deps, &dependents);
        if order.len() < deps.len() {
            let stuck = on_cycle(&deps, &order);
            let id = tasks.get(stuck as usize).map(|t| t.id.clone());
            return Err(JobError::Cycle(id.unwrap_or_default()));
        }
        Ok(Some(DepGraph {
            deps,
            dependents,
            order,
        }))
    }

    pub fn deps(&self, index: u32) -> &[u32] {
        self.deps.get(index as usize).map_or(&[], Vec::as_slice)
    }

    pub fn dependents(&self, index: u32) -> &[u32] {
        self.dependents
            .get(index as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Every task position, dependencies first.
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

/// Adds the positions one `depends_on` entry names.
fn resolve_entry(
    ids: &HashMap<&str, u32>,
    task: &str,
    entry: &str,
    out: &mut Vec<u32>,
) -> Result<(), JobError> {
    let missing = || JobError::MissingDependency {
        task: task.to_string(),
        dep: entry.to_string(),
    };
    if let Some(pos) = ids.get(entry) {
        out.push(*pos);
        return Ok(());
    }
    let (lo, hi) = entry.split_once("..").ok_or_else(missing)?;
    let (prefix, lo_n) = split_number(lo).ok_or_else(missing)?;
    let hi_n = match split_number(hi) {
        Some((p, n)) if p == prefix || p.is_empty() => n,
        _ => return Err(missing()),
    };
    if hi_n < lo_n || hi_n - lo_n >= crate::job::MAX_TASKS_PER_JOB as i64 {
        return Err(missing());
    }
    for n in lo_n..=hi_n {
        let id = format!("{prefix}{n}");
        let pos = ids
            .get(id.as_str())
            .ok_or_else(|| JobError::MissingDependency {
                task: task.to_string(),
                dep: id.clone(),
            })?;
        out.push(*pos);
    }
    Ok(())
}

/// `t12` → (`t`, 12).
fn split_number(id: &str) -> Option<(&str, i64)> {
    let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, number) = id.split_at(id.len() - digits);
    Some((prefix, number.parse().ok()?))
}

/// Kahn's algorithm: every task whose dependencies all come before it. On
/// a cycle, the tasks on and behind it are left out.
fn topological(deps: &[Vec<u32>], dependents: &[Vec<u32>]) -> Vec<u32> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut order: Vec<u32> = (0..deps.len() as u32)
        .filter(|i| waiting[*i as usize] == 0)
        .collect();
    let mut next = 0;
    while next < order.len() {
        let done = order[next];
        next += 1;
        for d in &dependents[done as usize] {
            waiting[*d as usize] -= 1;
            if waiting[*d as usize] == 0 {
                order.push(*d);
            }
        }
    }
    order
}

/// A task on a cycle: from any task left out of a partial order, follow
/// left-out dependencies until one repeats.
fn on_cycle(deps: &[Vec<u32>], partial: &[u32]) -> u32 {
    let mut ordered = vec![false; deps.len()];
    for t in partial {
        ordered[*t as usize] = true;
    }
    let mut at = ordered.iter().position(|o| !o).unwrap_or(0);
    let mut seen = vec![false; deps.len()];
    while !seen[at] {
        seen[at] = true;
        match deps[at].iter().find(|d| !ordered[**d as usize]) {
            Some(d) => at = *d as usize,
            None => break,
        }
    }
    at as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Command, TaskGroup, TaskSpec};

    fn task(id: &str, deps: &[&str]) -> TaskGroup {
        TaskGroup::One(TaskSpec {
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..TaskSpec::new(id, Command::Shell("true".into()), 0)
        })
    }

    fn job(groups: Vec<TaskGroup>) -> JobSpec {
        JobSpec::new("j", groups)
    }

    #[test]
    fn ranges_and_arrays_resolve_and_order_puts_dependencies_first() {
        let mut map = TaskSpec::new("map", Command::Shell("true".into()), 0);
        map.depends_on = vec!["split".into()];
        let j = job(vec![
            task("reduce", &["map1..map3"]),
            TaskGroup::Array {
                template: map,
                start: 1,
                end: 3,
                step: 1,
            },
            task("split", &[]),
        ]);
        j.validate().unwrap();
        let g = DepGraph::build(&j).unwrap().unwrap();
        assert_eq!(g.deps(0), &[1, 2, 3]);
        assert_eq!(g.deps(2), &[4]);
        assert_eq!(g.dependents(4), &[1, 2, 3]);
        let pos = |t: u32| g.order().iter().position(|x| *x == t).unwrap();
        assert!(pos(4) < pos(1) && pos(1) < pos(0));
        assert_eq!(DepGraph::build(&job(vec![task("a", &[])])).unwrap(), None);
    }

    #[test]
    fn missing_self_and_cyclic_dependencies_are_refused() {
        let err = job(vec![task("a", &["b"])]).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "task \"a\" depends on \"b\", which is not a task of this job"
        );
        let err = job(vec![task("a", &["a"])]).validate().unwrap_err();
        assert_eq!(err, JobError::SelfDependency("a".into()));
        let cyc = job(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("d", &["a"]),
        ]);
        assert!(matches!(cyc.validate(), Err(JobError::Cycle(t)) if t != "d"));
        let err = job(vec![task("t1", &[]), task("z", &["t1..t3"])])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("\"t2\""), "{err}");
    }
}
