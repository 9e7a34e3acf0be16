//! The simulated workload: jobs, their tasks and retries, cancels, and how
//! each attempt runs.
//!
//! Owns the job plan drawn from the seed (sizes, max retries, priorities,
//! submit and cancel times, deadlines) and the simulated executor's draws (duration,
//! exit code). Must not touch cores or the network.

use crate::config::SimConfig;
use crate::streams::Stream;
use peerbatch_protocol::SeededRng;
use peerbatch_protocol::{Command, JobSpec, Outcome, TaskSpec};
use rand::Rng;

#[derive(Clone, Debug)]
pub struct JobPlan {
    pub tasks: u32,
    pub max_retries: u32,
    pub priority: i32,
    pub submit_at: u64,
    pub cancel_at: Option<u64>,
    /// Instances of each task (1: ordinary tasks).
    pub instances: u32,
    /// How long the job is kept (`None`: the default, longer than a run).
    pub retention_ms: Option<u64>,
    /// The job's `max_wall_clock`: past it, its submitter cancels what is
    /// left.
    pub max_wall_clock_ms: Option<u64>,
}

impl JobPlan {
    pub fn spec(&self, number: usize) -> JobSpec {
        let mut template = TaskSpec::new("t", Command::Argv(vec!["true".into()]), self.max_retries);
        template.resources.instances = self.instances;
        let mut spec = JobSpec::array(
            format!("sim-{number}"),
            template,
            0,
            i64::from(self.tasks) - 1,
        );
        spec.priority = self.priority;
        if let Some(ms) = self.retention_ms {
            spec.retention_ms = ms;
        }
        spec.max_wall_clock_ms = self.max_wall_clock_ms;
        spec
    }
}

/// The jobs of a run: tasks split at random (each job gets at least one),
/// submitted in the first half of the fault window; the first `cancels`
/// jobs are cancelled some time after their submit, within the window.
/// The first job's tasks are multi-instance tasks when `cfg.gang` > 1.
/// A job in four has a `max_wall_clock` of up to the fault window, drawn
/// from its own stream (the other draws stay what they were).
pub fn plan(cfg: &SimConfig) -> Vec<JobPlan> {
    let mut rng = Stream::Workload.rng(cfg.seed);
    let mut deadlines = Stream::Deadline.rng(cfg.seed);
    let jobs = cfg.jobs.clamp(1, cfg.tasks);
    let weights: Vec<u64> = (0..jobs).map(|_| rng.gen_range(1..=10)).collect();
    let total: u64 = weights.iter().sum();
    let spare = u64::from(cfg.tasks - jobs);
    let mut sizes: Vec<u32> = weights
        .iter()
        .map(|w| 1 + (spare * w / total) as u32)
        .collect();
    let short = cfg.tasks - sizes.iter().sum::<u32>();
    sizes[0] += short;
    let window = cfg.fault_window_ms.max(2);
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, tasks)| {
            let submit_at = rng.gen_range(0..=window / 2);
            let cancel = (i as u32) < cfg.faults.cancels;
            JobPlan {
                tasks,
                max_retries: rng.gen_range(0..=cfg.max_retries),
                priority: rng.gen_range(-2..=2),
                submit_at,
                cancel_at: cancel.then(|| submit_at + rng.gen_range(1..=window)),
                instances: if i == 0 { cfg.gang.max(1) } else { 1 },
                retention_ms: cfg.retention_ms,
                max_wall_clock_ms: (deadlines.gen_bool(0.25))
                    .then(|| deadlines.gen_range(200..=window)),
            }
        })
        .collect()
}

/// Draws how each simulated process runs.
pub struct Executor {
    rng: SeededRng,
    fail_rate: f64,
    task_ms: (u64, u64),
}

impl Executor {
    pub fn new(cfg: &SimConfig) -> Executor {
        Executor {
            rng: Stream::Exec.rng(cfg.seed),
            fail_rate: cfg.faults.fail_rate,
            task_ms: cfg.task_ms,
        }
    }

    /// How long the next attempt runs and how it exits.
    pub fn next(&mut self) -> (u64, Outcome) {
        let ms = self.rng.gen_range(self.task_ms.0..=self.task_ms.1);
        let fails = self.fail_rate > 0.0 && self.rng.gen_bool(self.fail_rate);
        (ms, Outcome::Exited(i32::from(fails)))
    }

    /// Simulated time one node needs for the whole workload, on average.
    pub fn expected_work_ms(cfg: &SimConfig) -> u64 {
        let per_task = (cfg.task_ms.0 + cfg.task_ms.1) / 2;
        let slots = cfg.nodes as u64 * u64::from(cfg.core.slots.max(1));
        u64::from(cfg.tasks) * per_task * u64::from(cfg.max_retries + 1) / slots
    }
}
