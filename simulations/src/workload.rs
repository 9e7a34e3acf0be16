//! The simulated workload: jobs, their tasks and retries, cancels, and how
//! each attempt runs.
//!
//! Owns the job plan drawn from the seed (sizes, max retries, priorities,
//! submit and cancel times, deadlines, what a job waits for, exit-code
//! rules) and the simulated executor's draws (duration, exit code). Must
//! not touch cores or the network.

use crate::config::SimConfig;
use crate::streams::Stream;
use peerbatch_protocol::exit::{ExitAction, ExitRule};
use peerbatch_protocol::job::{OnDependencyFailure, TaskGroup};
use peerbatch_protocol::SeededRng;
use peerbatch_protocol::{Command, JobId, JobSpec, Outcome, TaskSpec};
use rand::Rng;

/// What a job waits for and how its exit codes count, drawn from
/// `Stream::Deps`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Waits {
    /// The job's last task waits for every other (`*`).
    pub reducer: bool,
    /// A job submitted earlier whose every task must succeed first
    /// (`after`), by number.
    pub after: Option<usize>,
    pub on_failure: OnDependencyFailure,
    /// Exit codes 2, 3 and 4 fail the task, count as success and fail
    /// the job ([`exit_rules`]).
    pub exit_rules: bool,
}

/// The rules of a job with `Waits::exit_rules`.
pub fn exit_rules() -> Vec<ExitRule> {
    let rule = |code, action| ExitRule {
        from: code,
        to: code,
        action,
    };
    vec![
        rule(2, ExitAction::FailTask),
        rule(3, ExitAction::Ignore),
        rule(4, ExitAction::FailJob),
    ]
}

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
    pub waits: Waits,
}

impl JobPlan {
    /// The job to submit; `after` is the id of the job `waits.after`
    /// names, once that one was submitted.
    pub fn spec(&self, number: usize, after: Option<JobId>) -> JobSpec {
        let mut template = TaskSpec::new("t", Command::Argv(vec!["true".into()]), self.max_retries);
        template.resources.instances = self.instances;
        if self.waits.exit_rules {
            template.exit_codes = exit_rules();
        }
        let reducer = (self.waits.reducer && self.tasks > 1).then(|| TaskSpec {
            depends_on: vec!["*".into()],
            ..TaskSpec::new("reduce", template.command.clone(), self.max_retries)
        });
        let last = i64::from(self.tasks) - 1 - i64::from(reducer.is_some());
        let mut spec = JobSpec::array(format!("sim-{number}"), template, 0, last);
        spec.groups.extend(reducer.map(TaskGroup::One));
        spec.after.extend(after);
        spec.on_dependency_failure = self.waits.on_failure;
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
/// A job in four has a `max_wall_clock` of up to the fault window, and
/// the others but the first draw what they wait for ([`draw_waits`]),
/// each from its own stream (the other draws stay what they were).
pub fn plan(cfg: &SimConfig) -> Vec<JobPlan> {
    let mut rng = Stream::Workload.rng(cfg.seed);
    let mut deadlines = Stream::Deadline.rng(cfg.seed);
    let mut deps = Stream::Deps.rng(cfg.seed);
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
                waits: draw_waits(&mut deps, i),
            }
        })
        .collect()
}

/// For job `number` (the first, which may be a gang, waits for nothing):
/// a reducer in one job of three, an `after` on an earlier job in one of
/// four, any rule on a dependency that failed, exit-code rules in one of
/// three.
fn draw_waits(rng: &mut SeededRng, number: usize) -> Waits {
    if number == 0 {
        return Waits::default();
    }
    let on_failure = [
        OnDependencyFailure::Skip,
        OnDependencyFailure::Fail,
        OnDependencyFailure::Run,
    ][rng.gen_range(0..3)];
    Waits {
        reducer: rng.gen_bool(1.0 / 3.0),
        after: rng.gen_bool(0.25).then(|| rng.gen_range(0..number)),
        on_failure,
        exit_rules: rng.gen_bool(1.0 / 3.0),
    }
}

/// Draws how each simulated process runs.
pub struct Executor {
    rng: SeededRng,
    /// The exit code of a failing attempt of a job with exit-code rules.
    codes: SeededRng,
    fail_rate: f64,
    task_ms: (u64, u64),
}

impl Executor {
    pub fn new(cfg: &SimConfig) -> Executor {
        Executor {
            rng: Stream::Exec.rng(cfg.seed),
            codes: Stream::ExitCode.rng(cfg.seed),
            fail_rate: cfg.faults.fail_rate,
            task_ms: cfg.task_ms,
        }
    }

    /// How long the next attempt runs and how it exits: 0, or when it
    /// fails 1 (any of 1–4 under exit-code rules).
    pub fn next(&mut self, rules: bool) -> (u64, Outcome) {
        let ms = self.rng.gen_range(self.task_ms.0..=self.task_ms.1);
        let fails = self.fail_rate > 0.0 && self.rng.gen_bool(self.fail_rate);
        let code = match (fails, rules) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => self.codes.gen_range(1..=4),
        };
        (ms, Outcome::Exited(code))
    }
}
