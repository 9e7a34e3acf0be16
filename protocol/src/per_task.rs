//! Values kept per task for many jobs, each job's in one block.
//!
//! Owns [`PerTask`]: once a job's task count is known (`size_job`), its
//! tasks' values sit in one vector indexed by task, so a live
//! 100,000-task job is one allocation rather than 100,000 small ones
//! scattered among the node's long-lived allocations, and when the job
//! leaves memory its pages go back to the system whole (small blocks left
//! behind pin the pages they share; see BENCHMARKS "Memory over finished
//! work"). The block is made when the job's first value comes, not when
//! it is sized: a node that starts installs every stored job before it
//! reads their tasks' facts, and ten 100,000-task jobs' empty blocks were
//! 280 MiB of its peak. Values for a job not sized yet, or for an index
//! past its count (which only a faulty or hostile peer writes), are kept
//! in a sorted map beside the vector, so no event can make a block larger
//! than its job. Must not know what the values are or when jobs are sized
//! or dropped.

use crate::ids::{JobId, TaskRef};
use std::collections::BTreeMap;

/// Per-task values of many jobs; iteration is in task order.
#[derive(Clone, Debug)]
pub(crate) struct PerTask<T> {
    jobs: BTreeMap<JobId, Block<T>>,
    len: usize,
}

/// One job's values: indexes below `dense.len()` in `dense`, any other in
/// `sparse` (so every index in `sparse` is at least `dense.len()`).
/// `dense` is `size` long once the job has a value below `size`, empty
/// before.
#[derive(Clone, Debug)]
struct Block<T> {
    size: u32,
    dense: Vec<Option<T>>,
    sparse: BTreeMap<u32, T>,
}

impl<T> Default for PerTask<T> {
    fn default() -> Self {
        PerTask {
            jobs: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> Default for Block<T> {
    fn default() -> Self {
        Block {
            size: 0,
            dense: Vec::new(),
            sparse: BTreeMap::new(),
        }
    }
}

impl<T> Block<T> {
    fn slot(&mut self, index: u32) -> Option<&mut Option<T>> {
        self.dense.get_mut(index as usize)
    }

    /// Makes `dense` `size` long (it never shrinks), moving in the values
    /// `sparse` holds below that.
    fn fill(&mut self) {
        let size = self.size as usize;
        if self.dense.len() >= size {
            return;
        }
        self.dense.reserve_exact(size - self.dense.len());
        self.dense.resize_with(size, || None);
        let moved = self.sparse.split_off(&self.size);
        for (index, value) in std::mem::replace(&mut self.sparse, moved) {
            self.dense[index as usize] = Some(value);
        }
    }
}

impl<T> PerTask<T> {
    /// How many tasks have a value.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Gives job `job` one block of `count` slots (a block never shrinks),
    /// made now if the job has values (those below `count` move in), else
    /// when its first value below `count` comes.
    pub(crate) fn size_job(&mut self, job: JobId, count: u32) {
        let block = self.jobs.entry(job).or_default();
        block.size = block.size.max(count);
        if !block.sparse.is_empty() || !block.dense.is_empty() {
            block.fill();
        }
    }

    pub(crate) fn get(&self, task: &TaskRef) -> Option<&T> {
        let block = self.jobs.get(&task.job)?;
        match block.dense.get(task.index as usize) {
            Some(slot) => slot.as_ref(),
            None => block.sparse.get(&task.index),
        }
    }

    pub(crate) fn contains(&self, task: &TaskRef) -> bool {
        self.get(task).is_some()
    }

    /// Sets `task`'s value, returning the one it replaces.
    pub(crate) fn insert(&mut self, task: TaskRef, value: T) -> Option<T> {
        let block = self.jobs.entry(task.job).or_default();
        if task.index < block.size {
            block.fill();
        }
        let old = match block.slot(task.index) {
            Some(slot) => slot.replace(value),
            None => block.sparse.insert(task.index, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// `task`'s value, a default one first if it has none.
    pub(crate) fn get_or_default(&mut self, task: TaskRef) -> &mut T
    where
        T: Default,
    {
        if !self.contains(&task) {
            self.insert(task, T::default());
        }
        let block = self.jobs.get_mut(&task.job).expect("inserted above");
        match block.dense.get_mut(task.index as usize) {
            Some(slot) => slot.as_mut().expect("inserted above"),
            None => block.sparse.get_mut(&task.index).expect("inserted above"),
        }
    }

    /// Drops every value of job `job`, and its block (only this drops a
    /// block: a job keeps its size while it has one).
    pub(crate) fn remove_job(&mut self, job: &JobId) {
        if let Some(block) = self.jobs.remove(job) {
            self.len -= block.dense.iter().flatten().count() + block.sparse.len();
        }
    }

    /// Every value, in task order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.jobs.values().flat_map(|b| {
            let dense = b.dense.iter().flatten();
            dense.chain(b.sparse.values())
        })
    }

    /// Job `job`'s tasks with a value, in index order.
    pub(crate) fn job(&self, job: JobId) -> impl Iterator<Item = (TaskRef, &T)> {
        let block = self.jobs.get(&job);
        let dense = block.into_iter().flat_map(|b| b.dense.iter().enumerate());
        let dense = dense.filter_map(|(i, v)| Some((i as u32, v.as_ref()?)));
        let sparse = block.into_iter().flat_map(|b| b.sparse.iter());
        let sparse = sparse.map(|(i, v)| (*i, v));
        dense
            .chain(sparse)
            .map(move |(index, v)| (TaskRef { job, index }, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: JobId = JobId([7; 8]);

    fn task(index: u32) -> TaskRef {
        TaskRef { job: JOB, index }
    }

    #[test]
    fn values_before_and_after_sizing_read_the_same_in_task_order() {
        let mut t = PerTask::default();
        t.insert(task(5), "five");
        t.insert(task(1), "one");
        t.insert(task(900), "past the count");
        t.size_job(JOB, 10);
        t.insert(task(3), "three");
        assert_eq!(t.len(), 4);
        let all: Vec<(u32, &str)> = t.job(JOB).map(|(r, v)| (r.index, *v)).collect();
        assert_eq!(
            all,
            [
                (1, "one"),
                (3, "three"),
                (5, "five"),
                (900, "past the count")
            ]
        );
        assert_eq!(t.get(&task(5)), Some(&"five"));
        assert_eq!(t.get(&task(2)), None);
        assert_eq!(t.insert(task(900), "again"), Some("past the count"));
        assert_eq!(t.len(), 4);
        assert_eq!(t.values().count(), 4);
    }

    #[test]
    fn a_sized_job_gets_its_block_with_its_first_value() {
        let mut t = PerTask::default();
        t.size_job(JOB, 100_000);
        t.insert(task(100_000), "past the count");
        assert!(t.jobs[&JOB].dense.is_empty());
        t.insert(task(7), "seven");
        assert_eq!(t.jobs[&JOB].dense.len(), 100_000);
        assert_eq!(t.get(&task(7)), Some(&"seven"));
        assert_eq!(t.get(&task(100_000)), Some(&"past the count"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_removed_job_leaves_no_value_and_no_count() {
        let mut t = PerTask::default();
        t.size_job(JOB, 4);
        *t.get_or_default(task(2)) += 1u32;
        *t.get_or_default(task(2)) += 1;
        assert_eq!(t.get(&task(2)), Some(&2));
        t.insert(task(9), 1);
        assert_eq!(t.len(), 2);
        t.remove_job(&JOB);
        assert!(t.job(JOB).next().is_none() && t.values().next().is_none());
        assert_eq!(t.len(), 0);
    }
}
