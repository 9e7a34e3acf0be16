//! Warm workers: a function's handler kept running between calls, taking
//! them from its own runtime API (`runtime_api`), as on AWS Lambda.
//!
//! Owns each version's pool on this node — its workers, the idle ones, the
//! calls waiting for one (at most [`QUEUE_PER_POOL`], each at most
//! [`QUEUE_WAIT`], then 503) — and one worker's life: started on a call
//! with no idle worker (a cold start) or to keep `min_warm`, in a fresh
//! copy of the bundle through the task sandbox with
//! `AWS_LAMBDA_RUNTIME_API` set; reused; killed at a call's time-out (the
//! caller gets 504), after an init error or [`INIT_LIMIT`] without asking
//! for a call, after its idle time-out beyond `min_warm`, and whenever
//! the node leaves its availability window, drains or stops. A worker that
//! ends is replaced by the next call or the next [`WarmPools::keep`]. Must
//! not choose where a call runs (`route`) nor read the ledger (the driver
//! hands [`WarmPools::keep`] the warm versions serving now).

use super::runtime::{read_captured, Runtime};
use super::runtime_api::{self, Ack, Answer, Ask, Next, RuntimeApi};
use super::{Call, Reply};
use crate::sandbox::{duration_text, Run};
use crate::wallclock::wall_ms;
use crate::workdir::AttemptDir;
use libp2p::PeerId;
use peerbatch_protocol::function::{Version, Warm};
use peerbatch_protocol::{EventId, Outcome};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Warm workers on this node, of all functions together.
pub const MAX_WORKERS: usize = 128;
/// Calls one pool holds while all its workers are busy and it has no room for another.
pub const QUEUE_PER_POOL: usize = 64;
/// How long such a call waits for a worker before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// A worker must ask for its first call within this of its start.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// A busy pool queues a call here rather than forwarding it while its
/// recent calls took less than this (a mesh round trip's order).
const SHORT_CALL: Duration = Duration::from_millis(2);
/// How long stopping waits for the workers' processes to end.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Bytes of a worker's stderr logged when it ends on its own.
const LOGGED_STDERR: usize = 4 * 1024;

/// A call waiting for, or handed to, a worker.
struct Job {
    /// Unique on this node: finds the call in a queue again.
    seq: u64,
    call: Box<Call>,
    reply: oneshot::Sender<Reply>,
}

/// One version's workers on this node.
struct Pool {
    name: String,
    version: Version,
    warm: Warm,
    /// Where to fetch the bundle from.
    peers: Vec<PeerId>,
    /// Workers kept even when idle: `min_warm` while the version serves.
    keep: u32,
    /// Each live worker's stop handle.
    workers: BTreeMap<u64, mpsc::Sender<()>>,
    /// Workers waiting for a call, each with its own call channel.
    idle: Vec<(u64, mpsc::Sender<Job>)>,
    waiting: VecDeque<Job>,
    /// How long its recent calls took (a moving average); `None` before
    /// the first answer.
    recent: Option<Duration>,
}

#[derive(Default)]
struct Pools {
    by_version: HashMap<EventId, Pool>,
    workers: usize,
    /// Whether this node takes calls (inside its window, not stopping).
    open: bool,
}

/// A worker to start, reserved under the lock and started outside it.
struct Start {
    key: EventId,
    id: u64,
    name: String,
    version: Version,
    peers: Vec<PeerId>,
    first: Option<Job>,
    stop: mpsc::Receiver<()>,
}

#[derive(Clone)]
pub struct WarmPools {
    runtime: Runtime,
    pools: Arc<Mutex<Pools>>,
    next: Arc<AtomicU64>,
}

impl WarmPools {
    pub fn new(runtime: Runtime) -> WarmPools {
        let pools = Pools {
            open: true,
            ..Pools::default()
        };
        WarmPools {
            runtime,
            pools: Arc::new(Mutex::new(pools)),
            next: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pools> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn job(&self, call: Call) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let call = Box::new(call);
        (Job { seq, call, reply }, answer)
    }

    /// Hands `call` to an idle worker of `version`, or to a new one if the
    /// pool has room, or queues it here while its calls are short and
    /// fewer wait than the pool has workers (a worker then frees sooner
    /// than a peer answers a forwarded call); gives the call back when none
    /// of these holds (or this node takes no calls now).
    pub fn try_call(
        &self,
        name: &str,
        version: &Version,
        call: Call,
        peers: &[PeerId],
    ) -> Result<impl std::future::Future<Output = Reply>, Call> {
        let (job, answer) = self.job(call);
        let seq = job.seq;
        let (start, queued) = {
            let mut pools = self.lock();
            match pools.place(name, version, peers, job, &self.next) {
                Ok(start) => (start, false),
                Err(job) => match pools.queue_short(&version.event, job) {
                    Ok(()) => (None, true),
                    Err(job) => return Err(*job.call),
                },
            }
        };
        self.start(start);
        let (this, name, key) = (self.clone(), name.to_string(), version.event);
        Ok(async move {
            match queued {
                true => this.queued(&name, &key, seq, answer).await,
                false => answered(answer).await,
            }
        })
    }

    /// Waits up to [`QUEUE_WAIT`] for a worker of `version` to take
    /// `call`, else answers 503.
    pub async fn wait(&self, name: &str, version: &Version, call: Call) -> Reply {
        let (job, answer) = self.job(call);
        let seq = job.seq;
        {
            let mut pools = self.lock();
            let open = pools.open;
            let Some(pool) = pools.by_version.get_mut(&version.event) else {
                return busy(name);
            };
            if !open || pool.waiting.len() >= QUEUE_PER_POOL {
                return busy(name);
            }
            pool.waiting.push_back(job);
        }
        self.queued(name, &version.event, seq, answer).await
    }

    /// The answer of queued call `seq`, or 503 once it waited [`QUEUE_WAIT`]
    /// without a worker taking it.
    async fn queued(
        &self,
        name: &str,
        key: &EventId,
        seq: u64,
        mut answer: oneshot::Receiver<Reply>,
    ) -> Reply {
        if let Ok(reply) = tokio::time::timeout(QUEUE_WAIT, &mut answer).await {
            return reply.unwrap_or_else(|_| busy(name));
        }
        let removed = {
            let mut pools = self.lock();
            let pool = pools.by_version.get_mut(key);
            pool.and_then(|p| take_job(&mut p.waiting, seq)).is_some()
        };
        if removed {
            return busy(name);
        }
        answered(answer).await
    }

    /// Keeps `min_warm` workers of each version in `serving` (name and
    /// version) while `open`; with `open` false, stops every worker and
    /// answers the waiting calls 503 until opened again.
    pub fn keep(&self, serving: Vec<(String, Version)>, open: bool, peers: Vec<PeerId>) {
        if !open {
            self.close();
            return;
        }
        let starts = {
            let mut pools = self.lock();
            pools.open = true;
            for pool in pools.by_version.values_mut() {
                pool.keep = 0;
            }
            pools
                .by_version
                .retain(|_, p| !(p.workers.is_empty() && p.waiting.is_empty() && p.keep == 0));
            let mut starts = Vec::new();
            for (name, version) in serving {
                let Some(warm) = version.spec.warm else {
                    continue;
                };
                if warm.min_warm == 0 {
                    continue;
                }
                let key = version.event;
                let pool = pools.pool(&name, &version, &peers);
                pool.keep = warm.min_warm;
                while pools.room(&key) {
                    let pool = &pools.by_version[&key];
                    if pool.workers.len() >= pool.keep as usize {
                        break;
                    }
                    starts.push(pools.reserve(key, None, &self.next));
                }
            }
            starts
        };
        for start in starts {
            self.start(Some(start));
        }
    }

    /// Stops taking calls here: every worker is told to stop, waiting
    /// calls get 503.
    fn close(&self) {
        let waiting: Vec<Job> = {
            let mut pools = self.lock();
            if !pools.open && pools.workers == 0 {
                return;
            }
            pools.open = false;
            let pools = pools.by_version.values_mut();
            let mut waiting = Vec::new();
            for pool in pools {
                for stop in pool.workers.values() {
                    let _ = stop.try_send(());
                }
                waiting.extend(pool.waiting.drain(..));
            }
            waiting
        };
        if !waiting.is_empty() {
            tracing::info!(
                "{} waiting warm calls answered 503: this node takes no calls now",
                waiting.len()
            );
        }
        for job in waiting {
            let why = "this node stopped taking function calls; try again";
            let _ = job.reply.send(Reply::text(503, why));
        }
    }

    /// Stops every worker and waits (at most [`STOP_WAIT`]) for them to end.
    pub async fn stop(&self) {
        self.close();
        let until = Instant::now() + STOP_WAIT;
        while self.lock().workers > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn start(&self, start: Option<Start>) {
        let Some(start) = start else { return };
        let this = self.clone();
        tokio::spawn(async move { Worker::new(this, start).run().await });
    }

    /// A worker asks for a call: the first waiting one, or it is listed idle.
    fn ready(&self, key: &EventId, id: u64, calls: &mpsc::Sender<Job>) -> Option<Job> {
        let mut pools = self.lock();
        let pool = pools.by_version.get_mut(key)?;
        pool.idle.retain(|(i, _)| *i != id);
        while let Some(job) = pool.waiting.pop_front() {
            if !job.reply.is_closed() {
                return Some(job);
            }
        }
        pool.idle.push((id, calls.clone()));
        None
    }

    /// A call of `key`'s pool took `took`, from its hand-over to the answer.
    fn took(&self, key: &EventId, took: Duration) {
        let mut pools = self.lock();
        if let Some(pool) = pools.by_version.get_mut(key) {
            pool.recent = Some(pool.recent.map_or(took, |r| (r * 7 + took) / 8));
        }
    }

    /// Whether an idle worker may stop: the pool keeps more than `keep`
    /// and no call is on its way to it (it is taken off the idle list).
    fn may_stop(&self, key: &EventId, id: u64) -> bool {
        let mut pools = self.lock();
        let Some(pool) = pools.by_version.get_mut(key) else {
            return true;
        };
        let listed = pool.idle.iter().position(|(i, _)| *i == id);
        match listed {
            Some(at) if pool.workers.len() > pool.keep as usize => {
                pool.idle.remove(at);
                true
            }
            _ => false,
        }
    }

    /// A worker ended: its place is free; a waiting call starts another.
    fn ended(&self, key: &EventId, id: u64) {
        let start = {
            let mut pools = self.lock();
            let Some(pool) = pools.by_version.get_mut(key) else {
                return;
            };
            pool.idle.retain(|(i, _)| *i != id);
            if pool.workers.remove(&id).is_some() {
                pools.workers -= 1;
            }
            pools.restart_for_waiting(key, &self.next)
        };
        self.start(start);
    }

    /// Places again a call a worker took but never started on.
    fn again(&self, name: &str, version: &Version, job: Job) {
        let start = {
            let mut pools = self.lock();
            match pools.place(name, version, &[], job, &self.next) {
                Ok(start) => start,
                Err(job) => {
                    let why = format!("function {name}: its warm worker ended before the call");
                    let _ = job.reply.send(Reply::text(503, why));
                    None
                }
            }
        };
        self.start(start);
    }
}

/// The 503 of a call no worker of function `name` took in time.
fn busy(name: &str) -> Reply {
    let why = format!(
        "function {name}: its warm workers on this node are all busy or stopping; try again"
    );
    Reply::text(503, why)
}

/// A call's answer, or 500 if its worker dropped it.
async fn answered(answer: oneshot::Receiver<Reply>) -> Reply {
    answer
        .await
        .unwrap_or_else(|_| Reply::text(500, "the warm worker ended without answering the call"))
}

fn take_job(queue: &mut VecDeque<Job>, seq: u64) -> Option<Job> {
    let at = queue.iter().position(|j| j.seq == seq)?;
    queue.remove(at)
}

impl Pools {
    /// `version`'s pool, made if new; its bundle's peers refreshed.
    fn pool(&mut self, name: &str, version: &Version, peers: &[PeerId]) -> &mut Pool {
        let pool = self
            .by_version
            .entry(version.event)
            .or_insert_with(|| Pool {
                name: name.to_string(),
                version: version.clone(),
                warm: warm_of(version),
                peers: Vec::new(),
                keep: 0,
                workers: BTreeMap::new(),
                idle: Vec::new(),
                recent: None,
                waiting: VecDeque::new(),
            });
        if !peers.is_empty() {
            pool.peers = peers.to_vec();
        }
        pool
    }

    /// Whether `key`'s pool and the node have room for another worker.
    fn room(&self, key: &EventId) -> bool {
        let Some(pool) = self.by_version.get(key) else {
            return false;
        };
        self.open
            && self.workers < MAX_WORKERS
            && pool.workers.len() < pool.warm.max_per_node as usize
    }

    /// Reserves a worker in `key`'s pool (which has room), with its first call.
    fn reserve(&mut self, key: EventId, first: Option<Job>, next: &AtomicU64) -> Start {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, stop) = mpsc::channel(1);
        self.workers += 1;
        let pool = self.by_version.get_mut(&key).expect("reserved in a pool");
        pool.workers.insert(id, stop_tx);
        Start {
            key,
            id,
            name: pool.name.clone(),
            version: pool.version.clone(),
            peers: pool.peers.clone(),
            first,
            stop,
        }
    }

    /// Hands `job` to an idle worker, or reserves a new one for it.
    fn place(
        &mut self,
        name: &str,
        version: &Version,
        peers: &[PeerId],
        mut job: Job,
        next: &AtomicU64,
    ) -> Result<Option<Start>, Job> {
        if !self.open {
            return Err(job);
        }
        let pool = self.pool(name, version, peers);
        while let Some((_, calls)) = pool.idle.pop() {
            match calls.try_send(job) {
                Ok(()) => return Ok(None),
                Err(e) => job = e.into_inner(),
            }
        }
        if !self.room(&version.event) {
            return Err(job);
        }
        Ok(Some(self.reserve(version.event, Some(job), next)))
    }

    /// Queues `job` in `key`'s pool if its recent calls were short
    /// ([`SHORT_CALL`]) and fewer calls wait there than it has workers (and
    /// this node takes calls); else gives it back.
    fn queue_short(&mut self, key: &EventId, job: Job) -> Result<(), Job> {
        let open = self.open;
        let short = |p: &Pool| p.recent.is_some_and(|r| r < SHORT_CALL);
        match self.by_version.get_mut(key) {
            Some(pool) if open && short(pool) && pool.waiting.len() < pool.workers.len() => {
                pool.waiting.push_back(job);
                Ok(())
            }
            _ => Err(job),
        }
    }

    /// After a worker of `key` ended: a new worker for the first waiting
    /// call if there is room; the pool is dropped once empty.
    fn restart_for_waiting(&mut self, key: &EventId, next: &AtomicU64) -> Option<Start> {
        let pool = self.by_version.get_mut(key)?;
        pool.waiting.retain(|j| !j.reply.is_closed());
        if pool.workers.is_empty() && pool.waiting.is_empty() && pool.keep == 0 {
            self.by_version.remove(key);
            return None;
        }
        if pool.waiting.is_empty() || !self.room(key) {
            return None;
        }
        let job = self.by_version.get_mut(key)?.waiting.pop_front();
        Some(self.reserve(*key, job, next))
    }
}

/// The call a worker works on.
struct Pending {
    id: String,
    job: Job,
    handed: Instant,
    deadline: Instant,
}

/// One worker's supervisor: owns its process, its calls and its timers.
struct Worker {
    pools: WarmPools,
    key: EventId,
    id: u64,
    name: String,
    version: Version,
    peers: Vec<PeerId>,
    /// Calls placed with this worker, and their receiving end.
    calls: mpsc::Sender<Job>,
    incoming: mpsc::Receiver<Job>,
    stop: mpsc::Receiver<()>,
    /// A call placed here that its process has not asked for yet.
    held: Option<Job>,
    /// A `…/next` waiting for a call.
    asking: Option<oneshot::Sender<Next>>,
    pending: Option<Pending>,
    /// When the process asked for its first call; `None` before.
    started: bool,
    idle_until: Option<Instant>,
    init_until: Option<Instant>,
    /// Why the worker is being killed, once it is.
    killed: Option<String>,
    kill: Option<oneshot::Sender<()>>,
}

impl Worker {
    fn new(pools: WarmPools, start: Start) -> Worker {
        let (calls, incoming) = mpsc::channel(1);
        Worker {
            pools,
            key: start.key,
            id: start.id,
            name: start.name,
            version: start.version,
            peers: start.peers,
            calls,
            incoming,
            stop: start.stop,
            held: start.first,
            asking: None,
            pending: None,
            started: false,
            idle_until: None,
            init_until: None,
            killed: None,
            kill: None,
        }
    }

    fn warm(&self) -> Warm {
        warm_of(&self.version)
    }

    async fn run(mut self) {
        let runtime = self.pools.runtime.clone();
        let how = match runtime.bundle_dir(&self.version, &self.peers).await {
            Ok(d) => {
                let (how, tree_gone) = self.serve(&runtime, &d).await;
                runtime.finish(d, tree_gone);
                how
            }
            Err(e) => format!("cannot start: {e}"),
        };
        self.pools.ended(&self.key, self.id);
        self.end(&how);
    }

    /// Runs the process with its API until it ends; says how it ended and
    /// whether none of its processes is left.
    async fn serve(&mut self, runtime: &Runtime, d: &AttemptDir) -> (String, bool) {
        let (asks_tx, mut asks) = mpsc::channel(4);
        let api = match RuntimeApi::bind(asks_tx).await {
            Ok(api) => api,
            Err(e) => return (format!("cannot listen for its runtime API: {e}"), true),
        };
        let (kill_tx, kill) = oneshot::channel();
        self.kill = Some(kill_tx);
        self.init_until = Some(Instant::now() + INIT_LIMIT);
        let env = self.env(runtime, d, &api);
        let command = self.version.spec.command.clone();
        let process = runtime.sandbox.run(
            Run {
                command: &command,
                dir: &d.dir,
                stdout: &d.stdout,
                stderr: &d.stderr,
                env: &[],
                peerbatch_env: env,
                limit_ms: None,
                memory_mb: 0,
                live: None,
                stdin: None,
            },
            kill,
        );
        tokio::pin!(process);
        let ran = loop {
            tokio::select! {
                ran = &mut process => break ran,
                Some(ask) = asks.recv() => self.on_ask(ask),
                Some(job) = self.incoming.recv(), if self.held.is_none() => self.on_job(job),
                _ = at(self.pending.as_ref().map(|p| p.deadline)) => self.timed_out(),
                _ = at(self.idle_until) => self.idle(),
                _ = at(self.init_until) => {
                    let why = format!("it did not ask for a call within {INIT_LIMIT:?} of its start");
                    self.kill_for(why);
                }
                Some(()) = self.stop.recv() => self.kill_for("this node stopped taking calls".into()),
            }
        };
        drop(api);
        // An init error the process reported just before it exited.
        while let Ok(ask) = asks.try_recv() {
            if let Ask::InitError(text) = ask {
                self.killed
                    .get_or_insert(format!("its init failed: {text}"));
            }
        }
        let stderr = read_captured(ran.stderr, LOGGED_STDERR);
        let _ = read_captured(ran.stdout, 0);
        let how = match (&self.killed, &ran.outcome) {
            (Some(why), _) => format!("stopped: {why}"),
            (None, Outcome::Exited(code)) => format!("exited with code {code}"),
            (None, other) => format!("ended: {other:?}"),
        };
        if self.killed.is_none() || !self.started {
            tracing::warn!(
                "function {} version {}: a warm worker {how}; stderr: {}",
                self.name,
                self.version.number,
                String::from_utf8_lossy(&stderr).trim_end()
            );
        }
        (how, ran.tree_gone)
    }

    /// The worker's variables: Lambda's, then peerbatch's.
    fn env(
        &self,
        runtime: &Runtime,
        d: &AttemptDir,
        api: &RuntimeApi,
    ) -> Vec<(&'static str, String)> {
        let warm = self.warm();
        vec![
            ("AWS_LAMBDA_RUNTIME_API", api.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", self.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_VERSION",
                self.version.number.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("LAMBDA_TASK_ROOT", d.dir.display().to_string()),
            ("PEERBATCH_FN_NAME", self.name.clone()),
            ("PEERBATCH_FN_VERSION", self.version.number.to_string()),
            (
                "PEERBATCH_FN_IDLE_TIMEOUT_MS",
                warm.idle_timeout_ms.to_string(),
            ),
            ("PEERBATCH_NODE", runtime.node.clone()),
            ("PEERBATCH_WORK_DIR", d.dir.display().to_string()),
        ]
    }

    fn on_ask(&mut self, ask: Ask) {
        match ask {
            Ask::Next(asking) => self.on_next(asking),
            Ask::Answer { id, answer, ack } => {
                let matches = self.pending.as_ref().is_some_and(|p| p.id == id);
                let Some(pending) = self.pending.take().filter(|_| matches) else {
                    let _ = ack.send(Ack::UnknownId);
                    return;
                };
                let _ = ack.send(Ack::Accepted);
                let reply = self.reply(answer);
                let _ = pending.job.reply.send(reply);
                self.pools.took(&self.key, pending.handed.elapsed());
                self.free();
            }
            Ask::InitError(text) => self.kill_for(format!("its init failed: {text}")),
        }
    }

    fn on_next(&mut self, asking: oneshot::Sender<Next>) {
        self.started = true;
        self.init_until = None;
        if let Some(p) = self.pending.take() {
            let why = format!(
                "its worker asked for the next call without answering call {}",
                p.id
            );
            let _ = p.job.reply.send(self.failed(500, &why));
        }
        let job = self
            .held
            .take()
            .or_else(|| (self.pools).ready(&self.key, self.id, &self.calls));
        match job {
            Some(job) => self.hand(job, asking),
            None => {
                self.asking = Some(asking);
                let idle = Duration::from_millis(self.warm().idle_timeout_ms);
                self.idle_until = Some(Instant::now() + idle);
            }
        }
    }

    /// The process answered its call and will ask for the next one: the
    /// worker takes a waiting call or is listed idle at once, so a call
    /// arriving meanwhile does not start another worker.
    fn free(&mut self) {
        if self.held.is_none() {
            self.held = (self.pools).ready(&self.key, self.id, &self.calls);
        }
    }

    fn on_job(&mut self, job: Job) {
        match self.asking.take() {
            Some(asking) => self.hand(job, asking),
            None => self.held = Some(job),
        }
    }

    /// Gives `job` to the process's waiting `…/next`.
    fn hand(&mut self, job: Job, asking: oneshot::Sender<Next>) {
        if job.reply.is_closed() {
            // Its caller gave up: the process asks again for another call.
            return self.on_next(asking);
        }
        let id = request_id();
        let now = wall_ms();
        let timeout = self.version.spec.timeout_ms;
        let next = Next {
            event: runtime_api::http_event(&job.call, &id, now),
            id: id.clone(),
            deadline_ms: now + timeout,
            arn: format!(
                "arn:aws:lambda:peerbatch:000000000000:function:{}:{}",
                self.name, self.version.number
            ),
        };
        if let Err(next) = asking.send(next) {
            drop(next);
            self.held = Some(job);
            return;
        }
        self.idle_until = None;
        let deadline = Instant::now() + Duration::from_millis(timeout);
        let handed = Instant::now();
        self.pending = Some(Pending {
            id,
            job,
            handed,
            deadline,
        });
    }

    fn reply(&self, answer: Answer) -> Reply {
        let reply = match answer {
            Answer::Response(bytes) => runtime_api::reply_of(bytes)
                .map_err(|e| format!("its response is not a valid proxy response: {e}")),
            Answer::Error(text) => Err(format!("the handler reported an error: {text}")),
        };
        match reply {
            Ok(reply) => Reply {
                node: Some(self.pools.runtime.node.clone()),
                ..reply
            },
            Err(why) => self.failed(500, &why),
        }
    }

    fn failed(&self, status: u16, why: &str) -> Reply {
        (self.pools.runtime).logged(status, &self.name, &self.version, why, b"")
    }

    fn timed_out(&mut self) {
        let Some(p) = self.pending.take() else { return };
        // A call that ran out its time counts as a long one.
        self.pools.took(&self.key, p.handed.elapsed());
        let limit = duration_text(self.version.spec.timeout_ms);
        let why = format!("killed at its time-out of {limit}");
        let _ = p.job.reply.send(self.failed(504, &why));
        self.kill_for(format!("call {} ran past its time-out of {limit}", p.id));
    }

    /// Stops the worker after its idle time-out unless the pool keeps it
    /// (then it looks again one idle time-out later).
    fn idle(&mut self) {
        let idle = self.warm().idle_timeout_ms;
        if self.pools.may_stop(&self.key, self.id) {
            self.kill_for(format!("idle for {}", duration_text(idle)));
        } else {
            self.idle_until = Some(Instant::now() + Duration::from_millis(idle));
        }
    }

    fn kill_for(&mut self, why: String) {
        self.idle_until = None;
        self.init_until = None;
        if let Some(kill) = self.kill.take() {
            self.killed = Some(why);
            let _ = kill.send(());
        }
    }

    /// After the process ended: its call fails, calls placed with it
    /// but not started go elsewhere (or fail, if it never started).
    fn end(mut self, how: &str) {
        if let Some(p) = self.pending.take() {
            let why = format!("its warm worker {how} during the call");
            let _ = p.job.reply.send(self.failed(500, &why));
        }
        self.incoming.close();
        let mut placed: Vec<Job> = self.held.take().into_iter().collect();
        while let Ok(job) = self.incoming.try_recv() {
            placed.push(job);
        }
        for job in placed {
            if self.started {
                self.pools.again(&self.name, &self.version, job);
            } else {
                let why = format!("its warm worker {how}");
                let _ = job.reply.send(self.failed(500, &why));
            }
        }
    }
}

/// How `version`'s workers are kept (one at most, if it is not warm).
fn warm_of(version: &Version) -> Warm {
    version.spec.warm.unwrap_or(Warm {
        min_warm: 0,
        max_per_node: 1,
        idle_timeout_ms: peerbatch_protocol::function::DEFAULT_IDLE_TIMEOUT_MS,
    })
}

/// Resolves at `t`, never if `None`.
async fn at(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A request id shaped as Lambda's (a UUID).
fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex = peerbatch_protocol::ids::to_hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
