//! Running one invocation of a function version on this node.
//!
//! Owns how many invocations run here at once, and one invocation's run: a
//! fresh working directory (a `workdir::AttemptDir` under `FN_WORK/calls`)
//! holding the version's bundle (staged once per node by `bundles`, its
//! files hard-linked in), the request body on stdin, the call in `PEERBATCH_FN_*`
//! variables, the time-out, and turning how the handler ended into a
//! [`Reply`]. The process runs in the same sandbox as tasks (clean
//! environment, rlimits, its whole tree killed at the end). Must not
//! choose where a call runs (`route`) nor read the ledger.

use super::bundles::{Bundles, Prepared};
use super::{Call, Reply, MAX_BODY_BYTES};
use crate::sandbox::{duration_text, Captured, Run, Sandbox};
use crate::stage::Stager;
use crate::workdir::{AttemptDir, Finished, WorkDirs};
use libp2p::PeerId;
use peerbatch_protocol::function::Version;
use peerbatch_protocol::Outcome;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of the end of a handler's stderr read after its call: written
/// to the node's log when it failed, and kept in the call's record.
const LOGGED_STDERR: usize = 4 * 1024;

/// What one invocation here answered, and the end of its handler's stderr.
pub struct Ran {
    pub reply: Reply,
    pub stderr: Vec<u8>,
}

impl From<Reply> for Ran {
    /// A reply from no handler's run: nothing on stderr.
    fn from(reply: Reply) -> Ran {
        Ran {
            reply,
            stderr: Vec::new(),
        }
    }
}

#[derive(Clone)]
pub struct Runtime {
    pub(super) sandbox: Sandbox,
    /// Bundles staged on this node, linked into working directories.
    bundles: Bundles,
    /// Invocations' and warm workers' working directories.
    dirs: WorkDirs,
    /// Names working directories: unique while the node runs.
    next: Arc<AtomicU64>,
    /// One permit per invocation that may run here at once.
    room: Arc<Semaphore>,
    /// This node's peer id, named in every reply it makes.
    pub(super) node: String,
}

/// A fresh working directory with a bundle's files linked in.
pub(super) struct BundleDir {
    d: AttemptDir,
    bundle: Arc<Prepared>,
}

impl std::ops::Deref for BundleDir {
    type Target = AttemptDir;

    fn deref(&self) -> &AttemptDir {
        &self.d
    }
}

/// A place for one invocation here, held until it ends.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Runtime {
    pub fn new(
        sandbox: Sandbox,
        stager: Stager,
        root: PathBuf,
        max_invocations: usize,
        node: String,
    ) -> Runtime {
        Runtime {
            sandbox,
            bundles: Bundles::new(stager, root.clone()),
            dirs: WorkDirs::new(root.join("calls")),
            next: Arc::default(),
            room: Arc::new(Semaphore::new(max_invocations)),
            node,
        }
    }

    /// A place for one more invocation, or `None` while this node is full.
    pub fn admit(&self) -> Option<Slot> {
        self.room
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| Slot { _permit: p })
    }

    /// Runs `call` on `version` of function `name`, fetching its bundle
    /// from `peers` if this node lacks it. Runs on a task of its own, so a
    /// caller that goes away leaves the handler to its time-out.
    pub async fn invoke(
        &self,
        slot: Slot,
        name: String,
        version: Version,
        call: Call,
        peers: Vec<PeerId>,
    ) -> Ran {
        let this = self.clone();
        let run = tokio::spawn(async move {
            let ran = this.run(&name, &version, call, &peers).await;
            drop(slot);
            ran
        });
        run.await
            .unwrap_or_else(|e| Reply::text(500, format!("the invocation failed: {e}")).into())
    }

    async fn run(&self, name: &str, version: &Version, call: Call, peers: &[PeerId]) -> Ran {
        let d = match self.bundle_dir(version, peers).await {
            Ok(d) => d,
            Err(e) => return self.failed(name, version, &e).into(),
        };
        let stdin = d.stdout.with_extension("stdin");
        let (ran, tree_gone) = match std::fs::write(&stdin, &call.body) {
            Ok(()) => self.handle(name, version, &call, &d, &stdin).await,
            Err(e) => {
                let why = format!("cannot write {}: {e}", stdin.display());
                (self.failed(name, version, &why).into(), true)
            }
        };
        let _ = std::fs::remove_file(&stdin);
        self.finish(d, tree_gone);
        ran
    }

    /// A fresh working directory holding `version`'s bundle (linked from
    /// its staged copy, staged first if need be, fetched from `peers` if
    /// this node lacks it).
    pub(super) async fn bundle_dir(
        &self,
        version: &Version,
        peers: &[PeerId],
    ) -> Result<BundleDir, String> {
        let bundle = self.bundles.get(version.spec.bundle, peers).await?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let d = BundleDir {
            d: self.dirs.create(n, &self.sandbox)?,
            bundle,
        };
        let placed = d.bundle.link_into(&d.dir).and_then(|()| {
            (self.sandbox)
                .hand_over(&d.dir)
                .map_err(|e| format!("cannot hand {} to the handler: {e}", d.dir.display()))
        });
        match placed {
            Ok(()) => Ok(d),
            Err(e) => {
                self.finish(d, false);
                Err(format!("cannot place its bundle: {e}"))
            }
        }
    }

    /// Removes a working directory [`Runtime::bundle_dir`] made, or keeps
    /// it as a spare for the next: once none of its processes is left
    /// (`tree_gone`), the bundle's links are taken out, and if that leaves
    /// it bare the working directories keep it (see `workdir`).
    pub(super) fn finish(&self, d: BundleDir, tree_gone: bool) {
        let bare = tree_gone && d.bundle.unlink_from(&d.dir);
        let how = Finished {
            had_packages: false,
            tree_gone: bare,
        };
        self.dirs.finish(d.d, how);
    }

    async fn handle(
        &self,
        name: &str,
        version: &Version,
        call: &Call,
        d: &AttemptDir,
        stdin: &std::path::Path,
    ) -> (Ran, bool) {
        let (_never, kill) = tokio::sync::oneshot::channel::<()>();
        let env = header_env(&call.headers);
        let ran = (self.sandbox)
            .run(
                Run {
                    command: &version.spec.command,
                    dir: &d.dir,
                    stdout: &d.stdout,
                    stderr: &d.stderr,
                    env: &env,
                    peerbatch_env: self.fn_env(name, version, call, d),
                    limit_ms: Some(version.spec.timeout_ms),
                    memory_mb: 0,
                    live: None,
                    stdin: Some(stdin),
                },
                kill,
            )
            .await;
        let stdout = read_captured(ran.stdout, MAX_BODY_BYTES + 1);
        let stderr = read_tail(ran.stderr, LOGGED_STDERR);
        let reply = match ran.outcome {
            Outcome::Exited(0) if stdout.len() > MAX_BODY_BYTES => {
                let why = format!("its response is over {} MiB", MAX_BODY_BYTES >> 20);
                self.failed(name, version, &why)
            }
            Outcome::Exited(0) => Reply {
                status: 200,
                headers: Vec::new(),
                body: stdout,
                node: Some(self.node.clone()),
            },
            Outcome::TimedOut => {
                let limit = duration_text(version.spec.timeout_ms);
                let why = format!("killed at its time-out of {limit}");
                self.logged(504, name, version, &why, &stderr)
            }
            other => {
                let why = match other.exit_code() {
                    Some(code) => format!("exited with code {code}"),
                    None => format!("{other:?}"),
                };
                self.logged(500, name, version, &why, &stderr)
            }
        };
        (Ran { reply, stderr }, ran.tree_gone)
    }

    /// The call's `PEERBATCH_*` variables.
    fn fn_env(
        &self,
        name: &str,
        version: &Version,
        call: &Call,
        d: &AttemptDir,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("PEERBATCH_FN_NAME", name.to_string()),
            ("PEERBATCH_FN_VERSION", version.number.to_string()),
            ("PEERBATCH_FN_METHOD", call.method.clone()),
            ("PEERBATCH_FN_PATH", call.path.clone()),
            ("PEERBATCH_FN_QUERY", call.query.clone()),
            ("PEERBATCH_NODE", self.node.clone()),
            ("PEERBATCH_WORK_DIR", d.dir.display().to_string()),
        ]
    }

    /// A 500 for an invocation that could not run; says why in the log.
    pub(super) fn failed(&self, name: &str, version: &Version, why: &str) -> Reply {
        self.logged(500, name, version, why, b"")
    }

    /// An answer `status` whose reason goes to the caller and, with the
    /// handler's stderr, to the node's log.
    pub(super) fn logged(
        &self,
        status: u16,
        name: &str,
        version: &Version,
        why: &str,
        stderr: &[u8],
    ) -> Reply {
        let text = format!("function {name} version {}: {why}", version.number);
        tracing::warn!(
            "{text}; stderr: {}",
            String::from_utf8_lossy(stderr).trim_end()
        );
        Reply {
            node: Some(self.node.clone()),
            ..Reply::text(status, text)
        }
    }
}

/// Each request header as `PEERBATCH_FN_HEADER_NAME` (upper case, `-` and
/// other signs as `_`), as CGI passes `HTTP_*`.
fn header_env(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let key: String = k
                .chars()
                .map(|c| match c {
                    'a'..='z' => c.to_ascii_uppercase(),
                    'A'..='Z' | '0'..='9' => c,
                    _ => '_',
                })
                .collect();
            (format!("PEERBATCH_FN_HEADER_{key}"), v.clone())
        })
        .collect()
}

/// The last `limit` bytes (at most) of a captured stream; removes its
/// spill file.
fn read_tail(captured: Captured, limit: usize) -> Vec<u8> {
    match captured {
        Captured::Memory(mut bytes) => {
            bytes.drain(..bytes.len().saturating_sub(limit));
            bytes
        }
        Captured::File(path) => {
            let mut bytes = Vec::new();
            if let Ok(mut f) = std::fs::File::open(&path) {
                let len = f.metadata().map_or(0, |m| m.len());
                let from = len.saturating_sub(limit as u64);
                if f.seek(SeekFrom::Start(from)).is_ok() {
                    let _ = f.take(limit as u64).read_to_end(&mut bytes);
                }
            }
            let _ = std::fs::remove_file(&path);
            bytes
        }
    }
}

/// Up to `limit` bytes of a captured stream; removes its spill file.
pub(super) fn read_captured(captured: Captured, limit: usize) -> Vec<u8> {
    match captured {
        Captured::Memory(mut bytes) => {
            bytes.truncate(limit);
            bytes
        }
        Captured::File(path) => {
            let mut bytes = Vec::new();
            if let Ok(f) = std::fs::File::open(&path) {
                let _ = f.take(limit as u64).read_to_end(&mut bytes);
            }
            let _ = std::fs::remove_file(&path);
            bytes
        }
    }
}
