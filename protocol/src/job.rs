//! Job and task specifications as they travel in the ledger.
//!
//! Owns the job model (tasks, task arrays, commands, limits), its validation
//! and its deterministic expansion into numbered tasks. Must not know how a
//! job file is written (that is the node's job-file parser) nor how a task runs.

use crate::exit::ExitRule;
use crate::files::{check_input, check_output, FileRuleError, Input, PackageUse, Source};
use crate::ids::JobId;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};

/// Most tasks one job may expand to.
pub const MAX_TASKS_PER_JOB: u64 = 1_000_000;
/// Largest encoded job: its submit event must fit in one message.
pub const MAX_JOB_BYTES: usize = 8 << 20;
/// Most nodes one multi-instance task runs on (its gang's invite names
/// them all).
pub const MAX_INSTANCES: usize = 4_096;
/// How long a job is kept (its events, views, logs and outputs) from its
/// submission, unless its job file says otherwise.
pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3_600_000;
/// The `retention_ms` of a job kept until someone forgets it
/// (`retention = "forever"`).
pub const RETAIN_FOREVER: u64 = u64::MAX;
/// Longest retention short of forever: 100 years.
pub const MAX_RETENTION_MS: u64 = 100 * 365 * 86_400_000;

/// What a task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A command line run by `/bin/sh -c`.
    Shell(String),
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
}

impl Command {
    /// A blank command line, or no program.
    pub fn is_empty(&self) -> bool {
        match self {
            Command::Shell(s) => s.trim().is_empty(),
            Command::Argv(argv) => argv.first().is_none_or(|p| p.is_empty()),
        }
    }
}

/// One task, or the template of a task array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Task id; for an array, a prefix put before each index.
    pub id: String,
    pub command: Command,
    pub env: Vec<(String, String)>,
    pub max_retries: u32,
    pub max_wall_clock_ms: Option<u64>,
    /// Placed in the working directory before the task starts.
    pub inputs: Vec<Input>,
    /// Glob patterns, relative to the working directory, stored after exit.
    pub outputs: Vec<String>,
    pub packages: Vec<PackageUse>,
    /// Task ids (`t1`) or ranges of numbered ids (`t3..t9`) of this job that
    /// must succeed first. A `from_task` input adds its task implicitly.
    pub depends_on: Vec<String>,
    /// What exit codes mean; the first matching rule decides.
    pub exit_codes: Vec<ExitRule>,
    pub resources: Resources,
}

/// A single task, an index range, or a parameter sweep expanded from one
/// template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskGroup {
    One(TaskSpec),
    /// Indices `start, start+step, …` up to and including `end`.
    Array {
        template: TaskSpec,
        start: i64,
        end: i64,
        step: i64,
    },
    /// One task per combination of the axes' rows (the last axis varies
    /// fastest); `{index}` is the combination's position, `{name}` each
    /// column's value. Task ids are the template id with its placeholders
    /// filled, or the template id followed by the position.
    Sweep {
        template: TaskSpec,
        axes: Vec<Axis>,
    },
}

/// One axis of a sweep: named columns and the rows of values they take
/// together (a list of values, the lines of a file, the files a glob
/// matched with their name and stem).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub names: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub priority: i32,
    pub groups: Vec<TaskGroup>,
    /// The job is kept this long after its submission (by the submitter's
    /// wall clock), then forgotten by every node once it has ended
    /// ([`RETAIN_FOREVER`]: only when someone forgets it); see
    /// `ledger::forget`.
    pub retention_ms: u64,
    /// Run on a node before its first task of the job (and again if it
    /// failed); a failure fails that attempt.
    pub preparation: Option<Command>,
    /// Run on each node that prepared or ran the job, once the job ended.
    pub release: Option<Command>,
    /// The job is cancelled once this long has passed since submission
    /// (by the submitter's wall clock, judged by each node's).
    pub max_wall_clock_ms: Option<u64>,
    /// The schedule occurrence or function trigger this job was submitted
    /// for, if any; an occurrence decides the job's id (see `trigger`).
    pub origin: Option<crate::trigger::Origin>,
    /// Jobs every task of which must succeed before any task of this one
    /// starts.
    pub after: Vec<JobId>,
    pub on_dependency_failure: OnDependencyFailure,
}

/// Most dependencies a job may list in all (each `depends_on` id, each
/// member of a range, each `from_task` input, per task). `*` counts as
/// none: it is kept as one mark. Bounds the graph (8 bytes an edge) and
/// the work of folding it.
pub const MAX_LISTED_DEPENDENCIES: u64 = 1 << 20;

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

/// One task of a job with its placeholders filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTask {
    pub id: String,
    pub index: Option<i64>,
    pub command: Command,
    pub env: Vec<(String, String)>,
    pub max_retries: u32,
    pub max_wall_clock_ms: Option<u64>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<String>,
    pub packages: Vec<PackageUse>,
    pub depends_on: Vec<String>,
    pub exit_codes: Vec<ExitRule>,
    pub resources: Resources,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("the job has no tasks")]
    NoTasks,
    #[error("task {0:?}: empty command")]
    EmptyCommand(String),
    #[error("task array {0:?}: step must not be 0")]
    ZeroStep(String),
    #[error("task array {0:?}: the range is empty")]
    EmptyRange(String),
    #[error("the job expands to {0} tasks; the limit is {MAX_TASKS_PER_JOB}")]
    TooManyTasks(u64),
    #[error("the job is {0} bytes encoded; the limit is {MAX_JOB_BYTES} (use task arrays for many similar tasks)")]
    TooLarge(usize),
    #[error("task id {0:?} appears twice")]
    DuplicateId(String),
    #[error(transparent)]
    Files(#[from] FileRuleError),
    #[error("task {task:?} depends on {dep:?}, which is not a task of this job")]
    MissingDependency { task: String, dep: String },
    #[error("task {0:?} depends on itself")]
    SelfDependency(String),
    #[error("the dependencies form a cycle through task {0:?}")]
    Cycle(String),
    #[error("the job lists more than {} dependencies in all (ids, range members and from_task inputs, counted per task); wait for every other task with \"*\" or for a whole job with `after`", MAX_LISTED_DEPENDENCIES)]
    TooManyDependencies,
    #[error("task {0:?}: a task needs at least one slot")]
    ZeroSlots(String),
    #[error("task {0:?} asks for 0 instances; a task runs on at least one node")]
    ZeroInstances(String),
    #[error("task {0:?} asks for {1} instances; the limit is {max}", max = MAX_INSTANCES)]
    TooManyInstances(String, u32),
    #[error("job {0} named in `after` is not known to this node")]
    UnknownAfter(JobId),
    #[error("task sweep {id:?}: {reason}")]
    BadSweep { id: String, reason: String },
    #[error("retention must be 1 ms to {max} days, or forever; got {0} ms", max = MAX_RETENTION_MS / 86_400_000)]
    BadRetention(u64),
}

impl TaskSpec {
    /// A task with no extra environment and no wall-clock limit.
    pub fn new(id: impl Into<String>, command: Command, max_retries: u32) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            command,
            env: Vec::new(),
            max_retries,
            max_wall_clock_ms: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            packages: Vec::new(),
            depends_on: Vec::new(),
            exit_codes: Vec::new(),
            resources: Resources::default(),
        }
    }
}

impl ResolvedTask {
    /// Ids of the tasks this one waits for: `depends_on` entries (ranges
    /// not yet expanded) and the tasks its inputs come from.
    pub fn dependency_refs(&self) -> impl Iterator<Item = &str> {
        let from_tasks = self.inputs.iter().filter_map(|i| match &i.source {
            Source::Task(task) => Some(task.as_str()),
            Source::Blob(_) => None,
        });
        self.depends_on.iter().map(String::as_str).chain(from_tasks)
    }
}

impl TaskGroup {
    /// How many tasks this group expands to.
    pub fn len(&self) -> u64 {
        match self {
            TaskGroup::One(_) => 1,
            TaskGroup::Sweep { axes, .. } => axes
                .iter()
                .try_fold(1u64, |n, a| n.checked_mul(a.rows.len() as u64))
                .unwrap_or(u64::MAX),
            TaskGroup::Array {
                start, end, step, ..
            } => {
                let (lo, hi, step) = (*start as i128, *end as i128, *step as i128);
                if step == 0 || (step > 0 && lo > hi) || (step < 0 && lo < hi) {
                    0
                } else {
                    ((hi - lo) / step + 1) as u64
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task, or the template its tasks are expanded from.
    pub fn spec(&self) -> &TaskSpec {
        match self {
            TaskGroup::One(spec)
            | TaskGroup::Array { template: spec, .. }
            | TaskGroup::Sweep { template: spec, .. } => spec,
        }
    }

    pub fn spec_mut(&mut self) -> &mut TaskSpec {
        match self {
            TaskGroup::One(spec)
            | TaskGroup::Array { template: spec, .. }
            | TaskGroup::Sweep { template: spec, .. } => spec,
        }
    }

    /// The placeholder values of the group's task at position `k`.
    fn vars(&self, k: u64) -> Vars<'_> {
        match self {
            TaskGroup::One(_) => Vars::default(),
            TaskGroup::Array { start, step, .. } => Vars {
                index: Some((*start as i128 + k as i128 * *step as i128) as i64),
                named: Vec::new(),
            },
            TaskGroup::Sweep { axes, .. } => {
                let mut named = Vec::new();
                let mut rest = k;
                for axis in axes.iter().rev() {
                    let n = axis.rows.len().max(1) as u64;
                    let row = &axis.rows[(rest % n) as usize];
                    rest /= n;
                    named.extend(
                        axis.names
                            .iter()
                            .map(String::as_str)
                            .zip(row.iter().map(String::as_str)),
                    );
                }
                Vars {
                    index: Some(k as i64),
                    named,
                }
            }
        }
    }

    /// `text` with the placeholders of the group's task at position `k`
    /// filled in.
    pub fn fill(&self, k: u64, text: &str) -> String {
        self.vars(k).fill(text)
    }

    /// `{index}` of the group's task at position `k` (none for a single task).
    pub fn index_value(&self, k: u64) -> Option<i64> {
        self.vars(k).index
    }

    /// The id of the group's task at position `k`.
    fn task_id(&self, k: u64) -> String {
        let spec = self.spec();
        match self {
            TaskGroup::One(_) => spec.id.clone(),
            TaskGroup::Array { .. } => format!("{}{}", spec.id, self.vars(k).index.unwrap_or(0)),
            TaskGroup::Sweep { .. } if spec.id.contains('{') => self.vars(k).fill(&spec.id),
            TaskGroup::Sweep { .. } => format!("{}{k}", spec.id),
        }
    }
}

impl JobSpec {
    /// A job of these groups with default priority and retention.
    pub fn new(name: impl Into<String>, groups: Vec<TaskGroup>) -> JobSpec {
        JobSpec {
            name: name.into(),
            priority: 0,
            groups,
            retention_ms: DEFAULT_RETENTION_MS,
            max_wall_clock_ms: None,
            preparation: None,
            release: None,
            origin: None,
            after: Vec::new(),
            on_dependency_failure: Default::default(),
        }
    }

    /// A job of one task array: `template` for each index `start..=end`.
    pub fn array(name: impl Into<String>, template: TaskSpec, start: i64, end: i64) -> JobSpec {
        let array = TaskGroup::Array {
            template,
            start,
            end,
            step: 1,
        };
        JobSpec::new(name, vec![array])
    }

    pub fn task_count(&self) -> u64 {
        self.groups.iter().map(TaskGroup::len).sum()
    }

    /// How long the job is kept after its submission; `None`: until someone
    /// forgets it.
    pub fn retention(&self) -> Option<u64> {
        (self.retention_ms != RETAIN_FOREVER).then_some(self.retention_ms)
    }

    /// Checks what every node will rely on when it expands the job's
    /// tasks; [`JobSpec::validate`] (in `deps`) adds its dependency graph.
    pub(crate) fn validate_tasks(&self) -> Result<(), JobError> {
        let size = crate::codec::encoded_len(self);
        if size > MAX_JOB_BYTES {
            return Err(JobError::TooLarge(size));
        }
        if let Some(ms) = self
            .retention()
            .filter(|ms| !(1..=MAX_RETENTION_MS).contains(ms))
        {
            return Err(JobError::BadRetention(ms));
        }
        for group in &self.groups {
            let spec = group.spec();
            if spec.command.is_empty() {
                return Err(JobError::EmptyCommand(spec.id.clone()));
            }
            if let TaskGroup::Array { step, .. } = group {
                if *step == 0 {
                    return Err(JobError::ZeroStep(spec.id.clone()));
                }
                if group.is_empty() {
                    return Err(JobError::EmptyRange(spec.id.clone()));
                }
            }
            if let TaskGroup::Sweep { axes, .. } = group {
                check_axes(&spec.id, axes)?;
            }
            if spec.resources.slots == 0 {
                return Err(JobError::ZeroSlots(spec.id.clone()));
            }
            if spec.resources.instances == 0 {
                return Err(JobError::ZeroInstances(spec.id.clone()));
            }
            if spec.resources.instances as usize > MAX_INSTANCES {
                let n = spec.resources.instances;
                return Err(JobError::TooManyInstances(spec.id.clone(), n));
            }
        }
        let count = self.task_count();
        if count == 0 {
            return Err(JobError::NoTasks);
        }
        if count > MAX_TASKS_PER_JOB {
            return Err(JobError::TooManyTasks(count));
        }
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..count as u32 {
            if let Some(task) = self.task(index) {
                for input in &task.inputs {
                    check_input(&task.id, input)?;
                }
                for pattern in &task.outputs {
                    check_output(&task.id, pattern)?;
                }
                for p in &task.packages {
                    crate::files::check_package(&p.name, &p.version)?;
                }
                if !seen.insert(task.id.clone()) {
                    return Err(JobError::DuplicateId(task.id));
                }
            }
        }
        Ok(())
    }

    /// The task at position `index` of the expansion, placeholders filled.
    pub fn task(&self, index: u32) -> Option<ResolvedTask> {
        let (group, k) = self.locate(index)?;
        Some(resolve(group.spec(), group.task_id(k), &group.vars(k)))
    }

    /// The group holding position `index`, and the position within it.
    fn locate(&self, index: u32) -> Option<(&TaskGroup, u64)> {
        let mut rest = index as u64;
        for group in &self.groups {
            let len = group.len();
            if rest < len {
                return Some((group, rest));
            }
            rest -= len;
        }
        None
    }

    /// The id of task `index`, without resolving the rest of it.
    pub fn task_id(&self, index: u32) -> Option<String> {
        self.locate(index).map(|(group, k)| group.task_id(k))
    }

    /// The spec (or array template) that task `index` was expanded from.
    pub fn template(&self, index: u32) -> Option<&TaskSpec> {
        self.locate(index).map(|(group, _)| group.spec())
    }

    /// Finds a task's position by its id.
    pub fn position_of(&self, id: &str) -> Option<u32> {
        let mut offset = 0u64;
        for group in &self.groups {
            match group {
                TaskGroup::One(spec) if spec.id == id => return Some(offset as u32),
                TaskGroup::Array {
                    template,
                    start,
                    step,
                    ..
                } => {
                    if let Some(value) = id
                        .strip_prefix(template.id.as_str())
                        .and_then(|v| v.parse::<i64>().ok())
                    {
                        let delta = value as i128 - *start as i128;
                        let k = delta / *step as i128;
                        if delta % *step as i128 == 0 && k >= 0 && (k as u64) < group.len() {
                            return Some((offset + k as u64) as u32);
                        }
                    }
                }
                TaskGroup::Sweep { template, .. } if !template.id.contains('{') => {
                    let k = id
                        .strip_prefix(template.id.as_str())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(k) = k.filter(|k| *k < group.len()) {
                        return Some((offset + k) as u32);
                    }
                }
                // Ids made from the sweep's values: look them up one by one.
                TaskGroup::Sweep { .. } => {
                    if let Some(k) = (0..group.len()).find(|k| group.task_id(*k) == id) {
                        return Some((offset + k) as u32);
                    }
                }
                TaskGroup::One(_) => {}
            }
            offset += group.len();
        }
        None
    }
}

/// Placeholder values of one task: `{index}` and a sweep's named columns.
#[derive(Default)]
struct Vars<'a> {
    index: Option<i64>,
    named: Vec<(&'a str, &'a str)>,
}

impl Vars<'_> {
    fn fill(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_string();
        }
        let mut out = match self.index {
            Some(i) => text.replace("{index}", &i.to_string()),
            None => text.to_string(),
        };
        for (name, value) in &self.named {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

/// Axes of a sweep: each with named columns, rows of that width, at least
/// one row; names are identifiers, used once, and not `index`.
fn check_axes(id: &str, axes: &[Axis]) -> Result<(), JobError> {
    let bad = |reason: String| {
        Err(JobError::BadSweep {
            id: id.to_string(),
            reason,
        })
    };
    if axes.is_empty() {
        return bad("a sweep needs at least one parameter".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for axis in axes {
        for name in &axis.names {
            let ident = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident || name == "index" {
                return bad(format!(
                    "parameter name {name:?} must be an identifier other than `index`"
                ));
            }
            if !seen.insert(name.as_str()) {
                return bad(format!("parameter {name:?} is given twice"));
            }
        }
        if axis.rows.is_empty() {
            return bad(format!(
                "parameter {:?} has no values",
                axis.names.join(",")
            ));
        }
        if let Some(row) = axis.rows.iter().find(|r| r.len() != axis.names.len()) {
            return bad(format!(
                "a row of {:?} has {} values for {} names",
                axis.names.join(","),
                row.len(),
                axis.names.len()
            ));
        }
    }
    Ok(())
}

fn resolve(spec: &TaskSpec, id: String, vars: &Vars) -> ResolvedTask {
    let fill = |text: &str| vars.fill(text);
    let command = match &spec.command {
        Command::Shell(s) => Command::Shell(fill(s)),
        Command::Argv(argv) => Command::Argv(argv.iter().map(|a| fill(a)).collect()),
    };
    ResolvedTask {
        id,
        index: vars.index,
        command,
        env: spec.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        max_retries: spec.max_retries,
        max_wall_clock_ms: spec.max_wall_clock_ms,
        inputs: spec
            .inputs
            .iter()
            .map(|i| Input {
                path: fill(&i.path),
                source: match &i.source {
                    Source::Blob(id) => Source::Blob(*id),
                    Source::Task(task) => Source::Task(fill(task)),
                },
                within: fill(&i.within),
            })
            .collect(),
        outputs: spec.outputs.iter().map(|o| fill(o)).collect(),
        packages: spec.packages.clone(),
        depends_on: spec.depends_on.iter().map(|d| fill(d)).collect(),
        exit_codes: spec.exit_codes.clone(),
        resources: spec.resources.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, cmd: &str) -> TaskSpec {
        TaskSpec {
            env: vec![("N".into(), "{index}".into())],
            ..TaskSpec::new(id, Command::Shell(cmd.into()), 0)
        }
    }

    #[test]
    fn arrays_expand_with_placeholders_and_steps() {
        let job = JobSpec::new(
            "j",
            vec![
                TaskGroup::One(spec("first", "echo a")),
                TaskGroup::Array {
                    template: spec("r", "render {index}"),
                    start: 10,
                    end: 20,
                    step: 5,
                },
            ],
        );
        assert_eq!(job.task_count(), 4);
        job.validate().unwrap();
        let t = job.task(2).unwrap();
        assert_eq!(t.id, "r15");
        assert_eq!(t.command, Command::Shell("render 15".into()));
        assert_eq!(t.env, vec![("N".into(), "15".into())]);
        assert_eq!(job.task(4), None);
        assert_eq!(job.position_of("r20"), Some(3));
        assert_eq!(job.position_of("first"), Some(0));
        assert_eq!(job.position_of("r12"), None);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut job = JobSpec::new("j", vec![TaskGroup::One(spec("a", "  "))]);
        assert_eq!(job.validate(), Err(JobError::EmptyCommand("a".into())));
        let mut wide = spec("w", "x");
        wide.resources.instances = 5_000;
        job.groups = vec![TaskGroup::One(wide)];
        assert_eq!(
            job.validate(),
            Err(JobError::TooManyInstances("w".into(), 5_000))
        );
        job.groups = vec![
            TaskGroup::One(spec("a", "x")),
            TaskGroup::One(spec("a", "y")),
        ];
        assert_eq!(job.validate(), Err(JobError::DuplicateId("a".into())));
        job.groups = vec![TaskGroup::Array {
            template: spec("", "x"),
            start: 5,
            end: 1,
            step: 1,
        }];
        assert_eq!(job.validate(), Err(JobError::EmptyRange("".into())));
    }

    #[test]
    fn sweeps_expand_every_combination_with_named_placeholders() {
        let axis = |names: &[&str], rows: &[&[&str]]| Axis {
            names: names.iter().map(|n| n.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.to_string()).collect())
                .collect(),
        };
        let mut template = spec(
            "sim-{alpha}-{file_stem}",
            "run --alpha {alpha} {file} #{index}",
        );
        template.depends_on = vec!["prep".into()];
        let reduce = TaskSpec {
            depends_on: vec!["*".into()],
            ..spec("reduce", "cat")
        };
        let job = JobSpec::new(
            "sweep",
            vec![
                TaskGroup::One(spec("prep", "true")),
                TaskGroup::Sweep {
                    template,
                    axes: vec![
                        axis(&["alpha"], &[&["0.1"], &["0.2"]]),
                        axis(
                            &["file", "file_stem"],
                            &[&["a.mp4", "a"], &["b.mp4", "b"], &["c.mp4", "c"]],
                        ),
                    ],
                },
                TaskGroup::One(reduce),
            ],
        );
        job.validate().unwrap();
        assert_eq!(job.task_count(), 8);
        let t = job.task(5).unwrap();
        assert_eq!(t.id, "sim-0.2-b");
        assert_eq!(t.command, Command::Shell("run --alpha 0.2 b.mp4 #4".into()));
        assert_eq!(job.position_of("sim-0.1-c"), Some(3));

        let bad = |axes| {
            JobSpec::new(
                "j",
                vec![TaskGroup::Sweep {
                    template: spec("s", "x"),
                    axes,
                }],
            )
            .validate()
        };
        assert!(matches!(
            bad(vec![axis(&["index"], &[&["1"]])]),
            Err(JobError::BadSweep { .. })
        ));
        assert!(matches!(
            bad(vec![axis(&["a"], &[])]),
            Err(JobError::BadSweep { .. })
        ));
        assert!(matches!(
            bad(vec![axis(&["a", "b"], &[&["1"]])]),
            Err(JobError::BadSweep { .. })
        ));
    }
}
