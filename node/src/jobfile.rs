//! Job files: the TOML a user writes, turned into a protocol `JobSpec`.
//!
//! Owns the job-file format and its error messages (`FILE:LINE:COL: what`).
//! Must not submit anything or touch the network; `cli` does that.
//!
//! ```toml
//! name = "render"
//! priority = 5
//!
//! [[tasks]]
//! id = "prep"
//! command = "echo preparing"          # a string runs under /bin/sh -c
//! env = { QUALITY = "high" }
//! max_retries = 2
//! max_wall_clock = "10m"
//!
//! [[tasks]]
//! id = "frame-"                       # arrays: prefix of each task id
//! command = ["render", "--frame", "{index}"]   # a list runs directly
//! range = "1..=1000"                  # also "0..10" (exclusive); step = 5
//! inputs = [
//!   { path = "scene.blend", source = "./scene.blend" },   # staged by submit
//!   { path = "in.png", source = "./frames/{index}.png" }, # one file per index
//!   { path = "lib", id = "<64-hex blob id>" },            # already in the mesh
//!   { from_task = "prep", path = "settings.json" },       # another task's output
//! ]
//! outputs = ["*.exr", "logs/**"]
//! packages = ["blender@4.2"]
//! depends_on = ["prep"]                 # also ranges: "frame-1..frame-9"
//! ```
//!
//! Local sources and package names need a node to become blob ids: `load`
//! returns them in a [`JobDraft`] for `submit` to stage and resolve.

use peerbatch_protocol::exit::{ExitAction, ExitRule};
use peerbatch_protocol::files::{parse_package_ref, FileRuleError, Input, PackageUse, Source};
use peerbatch_protocol::job::OnDependencyFailure;
use peerbatch_protocol::job::{
    Command, JobError, JobSpec, TaskGroup, TaskSpec, DEFAULT_RETENTION_MS, MAX_RETENTION_MS,
    RETAIN_FOREVER,
};
use peerbatch_protocol::resources::Resources;
use peerbatch_protocol::BlobId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Retries a task gets when its file says nothing.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The most nodes one multi-instance task may span.
const MAX_INSTANCES: i64 = 1024;

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct JobFileError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJob {
    name: Option<String>,
    #[serde(default)]
    priority: i32,
    retention: Option<Spanned<toml::Value>>,
    /// Run only on nodes labelled `pool=NAME`.
    pool: Option<String>,
    /// The whole job's limit; what is left then is cancelled.
    max_wall_clock: Option<Spanned<toml::Value>>,
    /// Run on a node before its first task of the job.
    preparation: Option<Spanned<FileCommand>>,
    /// Run on each node that prepared the job, after the job ended.
    release: Option<Spanned<FileCommand>>,
    /// Jobs (ids, id prefixes or names) to wait for; resolved at submit.
    #[serde(default)]
    after: Vec<String>,
    /// "skip" (the default), "fail" or "run" the tasks whose dependency
    /// failed.
    on_dependency_failure: Option<String>,
    tasks: Spanned<Vec<FileTask>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileCommand {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInput {
    path: Option<String>,
    source: Option<Spanned<String>>,
    id: Option<String>,
    from_task: Option<String>,
    within: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTask {
    id: Option<Spanned<String>>,
    command: Spanned<FileCommand>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    max_retries: Option<Spanned<i64>>,
    max_wall_clock: Option<Spanned<toml::Value>>,
    range: Option<Spanned<String>>,
    step: Option<Spanned<i64>>,
    #[serde(default)]
    inputs: Vec<Spanned<FileInput>>,
    #[serde(default)]
    outputs: Vec<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    depends_on: Option<Spanned<Vec<String>>>,
    /// Parameter lists: one task per combination.
    sweep: Option<Spanned<BTreeMap<String, Vec<toml::Value>>>>,
    /// A file: one task per line, `{line}`.
    lines: Option<Spanned<String>>,
    /// A glob: one task per matching file, `{file}`, `{file_name}`, `{file_stem}`.
    files: Option<Spanned<String>>,
    #[serde(default)]
    exit_codes: Vec<Spanned<FileExitRule>>,
    slots: Option<Spanned<i64>>,
    /// e.g. "4GiB".
    memory: Option<Spanned<String>>,
    gpus: Option<Spanned<i64>>,
    /// A multi-instance task: this many nodes at once (MPI-style).
    instances: Option<Spanned<i64>>,
    /// Labels the node must have: `["os=linux", "gpu=a100"]`.
    #[serde(default)]
    constraints: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExitRule {
    /// `3`, or a range `"10-19"`.
    codes: toml::Value,
    action: String,
}

/// A parsed job whose local sources and packages still need a node.
#[derive(Debug)]
pub struct JobDraft {
    /// Placeholder blob ids where `stage` and `packages` point.
    pub spec: JobSpec,
    pub stage: Vec<LocalSource>,
    pub packages: Vec<PackageSlot>,
    /// The jobs `after` names, as written (ids, prefixes or names).
    pub after: Vec<String>,
}

/// A local file or directory to store, for input `input` of group `group`.
/// A path with `{index}` in an array names one file per index; they are
/// stored as one tree whose entries are the indices.
#[derive(Debug)]
pub struct LocalSource {
    pub group: usize,
    pub input: usize,
    /// Absolute, or relative to the job file's directory already joined.
    pub path: PathBuf,
    /// Where the file names it, for errors found when it is staged.
    pub at: Place,
}

/// Where a value is in a job file.
#[derive(Clone, Debug)]
pub struct Place {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl Place {
    /// `message` about the value here, as `FILE:LINE:COL: message`.
    pub fn error(&self, message: String) -> JobFileError {
        JobFileError {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
            message,
        }
    }
}

/// A `name@version` to resolve for package `package` of group `group`.
#[derive(Debug)]
pub struct PackageSlot {
    pub group: usize,
    pub package: usize,
}

impl PackageSlot {
    /// The package this slot names in `spec`.
    pub fn in_spec<'a>(&self, spec: &'a mut JobSpec) -> Option<&'a mut PackageUse> {
        spec.groups
            .get_mut(self.group)
            .and_then(|g| g.spec_mut().packages.get_mut(self.package))
    }
}

/// Stands in for a blob id until `submit` stages or resolves it.
pub const UNRESOLVED: BlobId = BlobId([0; 32]);

/// Reads and checks a job file; relative sources are taken from its directory.
pub fn load(path: &Path) -> Result<JobDraft, JobFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| JobFileError {
        file: file.clone(),
        line: 1,
        col: 1,
        message: format!("cannot read the job file: {e}"),
    })?;
    let default_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    parse_in(&file, &text, &default_name, dir_of(path))
}

/// Parses job-file text found in `dir`: relative sources, `lines` and
/// `files` are taken from there.
pub fn parse_in(
    file: &str,
    text: &str,
    default_name: &str,
    dir: &Path,
) -> Result<JobDraft, JobFileError> {
    let mut draft = parse(file, text, default_name, dir)?;
    for source in &mut draft.stage {
        source.path = dir.join(&source.path);
    }
    Ok(draft)
}

/// Where a task's values are in the file, to point errors found after
/// parsing (by `JobSpec::validate`) at the value they are about.
struct TaskPlaces {
    /// Its `id`, else its `command`.
    task: Range<usize>,
    depends_on: Option<Range<usize>>,
    /// Each input's whole table, by the paths it names.
    inputs: Vec<(Vec<String>, Range<usize>)>,
    outputs: Vec<(String, Range<usize>)>,
}

impl TaskPlaces {
    fn of(task: &FileTask) -> TaskPlaces {
        TaskPlaces {
            task: task.id.as_ref().map_or(task.command.span(), Spanned::span),
            depends_on: task.depends_on.as_ref().map(Spanned::span),
            inputs: task
                .inputs
                .iter()
                .map(|i| {
                    let named = [&i.get_ref().path, &i.get_ref().within];
                    (named.into_iter().flatten().cloned().collect(), i.span())
                })
                .collect(),
            outputs: task
                .outputs
                .iter()
                .map(|o| (o.get_ref().clone(), o.span()))
                .collect(),
        }
    }
}

/// The place in the file a validation error is about: the value named, else
/// the task's id (or command); `None` for what concerns the whole job.
fn place_of(e: &JobError, spec: &JobSpec, places: &[TaskPlaces]) -> Option<Range<usize>> {
    // A group by its own id (an array's is its members' prefix; the last, so
    // that a duplicate id points at the second), else by the position of
    // the task named.
    let task = |id: &str| {
        let group = spec
            .groups
            .iter()
            .rposition(|g| g.spec().id == id)
            .or_else(|| {
                let position = u64::from(spec.position_of(id)?);
                let mut end = 0;
                spec.groups.iter().position(|g| {
                    end += g.len();
                    position < end
                })
            })?;
        places.get(group)
    };
    match e {
        JobError::Files(FileRuleError::InputPath { task: id, path, .. }) => task(id).map(|t| {
            let named = t.inputs.iter().find(|(paths, _)| paths.contains(path));
            named.map_or(t.task.clone(), |(_, span)| span.clone())
        }),
        JobError::Files(FileRuleError::OutputPattern {
            task: id, pattern, ..
        }) => task(id).map(|t| {
            let named = t.outputs.iter().find(|(p, _)| p == pattern);
            named.map_or(t.task.clone(), |(_, span)| span.clone())
        }),
        JobError::MissingDependency { task: id, .. }
        | JobError::SelfDependency(id)
        | JobError::Cycle(id) => task(id).map(|t| t.depends_on.clone().unwrap_or(t.task.clone())),
        JobError::EmptyCommand(id)
        | JobError::ZeroStep(id)
        | JobError::EmptyRange(id)
        | JobError::DuplicateId(id)
        | JobError::ZeroSlots(id)
        | JobError::ZeroInstances(id)
        | JobError::TooManyInstances(id, _)
        | JobError::BadSweep { id, .. } => task(id).map(|t| t.task.clone()),
        _ => None,
    }
}

/// The directory a job file's relative paths start from: its own, `.` for
/// a file named without one (`job.toml`, whose parent is the empty path).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Parses job-file text; `file` names it in errors.
/// `dir` is where `lines` and `files` are read from.
pub fn parse(
    file: &str,
    text: &str,
    default_name: &str,
    dir: &Path,
) -> Result<JobDraft, JobFileError> {
    let err = |span: Option<Range<usize>>, message: String| {
        let at = span.map_or(0, |s| s.start).min(text.len());
        let before = &text[..at];
        JobFileError {
            file: file.to_string(),
            line: before.matches('\n').count() + 1,
            col: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
            message,
        }
    };
    let job: FileJob = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        err(e.span(), message)
    })?;
    if job.tasks.get_ref().is_empty() {
        return Err(err(Some(job.tasks.span()), "the job has no tasks".into()));
    }
    let mut groups = Vec::new();
    let (mut stage, mut packages) = (Vec::new(), Vec::new());
    let mut places = Vec::new();
    for (n, task) in job.tasks.into_inner().into_iter().enumerate() {
        places.push(TaskPlaces::of(&task));
        let command = command(task.command).map_err(|(span, m)| err(Some(span), m))?;
        let max_retries = match task.max_retries {
            None => DEFAULT_MAX_RETRIES,
            Some(v) => u32::try_from(*v.get_ref()).map_err(|_| {
                err(
                    Some(v.span()),
                    format!(
                        "max_retries must be between 0 and {}, got {}",
                        u32::MAX,
                        v.get_ref()
                    ),
                )
            })?,
        };
        let max_wall_clock_ms = match task.max_wall_clock {
            None => None,
            Some(v) => Some(
                duration_ms("max_wall_clock", v.get_ref()).map_err(|m| err(Some(v.span()), m))?,
            ),
        };
        let mut axes = Vec::new();
        if let Some(table) = task.sweep {
            let span = table.span();
            axes.extend(crate::sweep::lists(table.into_inner()).map_err(|m| err(Some(span), m))?);
        }
        if let Some(file) = task.lines {
            axes.push(
                crate::sweep::lines(dir, file.get_ref()).map_err(|m| err(Some(file.span()), m))?,
            );
        }
        if let Some(glob) = task.files {
            axes.push(
                crate::sweep::files(dir, glob.get_ref()).map_err(|m| err(Some(glob.span()), m))?,
            );
        }
        let is_array = task.range.is_some() || !axes.is_empty();
        let id = match task.id {
            Some(id) => id.into_inner(),
            None if is_array => String::new(),
            None => format!("t{}", n + 1),
        };
        let group = groups.len();
        let mut inputs = Vec::new();
        for (k, input) in task.inputs.into_iter().enumerate() {
            let span = input.span();
            let source = input.get_ref().source.as_ref().map(Spanned::span);
            let (input, local) =
                parse_input(input.into_inner()).map_err(|m| err(Some(span.clone()), m))?;
            if let Some(path) = local {
                let JobFileError {
                    file, line, col, ..
                } = err(Some(source.unwrap_or(span)), String::new());
                stage.push(LocalSource {
                    group,
                    input: k,
                    path,
                    at: Place { file, line, col },
                });
            }
            inputs.push(input);
        }
        let mut uses = Vec::new();
        for (k, text) in task.packages.into_iter().enumerate() {
            let (name, version) = parse_package_ref(text.get_ref()).ok_or_else(|| {
                err(
                    Some(text.span()),
                    format!(
                        "package {:?} is not NAME@VERSION (letters, digits, `.`, `_`, `-`, `+`)",
                        text.get_ref()
                    ),
                )
            })?;
            uses.push(PackageUse {
                name: name.to_string(),
                version: version.to_string(),
                blob: UNRESOLVED,
            });
            packages.push(PackageSlot { group, package: k });
        }
        let mut exit_codes = Vec::new();
        for rule in task.exit_codes {
            let span = rule.span();
            exit_codes.push(exit_rule(rule.into_inner()).map_err(|m| err(Some(span), m))?);
        }
        let mut constraints = Vec::new();
        for c in task.constraints {
            let (k, v) = c.get_ref().split_once('=').ok_or_else(|| {
                err(
                    Some(c.span()),
                    format!("constraint {:?} is not key=value", c.get_ref()),
                )
            })?;
            constraints.push((k.trim().to_string(), v.trim().to_string()));
        }
        if let Some(pool) = &job.pool {
            constraints.push(("pool".to_string(), pool.clone()));
        }
        let count = |v: Option<Spanned<i64>>, what: &str, default: u32| match v {
            None => Ok(default),
            Some(v) => u32::try_from(*v.get_ref()).map_err(|_| {
                err(
                    Some(v.span()),
                    format!("{what} must be 0 or more, got {}", v.get_ref()),
                )
            }),
        };
        let memory_mb = match task.memory {
            None => 0,
            Some(m) => crate::store::reclaim::parse_size(m.get_ref())
                .map_err(|e| err(Some(m.span()), format!("memory: {e}")))?
                .div_ceil(1 << 20),
        };
        let resources = Resources {
            slots: count(task.slots, "slots", 1)?,
            memory_mb,
            gpus: count(task.gpus, "gpus", 0)?,
            constraints,
            instances: match task.instances {
                Some(n) if !(1..=MAX_INSTANCES).contains(n.get_ref()) => {
                    return Err(err(
                        Some(n.span()),
                        format!(
                            "instances must be 1 to {MAX_INSTANCES}, got {}",
                            n.get_ref()
                        ),
                    ))
                }
                n => count(n, "instances", 1)?,
            },
        };
        let spec = TaskSpec {
            resources,
            exit_codes,
            id,
            command,
            env: task.env.into_iter().collect(),
            max_retries,
            max_wall_clock_ms,
            inputs,
            outputs: task.outputs.into_iter().map(Spanned::into_inner).collect(),
            packages: uses,
            depends_on: task.depends_on.map(Spanned::into_inner).unwrap_or_default(),
        };
        match task.range {
            Some(range) if !axes.is_empty() => {
                return Err(err(
                    Some(range.span()),
                    "a task is a range or a sweep (sweep, lines, files), not both".into(),
                ))
            }
            None if !axes.is_empty() => groups.push(TaskGroup::Sweep {
                template: spec,
                axes,
            }),
            None => {
                if let Some(step) = task.step {
                    return Err(err(Some(step.span()), "step needs a range".into()));
                }
                groups.push(TaskGroup::One(spec));
            }
            Some(range) => {
                let (start, end) =
                    parse_range(range.get_ref()).map_err(|m| err(Some(range.span()), m))?;
                let step = match task.step {
                    None => 1,
                    Some(s) if *s.get_ref() > 0 => *s.get_ref(),
                    Some(s) => return Err(err(Some(s.span()), "step must be 1 or more".into())),
                };
                if end < start {
                    return Err(err(Some(range.span()), "the range is empty".into()));
                }
                groups.push(TaskGroup::Array {
                    template: spec,
                    start,
                    end,
                    step,
                });
            }
        }
    }
    let retention_ms = match job.retention {
        None => DEFAULT_RETENTION_MS,
        Some(v) => retention_ms(v.get_ref()).map_err(|m| err(Some(v.span()), m))?,
    };
    let max_wall_clock_ms = match job.max_wall_clock {
        None => None,
        Some(v) => {
            Some(duration_ms("max_wall_clock", v.get_ref()).map_err(|m| err(Some(v.span()), m))?)
        }
    };
    let spec = JobSpec {
        name: job.name.unwrap_or_else(|| default_name.to_string()),
        priority: job.priority,
        groups,
        retention_ms,
        max_wall_clock_ms,
        preparation: job
            .preparation
            .map(|c| command(c).map_err(|(span, m)| err(Some(span), m)))
            .transpose()?,
        release: job
            .release
            .map(|c| command(c).map_err(|(span, m)| err(Some(span), m)))
            .transpose()?,
        origin: None,
        after: Vec::new(),
        on_dependency_failure: match job.on_dependency_failure.as_deref() {
            None | Some("skip") => OnDependencyFailure::Skip,
            Some("fail") => OnDependencyFailure::Fail,
            Some("run") => OnDependencyFailure::Run,
            Some(other) => {
                return Err(err(
                    None,
                    format!(
                        "on_dependency_failure must be \"skip\", \"fail\" or \"run\", not {other:?}"
                    ),
                ))
            }
        },
    };
    spec.validate()
        .map_err(|e| err(place_of(&e, &spec, &places), e.to_string()))?;
    Ok(JobDraft {
        spec,
        stage,
        packages,
        after: job.after,
    })
}

/// A command: a string runs under /bin/sh -c, a list runs directly.
fn command(c: Spanned<FileCommand>) -> Result<Command, (Range<usize>, String)> {
    let span = c.span();
    match c.into_inner() {
        FileCommand::Shell(s) if !s.trim().is_empty() => Ok(Command::Shell(s)),
        FileCommand::Argv(argv) if argv.first().is_some_and(|p| !p.is_empty()) => {
            Ok(Command::Argv(argv))
        }
        _ => Err((span, "empty command".into())),
    }
}

/// One `exit_codes` entry: `{ codes = "10-19", action = "fail_task" }`.
fn exit_rule(rule: FileExitRule) -> Result<ExitRule, String> {
    let bad_codes = || {
        format!(
            "exit codes {} are not a code or a range such as \"10-19\"",
            rule.codes
        )
    };
    let (from, to) = match &rule.codes {
        toml::Value::Integer(c) => {
            let c = i32::try_from(*c).map_err(|_| bad_codes())?;
            (c, c)
        }
        toml::Value::String(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let n = |t: &str| t.trim().parse::<i32>().map_err(|_| bad_codes());
            (n(a)?, n(b)?)
        }
        _ => return Err(bad_codes()),
    };
    if from > to {
        return Err(bad_codes());
    }
    let action = match rule.action.as_str() {
        "retry" => ExitAction::Retry,
        "fail_task" => ExitAction::FailTask,
        "fail_job" => ExitAction::FailJob,
        "ignore" => ExitAction::Ignore,
        other => {
            return Err(format!(
                "exit action {other:?} is not retry, fail_task, fail_job or ignore"
            ))
        }
    };
    Ok(ExitRule { from, to, action })
}

/// One `inputs` entry, and the local path to stage if it names a source.
fn parse_input(i: FileInput) -> Result<(Input, Option<PathBuf>), String> {
    let path = i.path.unwrap_or_default();
    let within = i.within.unwrap_or_default();
    match (i.source, i.id, i.from_task) {
        (Some(source), None, None) => {
            if !within.is_empty() {
                return Err(
                    "`within` picks from an `id` or `from_task` input, not a local source".into(),
                );
            }
            let input = Input {
                path,
                source: Source::Blob(UNRESOLVED),
                within,
            };
            Ok((input, Some(PathBuf::from(source.into_inner()))))
        }
        (None, Some(id), None) => {
            let id = BlobId::parse(&id)
                .ok_or_else(|| format!("input id {id:?} is not a 64-hex blob id"))?;
            Ok((
                Input {
                    path,
                    source: Source::Blob(id),
                    within,
                },
                None,
            ))
        }
        (None, None, Some(task)) => {
            // `{ from_task = "t7", path = "out.txt" }` takes out.txt to out.txt.
            let within = if within.is_empty() {
                path.clone()
            } else {
                within
            };
            Ok((
                Input {
                    path,
                    source: Source::Task(task),
                    within,
                },
                None,
            ))
        }
        _ => Err("an input names exactly one of `source`, `id` or `from_task`".into()),
    }
}

/// `"1..=100"` (inclusive), `"0..100"` (exclusive) or `"1-100"` (inclusive).
pub fn parse_range(text: &str) -> Result<(i64, i64), String> {
    let bad = || format!("range {text:?} is not of the form 1..=100, 0..100 or 1-100");
    let num = |s: &str| s.trim().parse::<i64>().map_err(|_| bad());
    if let Some((a, b)) = text.split_once("..=") {
        Ok((num(a)?, num(b)?))
    } else if let Some((a, b)) = text.split_once("..") {
        let end = num(b)?.checked_sub(1).ok_or_else(bad)?;
        Ok((num(a)?, end))
    } else if let Some((a, b)) = text.split_once('-').filter(|(a, _)| !a.trim().is_empty()) {
        Ok((num(a)?, num(b)?))
    } else {
        Err(bad())
    }
}

/// A duration given on the command line: "90" (seconds), "90s", "10m", "2h", "7d".
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let value = match text.trim().parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(text.to_string()),
    };
    duration_ms("duration", &value)
}

/// A job's `retention`: a duration of at most [`MAX_RETENTION_MS`], or
/// `"forever"`.
fn retention_ms(value: &toml::Value) -> Result<u64, String> {
    if value.as_str().is_some_and(|s| s.trim() == "forever") {
        return Ok(RETAIN_FOREVER);
    }
    let ms = duration_ms("retention", value).map_err(|m| format!("{m}, or \"forever\""))?;
    if ms > MAX_RETENTION_MS {
        return Err(format!(
            "retention {value} is longer than {} days; write \"forever\" to keep the job until it is forgotten",
            MAX_RETENTION_MS / 86_400_000
        ));
    }
    Ok(ms)
}

/// A duration: whole seconds, or text such as "90s", "10m", "2h", "7d", "500ms".
fn duration_ms(field: &str, value: &toml::Value) -> Result<u64, String> {
    let bad = || {
        format!("{field} {value} is not a duration such as 90, \"90s\", \"10m\", \"2h\" or \"7d\"")
    };
    match value {
        toml::Value::Integer(s) if *s > 0 => (*s as u64).checked_mul(1000).ok_or_else(bad),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (n, unit) = s.split_at(split);
            let n: u64 = n.parse().map_err(|_| bad())?;
            let factor = match unit.trim() {
                "ms" => 1,
                "" | "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            if n == 0 {
                return Err(bad());
            }
            n.checked_mul(factor).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse("job.toml", text, "job", Path::new("."))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_job_file_named_without_a_directory_reads_from_the_current_one() {
        assert_eq!(dir_of(Path::new("job.toml")), Path::new("."));
        assert_eq!(dir_of(Path::new("work/job.toml")), Path::new("work"));
    }

    #[test]
    fn errors_found_after_parsing_point_at_the_value_they_are_about() {
        let cycle = "[[tasks]]\nid = \"a\"\ncommand = \"x\"\ndepends_on = [\"b\"]\n\n\
                     [[tasks]]\nid = \"b\"\ncommand = \"x\"\ndepends_on = [\"a\"]\n";
        let e = parse_err(cycle);
        assert!(e.contains("cycle"), "{e}");
        assert!(
            e.starts_with("job.toml:4:14: ") || e.starts_with("job.toml:9:14: "),
            "{e}"
        );
        let e = parse_err(
            "[[tasks]]\nid = \"a\"\ncommand = \"x\"\n[[tasks]]\nid = \"a\"\ncommand = \"y\"\n",
        );
        assert!(
            e.starts_with("job.toml:5:6: task id \"a\" appears twice"),
            "{e}"
        );
        let e =
            parse_err("[[tasks]]\nid = \"f-\"\ncommand = \"x\"\nrange = \"0..10\"\nslots = 0\n");
        assert!(
            e.starts_with("job.toml:2:6: task \"f-\": a task needs at least one slot"),
            "{e}"
        );
    }

    #[test]
    fn arrays_and_defaults() {
        let spec = parse(
            "job.toml",
            "name = \"sweep\"\n[[tasks]]\ncommand = [\"echo\", \"{index}\"]\nrange = \"1..=10\"\nstep = 3\nmax_wall_clock = \"2m\"\n",
            "job",
            Path::new("."),
        )
        .unwrap()
        .spec;
        assert_eq!(spec.name, "sweep");
        assert_eq!(spec.task_count(), 4);
        let task = spec.task(1).unwrap();
        assert_eq!(task.id, "4");
        assert_eq!(task.max_retries, DEFAULT_MAX_RETRIES);
        assert_eq!(task.max_wall_clock_ms, Some(120_000));
        assert_eq!(spec.retention_ms, DEFAULT_RETENTION_MS);
    }

    #[test]
    fn retention_is_a_bounded_duration_or_forever() {
        let retention = |value: &str| {
            let text = format!("retention = {value}\n[[tasks]]\ncommand = \"x\"\n");
            parse("job.toml", &text, "job", Path::new(".")).map(|d| d.spec.retention_ms)
        };
        assert_eq!(retention("\"90s\"").unwrap(), 90_000);
        assert_eq!(retention("\"forever\"").unwrap(), RETAIN_FOREVER);
        let e = retention("\"36501d\"").unwrap_err().to_string();
        assert!(
            e.starts_with("job.toml:1:13: retention \"36501d\" is longer than 36500 days"),
            "{e}"
        );
        let e = retention("9223372036854775807").unwrap_err().to_string();
        assert!(
            e.starts_with("job.toml:1:13: retention 9223372036854775807 is not a duration"),
            "{e}"
        );
        let e = retention("\"never\"").unwrap_err().to_string();
        assert!(e.contains("or \"forever\""), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert!(parse_err("[[tasks]]\ncomand = \"x\"\n")
            .starts_with("job.toml:2:1: unknown field `comand`"));
        assert_eq!(
            parse_err("[[tasks]]\ncommand = \"  \"\n"),
            "job.toml:2:11: empty command"
        );
        assert_eq!(
            parse_err("[[tasks]]\ncommand = \"x\"\nmax_retries = -1\n"),
            "job.toml:3:15: max_retries must be between 0 and 4294967295, got -1"
        );
        assert!(parse_err("name = \n").starts_with("job.toml:1:"));
        assert!(parse_err("[[tasks]]\ncommand = \"x\"\nrange = \"5..=1\"\n").contains("empty"));
        assert!(parse_err("tasks = []\n").contains("no tasks"));
    }

    #[test]
    fn inputs_outputs_packages_and_dependencies() {
        let text = r#"
[[tasks]]
id = "prep"
command = "true"
outputs = ["settings.json"]
[[tasks]]
id = "f"
command = "render {index}"
range = "1..=3"
inputs = [
  { path = "scene.blend", source = "scene.blend" },
  { path = "in.png", source = "frames/{index}.png" },
  { from_task = "prep", path = "settings.json" },
]
packages = ["blender@4.2"]
depends_on = ["prep"]
"#;
        let draft = parse("job.toml", text, "job", Path::new(".")).unwrap();
        assert_eq!(draft.stage.len(), 2);
        assert_eq!(draft.stage[1].path, PathBuf::from("frames/{index}.png"));
        assert_eq!(draft.packages.len(), 1);
        let task = draft.spec.task(2).unwrap();
        assert_eq!(task.inputs[2].source, Source::Task("prep".into()));
        assert_eq!(task.inputs[2].within, "settings.json");
        assert_eq!(task.packages[0].name, "blender");
    }

    #[test]
    fn escaping_paths_and_bad_references_are_refused_with_their_place() {
        let task = |extra: &str| format!("[[tasks]]\nid = \"a\"\ncommand = \"x\"\n{extra}\n");
        let e = parse_err(&task(r#"inputs = [{ path = "../x", source = "x" }]"#));
        assert!(
            e.starts_with("job.toml:4:11: task \"a\": input path \"../x\""),
            "{e}"
        );
        let e = parse_err(&task(r#"outputs = ["/etc/*"]"#));
        assert!(
            e.starts_with("job.toml:4:12: task \"a\": output pattern \"/etc/*\": "),
            "{e}"
        );
        let e = parse_err(&task(
            r#"inputs = [{ path = "x", source = "a", id = "b" }]"#,
        ));
        assert!(
            e.starts_with("job.toml:4:11: an input names exactly one"),
            "{e}"
        );
        let e = parse_err(&task(r#"packages = ["../evil@1"]"#));
        assert!(e.starts_with("job.toml:4:13: package \"../evil@1\""), "{e}");
        let e = parse_err(&task(r#"depends_on = ["nope"]"#));
        assert!(
            e.starts_with("job.toml:4:14: task \"a\" depends on \"nope\", which is not a task"),
            "{e}"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("1..=100"), Ok((1, 100)));
        assert_eq!(parse_range("0..100"), Ok((0, 99)));
        assert_eq!(parse_range("1-100"), Ok((1, 100)));
        assert!(parse_range("x").is_err());
    }
}
