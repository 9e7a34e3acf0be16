//! The dependency graph of one job: which tasks wait for which.
//!
//! Owns resolving `depends_on` entries (`t1`, ranges `t3..t9`, `*` for
//! every other task of the job — a reducer) and
//! `from_task` inputs to task positions, refusing missing ids, self
//! dependencies, cycles and more than [`MAX_LISTED_DEPENDENCIES`] listed
//! edges, and a topological order for folding task states in one pass.
//! `*` is kept as a mark on its one task, never expanded: the graph holds
//! O(tasks + listed edges) whatever the job. Owns [`JobSpec::validate`]
//! too, the whole check of a job, since its last step is building this
//! graph. Must not decide what a dependency's state means for its
//! dependents ([`crate::job::OnDependencyFailure`]); the ledger's fold
//! does.

use crate::files::Source;
use crate::job::{JobError, JobSpec, MAX_LISTED_DEPENDENCIES};
use std::collections::HashMap;

/// How many of a task's dependencies succeeded, and how many ended
/// without success (failed, cancelled, skipped); the rest are waited for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u32,
    pub broken: u32,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.succeeded += other.succeeded;
        self.broken += other.broken;
    }

    pub fn remove(&mut self, other: Tally) {
        self.succeeded = self.succeeded.saturating_sub(other.succeeded);
        self.broken = self.broken.saturating_sub(other.broken);
    }

    /// Whether some of `total` dependencies have not ended yet.
    pub fn waiting(&self, total: u32) -> bool {
        (self.succeeded as u64 + self.broken as u64) < total as u64
    }
}

/// Edges in compressed rows: row `i` is `targets[starts[i]..starts[i + 1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rows {
    starts: Vec<u32>,
    targets: Vec<u32>,
}

impl Rows {
    fn row(&self, i: u32) -> &[u32] {
        let i = i as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(a), Some(b)) => &self.targets[*a as usize..*b as usize],
            _ => &[],
        }
    }

    /// The reverse of these rows, over `count` positions.
    fn reversed(&self, count: u32) -> Rows {
        let mut starts = vec![0u32; count as usize + 1];
        for t in &self.targets {
            starts[*t as usize + 1] += 1;
        }
        for i in 0..count as usize {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut targets = vec![0u32; self.targets.len()];
        for from in 0..count {
            for to in self.row(from) {
                targets[next[*to as usize] as usize] = from;
                next[*to as usize] += 1;
            }
        }
        Rows { starts, targets }
    }
}

/// Dependencies by task position, with the reverse edges and an order in
/// which every task comes after all of its dependencies. The task that
/// waits for every other (`*`) has no listed dependencies and is every
/// other task's implied dependent; it comes last in the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepGraph {
    count: u32,
    deps: Rows,
    dependents: Rows,
    reducer: Option<u32>,
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
        let count = job.task_count().min(crate::job::MAX_TASKS_PER_JOB) as u32;
        let id_of = |i: u32| job.task(i).map(|t| t.id).unwrap_or_default();
        let ids: HashMap<String, u32> = (0..count).map(|i| (id_of(i), i)).collect();
        let mut resolver = Resolver {
            ids: &ids,
            listed: 0,
        };
        let mut deps = Rows {
            starts: vec![0],
            targets: Vec::new(),
        };
        let mut reducer = None;
        let mut offset = 0u32;
        for group in &job.groups {
            let len = group.len().min((count - offset) as u64) as u32;
            let declared = declares(group.spec());
            for index in offset..offset + len {
                if let Some(task) = job.task(index).filter(|_| declared) {
                    let star = resolver.resolve(&task, index, &mut deps.targets)?;
                    if star {
                        if reducer.is_some() {
                            // Each waits for the other.
                            return Err(JobError::Cycle(task.id));
                        }
                        reducer = Some(index);
                        // `*` already names every other task.
                        deps.targets
                            .truncate(*deps.starts.last().unwrap_or(&0) as usize);
                    }
                }
                deps.starts.push(deps.targets.len() as u32);
            }
            offset += len;
        }
        let dependents = deps.reversed(count);
        if let Some(r) = reducer {
            if let Some(first) = dependents.row(r).first() {
                return Err(JobError::Cycle(id_of(*first)));
            }
        }
        let order = topological(count, &deps, &dependents, reducer);
        if order.len() < count as usize {
            return Err(JobError::Cycle(id_of(on_cycle(&deps, &order, reducer))));
        }
        Ok(Some(DepGraph {
            count,
            deps,
            dependents,
            reducer,
            order,
        }))
    }

    /// The dependencies `index` lists (none for the task that waits for
    /// every other: see [`DepGraph::waits_for_all`]).
    pub fn deps(&self, index: u32) -> &[u32] {
        self.deps.row(index)
    }

    /// Whether `index` waits for every other task of the job (`*`).
    pub fn waits_for_all(&self, index: u32) -> bool {
        self.reducer == Some(index)
    }

    /// How many tasks `index` waits for.
    pub fn dep_count(&self, index: u32) -> u32 {
        if self.waits_for_all(index) {
            self.count - 1
        } else {
            self.deps(index).len() as u32
        }
    }

    /// The tasks waiting for `index`: those that list it, and the one that
    /// waits for every task.
    pub fn dependents(&self, index: u32) -> impl Iterator<Item = u32> + '_ {
        let all = self.reducer.filter(|r| *r != index && index < self.count);
        self.dependents.row(index).iter().copied().chain(all)
    }

    /// Every task position, dependencies first.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Edges held (listed dependencies; `*` holds none).
    pub fn edges(&self) -> usize {
        self.deps.targets.len()
    }
}

impl JobSpec {
    /// Checks what every node will rely on when it expands the job: its
    /// tasks ([`JobSpec::validate_tasks`]) and its dependency graph.
    pub fn validate(&self) -> Result<(), JobError> {
        self.validate_tasks()?;
        DepGraph::build(self).map(|_| ())
    }
}

/// Resolves `depends_on` entries and `from_task` inputs to positions,
/// counting them against [`MAX_LISTED_DEPENDENCIES`].
struct Resolver<'a> {
    ids: &'a HashMap<String, u32>,
    listed: u64,
}

impl Resolver<'_> {
    /// Appends what `task` lists (sorted, each once) to `out`; returns
    /// whether it waits for every other task (`*`).
    fn resolve(
        &mut self,
        task: &crate::job::ResolvedTask,
        index: u32,
        out: &mut Vec<u32>,
    ) -> Result<bool, JobError> {
        let from = out.len();
        let mut star = false;
        for entry in task.dependency_refs() {
            if entry == "*" {
                star = true;
                continue;
            }
            self.entry(&task.id, entry, out)?;
        }
        out[from..].sort_unstable();
        let mut mine = out.split_off(from);
        mine.dedup();
        if mine.binary_search(&index).is_ok() {
            return Err(JobError::SelfDependency(task.id.clone()));
        }
        out.extend(mine);
        Ok(star)
    }

    /// Adds the positions one `depends_on` entry names.
    fn entry(&mut self, task: &str, entry: &str, out: &mut Vec<u32>) -> Result<(), JobError> {
        let missing = || JobError::MissingDependency {
            task: task.to_string(),
            dep: entry.to_string(),
        };
        if let Some(pos) = self.ids.get(entry) {
            self.count(1)?;
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
        self.count((hi_n - lo_n + 1) as u64)?;
        for n in lo_n..=hi_n {
            let id = format!("{prefix}{n}");
            let pos = self
                .ids
                .get(id.as_str())
                .ok_or_else(|| JobError::MissingDependency {
                    task: task.to_string(),
                    dep: id.clone(),
                })?;
            out.push(*pos);
        }
        Ok(())
    }

    fn count(&mut self, more: u64) -> Result<(), JobError> {
        self.listed += more;
        if self.listed > MAX_LISTED_DEPENDENCIES {
            return Err(JobError::TooManyDependencies);
        }
        Ok(())
    }
}

/// `t12` → (`t`, 12).
fn split_number(id: &str) -> Option<(&str, i64)> {
    let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, number) = id.split_at(id.len() - digits);
    Some((prefix, number.parse().ok()?))
}

/// Kahn's algorithm over the listed edges: every task whose dependencies
/// all come before it, then the reducer (which waits for all of them). On
/// a cycle, the tasks on and behind it are left out.
fn topological(count: u32, deps: &Rows, dependents: &Rows, reducer: Option<u32>) -> Vec<u32> {
    let mut waiting: Vec<u32> = (0..count).map(|i| deps.row(i).len() as u32).collect();
    let mut order: Vec<u32> = (0..count)
        .filter(|i| waiting[*i as usize] == 0 && Some(*i) != reducer)
        .collect();
    let mut next = 0;
    while next < order.len() {
        let done = order[next];
        next += 1;
        for d in dependents.row(done) {
            waiting[*d as usize] -= 1;
            if waiting[*d as usize] == 0 {
                order.push(*d);
            }
        }
    }
    if let Some(r) = reducer.filter(|_| order.len() + 1 == count as usize) {
        order.push(r);
    }
    order
}

/// A task on a cycle: from any task left out of a partial order (but the
/// reducer, left out behind any cycle), follow left-out dependencies until
/// one repeats.
fn on_cycle(deps: &Rows, partial: &[u32], reducer: Option<u32>) -> u32 {
    let count = deps.starts.len() - 1;
    let mut ordered = vec![false; count];
    for t in partial.iter().chain(&reducer) {
        ordered[*t as usize] = true;
    }
    let mut at = ordered.iter().position(|o| !o).unwrap_or(0);
    let mut seen = vec![false; count];
    while !seen[at] {
        seen[at] = true;
        match deps.row(at as u32).iter().find(|d| !ordered[**d as usize]) {
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
        assert_eq!(g.dependents(4).collect::<Vec<_>>(), [1, 2, 3]);
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

    fn array(id: &str, deps: &[&str], n: i64) -> TaskGroup {
        let mut template = TaskSpec::new(id, Command::Shell("true".into()), 0);
        template.depends_on = deps.iter().map(|d| d.to_string()).collect();
        TaskGroup::Array {
            template,
            start: 0,
            end: n - 1,
            step: 1,
        }
    }

    #[test]
    fn a_reducer_on_star_over_100000_tasks_holds_no_edge_per_task() {
        let n = 100_000;
        let j = job(vec![array("map", &[], n), task("reduce", &["*", "map7"])]);
        j.validate().unwrap();
        let g = DepGraph::build(&j).unwrap().unwrap();
        let reducer = n as u32;
        assert_eq!(g.edges(), 0, "`*` is a mark, not n edges");
        assert!(g.waits_for_all(reducer) && !g.waits_for_all(0));
        assert_eq!(g.dep_count(reducer), reducer);
        assert_eq!(g.dependents(12).collect::<Vec<_>>(), [reducer]);
        assert_eq!(g.dependents(reducer).count(), 0);
        assert_eq!(g.order().len(), n as usize + 1);
        assert_eq!(g.order().last(), Some(&reducer));
    }

    #[test]
    fn a_job_whose_every_task_waits_for_every_other_is_refused_without_expanding() {
        // Expanded, this is 10^10 edges: the node ran out of memory.
        let j = job(vec![array("t", &["*"], 100_000)]);
        assert_eq!(j.validate(), Err(JobError::Cycle("t1".into())));
        let through = job(vec![task("all", &["*"]), task("x", &["all"])]);
        assert_eq!(through.validate(), Err(JobError::Cycle("x".into())));
        let behind = job(vec![
            task("a", &["b"]),
            task("b", &["a"]),
            task("z", &["*"]),
        ]);
        assert!(matches!(behind.validate(), Err(JobError::Cycle(t)) if t != "z"));
    }

    #[test]
    fn listing_more_dependencies_than_the_limit_is_refused_naming_it() {
        // Two arrays joined all to all: 1,100 × 1,000 listed edges.
        let j = job(vec![
            array("a", &[], 1_100),
            array("b", &["a0..a1099"], 1_000),
        ]);
        let err = j.validate().unwrap_err();
        assert_eq!(err, JobError::TooManyDependencies);
        assert!(err.to_string().contains("1048576"), "{err}");
        let fits = job(vec![
            array("a", &[], 1_000),
            array("b", &["a0..a999"], 1_000),
        ]);
        assert_eq!(fits.validate(), Ok(()));
    }
}
