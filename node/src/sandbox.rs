//! The task sandbox: what a process the node runs for a user (a task
//! attempt, a pool's start task, a job's preparation or release) can see
//! and use.
//!
//! Owns the node's flags for it, the account tasks run as (and refusing
//! root), their clean environment, resource limits, a cgroup v2 per process
//! tree where the node can make one (else the process group, with the node
//! as child subreaper), killing the whole tree whenever the command ends,
//! and capturing stdout/stderr up to a cap into node-private files. Must
//! not decide what runs or where its files come from (`exec`, `side`,
//! `stage` do) and must not touch the chunk store.

use crate::live_logs::Tap;
use crate::spawn::{self, Spawn};
use crate::task_tokens::TaskTokens;
use clap::Args;
use peerbatch_protocol::{Command, Outcome};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};

#[derive(Args, Debug, Clone)]
pub struct SandboxOpts {
    /// Run tasks, start tasks and job preparation as this account (e.g.
    /// nobody), so that they cannot read the node's key files. Needs the
    /// node to run as root.
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// Run tasks as root when the node runs as root without --run-as.
    /// Tasks can then read the node's keys and change its files.
    #[arg(long)]
    pub allow_root_tasks: bool,
    /// Most processes a task may have at once (the cgroup's pids.max where
    /// there is one, else RLIMIT_NPROC, which counts all the user's processes).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub task_max_processes: u64,
    /// Most files a task process may have open (RLIMIT_NOFILE).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub task_max_open_files: u64,
    /// Largest file a task may write, e.g. 100GiB (RLIMIT_FSIZE).
    #[arg(long, default_value = "1TiB", value_parser = crate::store::reclaim::parse_size)]
    pub task_max_file_size: u64,
    /// Bytes of a task's stdout, and of its stderr, kept; the rest is
    /// dropped and a line saying so is added, e.g. 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = crate::store::reclaim::parse_size)]
    pub max_log: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "peerbatch node runs as root, so its tasks would run as root and could read the \
         node's keys: pass --run-as USER (e.g. --run-as nobody) to run them as another \
         account, or --allow-root-tasks to run them as root anyway"
    )]
    RootTasks,
    #[error("--run-as {0}: no such user")]
    NoSuchUser(String),
    #[error("--run-as {0}: the node must run as root to run tasks as another user")]
    NotRoot(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io { what, path, source }
}

/// The account tasks run as, when not the node's own.
#[derive(Clone, Copy, Debug)]
pub struct TaskUser {
    uid: u32,
    gid: u32,
}

fn lookup_user(name: &str) -> Option<TaskUser> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both ours and large
    // enough as told; `found` is set to `&pwd` or null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        (!found.is_null()).then_some(TaskUser {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// The account the flags say tasks run as (`None`: the node's own); refuses
/// root unless allowed, and another account unless the node is root.
pub fn task_user(opts: &SandboxOpts) -> Result<Option<TaskUser>, SandboxError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match &opts.run_as {
        Some(name) if !root => Err(SandboxError::NotRoot(name.clone())),
        Some(name) => lookup_user(name)
            .map(Some)
            .ok_or_else(|| SandboxError::NoSuchUser(name.clone())),
        None if root && !opts.allow_root_tasks => Err(SandboxError::RootTasks),
        None => Ok(None),
    }
}

/// The flags a local cluster (`demo`, `bench`) gives its nodes: none for
/// a normal user; as root, tasks run as `nobody` where that account
/// exists, else as root, explicitly allowed.
pub fn local_task_account() -> Vec<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        Vec::new()
    } else if lookup_user("nobody").is_some() {
        vec!["--run-as", "nobody"]
    } else {
        vec!["--allow-root-tasks"]
    }
}

/// What one command is run with.
pub struct Run<'a> {
    pub command: &'a Command,
    /// Its working directory (made with [`Sandbox::make_dir`] or
    /// [`Sandbox::make_fresh_dir`]).
    pub dir: &'a Path,
    /// Where its stdout and stderr are captured once longer than fits in
    /// memory: node-private paths, created only then.
    pub stdout: &'a Path,
    pub stderr: &'a Path,
    /// The command's own variables, then the `PEERBATCH_*` ones (which win).
    pub env: &'a [(String, String)],
    pub peerbatch_env: Vec<(&'static str, String)>,
    pub limit_ms: Option<u64>,
    /// Memory the command asked for, enforced where the cgroup can.
    pub memory_mb: u64,
    /// Where the captures report what they keep as it comes (stdout,
    /// stderr), for a task attempt's live log.
    pub live: Option<[Tap; 2]>,
    /// A node-private file read as its standard input (a function's
    /// request body); `/dev/null` if none.
    pub stdin: Option<&'a Path>,
}

/// How a command ended, with its captured streams.
pub struct Ran {
    pub outcome: Outcome,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Every process the command started is known to have ended: its
    /// process group was empty, none had left it, and its cgroup (if any)
    /// was removed. Nothing of it can still be in its working directory.
    pub tree_gone: bool,
}

/// Bytes of a stream held in memory; a longer one goes to its capture
/// file, so that the short logs of most commands cost no file.
const IN_MEMORY: usize = 64 * 1024;

/// A captured stream, capped and with its truncation mark: in memory while
/// short, else in its node-private capture file.
#[derive(Debug)]
pub enum Captured {
    Memory(Vec<u8>),
    File(PathBuf),
}

impl Captured {
    /// Adds the node's own words at the end (why an attempt failed).
    pub fn append(&mut self, text: &str) {
        match self {
            Captured::Memory(bytes) => bytes.extend_from_slice(text.as_bytes()),
            Captured::File(path) => append(path, text),
        }
    }
}

#[derive(Clone)]
pub struct Sandbox {
    user: Option<TaskUser>,
    limits: Vec<(libc::__rlimit_resource_t, u64)>,
    max_processes: u64,
    max_log: u64,
    cgroups: Option<Arc<Cgroups>>,
    /// `PATH`, `LANG` and the node's API address for job managers.
    base_env: Arc<Vec<(String, String)>>,
    /// Each command's own API token (`PEERBATCH_TOKEN`), live while it runs.
    tokens: TaskTokens,
    /// Process groups of commands running now (for the fallback sweep).
    running: Arc<Mutex<BTreeSet<libc::pid_t>>>,
    /// Every command's standard input.
    null: Arc<fs::File>,
}

impl Sandbox {
    /// The sandbox the flags describe; refuses root tasks unless allowed.
    pub fn new(
        opts: &SandboxOpts,
        api_env: Vec<(String, String)>,
        tokens: TaskTokens,
    ) -> Result<Sandbox, SandboxError> {
        let user = task_user(opts)?;
        let cgroups = Cgroups::create().map(Arc::new);
        if cgroups.is_none() {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        let mut base_env = api_env;
        base_env.push(("LANG".into(), "C.UTF-8".into()));
        let mut limits = vec![
            (libc::RLIMIT_NOFILE, opts.task_max_open_files),
            (libc::RLIMIT_FSIZE, opts.task_max_file_size),
        ];
        if user.is_some() || cgroups.as_ref().is_none_or(|c| !c.pids) {
            limits.push((libc::RLIMIT_NPROC, opts.task_max_processes));
        }
        let null = Path::new("/dev/null");
        let null = fs::File::open(null).map_err(io_err("cannot open", null))?;
        Ok(Sandbox {
            user,
            limits,
            max_processes: opts.task_max_processes,
            max_log: opts.max_log,
            cgroups,
            base_env: Arc::new(base_env),
            tokens,
            running: Arc::default(),
            null: Arc::new(null),
        })
    }

    /// How tasks are contained here, for the node's start line.
    pub fn describe(&self) -> String {
        let who = match self.user {
            Some(u) => format!("tasks run as uid {}", u.uid),
            None => "tasks run as the node's user".into(),
        };
        let tree = match &self.cgroups {
            Some(c) => format!("a cgroup each under {}", c.root.display()),
            None => "a process group each".into(),
        };
        format!("{who}, {tree}")
    }

    /// Lets the task account into the data dir (traverse only) when tasks
    /// run as another user; the node's key files inside stay 0600.
    pub fn open_data_dir(&self, root: &Path) -> Result<(), SandboxError> {
        let Some(u) = self.user else { return Ok(()) };
        std::os::unix::fs::chown(root, None, Some(u.gid)).map_err(io_err("cannot chown", root))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o710))
            .map_err(io_err("cannot set permissions on", root))
    }

    /// Makes `dir` (and its parents), owned by the task account, private to it.
    pub fn make_dir(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        self.hand_over(dir)
    }

    /// Makes `dir`, which must not exist yet (so no process of an earlier
    /// command can be in it), owned by the task account, mode 0700.
    pub fn make_fresh_dir(&self, dir: &Path) -> std::io::Result<()> {
        fs::DirBuilder::new().mode(0o700).create(dir)?;
        self.give(dir)
    }

    /// Gives the directory `dir` itself to the task account.
    fn give(&self, dir: &Path) -> std::io::Result<()> {
        let Some(u) = self.user else { return Ok(()) };
        std::os::unix::fs::lchown(dir, Some(u.uid), Some(u.gid))
    }

    /// Gives `dir` and every directory below it (staged inputs' parents) to
    /// the task account. Files are left alone: staged inputs stay the
    /// node's, read-only.
    pub fn hand_over(&self, dir: &Path) -> std::io::Result<()> {
        if self.user.is_none() {
            return Ok(());
        }
        self.give(dir)?;
        for item in fs::read_dir(dir)? {
            let item = item?;
            if item.file_type()?.is_dir() {
                self.hand_over(&item.path())?;
            }
        }
        Ok(())
    }

    /// The environment of a command: `PATH`, `LANG`, `HOME` (its working
    /// directory) and the node's API, then its own, then `PEERBATCH_*`.
    fn env(&self, run: &Run) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = self.base_env.iter().cloned().collect();
        env.insert("HOME".into(), run.dir.display().to_string());
        env.extend(run.env.iter().cloned());
        env.extend(
            run.peerbatch_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        env.into_iter().collect()
    }

    fn spawn(
        &self,
        run: &Run,
        cgroup: Option<&TaskCgroup>,
        stdio: [i32; 3],
    ) -> Result<i32, String> {
        let env = self.env(run);
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let (program, argv) = program(run.command, path)?;
        let argv: Vec<&OsStr> = argv.iter().map(OsStr::new).collect();
        let mut spawn = Spawn::new(program.as_os_str(), &argv, &env, run.dir)
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        spawn.stdio = stdio;
        spawn.cgroup_procs = cgroup.map(|c| c.procs.as_raw_fd());
        spawn.limits = self.limits.clone();
        spawn.user = self.user.map(|u| (u.uid, u.gid));
        spawn
            .start()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))
    }

    /// Runs a command to its end, kills whatever it left running, and
    /// captures its output. The command's API token is revoked on return.
    pub async fn run(&self, mut run: Run<'_>, kill: oneshot::Receiver<()>) -> Ran {
        let token = self.tokens.issue();
        run.peerbatch_env
            .push(("PEERBATCH_TOKEN", token.secret().to_string()));
        let mut ran = Ran {
            outcome: Outcome::Exited(-1),
            stdout: Captured::Memory(Vec::new()),
            stderr: Captured::Memory(Vec::new()),
            tree_gone: false,
        };
        let cgroup = match &self.cgroups {
            Some(c) => match c.task(run.memory_mb, self.max_processes) {
                Ok(t) => Some(t),
                Err(e) => {
                    ran.outcome = Outcome::FailedToStart(format!("cannot make its cgroup: {e}"));
                    return ran;
                }
            },
            None => None,
        };
        let (pid, captures) = match self.start(&run, cgroup.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                ran.outcome = Outcome::FailedToStart(e);
                return ran;
            }
        };
        let escaped;
        (ran.outcome, escaped) = self.wait(pid, cgroup.as_ref(), run.limit_ms, kill).await;
        [ran.stdout, ran.stderr] = captures.finish().await;
        if let (Outcome::TimedOut, Some(ms)) = (&ran.outcome, run.limit_ms) {
            ran.stderr.append(&format!(
                "\npeerbatch: timed_out: killed at its wall-clock limit of {}\n",
                duration_text(ms)
            ));
        }
        let cgroup_gone = cgroup.is_none_or(TaskCgroup::remove);
        ran.tree_gone = !escaped && cgroup_gone && group_is_empty(pid);
        ran
    }

    /// Spawns the command with its output going to capture tasks.
    fn start(&self, run: &Run, cgroup: Option<&TaskCgroup>) -> Result<(i32, Captures), String> {
        let input = match run.stdin {
            Some(path) => Some(
                fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let (stop, stopped) = watch::channel(());
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        let taps = run.live.clone().map_or([None, None], |t| t.map(Some));
        for ((path, name), tap) in [(run.stdout, "stdout"), (run.stderr, "stderr")]
            .into_iter()
            .zip(taps)
        {
            let (r, w) = spawn::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(r)
                .map_err(|e| format!("cannot read a pipe: {e}"))?;
            let sink = Sink::new(path.to_path_buf(), self.max_log, tap);
            readers.push(tokio::spawn(capture(pipe, sink, name, stopped.clone())));
            writers.push(w);
        }
        let stdio = [
            input.as_ref().unwrap_or(&self.null).as_raw_fd(),
            writers[0].as_raw_fd(),
            writers[1].as_raw_fd(),
        ];
        let pid = {
            // Held across the spawn so that a sweep never takes it for an orphan.
            let mut running = self.lock_running();
            let pid = self.spawn(run, cgroup, stdio);
            if let Ok(pid) = pid {
                running.insert(pid);
            }
            pid
        };
        drop(writers);
        let readers: [_; 2] = readers.try_into().map_err(|_| "two readers".to_string())?;
        match pid {
            Ok(pid) => Ok((pid, Captures { readers, stop })),
            Err(e) => {
                for r in readers {
                    r.abort();
                }
                Err(e)
            }
        }
    }

    /// Waits for the process to end, by itself, at its limit or on `kill`;
    /// then kills its whole tree and reaps it. Also says whether any
    /// process had left the tree's process group (see [`Sandbox::ended`]).
    async fn wait(
        &self,
        pid: i32,
        cgroup: Option<&TaskCgroup>,
        limit_ms: Option<u64>,
        kill: oneshot::Receiver<()>,
    ) -> (Outcome, bool) {
        let limit = async {
            match limit_ms {
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                None => std::future::pending().await,
            }
        };
        let exited = spawn::exited(pid);
        tokio::pin!(exited);
        let (done, timed_out) = tokio::select! {
            done = &mut exited => (Some(done), false),
            _ = limit => (None, true),
            _ = kill => (None, false),
        };
        kill_tree(pid, cgroup.map(|c| c.dir.as_path()));
        let exited = match done {
            Some(done) => done,
            None => exited.await,
        };
        // Exited, so reaping does not block.
        let (outcome, escaped) = self.ended(pid, exited.and_then(|()| spawn::reap(pid)));
        if timed_out {
            (Outcome::TimedOut, escaped)
        } else {
            (outcome, escaped)
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the end of `pid`; without cgroups, kills and reaps orphans
    /// that left their process group (they were re-parented to the node),
    /// and says whether there were any: their own children may outlive
    /// them for a moment.
    fn ended(
        &self,
        pid: i32,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> (Outcome, bool) {
        let escaped = {
            let mut running = self.lock_running();
            running.remove(&pid);
            self.cgroups.is_none() && sweep_orphans(&running) > 0
        };
        if escaped {
            self.sweep_again();
        }
        let outcome = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(sig)) => Outcome::Signaled(sig),
                (None, None) => Outcome::Exited(-1),
            },
            Err(e) => Outcome::FailedToStart(format!("waiting for the process failed: {e}")),
        };
        (outcome, escaped)
    }
}

impl Sandbox {
    /// Sweeps orphans again every [`RESWEEP`] until a sweep finds none (at
    /// most [`RESWEEPS`] times): the children of a killed orphan come back
    /// to the node only once it has died.
    fn sweep_again(&self) {
        let running = self.running.clone();
        tokio::spawn(async move {
            for _ in 0..RESWEEPS {
                tokio::time::sleep(RESWEEP).await;
                let running = running.lock().unwrap_or_else(|p| p.into_inner());
                if sweep_orphans(&running) == 0 {
                    return;
                }
            }
        });
    }
}

/// How long after killing orphans the node looks for their children.
const RESWEEP: Duration = Duration::from_millis(50);
const RESWEEPS: usize = 20;

/// Whether no process is left in the process group `pgid`.
fn group_is_empty(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group has a member.
    let sent = unsafe { libc::kill(-pgid, 0) };
    sent == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// A wall-clock limit as a user wrote it: `90s`, `2m`, `1h`, `1500ms`.
pub fn duration_text(ms: u64) -> String {
    match (ms % 1000, ms / 1000) {
        (0, s) if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        (0, s) if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        (0, s) => format!("{s}s"),
        _ => format!("{ms}ms"),
    }
}

/// The program and argv of a command: a shell line under `/bin/sh -c`, or
/// a program with its arguments, a bare name looked up in `path`.
fn program(command: &Command, path: Option<&str>) -> Result<(PathBuf, Vec<String>), String> {
    match command {
        Command::Shell(line) => Ok((
            PathBuf::from("/bin/sh"),
            vec!["sh".into(), "-c".into(), line.clone()],
        )),
        Command::Argv(argv) => {
            let program = argv.first().ok_or("empty command")?;
            let found = path.filter(|_| !program.contains('/')).and_then(|p| {
                std::env::split_paths(p)
                    .map(|d| d.join(program))
                    .find(|f| f.is_file())
            });
            Ok((
                found.unwrap_or_else(|| PathBuf::from(program)),
                argv.clone(),
            ))
        }
    }
}

/// A new capture file, never through a link.
fn capture_file(path: &Path) -> Result<fs::File, String> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        // Followers of the live log read it through a copy of this descriptor.
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

pub(crate) fn append(path: &Path, text: &str) {
    let opened = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    if let Err(e) = opened.and_then(|mut f| f.write_all(text.as_bytes())) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// How long a capture still reads after its command's tree was killed: a
/// writer that escaped both cgroup and process group may hold the pipe open.
const LINGER: Duration = Duration::from_secs(5);

/// The two capture tasks of a running command.
struct Captures {
    readers: [tokio::task::JoinHandle<Captured>; 2],
    /// Dropped once the command's tree is killed: the captures then read
    /// for at most [`LINGER`].
    stop: watch::Sender<()>,
}

impl Captures {
    /// Stdout and stderr as captured, once both streams ended or lingered.
    async fn finish(self) -> [Captured; 2] {
        drop(self.stop);
        let [out, err] = self.readers;
        let lost = |_| Captured::Memory(Vec::new());
        [
            out.await.unwrap_or_else(lost),
            err.await.unwrap_or_else(lost),
        ]
    }
}

/// Where a capture goes: memory, then its file once longer than
/// [`IN_MEMORY`]; at most `cap` bytes of the stream.
struct Sink {
    path: PathBuf,
    memory: Vec<u8>,
    file: Option<fs::File>,
    cap: u64,
    kept: u64,
    total: u64,
    /// Where followers of the live log learn what was kept.
    tap: Option<Tap>,
}

impl Sink {
    fn new(path: PathBuf, cap: u64, tap: Option<Tap>) -> Sink {
        Sink {
            path,
            memory: Vec::new(),
            file: None,
            cap,
            kept: 0,
            total: 0,
            tap,
        }
    }

    /// Keeps what of `bytes` fits under the cap; a write error stops keeping.
    fn take(&mut self, bytes: &[u8], name: &str) {
        self.total += bytes.len() as u64;
        let room = self.cap.saturating_sub(self.kept).min(bytes.len() as u64) as usize;
        if room == 0 {
            return;
        }
        match self.write(&bytes[..room]) {
            Ok(()) => self.kept += room as u64,
            Err(e) => {
                tracing::warn!("cannot capture {name}: {e}");
                self.cap = self.kept;
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.file.is_none() && self.memory.len() + bytes.len() <= IN_MEMORY {
            self.memory.extend_from_slice(bytes);
            if let Some(tap) = &self.tap {
                tap.kept(bytes, None);
            }
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let mut file = capture_file(&self.path)?;
                file.write_all(&self.memory)
                    .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
                self.memory = Vec::new();
                self.file.insert(file)
            }
        };
        file.write_all(bytes)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        if let Some(tap) = &self.tap {
            tap.kept(bytes, Some(file));
        }
        Ok(())
    }

    /// What was kept, with a line saying how much was dropped.
    fn finish(mut self, name: &str) -> Captured {
        if self.total > self.kept {
            let mark = format!(
                "\n[peerbatch: {name} truncated: kept the first {} of {} bytes]\n",
                self.kept, self.total
            );
            match &mut self.file {
                Some(file) => {
                    if let Err(e) = file.write_all(mark.as_bytes()) {
                        tracing::warn!("cannot write {}: {e}", self.path.display());
                    }
                }
                None => self.memory.extend_from_slice(mark.as_bytes()),
            }
        }
        match self.file {
            Some(_) => Captured::File(self.path),
            None => Captured::Memory(self.memory),
        }
    }
}

/// Copies a stream into `sink` up to its cap and drains the rest, until the
/// stream ends or [`LINGER`] after `stopped` closes.
async fn capture(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut sink: Sink,
    name: &'static str,
    mut stopped: watch::Receiver<()>,
) -> Captured {
    let cut_off = async {
        while stopped.changed().await.is_ok() {}
        tokio::time::sleep(LINGER).await;
    };
    tokio::pin!(cut_off);
    // Small at first (most commands write little); larger once a read
    // fills it.
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        let n = tokio::select! {
            read = pipe.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = &mut cut_off => break,
        };
        sink.take(&buf[..n], name);
        if n == buf.len() {
            buf.resize(64 * 1024, 0);
        }
    }
    sink.finish(name)
}

/// Kills every process of a command: its cgroup, else its process group.
fn kill_tree(pid: i32, cgroup: Option<&Path>) {
    if let Some(dir) = cgroup {
        Cgroups::kill(dir);
    }
    // SAFETY: killpg only sends a signal; the group's leader is our child,
    // not reaped yet, so its id cannot have been reused.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
}

/// Kills and reaps the node's children that are no running command's own,
/// with the process groups they made, and returns how many it killed.
/// Without cgroups, a task's processes that left its process group come
/// back to the node, which is their child subreaper; the kernel hands them
/// to the main thread, whose children are only such orphans.
fn sweep_orphans(running: &BTreeSet<i32>) -> usize {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let children = fs::read_to_string(format!("/proc/self/task/{me}/children")).unwrap_or_default();
    let mut killed = 0;
    for pid in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name: state, ppid, pgrp.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok());
        if running.contains(&pid) || pgrp.is_some_and(|g| running.contains(&g)) {
            continue;
        }
        // SAFETY: `pid` is our own child, not reaped; its group is neither
        // a running command's nor the node's own.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            if let Some(g) = pgrp.filter(|&g| g != libc::getpgrp()) {
                libc::killpg(g, libc::SIGKILL);
            }
        }
        tokio::task::spawn_blocking(move || spawn::reap(pid));
        killed += 1;
    }
    killed
}

/// This node's cgroup v2 subtree: one child cgroup per running command.
struct Cgroups {
    root: PathBuf,
    next: AtomicU64,
    memory: bool,
    pids: bool,
}

/// One command's cgroup and its open `cgroup.procs`.
struct TaskCgroup {
    dir: PathBuf,
    procs: fs::File,
}

impl Cgroups {
    /// `peerbatch-PID` under the node's own cgroup, if cgroup v2 is mounted,
    /// the node may make cgroups there and the memory or pids controller
    /// can be enabled for them; stale ones of dead nodes are removed.
    fn create() -> Option<Cgroups> {
        let mount = cgroup2_mount()?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let base = mount.join(own.trim_start_matches('/'));
        remove_stale(&base);
        // SAFETY: getpid has no preconditions.
        let root = base.join(format!("peerbatch-{}", unsafe { libc::getpid() }));
        fs::create_dir(&root).ok()?;
        for controller in ["+memory", "+pids"] {
            let _ = fs::write(base.join("cgroup.subtree_control"), controller);
            let _ = fs::write(root.join("cgroup.subtree_control"), controller);
        }
        let enabled = fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        if !enabled.contains("memory") && !enabled.contains("pids") {
            // Without a controller to enforce, a cgroup would only cost
            // each task a migration (an RCU grace period in the kernel);
            // the process group and the subreaper sweep do the killing.
            let _ = fs::remove_dir(&root);
            return None;
        }
        Some(Cgroups {
            root,
            next: AtomicU64::new(0),
            memory: enabled.contains("memory"),
            pids: enabled.contains("pids"),
        })
    }

    fn task(&self, memory_mb: u64, max_processes: u64) -> std::io::Result<TaskCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(n.to_string());
        fs::create_dir(&dir)?;
        if self.memory && memory_mb > 0 {
            fs::write(dir.join("memory.max"), (memory_mb << 20).to_string())?;
        }
        if self.pids {
            fs::write(dir.join("pids.max"), max_processes.to_string())?;
        }
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(TaskCgroup { dir, procs })
    }

    /// Kills every process in the cgroup at `dir`.
    fn kill(dir: &Path) {
        if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            // SAFETY: kill only sends a signal to a process of the task's cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl TaskCgroup {
    /// Removes the cgroup once its killed processes are gone: at once if
    /// they are (then true), else in the background, so the command's
    /// slot is not held while the kernel finishes them off.
    fn remove(self) -> bool {
        if fs::remove_dir(&self.dir).is_ok() {
            return true;
        }
        tokio::spawn(async move {
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if fs::remove_dir(&self.dir).is_ok() {
                    return;
                }
                Cgroups::kill(&self.dir);
            }
            tracing::warn!("cannot remove cgroup {}", self.dir.display());
        });
        false
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.root);
    }
}

/// Where cgroup v2 is mounted (the unified hierarchy), from mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        let mount = before.split_whitespace().nth(4)?;
        after.starts_with("cgroup2 ").then(|| PathBuf::from(mount))
    })
}

/// Removes `peerbatch-PID` cgroups of nodes that no longer run, killing
/// what was left in them.
fn remove_stale(base: &Path) {
    let Ok(items) = fs::read_dir(base) else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("peerbatch-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for task in fs::read_dir(item.path()).into_iter().flatten().flatten() {
            if task.file_type().is_ok_and(|t| t.is_dir()) {
                Cgroups::kill(&task.path());
                let _ = fs::remove_dir(task.path());
            }
        }
        let _ = fs::remove_dir(item.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_a_user_wrote_them() {
        assert_eq!(duration_text(1000), "1s");
        assert_eq!(duration_text(90_000), "90s");
        assert_eq!(duration_text(120_000), "2m");
        assert_eq!(duration_text(7_200_000), "2h");
        assert_eq!(duration_text(1500), "1500ms");
    }

    #[test]
    fn a_bare_program_is_looked_up_in_the_tasks_path() {
        let argv = Command::Argv(vec!["sh".into(), "-c".into(), "true".into()]);
        let (found, args) = program(&argv, Some("/nonexistent:/bin:/usr/bin")).unwrap();
        assert_eq!(found, Path::new("/bin/sh"));
        assert_eq!(args, ["sh", "-c", "true"]);
        let missing = Command::Argv(vec!["no-such-program".into()]);
        let (kept, _) = program(&missing, Some("/bin")).unwrap();
        assert_eq!(kept, Path::new("no-such-program"));
    }
}
