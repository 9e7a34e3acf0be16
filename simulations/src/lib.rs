//! peerbatch-simulations: many protocol cores in one process, under faults.
//!
//! Owns the simulated world around real [`peerbatch_protocol::Core`]s: a
//! seeded, single-threaded network of timed, lossy deliveries, one in-memory
//! store per node, a simulated executor, optional crash/restart of nodes and
//! network partitions, and the checks of the design's invariants. It drives the cores only through
//! their public API and must not copy or reach into protocol logic. Same
//! [`SimConfig`] (seed included) ⇒ the same run, event for event.
//!
//! Checked after every input a node handles: every event it sends is in its
//! store already (nothing gossiped before it is durable), no attempt over
//! max retries starts, its count of terminal tasks never drops, and no task
//! fails unless failing attempts, or more crashes and partitions than max
//! retries, are injected. Every second, per task on
//! every node: no terminal state reverts, open attempts never go back, no
//! attempt number exceeds max retries. At the end (every task terminal
//! everywhere, every replica holding the same events): byte-identical state,
//! one canonical result per task and the same one everywhere, no process
//! left running, and the cores' start counters match what the executor saw.

use peerbatch_protocol::core::Destination;
use peerbatch_protocol::{
    Action, Command, Config, Core, Identity, JobId, JobSpec, MemStore, Message, Millis, NodeId,
    Outcome, TaskRef, TaskResult, TaskSpec, TaskState,
};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::rc::Rc;

/// One simulated run: the world, the workload and the faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Tasks in all, split evenly over `jobs` task-array jobs.
    pub tasks: u32,
    pub jobs: u32,
    /// Probability that one delivery (gossip or direct) is lost.
    pub loss: f64,
    /// Delivery delay range in ms, inclusive.
    pub delay_ms: (u64, u64),
    /// Simulated task duration range in ms, inclusive.
    pub task_ms: (u64, u64),
    /// Probability that an attempt exits with code 1 instead of 0.
    pub fail_rate: f64,
    pub max_retries: u32,
    /// Jobs are submitted at random times in `[0, submit_window_ms]`.
    pub submit_window_ms: u64,
    /// Cancel the first job from a random node at a random time after the
    /// submit window.
    pub cancel: bool,
    /// How many times a random node crashes (losing its processes and its
    /// in-flight messages) and restarts from its store.
    pub crashes: u32,
    /// How many times, one after another, the nodes split into two random
    /// halves that hear nothing from each other for a few lease periods.
    pub partitions: u32,
    /// Give up (a liveness violation) after this much simulated time.
    pub time_limit_ms: u64,
    /// Protocol tunables of every node.
    pub core: Config,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 50,
            tasks: 2_000,
            jobs: 2,
            loss: 0.1,
            delay_ms: (1, 20),
            task_ms: (100, 1_000),
            fail_rate: 0.0,
            max_retries: 3,
            submit_window_ms: 1_000,
            cancel: false,
            crashes: 0,
            partitions: 0,
            time_limit_ms: 600_000,
            core: Config::default(),
        }
    }
}

/// The figures of a finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub tasks: u32,
    /// Simulated ms until some node saw every task terminal.
    pub done_ms: u64,
    /// Simulated ms until every task was terminal on every node.
    pub finished_ms: u64,
    /// Simulated ms until every node held the same events and state.
    pub converged_ms: u64,
    pub wall_ms: u128,
    /// Deliveries attempted (a gossip counts once per receiver).
    pub messages: u64,
    pub dropped: u64,
    /// Ledger events on each node at the end.
    pub events: usize,
    /// Attempts started on all nodes (the cores' counters, summed).
    pub attempts_started: u64,
    /// Tasks that were started at least once.
    pub tasks_started: u64,
    /// Starts of an attempt number some node had already started: the
    /// at-least-once overlap, without retries.
    pub same_attempt_starts: u64,
    pub attempts_fenced: u64,
    pub events_rejected: u64,
    pub tasks_failed: u32,
    pub tasks_cancelled: u32,
    /// A hash of everything that happened, equal for equal configs.
    pub run_digest: [u8; 32],
}

impl Report {
    /// Attempts started beyond the first of each task (retries included).
    pub fn duplicates(&self) -> u64 {
        self.attempts_started - self.tasks_started
    }

    pub fn duplicates_per_1000(&self) -> f64 {
        self.duplicates() as f64 * 1000.0 / f64::from(self.tasks.max(1))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} nodes, {} tasks: done at {:.3} s simulated, terminal everywhere at {:.3} s, \
             converged at {:.3} s, \
             wall {:.3} s, {} messages ({} dropped), {} events, {} attempts started, \
             {} duplicates ({:.1} per 1000 tasks; {} of an attempt already started), \
             {} fenced, {} failed, {} cancelled, digest {}",
            self.seed,
            self.nodes,
            self.tasks,
            self.done_ms as f64 / 1000.0,
            self.finished_ms as f64 / 1000.0,
            self.converged_ms as f64 / 1000.0,
            self.wall_ms as f64 / 1000.0,
            self.messages,
            self.dropped,
            self.events,
            self.attempts_started,
            self.duplicates(),
            self.duplicates_per_1000(),
            self.same_attempt_starts,
            self.attempts_fenced,
            self.tasks_failed,
            self.tasks_cancelled,
            hex(&self.run_digest[..8]),
        )
    }
}

/// An invariant that did not hold, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: invariant violated at {} ms: {}",
            self.seed, self.at_ms, self.what
        )
    }
}

impl std::error::Error for Violation {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one simulation to convergence, checking invariants along the way.
pub fn run(cfg: &SimConfig) -> Result<Report, Violation> {
    let wall = std::time::Instant::now();
    let mut sim = Sim::new(cfg.clone());
    let result = sim.run();
    result.map(|()| sim.report(wall.elapsed().as_millis()))
}

enum Item {
    Deliver {
        to: usize,
        from: usize,
        gossip: bool,
        msg: Rc<Message>,
    },
    Exit {
        node: usize,
        task: TaskRef,
        attempt: u32,
        token: u64,
        outcome: Outcome,
        duration_ms: u64,
    },
    Timer {
        node: usize,
        at: Millis,
    },
    Submit {
        job: u32,
    },
    Cancel,
    Crash,
    Partition,
    Heal,
    Restart {
        node: usize,
    },
    Check,
}

struct Entry {
    at: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What a node has shown of one task so far, for the monotonicity checks.
#[derive(Clone, Copy, Default)]
struct Seen {
    attempt: u32,
    terminal: bool,
}

struct SimNode {
    id: NodeId,
    seed: [u8; 32],
    store: MemStore,
    core: Option<Core<MemStore>>,
    /// The time the queued timer entry fires at, if one is queued.
    timer: Option<Millis>,
    /// Consecutive timeouts handled at one instant, to catch a busy loop.
    spins: (u64, u32),
    /// Simulated processes: (task, attempt) → token of the pending exit,
    /// and whether the process was told to die.
    procs: BTreeMap<(TaskRef, u32), (u64, bool)>,
    /// Per job, by task index.
    seen: BTreeMap<JobId, Vec<Seen>>,
    /// Terminal tasks per job at the last check, across restarts.
    done: BTreeMap<JobId, u32>,
    /// Counters of earlier incarnations (before crashes).
    retired: peerbatch_protocol::core::Stats,
}

/// Interval of the end-of-run test and of the per-job count checks.
const CHECK_EVERY_MS: u64 = 100;
/// Interval of the per-task scans of every node (the costly check).
const SCAN_EVERY_MS: u64 = 1_000;
/// How long a killed process takes to exit.
const KILL_MS: u64 = 1;
/// Timeouts one node may ask for at one instant before it counts as a busy loop.
const MAX_SPINS: u32 = 1_000;

struct Sim {
    cfg: SimConfig,
    rng: SmallRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Entry>,
    nodes: Vec<SimNode>,
    index: BTreeMap<NodeId, usize>,
    jobs: Vec<Option<(JobId, u32)>>,
    next_token: u64,
    messages: u64,
    dropped: u64,
    trace: blake3::Hasher,
    done_ms: Option<u64>,
    finished_ms: Option<u64>,
    converged_ms: Option<u64>,
    restarts_pending: u32,
    /// While partitioned: which side each node is on.
    side: Option<Vec<bool>>,
    /// Partitions not yet healed.
    partitions_left: u32,
    /// How many times each attempt was started, over all nodes.
    started: BTreeMap<(TaskRef, u32), u64>,
}

impl Sim {
    fn new(cfg: SimConfig) -> Sim {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for _ in 0..cfg.nodes {
            let seed: [u8; 32] = rng.gen();
            let id = Identity::from_seed(seed).node_id();
            nodes.push(SimNode {
                id,
                seed,
                store: MemStore::default(),
                core: None,
                timer: None,
                spins: (0, 0),
                procs: BTreeMap::new(),
                seen: BTreeMap::new(),
                done: BTreeMap::new(),
                retired: Default::default(),
            });
        }
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let jobs = vec![None; cfg.jobs.max(1) as usize];
        let partitions_left = cfg.partitions;
        Sim {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            index,
            jobs,
            next_token: 0,
            messages: 0,
            dropped: 0,
            trace: blake3::Hasher::new(),
            done_ms: None,
            finished_ms: None,
            converged_ms: None,
            restarts_pending: 0,
            side: None,
            partitions_left,
            started: BTreeMap::new(),
        }
    }

    fn violation(&self, what: impl Into<String>) -> Violation {
        Violation {
            seed: self.cfg.seed,
            at_ms: self.now,
            what: what.into(),
        }
    }

    fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    fn core(&mut self, node: usize) -> &mut Core<MemStore> {
        self.nodes[node]
            .core
            .as_mut()
            .expect("only live nodes get inputs")
    }

    fn start_node(&mut self, node: usize) {
        let n = &self.nodes[node];
        let core_seed = self.rng.gen();
        let core = Core::new(
            Identity::from_seed(n.seed),
            self.cfg.core.clone(),
            n.store.clone(),
            n.store.all(),
            core_seed,
            Millis(self.now),
        );
        self.nodes[node].core = Some(core);
    }

    fn run(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        let now = Millis(self.now);
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if a != b {
                    let peer = self.nodes[b].id;
                    self.core(a).handle_peer_up(now, peer);
                }
            }
        }
        for node in 0..self.nodes.len() {
            self.pump(node)?;
        }
        for job in 0..self.jobs.len() as u32 {
            let at = self.rng.gen_range(0..=self.cfg.submit_window_ms);
            self.push(at, Item::Submit { job });
        }
        if self.cfg.cancel {
            let at = self.cfg.submit_window_ms + self.rng.gen_range(1..=5_000);
            self.push(at, Item::Cancel);
        }
        if self.cfg.partitions > 0 {
            let at = self.rng.gen_range(1_000..=10_000);
            self.push(at, Item::Partition);
        }
        for _ in 0..self.cfg.crashes {
            let at = self.rng.gen_range(1_000..=20_000);
            self.push(at, Item::Crash);
        }
        self.push(CHECK_EVERY_MS, Item::Check);
        while let Some(Entry { at, item, .. }) = self.queue.pop() {
            self.now = at;
            if self.now > self.cfg.time_limit_ms {
                return Err(self.violation(format!(
                    "not converged within {} ms: {}",
                    self.cfg.time_limit_ms,
                    self.describe_progress()
                )));
            }
            if self.step(item)? {
                return Ok(());
            }
        }
        Err(self.violation("the event queue ran dry"))
    }

    /// Handles one queued item; true once the run is over.
    fn step(&mut self, item: Item) -> Result<bool, Violation> {
        let now = Millis(self.now);
        match item {
            Item::Deliver {
                to,
                from,
                gossip,
                msg,
            } => {
                if self.nodes[to].core.is_none() {
                    return Ok(false);
                }
                self.trace.update(&self.now.to_le_bytes());
                self.trace.update(&[b'd', gossip as u8, kind(&msg)]);
                self.trace.update(&(to as u32).to_le_bytes());
                self.trace.update(&(from as u32).to_le_bytes());
                let msg = Rc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                let from = self.nodes[from].id;
                if gossip {
                    self.core(to).handle_gossip(now, from, msg);
                } else {
                    self.core(to).handle_message(now, from, msg);
                }
                self.pump(to)?;
            }
            Item::Exit {
                node,
                task,
                attempt,
                token,
                outcome,
                duration_ms,
            } => {
                if self.nodes[node].procs.get(&(task, attempt)).map(|p| p.0) != Some(token) {
                    return Ok(false);
                }
                self.nodes[node].procs.remove(&(task, attempt));
                self.trace.update(&self.now.to_le_bytes());
                self.trace.update(b"x");
                self.trace.update(&(node as u32).to_le_bytes());
                self.trace.update(&task.index.to_le_bytes());
                self.trace.update(&attempt.to_le_bytes());
                self.core(node).task_exited(
                    now,
                    TaskResult {
                        task,
                        attempt,
                        outcome,
                        stdout: None,
                        stderr: None,
                        outputs: None,
                        duration_ms,
                    },
                );
                self.pump(node)?;
            }
            Item::Timer { node, at } => {
                if self.nodes[node].timer != Some(at) || self.nodes[node].core.is_none() {
                    return Ok(false);
                }
                self.nodes[node].timer = None;
                let spins = &mut self.nodes[node].spins;
                if spins.0 == self.now {
                    spins.1 += 1;
                    if spins.1 > MAX_SPINS {
                        return Err(self.violation(format!(
                            "node {node} asked for {MAX_SPINS} timeouts at one instant (busy loop)"
                        )));
                    }
                } else {
                    *spins = (self.now, 0);
                }
                self.core(node).handle_timeout(now);
                self.pump(node)?;
            }
            Item::Submit { job } => {
                let node = self.random_node(|_| true);
                let count = self.job_tasks(job);
                let spec = JobSpec::array(
                    format!("sim-{job}"),
                    TaskSpec::new(
                        "t",
                        Command::Argv(vec!["true".into()]),
                        self.cfg.max_retries,
                    ),
                    0,
                    i64::from(count) - 1,
                );
                let wall_ms = self.now;
                let submitted = self.core(node).submit(now, spec, wall_ms);
                let (id, _) =
                    submitted.map_err(|e| self.violation(format!("submit refused: {e}")))?;
                self.jobs[job as usize] = Some((id, count));
                self.pump(node)?;
            }
            Item::Cancel => {
                let (job, _) = self.jobs[0].expect("cancelled after the submit window");
                let node = self.random_node(|core| core.ledger().job(&job).is_some());
                self.trace.update(&self.now.to_le_bytes());
                self.trace.update(b"k");
                if self.core(node).cancel(now, job) {
                    self.pump(node)?;
                } else {
                    // Every node that knew the job is down: try again later.
                    self.push(self.now + 1_000, Item::Cancel);
                }
            }
            Item::Crash => self.crash()?,
            Item::Partition => {
                let n = self.nodes.len();
                let cut = self.rng.gen_range(1..n);
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                let mut side = vec![false; n];
                for &i in &order[..cut] {
                    side[i] = true;
                }
                self.side = Some(side);
                let lease = self.cfg.core.lease_ms + self.cfg.core.grace_ms;
                let heal = self.now + self.rng.gen_range(lease / 2..=lease * 3);
                self.trace.update(&self.now.to_le_bytes());
                self.trace.update(b"p");
                self.push(heal, Item::Heal);
            }
            Item::Heal => {
                self.side = None;
                self.partitions_left -= 1;
                self.trace.update(&self.now.to_le_bytes());
                self.trace.update(b"h");
                if self.partitions_left > 0 {
                    let at = self.now + self.rng.gen_range(1_000..=10_000);
                    self.push(at, Item::Partition);
                }
            }
            Item::Restart { node } => self.restart(node)?,
            Item::Check => {
                if self.now.is_multiple_of(SCAN_EVERY_MS) {
                    self.check_all()?;
                }
                if self.finished()? {
                    return Ok(true);
                }
                self.push(self.now + CHECK_EVERY_MS, Item::Check);
            }
        }
        Ok(false)
    }

    /// A random live node that passes `filter`, else any live node.
    fn random_node(&mut self, filter: impl Fn(&Core<MemStore>) -> bool) -> usize {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].core.as_ref().is_some_and(&filter))
            .collect();
        let live = if live.is_empty() {
            (0..self.nodes.len())
                .filter(|n| self.nodes[*n].core.is_some())
                .collect()
        } else {
            live
        };
        live[self.rng.gen_range(0..live.len())]
    }

    /// Whether no task may fail: no failing attempts, and too few crashes
    /// and partitions to reclaim any task past its last attempt (each
    /// reclaims at most one attempt of a task).
    fn never_fails(&self) -> bool {
        self.cfg.fail_rate == 0.0 && self.cfg.crashes + self.cfg.partitions <= self.cfg.max_retries
    }

    fn job_tasks(&self, job: u32) -> u32 {
        let jobs = self.jobs.len() as u32;
        self.cfg.tasks / jobs + u32::from(job < self.cfg.tasks % jobs)
    }

    /// Carries one node's outputs out, in the order the driver contract
    /// demands: persist, then transmit, then act; then re-arms its timer.
    fn pump(&mut self, node: usize) -> Result<(), Violation> {
        let now = self.now;
        let n = &mut self.nodes[node];
        let Some(core) = n.core.as_mut() else {
            return Ok(());
        };
        while let Some((id, bytes)) = core.poll_persist() {
            n.store.put(id, bytes);
        }
        let mut transmits = Vec::new();
        while let Some(t) = core.poll_transmit() {
            transmits.push(t);
        }
        let mut actions = Vec::new();
        while let Some(a) = core.poll_action() {
            actions.push(a);
        }
        let timeout = core.poll_timeout();
        for t in transmits {
            if let Message::Events { events } = &t.msg {
                for bytes in events {
                    let id = peerbatch_protocol::event::event_id(bytes);
                    if !self.nodes[node].store.contains(&id) {
                        return Err(self.violation(format!(
                            "node {node} sent event {id} before persisting it"
                        )));
                    }
                }
            }
            let msg = Rc::new(t.msg);
            match t.to {
                Destination::Gossip => {
                    for to in 0..self.nodes.len() {
                        if to != node {
                            self.deliver(node, to, true, msg.clone());
                        }
                    }
                }
                Destination::Peer(peer) => {
                    let Some(&to) = self.index.get(&peer) else {
                        return Err(self.violation(format!("node {node} sent to unknown {peer}")));
                    };
                    if to == node {
                        return Err(self.violation(format!("node {node} sent to itself")));
                    }
                    self.deliver(node, to, false, msg);
                }
            }
        }
        for action in actions {
            match action {
                Action::Run { task, attempt, .. } => {
                    if attempt > self.cfg.max_retries {
                        return Err(self.violation(format!(
                            "node {node} started attempt {attempt} of {task:?}, over max retries {}",
                            self.cfg.max_retries
                        )));
                    }
                    *self.started.entry((task, attempt)).or_default() += 1;
                    let duration_ms = self.rng.gen_range(self.cfg.task_ms.0..=self.cfg.task_ms.1);
                    let outcome = if self.rng.gen_bool(self.cfg.fail_rate) {
                        Outcome::Exited(1)
                    } else {
                        Outcome::Exited(0)
                    };
                    let token = self.token();
                    if self.nodes[node]
                        .procs
                        .insert((task, attempt), (token, false))
                        .is_some()
                    {
                        return Err(self.violation(format!(
                            "node {node} started attempt {attempt} of {task:?} twice"
                        )));
                    }
                    self.push(
                        now + duration_ms,
                        Item::Exit {
                            node,
                            task,
                            attempt,
                            token,
                            outcome,
                            duration_ms,
                        },
                    );
                }
                Action::Kill { task, attempt } => {
                    if self.nodes[node].procs.contains_key(&(task, attempt)) {
                        let token = self.token();
                        self.nodes[node]
                            .procs
                            .insert((task, attempt), (token, true));
                        self.push(
                            now + KILL_MS,
                            Item::Exit {
                                node,
                                task,
                                attempt,
                                token,
                                outcome: Outcome::Signaled(9),
                                duration_ms: 0,
                            },
                        );
                    }
                }
            }
        }
        if let Some(at) = timeout {
            if self.nodes[node].timer != Some(at) {
                self.nodes[node].timer = Some(at);
                self.push(at.0.max(now), Item::Timer { node, at });
            }
        }
        self.check_progress(node)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn deliver(&mut self, from: usize, to: usize, gossip: bool, msg: Rc<Message>) {
        self.messages += 1;
        let cut_off = self
            .side
            .as_ref()
            .is_some_and(|side| side[from] != side[to]);
        if self.rng.gen_bool(self.cfg.loss) || cut_off {
            self.dropped += 1;
            return;
        }
        let delay = self
            .rng
            .gen_range(self.cfg.delay_ms.0..=self.cfg.delay_ms.1);
        self.push(
            self.now + delay,
            Item::Deliver {
                to,
                from,
                gossip,
                msg,
            },
        );
    }

    /// Kills a random live node: its processes and queued inputs are lost,
    /// its store survives; it restarts a few lease periods later.
    fn crash(&mut self) -> Result<(), Violation> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].core.is_some())
            .collect();
        if live.len() < 2 {
            return Ok(());
        }
        let node = live[self.rng.gen_range(0..live.len())];
        let n = &mut self.nodes[node];
        let core = n.core.take().expect("picked a live node");
        let stats = core.stats();
        n.retired.attempts_started += stats.attempts_started;
        n.retired.attempts_fenced += stats.attempts_fenced;
        n.retired.events_rejected += stats.events_rejected;
        n.procs.clear();
        n.timer = None;
        let id = n.id;
        self.trace.update(&self.now.to_le_bytes());
        self.trace.update(b"c");
        self.trace.update(&(node as u32).to_le_bytes());
        let lease = self.cfg.core.lease_ms + self.cfg.core.grace_ms;
        let down = self.rng.gen_range(lease / 2..=lease * 3);
        self.restarts_pending += 1;
        self.push(self.now + down, Item::Restart { node });
        let now = Millis(self.now);
        for other in live {
            if other != node {
                self.core(other).handle_peer_down(now, id);
                self.pump(other)?;
            }
        }
        Ok(())
    }

    fn restart(&mut self, node: usize) -> Result<(), Violation> {
        self.restarts_pending -= 1;
        self.start_node(node);
        self.trace.update(&self.now.to_le_bytes());
        self.trace.update(b"r");
        self.trace.update(&(node as u32).to_le_bytes());
        let now = Millis(self.now);
        let id = self.nodes[node].id;
        for other in 0..self.nodes.len() {
            if other != node && self.nodes[other].core.is_some() {
                let peer = self.nodes[other].id;
                self.core(node).handle_peer_up(now, peer);
                self.core(other).handle_peer_up(now, id);
                self.pump(other)?;
            }
        }
        self.pump(node)?;
        // A restart must not lose anything the node had shown.
        self.check_node(node)
    }

    /// Cheap checks after every input: per-job counts only.
    fn check_progress(&mut self, node: usize) -> Result<(), Violation> {
        for (job, _) in self.jobs.iter().flatten() {
            let p = self.nodes[node]
                .core
                .as_ref()
                .expect("live node")
                .progress(job);
            if self.never_fails() && p.failed > 0 {
                return Err(self.violation(format!(
                    "node {node}: {} tasks of job {job} failed with no failure injected",
                    p.failed
                )));
            }
            let done = p.done();
            let before = self.nodes[node].done.insert(*job, done).unwrap_or(0);
            if done < before {
                return Err(self.violation(format!(
                    "node {node}: job {job} went from {before} to {done} terminal tasks"
                )));
            }
        }
        Ok(())
    }

    /// Per-task checks on one node: monotonic attempts and terminal states,
    /// attempts within max retries.
    fn check_node(&mut self, node: usize) -> Result<(), Violation> {
        let mut problems = Vec::new();
        let n = &mut self.nodes[node];
        let Some(core) = n.core.as_ref() else {
            return Ok(());
        };
        for (job, count) in self.jobs.iter().flatten() {
            let seen_job = n
                .seen
                .entry(*job)
                .or_insert_with(|| vec![Seen::default(); *count as usize]);
            for v in core.views(*job) {
                if v.attempt > self.cfg.max_retries {
                    problems.push(format!("{:?} at attempt {}", v.task, v.attempt));
                }
                let terminal = v.state.terminal();
                let seen = &mut seen_job[v.task.index as usize];
                if seen.terminal && !terminal {
                    problems.push(format!("{:?} left a terminal state for {:?}", v.task, v));
                }
                // A terminal view shows its canonical result's attempt, which
                // may be lower than the last live one; live attempts only grow.
                if !terminal && v.attempt < seen.attempt {
                    problems.push(format!(
                        "{:?} went back from attempt {} to {}",
                        v.task, seen.attempt, v.attempt
                    ));
                }
                seen.terminal |= terminal;
                if !terminal {
                    seen.attempt = v.attempt;
                }
            }
        }
        match problems.first() {
            None => Ok(()),
            Some(first) => Err(self.violation(format!(
                "node {node}: {first} ({} problems)",
                problems.len()
            ))),
        }
    }

    fn check_all(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            self.check_node(node)?;
        }
        Ok(())
    }

    fn describe_progress(&self) -> String {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(core) = n.core.as_ref() else {
                out.push(format!("node {i} down"));
                continue;
            };
            for (job, count) in self.jobs.iter().flatten() {
                let p = core.progress(job);
                if p.done() != *count {
                    out.push(format!("node {i} job {job}: {p:?}"));
                }
            }
        }
        out.truncate(5);
        if out.is_empty() {
            "all tasks terminal, replicas differ".into()
        } else {
            out.join("; ")
        }
    }

    /// Whether the run is over: every task terminal everywhere and every
    /// replica holding the same events. Checks the end state when it is.
    fn finished(&mut self) -> Result<bool, Violation> {
        if self.jobs.iter().any(Option::is_none) {
            return Ok(false);
        }
        let all_done = |core: &Core<MemStore>| {
            self.jobs
                .iter()
                .flatten()
                .all(|(job, count)| core.progress(job).done() == *count)
        };
        let done: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.core.as_ref().is_some_and(all_done))
            .collect();
        if done.iter().any(|d| *d) {
            self.done_ms.get_or_insert(self.now);
        }
        if self.restarts_pending > 0 || self.partitions_left > 0 || !done.iter().all(|d| *d) {
            return Ok(false);
        }
        self.finished_ms.get_or_insert(self.now);
        let first = self.nodes[0].core.as_ref().expect("all live").ledger();
        let same_events = self.nodes.iter().all(|n| {
            let l = n.core.as_ref().expect("all live").ledger();
            l.event_count() == first.event_count() && l.fingerprints() == first.fingerprints()
        });
        if !same_events {
            return Ok(false);
        }
        self.converged_ms = Some(self.now);
        self.check_end()?;
        Ok(true)
    }

    /// The end state: one canonical result per task, the same on every node,
    /// and byte-identical state where the events are the same.
    fn check_end(&self) -> Result<(), Violation> {
        let cores: Vec<&Core<MemStore>> = self
            .nodes
            .iter()
            .map(|n| n.core.as_ref().expect("all live"))
            .collect();
        let digest = cores[0].ledger().state_digest();
        for (i, core) in cores.iter().enumerate() {
            if core.ledger().ids() != cores[0].ledger().ids() {
                return Err(self.violation(format!(
                    "node {i} and node 0 have equal fingerprints but different events"
                )));
            }
            if core.ledger().state_digest() != digest {
                return Err(self.violation(format!(
                    "node {i} holds the same events as node 0 but a different state"
                )));
            }
        }
        let counted: u64 = self
            .nodes
            .iter()
            .map(|n| {
                n.retired.attempts_started
                    + n.core.as_ref().map_or(0, |c| c.stats().attempts_started)
            })
            .sum();
        let runs: u64 = self.started.values().sum();
        if counted != runs {
            return Err(self.violation(format!(
                "the cores count {counted} attempts started, the executor saw {runs}"
            )));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(((task, attempt), _)) = n.procs.iter().find(|(_, p)| !p.1) {
                return Err(self.violation(format!(
                    "node {i} still runs attempt {attempt} of {task:?}, which is over"
                )));
            }
        }
        for (job, count) in self.jobs.iter().flatten() {
            let views: Vec<_> = cores[0].views(*job).collect();
            if views.len() != *count as usize {
                return Err(self.violation(format!(
                    "job {job} has {} views of {count} tasks",
                    views.len()
                )));
            }
            for v in views {
                let ok = match (&v.state, &v.result) {
                    (TaskState::Succeeded, Some(r)) => r.outcome.success(),
                    (TaskState::Failed, Some(r)) => {
                        !r.outcome.success() && r.attempt == self.cfg.max_retries
                    }
                    // Reclaimed at its last attempt: only when a node crashed.
                    (TaskState::Failed, None) => !self.never_fails(),
                    (TaskState::Cancelled, None) => cores[0].ledger().is_cancelled(job),
                    _ => false,
                };
                if !ok || (self.never_fails() && v.state == TaskState::Failed) {
                    return Err(self.violation(format!("{:?} ended as {v:?}", v.task)));
                }
                for (i, core) in cores.iter().enumerate() {
                    if core.view(v.task) != Some(v) {
                        return Err(self.violation(format!(
                            "node {i} shows {:?} as {:?}, node 0 as {v:?}",
                            v.task,
                            core.view(v.task)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn report(&mut self, wall_ms: u128) -> Report {
        let mut stats = peerbatch_protocol::core::Stats::default();
        let (mut tasks_failed, mut tasks_cancelled) = (0, 0);
        for n in &self.nodes {
            let core = n.core.as_ref().expect("all live at the end");
            let s = core.stats();
            stats.attempts_started += s.attempts_started + n.retired.attempts_started;
            stats.attempts_fenced += s.attempts_fenced + n.retired.attempts_fenced;
            stats.events_rejected += s.events_rejected + n.retired.events_rejected;
        }
        let first = self.nodes[0].core.as_ref().expect("all live");
        for (job, _) in self.jobs.iter().flatten() {
            tasks_failed += first.progress(job).failed;
            tasks_cancelled += first.progress(job).cancelled;
        }
        let done_ms = self.done_ms.unwrap_or(self.now);
        let finished_ms = self.finished_ms.unwrap_or(self.now);
        let converged_ms = self.converged_ms.unwrap_or(self.now);
        self.trace.update(&first.ledger().state_digest());
        for x in [
            done_ms,
            finished_ms,
            converged_ms,
            self.messages,
            self.dropped,
            stats.attempts_started,
            stats.attempts_fenced,
        ] {
            self.trace.update(&x.to_le_bytes());
        }
        Report {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            tasks: self.cfg.tasks,
            done_ms,
            finished_ms,
            converged_ms,
            wall_ms,
            messages: self.messages,
            dropped: self.dropped,
            events: first.ledger().event_count(),
            attempts_started: stats.attempts_started,
            tasks_started: self
                .started
                .keys()
                .map(|(task, _)| task)
                .collect::<BTreeSet<_>>()
                .len() as u64,
            same_attempt_starts: self.started.values().map(|n| n - 1).sum(),
            attempts_fenced: stats.attempts_fenced,
            events_rejected: stats.events_rejected,
            tasks_failed,
            tasks_cancelled,
            run_digest: *self.trace.finalize().as_bytes(),
        }
    }
}

fn kind(msg: &Message) -> u8 {
    match msg {
        Message::Events { events } => events.len().min(250) as u8,
        Message::Heartbeat => 251,
        Message::SyncDigest { .. } => 252,
        Message::SyncIds { .. } => 253,
        Message::GetEvents { .. } => 254,
    }
}
