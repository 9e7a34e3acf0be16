//! The simulated world: nodes, their clocks, disks and processes, and the
//! event loop that drives real protocol cores through a run's two phases.
//!
//! Owns the run itself: the queue of timed items (deliveries, flushes,
//! process exits, timers, submits, cancels and faults), the driver
//! contract (persist, flush, then transmit; actions at once), the safety
//! phase (faults strike; invariants are checked after every step) and the
//! liveness phase (faults healed; every task must end within a bound). It
//! drives the cores only through their public API and must not copy or
//! reach into protocol logic; the network, workload, clocks and checks live
//! in their own modules.

use crate::clock::Clock;
use crate::config::SimConfig;
use crate::disk::{Disk, SimStore, Vouched};
use crate::faulty::Faulty;
use crate::invariants::{check_authority, check_convergence, check_end, Job, Watch};
use crate::network::{CutKind, Network};
use crate::report::{Injected, Report, Spread, Violation};
use crate::starts::check_start;
use crate::streams::Stream;
use crate::trace::Trace;
use crate::workload::{plan, Executor, JobPlan};
use peerbatch_protocol::core::{Destination, Stats};
use peerbatch_protocol::storage::Forgetting;
use peerbatch_protocol::{
    Action, Core, EventId, Identity, JobId, Message, Millis, NodeId, Outcome, SeededRng, TaskRef,
    TaskResult, Transmit,
};
use rand::seq::SliceRandom;
use rand::Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;

/// Runs one simulation through both phases, checking invariants throughout.
pub fn run(cfg: &SimConfig) -> Result<Report, Violation> {
    let wall = std::time::Instant::now();
    let mut sim = Sim::new(cfg.clone());
    match sim.run() {
        Ok(()) => Ok(sim.report(wall.elapsed().as_millis())),
        Err(what) => Err(Violation {
            seed: cfg.seed,
            at_ms: sim.now,
            what,
            trace: sim.trace.take_lines(),
        }),
    }
}

enum Item {
    Deliver {
        to: usize,
        from: usize,
        gossip: bool,
        msg: Rc<Message>,
    },
    Flush {
        node: usize,
        incarnation: u32,
    },
    Exit {
        node: usize,
        task: TaskRef,
        token: u64,
        outcome: Outcome,
        duration_ms: u64,
    },
    Timer {
        node: usize,
        at: u64,
    },
    Submit {
        job: usize,
    },
    Cancel {
        job: usize,
    },
    /// A node asks through the ledger to be drained, or resumed.
    Drain {
        node: usize,
        drain: bool,
    },
    /// A job's `max_wall_clock` has passed on its submitter's clock (and
    /// the core has had time to judge it).
    Deadline {
        job: usize,
        node: usize,
        id: JobId,
    },
    Partition {
        kind: CutKind,
    },
    Flap,
    HealPartition,
    Crash {
        wipe: bool,
    },
    Restart {
        node: usize,
        incarnation: u32,
    },
    ClockJump,
    /// The faulty member forges again.
    Forge,
    /// The end of the safety phase: every fault heals.
    Heal,
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

/// A simulated process of one attempt.
struct Proc {
    attempt: u32,
    token: u64,
    killed: bool,
}

struct SimNode {
    id: NodeId,
    seed: [u8; 32],
    disk: Disk,
    core: Option<Core<SimStore>>,
    clock: Clock,
    skew_ppm: i64,
    /// Peers this node keeps a connection to.
    links: Vec<usize>,
    /// The world time the queued timer entry fires at, if one is queued.
    timer: Option<u64>,
    /// Consecutive timeouts handled at one instant, to catch a busy loop.
    spins: (u64, u32),
    procs: BTreeMap<TaskRef, Proc>,
    watch: Watch,
    /// Counters of earlier incarnations (before crashes).
    retired: Stats,
    /// Bumped at each crash, so that its pending flush and restart lapse.
    incarnation: u32,
    flush_queued: bool,
    /// How far its wall clock is ahead of the world's (runs that forget).
    wall_ahead_ms: u64,
}

/// Interval of the end-of-run test and the cross-node checks.
const CHECK_EVERY_MS: u64 = 100;
/// How long a killed process takes to exit.
const KILL_MS: u64 = 1;
/// Timeouts one node may ask for at one instant before it counts as a busy loop.
const MAX_SPINS: u32 = 1_000;
/// Direct connections per node in clusters larger than a full mesh.
const LINKS: usize = 8;

struct Sim {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Entry>,
    nodes: Vec<SimNode>,
    index: BTreeMap<NodeId, usize>,
    plans: Vec<JobPlan>,
    /// Jobs whose submit was acknowledged: durable on the submitting node
    /// and on one more (DESIGN.md's rule for answering a submit).
    jobs: Vec<Option<Job>>,
    /// Submits not yet acknowledged: job, node, submit event, the job.
    unacked: Vec<(usize, usize, EventId, Job)>,
    /// Each acknowledged job's submit event, and the node that submitted it.
    submit_events: Vec<Option<(EventId, usize)>>,
    net: Network,
    faults: SeededRng,
    disk_rng: SeededRng,
    node_rng: SeededRng,
    exec: Executor,
    next_token: u64,
    trace: Trace,
    injected: Injected,
    healed_ms: Option<u64>,
    deadline: u64,
    finished_ms: Option<u64>,
    converged_ms: Option<u64>,
    /// The end state was checked; a run that forgets waits on until every
    /// node forgot every job.
    ended: bool,
    /// Per-task scans of every node run this often.
    scan_every_ms: u64,
    /// How many times each attempt (and gang rank) was started, over all nodes.
    started: BTreeMap<(TaskRef, u32, u32), u64>,
    /// Tasks a crashed node was running: since when, and which node.
    orphaned: BTreeMap<TaskRef, (u64, usize)>,
    death_to_rerun: Vec<u64>,
    /// Of those reruns, the ones that began while the dead node was still down.
    reruns_while_down: u64,
    /// Healed partitions: when, and every event that existed at the heal.
    healing: Vec<(u64, BTreeSet<EventId>)>,
    heal_to_converge: Vec<u64>,
    /// Every event's bytes, once some node flushed it.
    vouched: Vouched,
    faulty: Option<Faulty>,
    /// Messages sent (each gossip receiver counted), and of them liveness.
    sent: u64,
    sent_liveness: u64,
}

impl Sim {
    fn new(cfg: SimConfig) -> Sim {
        let mut node_rng = Stream::Nodes.rng(cfg.seed);
        let mut faults = Stream::Faults.rng(cfg.seed);
        let vouched = Vouched::default();
        let mut nodes = Vec::with_capacity(cfg.nodes);
        let seeds: Vec<[u8; 32]> = (0..cfg.nodes).map(|_| node_rng.gen()).collect();
        let mut walls = Stream::Forget.rng(cfg.seed);
        for &seed in &seeds {
            let wall_ahead_ms = match cfg.retention_ms {
                Some(_) => walls.gen_range(0..=cfg.core.forget_margin_ms),
                None => 0,
            };
            let skew = i64::from(cfg.faults.skew_ppm);
            let skew_ppm = faults.gen_range(-skew..=skew);
            nodes.push(SimNode {
                id: Identity::from_seed(seed).node_id(),
                seed,
                disk: Disk::new(vouched.clone(), cfg.faults.flush_ms > 0),
                core: None,
                clock: Clock::new(0, 0, 0),
                skew_ppm,
                links: Vec::new(),
                timer: None,
                spins: (0, 0),
                procs: BTreeMap::new(),
                watch: Watch::default(),
                retired: Stats::default(),
                incarnation: 0,
                flush_queued: false,
                wall_ahead_ms,
            });
        }
        link(&mut nodes, &mut node_rng);
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let plans = plan(&cfg);
        let scale = (cfg.nodes as u64 * u64::from(cfg.tasks) / 50_000).max(1);
        Sim {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            index,
            jobs: vec![None; plans.len()],
            unacked: Vec::new(),
            submit_events: vec![None; plans.len()],
            plans,
            net: Network::new(&cfg),
            faults,
            disk_rng: Stream::Disk.rng(cfg.seed),
            node_rng,
            exec: Executor::new(&cfg),
            next_token: 0,
            trace: Trace::new(cfg.trace),
            injected: Injected::default(),
            healed_ms: None,
            deadline: u64::MAX,
            finished_ms: None,
            converged_ms: None,
            ended: false,
            scan_every_ms: 1_000 * scale,
            started: BTreeMap::new(),
            orphaned: BTreeMap::new(),
            death_to_rerun: Vec::new(),
            reruns_while_down: 0,
            healing: Vec::new(),
            heal_to_converge: Vec::new(),
            vouched,
            faulty: Faulty::of(&cfg, &seeds),
            sent: 0,
            sent_liveness: 0,
            cfg,
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

    fn core(&mut self, node: usize) -> &mut Core<SimStore> {
        self.nodes[node]
            .core
            .as_mut()
            .expect("only live nodes get inputs")
    }

    fn local(&self, node: usize) -> Millis {
        self.nodes[node].clock.local(self.now)
    }

    /// What the node's wall clock reads now (the world's time, plus how
    /// far ahead it runs).
    fn wall(&self, node: usize) -> u64 {
        self.now + self.nodes[node].wall_ahead_ms
    }

    /// The id of job `job`, once it was submitted (acknowledged or not).
    fn submitted_id(&self, job: usize) -> Option<JobId> {
        let unacked = self.unacked.iter().find(|u| u.0 == job).map(|u| u.3.id);
        self.jobs[job].map(|j| j.id).or(unacked)
    }

    fn submitted(&self) -> Vec<Job> {
        self.jobs.iter().flatten().copied().collect()
    }

    /// Boots a node from its durable events, on a fresh monotonic clock.
    fn start_node(&mut self, node: usize) {
        let offset = self.node_rng.gen_range(0..1u64 << 40);
        let core_seed = self.node_rng.gen();
        let n = &mut self.nodes[node];
        n.clock = Clock::new(self.now, offset, n.skew_ppm);
        let core = Core::new(
            Identity::from_seed(n.seed),
            self.cfg.core.clone(),
            n.disk.store(),
            n.disk.events(),
            core_seed,
            n.clock.local(self.now),
        );
        n.core = Some(core);
    }

    fn run(&mut self) -> Result<(), String> {
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        for a in 0..self.nodes.len() {
            for b in self.nodes[a].links.clone() {
                let (now, peer) = (self.local(a), self.nodes[b].id);
                self.core(a).handle_peer_up(now, peer);
            }
        }
        for node in 0..self.nodes.len() {
            self.pump(node)?;
        }
        self.schedule_workload();
        self.schedule_faults();
        self.push(self.cfg.fault_window_ms, Item::Heal);
        self.push(CHECK_EVERY_MS, Item::Check);
        while let Some(Entry { at, item, .. }) = self.queue.pop() {
            self.now = at;
            if self.now > self.deadline {
                return Err(format!(
                    "liveness ({}): not every task terminal and replicated within {} ms of healing: {}",
                    self.stuck(),
                    self.deadline - self.healed_ms.unwrap_or(0),
                    self.describe_progress()
                ));
            }
            if self.step(item)? {
                return Ok(());
            }
        }
        Err("liveness: the event queue ran dry".into())
    }

    fn schedule_workload(&mut self) {
        for (job, plan) in self.plans.clone().into_iter().enumerate() {
            self.push(plan.submit_at, Item::Submit { job });
            if let Some(at) = plan.cancel_at {
                self.push(at, Item::Cancel { job });
            }
        }
    }

    /// Draws when each fault strikes within the safety phase.
    fn schedule_faults(&mut self) {
        let window = self.cfg.fault_window_ms;
        let mut at = 0;
        for _ in 0..self.cfg.faults.partitions {
            at += self.faults.gen_range(500..=window / 2);
            let kind = *[CutKind::Symmetric, CutKind::Asymmetric, CutKind::Flapping]
                .choose(&mut self.faults)
                .expect("not empty");
            self.push(at, Item::Partition { kind });
        }
        for wipe in [false, true] {
            let count = if wipe {
                self.cfg.faults.wipes
            } else {
                self.cfg.faults.crashes
            };
            for _ in 0..count {
                let at = self.faults.gen_range(0..=window);
                self.push(at, Item::Crash { wipe });
            }
        }
        for _ in 0..self.cfg.faults.clock_jumps {
            let at = self.faults.gen_range(0..=window);
            self.push(at, Item::ClockJump);
        }
        if let Some(f) = self.faulty.as_mut() {
            let at = f.pause_ms();
            self.push(at, Item::Forge);
        }
        self.schedule_drain();
    }

    /// In half the runs, one node is drained by its own request within the
    /// fault window and resumed later, from its own stream.
    fn schedule_drain(&mut self) {
        let mut rng = Stream::Drain.rng(self.cfg.seed);
        let window = self.cfg.fault_window_ms.max(2);
        if !rng.gen_bool(0.5) {
            return;
        }
        let node = rng.gen_range(0..self.nodes.len());
        let at = rng.gen_range(0..=window / 2);
        let until = at + rng.gen_range(1..=window / 2);
        self.push(at, Item::Drain { node, drain: true });
        self.push(until, Item::Drain { node, drain: false });
    }

    fn lease(&self) -> u64 {
        self.cfg.core.lease_ms + self.cfg.core.grace_ms
    }

    /// Handles one queued item; true once the run is over.
    fn step(&mut self, item: Item) -> Result<bool, String> {
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
                self.trace.step(
                    self.now,
                    b'd',
                    &[to as u64, from as u64, u64::from(gossip), kind(&msg)],
                    || format!("deliver {} {from} → {to}", describe(&msg, gossip)),
                );
                let msg = Rc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                let (now, from) = (self.local(to), self.nodes[from].id);
                if gossip {
                    self.core(to).handle_gossip(now, from, msg);
                } else {
                    self.core(to).handle_message(now, from, msg);
                }
                self.pump(to)?;
            }
            Item::Flush { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation {
                    return Ok(false);
                }
                n.flush_queued = false;
                let sends = n.disk.flush();
                self.trace.step(self.now, b'f', &[node as u64], || {
                    format!("flush node {node}: {} transmits released", sends.len())
                });
                self.send_all(node, sends)?;
            }
            Item::Exit {
                node,
                task,
                token,
                outcome,
                duration_ms,
            } => {
                let attempt = match self.nodes[node].procs.get(&task) {
                    Some(p) if p.token == token => p.attempt,
                    _ => return Ok(false),
                };
                self.nodes[node].procs.remove(&task);
                self.trace.step(
                    self.now,
                    b'x',
                    &[node as u64, u64::from(task.index), u64::from(attempt)],
                    || format!("exit node {node} {task:?} attempt {attempt}: {outcome:?}"),
                );
                let now = self.local(node);
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
                        return Err(format!(
                            "liveness: node {node} asked for {MAX_SPINS} timeouts at one instant (busy loop)"
                        ));
                    }
                } else {
                    *spins = (self.now, 0);
                }
                let now = self.local(node);
                let wall = self.wall(node);
                self.core(node).handle_timeout(now, wall);
                self.pump(node)?;
            }
            Item::Submit { job } => self.submit(job)?,
            Item::Cancel { job } => self.cancel(job)?,
            Item::Drain { node, drain } => self.drain(node, drain)?,
            Item::Deadline { job, node, id } => self.check_deadline(job, node, id)?,
            Item::Partition { kind } => {
                let mut rng = std::mem::replace(&mut self.faults, Stream::Faults.rng(0));
                self.net.partition(kind, self.nodes.len(), &mut rng);
                let heal = self.now + rng.gen_range(self.lease() / 2..=self.lease() * 3);
                if kind == CutKind::Flapping {
                    let at = self.now + rng.gen_range(100..=2_000);
                    self.push(at, Item::Flap);
                }
                self.faults = rng;
                self.injected.partitions += 1;
                self.trace
                    .step(self.now, b'p', &[], || format!("partition: {kind:?}"));
                self.push(heal.min(self.cfg.fault_window_ms), Item::HealPartition);
            }
            Item::Flap => {
                if self.net.flap() {
                    self.injected.flaps += 1;
                    self.trace.step(self.now, b'F', &[], || "flap".into());
                    let at = self.now + self.faults.gen_range(100..=2_000);
                    self.push(at, Item::Flap);
                }
            }
            Item::HealPartition => self.heal_partition(),
            Item::Crash { wipe } => self.crash(wipe)?,
            Item::Restart { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].core.is_none() {
                    self.restart(node)?;
                }
            }
            Item::ClockJump => {
                let node = self.random_live();
                let ms = self.faults.gen_range(100..=self.lease() * 3);
                self.nodes[node].clock.jump(self.now, ms);
                self.injected.clock_jumps += 1;
                self.trace.step(self.now, b'j', &[node as u64, ms], || {
                    format!("clock of node {node} jumps {ms} ms ahead")
                });
                self.nodes[node].timer = None;
                self.pump(node)?;
            }
            Item::Forge => self.forge()?,
            Item::Heal => self.heal()?,
            Item::Check => {
                self.ack_submits();
                self.check_healing();
                self.check_drains()?;
                if self.now.is_multiple_of(self.scan_every_ms) {
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

    fn submit(&mut self, job: usize) -> Result<(), String> {
        let node = self.random_node(|_| true);
        let plan = self.plans[job].clone();
        let (now, wall) = (self.local(node), self.wall(node));
        // Only a job the submitting node knows (a node refuses others).
        let after = (plan.waits.after.and_then(|j| self.submitted_id(j))).filter(|id| {
            self.nodes[node]
                .core
                .as_ref()
                .is_some_and(|c| c.ledger().job(id).is_some())
        });
        let (id, event) = self
            .core(node)
            .submit(now, plan.spec(job, after), wall)
            .map_err(|e| format!("workload: submit refused: {e}"))?;
        self.trace.step(self.now, b's', &[job as u64], || {
            format!(
                "submit job {job} ({id}) of {} tasks, max retries {}, at node {node}",
                plan.tasks, plan.max_retries
            )
        });
        let planned = Job {
            id,
            tasks: plan.tasks,
            max_retries: plan.max_retries,
        };
        self.unacked.push((job, node, event, planned));
        if let Some(ms) = plan.max_wall_clock_ms {
            // The node's wall clock reaches the deadline `ms` from now; its
            // core judges deadlines every `wall_check_ms` of its own clock,
            // which may run slow by the skew.
            let judged = self.now + ms + 2 * self.cfg.core.wall_check_ms + 1;
            self.push(judged, Item::Deadline { job, node, id });
        }
        self.pump(node)
    }

    /// A job past its `max_wall_clock` on its submitter, by that node's
    /// own view, is finished or cancelled there. A submitter that is down
    /// is asked again later (it judges the job once it is back).
    fn check_deadline(&mut self, job: usize, node: usize, id: JobId) -> Result<(), String> {
        let core = self.nodes[node].core.as_ref();
        if core.is_some_and(|c| c.ledger().is_forgotten(&id)) {
            return Ok(());
        }
        // Down, or wiped and not caught up yet: it judges the job once back.
        let Some((core, record)) = core.and_then(|c| Some((c, c.ledger().job(&id)?))) else {
            self.push(self.now + 1_000, Item::Deadline { job, node, id });
            return Ok(());
        };
        let done = core.progress(&id).done();
        if done < record.task_count && !core.ledger().is_cancelled(&id) {
            return Err(format!(
                "deadline: job {job} ({id}) is past its max_wall_clock on its submitter, node {node}, \
                 with {done} of {} tasks done, and not cancelled",
                record.task_count
            ));
        }
        Ok(())
    }

    /// How many nodes hold `event` durably.
    fn holders(&self, event: &EventId) -> usize {
        self.nodes.iter().filter(|n| n.disk.durable(event)).count()
    }

    /// Acknowledges submits now durable on their node and one more.
    fn ack_submits(&mut self) {
        for (job, node, event, planned) in std::mem::take(&mut self.unacked) {
            if self.nodes[node].disk.durable(&event) && self.holders(&event) >= 2 {
                self.jobs[job] = Some(planned);
                self.submit_events[job] = Some((event, node));
            } else {
                self.unacked.push((job, node, event, planned));
            }
        }
    }

    /// Whether wiping `node` would leave some acknowledged job on no disk.
    fn last_holder(&self, node: usize) -> bool {
        self.submit_events
            .iter()
            .flatten()
            .any(|(e, _)| self.nodes[node].disk.durable(e) && self.holders(e) < 2)
    }

    /// The faulty member, while it is up and the faults last, sends what
    /// it draws to every other node, each copy held back at random on top
    /// of the network's own faults.
    fn forge(&mut self) -> Result<(), String> {
        if self.now > self.cfg.fault_window_ms {
            return Ok(());
        }
        let Some(mut faulty) = self.faulty.take() else {
            return Ok(());
        };
        let from = faulty.node;
        if let Some(core) = self.nodes[from].core.as_ref() {
            let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
            let store = self.nodes[from].disk.store();
            let (events, what) = faulty.draw(core, &store, &self.submitted(), &ids);
            self.injected.forged += events.len() as u64;
            self.trace.step(self.now, b'z', &[events.len() as u64], || {
                format!("faulty node {from} forges {what}")
            });
            for bytes in events {
                let msg = Rc::new(Message::Events {
                    events: vec![bytes],
                });
                for to in (0..self.nodes.len()).filter(|to| *to != from) {
                    let held = faulty.delay_ms();
                    for delay in self.net.route(from, to).into_iter().flatten() {
                        self.push(
                            self.now + held + delay,
                            Item::Deliver {
                                to,
                                from,
                                gossip: true,
                                msg: msg.clone(),
                            },
                        );
                    }
                }
            }
        }
        let next = self.now + faulty.pause_ms();
        self.faulty = Some(faulty);
        self.push(next, Item::Forge);
        Ok(())
    }

    /// Invariant 7 on every live node: what the faulty member forged
    /// changed nothing.
    fn check_authority(&self) -> Result<(), String> {
        let Some(faulty) = &self.faulty else {
            return Ok(());
        };
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let bytes = |id: &EventId| {
            let flushed = self.vouched.borrow().get(id).map(|b| b.to_vec());
            flushed.or_else(|| self.nodes.iter().find_map(|n| n.disk.queued(id)))
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(core) = n.core.as_ref() {
                check_authority(core, &faulty.forged, bytes, &ids, self.now)
                    .map_err(|e| format!("{e} (node {i})"))?;
            }
        }
        Ok(())
    }

    /// Cancels a job from the node that submitted it (only it, or an
    /// admin, may).
    fn cancel(&mut self, job: usize) -> Result<(), String> {
        let (Some(Job { id, .. }), Some((_, node))) = (self.jobs[job], self.submit_events[job])
        else {
            self.push(self.now + 1_000, Item::Cancel { job });
            return Ok(());
        };
        let live = self.nodes[node].core.is_some();
        let now = self.local(node);
        if live && self.core(node).cancel(now, id) {
            self.injected.cancels += 1;
            self.trace.step(self.now, b'k', &[job as u64], || {
                format!("cancel job {job} at node {node}")
            });
            self.pump(node)
        } else {
            // The submitter is down or does not know its job again yet.
            self.push(self.now + 1_000, Item::Cancel { job });
            Ok(())
        }
    }

    /// Asks, from the node itself, that it drain or resume; a node that
    /// is down asks once it is back.
    fn drain(&mut self, node: usize, drain: bool) -> Result<(), String> {
        if self.nodes[node].core.is_none() {
            self.push(self.now + 1_000, Item::Drain { node, drain });
            return Ok(());
        }
        let (now, wall, me) = (self.local(node), self.wall(node), self.nodes[node].id);
        if !self.core(node).request_drain(now, me, drain, wall) {
            return Err(format!("drain: node {node} may not drain itself"));
        }
        self.injected.drains += 1;
        self.trace
            .step(self.now, b'D', &[node as u64, u64::from(drain)], || {
                format!(
                    "node {node} asks to {}",
                    if drain { "drain" } else { "resume" }
                )
            });
        self.pump(node)
    }

    /// Every live node drains or takes tasks as its own ledger has said
    /// for two wall checks (and a margin for its clock's skew).
    fn check_drains(&mut self) -> Result<(), String> {
        let lag = 2 * self.cfg.core.wall_check_ms + 100;
        for i in 0..self.nodes.len() {
            let wall = self.wall(i);
            let n = &mut self.nodes[i];
            if let Some(core) = n.core.as_ref() {
                (n.watch.check_drain_request(core, self.now, wall, lag))
                    .map_err(|e| format!("{e} (node {i})"))?;
            }
        }
        Ok(())
    }

    fn heal_partition(&mut self) {
        self.net.heal();
        self.trace
            .step(self.now, b'h', &[], || "partition healed".into());
        let all: BTreeSet<EventId> = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .flat_map(|c| c.ledger().ids().iter().copied())
            .collect();
        self.healing.push((self.now, all));
    }

    /// Samples the heals whose events every live node now holds.
    fn check_healing(&mut self) {
        let nodes = &self.nodes;
        let now = self.now;
        let samples = &mut self.heal_to_converge;
        self.healing.retain(|(at, ids)| {
            let done = nodes
                .iter()
                .filter_map(|n| n.core.as_ref())
                .all(|c| ids.iter().all(|id| c.ledger().contains(id)));
            if done {
                samples.push(now - at);
            }
            !done
        });
    }

    /// The end of the safety phase: the network calms, partitions heal, down
    /// nodes come back; from here every task must end within a bound.
    fn heal(&mut self) -> Result<(), String> {
        if self.net_is_cut() {
            self.heal_partition();
        }
        self.net.calm();
        self.trace.step(self.now, b'H', &[], || {
            "faults heal: liveness phase begins".into()
        });
        for node in 0..self.nodes.len() {
            if self.nodes[node].core.is_none() {
                self.restart(node)?;
            }
        }
        let bound = 4 * self.lease() * u64::from(self.cfg.max_retries + 2)
            + 3 * self.cfg.expected_work_ms()
            + 60_000
            // Forgetting comes after the end state: every job's horizon.
            + self.cfg.retention_ms.map_or(0, |r| 2 * r + self.cfg.core.forget_margin_ms);
        self.healed_ms = Some(self.now);
        self.deadline = self.now + bound;
        Ok(())
    }

    fn net_is_cut(&self) -> bool {
        let n = self.nodes.len();
        (0..n).any(|a| !self.net.linked(a, (a + 1) % n) || !self.net.linked((a + 1) % n, a))
    }

    fn random_live(&mut self) -> usize {
        self.random_node(|_| true)
    }

    /// A random live node that passes `filter`, else any live node.
    fn random_node(&mut self, filter: impl Fn(&Core<SimStore>) -> bool) -> usize {
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
        live[self.faults.gen_range(0..live.len())]
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Carries one node's outputs out as the node's driver does: writes to
    /// the disk (transmits behind them wait for the flush), actions at once;
    /// then re-arms its timer and checks what it shows.
    fn pump(&mut self, node: usize) -> Result<(), String> {
        let n = &mut self.nodes[node];
        let Some(core) = n.core.as_mut() else {
            return Ok(());
        };
        let mut persists = Vec::new();
        while let Some(p) = core.poll_persist() {
            persists.push(p);
        }
        let mut forgetting = Vec::new();
        while let Some(f) = core.poll_forgetting() {
            forgetting.push(f);
        }
        let jobs = self.jobs.iter().flatten();
        for forgot in forgetting.iter().filter_map(|f| match f {
            Forgetting::Job { job, .. } => Some(job),
            _ => None,
        }) {
            // A job the workload does not track (one submitted again after
            // its first submit was lost) is not watched either.
            if let Some(job) = jobs.clone().find(|j| j.id == *forgot) {
                n.watch
                    .forgotten(job)
                    .map_err(|e| format!("{e} (node {node})"))?;
            }
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
        let (now_sends, flush) = n.disk.write(persists, forgetting, transmits);
        if flush && !n.flush_queued {
            n.flush_queued = true;
            let (at, incarnation) = (
                self.now + self.disk_rng.gen_range(0..=self.cfg.faults.flush_ms),
                n.incarnation,
            );
            self.push(at, Item::Flush { node, incarnation });
        }
        self.send_all(node, now_sends)?;
        for action in actions {
            self.act(node, action)?;
        }
        if let Some(at) = timeout {
            let at = self.nodes[node].clock.global(at, self.now);
            if self.nodes[node].timer != Some(at) {
                self.nodes[node].timer = Some(at);
                self.push(at, Item::Timer { node, at });
            }
        }
        self.check_step(node)
    }

    /// After every input: terminal counts never drop; in small runs, every
    /// per-task check too.
    fn check_step(&mut self, node: usize) -> Result<(), String> {
        let jobs = self.submitted();
        let n = &mut self.nodes[node];
        let Some(core) = n.core.as_ref() else {
            return Ok(());
        };
        let checked = (n.watch.check_counts(core, &jobs))
            .and_then(|()| n.watch.check_draining(core))
            .and_then(|()| {
                if self.cfg.check_every_step {
                    n.watch.check_tasks(core, &jobs)
                } else {
                    Ok(())
                }
            });
        checked.map_err(|e| format!("{e} (node {node})"))
    }

    /// Sends transmits that may go now: nothing unflushed may be in them.
    fn send_all(&mut self, node: usize, transmits: Vec<Transmit>) -> Result<(), String> {
        for t in transmits {
            if let Message::Events { events } = &t.msg {
                for bytes in events {
                    let id = peerbatch_protocol::event::event_id(bytes);
                    if !self.nodes[node].disk.durable(&id) {
                        return Err(format!(
                            "durability: node {node} sent event {id} before it was flushed"
                        ));
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
                        return Err(format!("wire: node {node} sent to unknown {peer}"));
                    };
                    if to == node {
                        return Err(format!("wire: node {node} sent to itself"));
                    }
                    self.deliver(node, to, false, msg);
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, from: usize, to: usize, gossip: bool, msg: Rc<Message>) {
        self.sent += 1;
        self.sent_liveness += u64::from(is_liveness(&msg));
        for delay in self.net.route(from, to).into_iter().flatten() {
            self.push(
                self.now + delay,
                Item::Deliver {
                    to,
                    from,
                    gossip,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn act(&mut self, node: usize, action: Action) -> Result<(), String> {
        match action {
            Action::Run {
                task,
                attempt,
                gang,
                ..
            } => {
                let max = self
                    .jobs
                    .iter()
                    .flatten()
                    .chain(self.unacked.iter().map(|u| &u.3))
                    .find(|j| j.id == task.job)
                    .map_or(u32::MAX, |j| j.max_retries);
                if attempt > max {
                    return Err(format!(
                        "duplicates: node {node} started attempt {attempt} of {task:?}, past max retries {max}"
                    ));
                }
                let rank = gang.as_ref().map_or(0, |g| g.rank);
                if let Some(g) = &gang {
                    let me = self.core(node).node_id();
                    if g.hosts.get(rank as usize) != Some(&me) {
                        return Err(format!(
                            "gang: node {node} started rank {rank} of {task:?} attempt {attempt} but is not that host"
                        ));
                    }
                }
                if let Some((since, dead)) = self.orphaned.get(&task).copied() {
                    if dead != node {
                        self.death_to_rerun.push(self.now - since);
                        self.reruns_while_down += u64::from(self.nodes[dead].core.is_none());
                        self.orphaned.remove(&task);
                    }
                }
                let core = self.nodes[node].core.as_ref().expect("live");
                check_start(core, task, attempt).map_err(|e| format!("{e} (node {node})"))?;
                let rules = (core.ledger().job(&task.job)).is_some_and(|j| {
                    j.spec
                        .groups
                        .iter()
                        .any(|g| !g.spec().exit_codes.is_empty())
                });
                *self.started.entry((task, attempt, rank)).or_default() += 1;
                let (duration_ms, outcome) = self.exec.next(rules);
                let token = self.token();
                self.trace.step(
                    self.now,
                    b'R',
                    &[node as u64, u64::from(task.index), u64::from(attempt)],
                    || format!("run node {node} {task:?} attempt {attempt} for {duration_ms} ms"),
                );
                let proc = Proc {
                    attempt,
                    token,
                    killed: false,
                };
                if let Some(old) = self.nodes[node].procs.insert(task, proc) {
                    return Err(format!(
                        "duplicates: node {node} started attempt {attempt} of {task:?} while attempt {} runs there",
                        old.attempt
                    ));
                }
                self.exit_after(duration_ms, node, task, token, outcome);
            }
            Action::Kill { task, attempt } => {
                let token = self.token();
                let Some(proc) = self.nodes[node].procs.get_mut(&task) else {
                    return Ok(());
                };
                if proc.attempt != attempt {
                    return Ok(());
                }
                proc.token = token;
                proc.killed = true;
                self.trace.step(
                    self.now,
                    b'K',
                    &[node as u64, u64::from(task.index), u64::from(attempt)],
                    || format!("kill node {node} {task:?} attempt {attempt}"),
                );
                self.exit_after(KILL_MS, node, task, token, Outcome::Signaled(9));
            }
        }
        Ok(())
    }

    /// The simulated process `token` exits `ms` from now.
    fn exit_after(&mut self, ms: u64, node: usize, task: TaskRef, token: u64, outcome: Outcome) {
        let duration_ms = if matches!(outcome, Outcome::Signaled(_)) {
            0
        } else {
            ms
        };
        self.push(
            self.now + ms,
            Item::Exit {
                node,
                task,
                token,
                outcome,
                duration_ms,
            },
        );
    }

    /// Kills a random live node: its processes, queued inputs and unflushed
    /// writes are lost (and with `wipe` its whole store); it restarts a few
    /// lease periods later, or when the faults heal.
    fn crash(&mut self, wipe: bool) -> Result<(), String> {
        let live = self.nodes.iter().filter(|n| n.core.is_some()).count();
        if live < 2 {
            return Ok(());
        }
        let node = self.random_live();
        let wipe = wipe && !self.last_holder(node);
        let now = self.now;
        let n = &mut self.nodes[node];
        let core = n.core.take().expect("picked a live node");
        let stats = core.stats();
        n.retired.attempts_started += stats.attempts_started;
        n.retired.attempts_fenced += stats.attempts_fenced;
        n.retired.events_rejected += stats.events_rejected;
        for (task, p) in std::mem::take(&mut n.procs) {
            if !p.killed {
                self.orphaned.insert(task, (now, node));
            }
        }
        n.timer = None;
        n.incarnation += 1;
        n.flush_queued = false;
        let lost = n.disk.crash();
        if wipe {
            n.disk.wipe();
            n.watch.forget();
        }
        self.injected.unflushed_lost += lost as u64;
        if wipe {
            self.injected.wipes += 1;
        } else {
            self.injected.crashes += 1;
        }
        let incarnation = n.incarnation;
        // A submit that was on no disk yet is lost: its user, never
        // answered, submits again.
        for (job, at, event, planned) in std::mem::take(&mut self.unacked) {
            if at == node && self.nodes.iter().all(|n| !n.disk.durable(&event)) {
                self.push(now + 1_000, Item::Submit { job });
            } else {
                self.unacked.push((job, at, event, planned));
            }
        }
        self.trace
            .step(now, b'c', &[node as u64, u64::from(wipe)], || {
                format!(
                    "{} node {node} ({lost} unflushed writes lost)",
                    if wipe { "wipe" } else { "crash" }
                )
            });
        let down = self.faults.gen_range(self.lease() / 2..=self.lease() * 3);
        self.push(now + down, Item::Restart { node, incarnation });
        let id = self.nodes[node].id;
        for other in self.nodes[node].links.clone() {
            if self.nodes[other].core.is_some() {
                let now = self.local(other);
                self.core(other).handle_peer_down(now, id);
                self.pump(other)?;
            }
        }
        Ok(())
    }

    fn restart(&mut self, node: usize) -> Result<(), String> {
        self.start_node(node);
        let durable = self.nodes[node]
            .core
            .as_ref()
            .map_or(0, |c| c.ledger().event_count());
        self.trace.step(self.now, b'r', &[node as u64], || {
            format!("restart node {node} from {durable} durable events")
        });
        let id = self.nodes[node].id;
        for other in self.nodes[node].links.clone() {
            if self.nodes[other].core.is_some() {
                let peer = self.nodes[other].id;
                let (mine, theirs) = (self.local(node), self.local(other));
                self.core(node).handle_peer_up(mine, peer);
                self.core(other).handle_peer_up(theirs, id);
                self.pump(other)?;
            }
        }
        // What the node shows now is what its durable events show; it must
        // not lose anything of that later.
        let jobs = self.submitted();
        let n = &mut self.nodes[node];
        n.watch
            .rebase(n.core.as_ref().expect("just started"), &jobs);
        self.pump(node)
    }

    fn check_all(&mut self) -> Result<(), String> {
        let jobs = self.submitted();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Some(core) = n.core.as_ref() {
                n.watch
                    .check_tasks(core, &jobs)
                    .map_err(|e| format!("{e} (node {i})"))?;
            }
        }
        if self.cfg.check_every_step {
            self.check_authority()?;
        }
        let cores: Vec<(usize, &Core<SimStore>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.core.as_ref().map(|c| (i, c)))
            .collect();
        check_convergence(&cores)
    }

    /// What keeps the run from ending, in a word or two.
    fn stuck(&self) -> &'static str {
        let mut missing = false;
        for n in &self.nodes {
            let Some(core) = n.core.as_ref() else {
                return "node down";
            };
            for job in self.jobs.iter().flatten() {
                match core.views(job.id).into_iter().find(|v| !v.state.terminal()) {
                    Some(v) => return v.state.name(),
                    None => missing |= core.views(job.id).is_empty(),
                }
            }
        }
        if self.jobs.iter().any(Option::is_none) {
            "submit never acknowledged"
        } else if missing {
            "job missing"
        } else {
            "replicas differ"
        }
    }

    fn describe_progress(&self) -> String {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(core) = n.core.as_ref() else {
                out.push(format!("node {i} down"));
                continue;
            };
            for job in self.jobs.iter().flatten() {
                if core.ledger().is_forgotten(&job.id) {
                    continue;
                }
                let p = core.progress(&job.id);
                if p.done() != job.tasks {
                    let stuck = core
                        .views(job.id)
                        .into_iter()
                        .find(|v| !v.state.terminal())
                        .map(|v| format!(", e.g. {v:?}"))
                        .unwrap_or_default();
                    out.push(format!("node {i} job {}: {p:?}{stuck}", job.id));
                }
            }
        }
        out.truncate(3);
        if out.is_empty() {
            "all tasks terminal, replicas differ".into()
        } else {
            out.join("; ")
        }
    }

    /// Whether the run is over: faults healed, every task terminal
    /// everywhere and every replica holding the same events. Checks the
    /// end state when it is.
    fn finished(&mut self) -> Result<bool, String> {
        if self.healed_ms.is_none() || self.jobs.iter().any(Option::is_none) {
            return Ok(false);
        }
        let jobs = self.submitted();
        if self.ended {
            let forgot_all =
                |core: &Core<SimStore>| jobs.iter().all(|j| core.ledger().is_forgotten(&j.id));
            let all = self
                .nodes
                .iter()
                .all(|n| n.core.as_ref().is_some_and(forgot_all));
            return Ok(all && self.same_events());
        }
        let all_done = |core: &Core<SimStore>| {
            jobs.iter().all(|j| {
                core.ledger().is_forgotten(&j.id) || core.progress(&j.id).done() == j.tasks
            })
        };
        if !self
            .nodes
            .iter()
            .all(|n| n.core.as_ref().is_some_and(all_done))
        {
            return Ok(false);
        }
        self.finished_ms.get_or_insert(self.now);
        if !self.same_events() {
            return Ok(false);
        }
        self.converged_ms = Some(self.now);
        self.check_all()?;
        let cores: Vec<&Core<SimStore>> = self
            .nodes
            .iter()
            .map(|n| n.core.as_ref().expect("all live"))
            .collect();
        let first = cores[0].ledger();
        let indexed: Vec<(usize, &Core<SimStore>)> = cores.iter().copied().enumerate().collect();
        if cores.iter().any(|c| c.ledger().ids() != first.ids()) {
            return Err("convergence: equal fingerprints but different events".into());
        }
        check_convergence(&indexed)?;
        self.check_authority()?;
        check_end(&cores, &jobs, |j| self.cfg.may_fail(j.max_retries))?;
        self.check_processes()?;
        self.ended = true;
        Ok(self.cfg.retention_ms.is_none())
    }

    /// Whether every node holds the same events (by fingerprints).
    fn same_events(&self) -> bool {
        let ledgers: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref().map(|c| c.ledger()))
            .collect();
        ledgers.iter().all(|l| {
            l.event_count() == ledgers[0].event_count()
                && l.fingerprints() == ledgers[0].fingerprints()
        })
    }

    /// No process is left running, and the cores counted every start.
    fn check_processes(&self) -> Result<(), String> {
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
            return Err(format!(
                "accounting: the cores count {counted} attempts started, the executor saw {runs}"
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some((task, p)) = n.procs.iter().find(|(_, p)| !p.killed) {
                return Err(format!(
                    "liveness: node {i} still runs attempt {} of {task:?}, which is over",
                    p.attempt
                ));
            }
        }
        Ok(())
    }

    fn report(&mut self, wall_ms: u128) -> Report {
        let mut stats = Stats::default();
        let (mut tasks_failed, mut tasks_cancelled) = (0, 0);
        for n in &self.nodes {
            let s = n.core.as_ref().expect("all live at the end").stats();
            stats.attempts_started += s.attempts_started + n.retired.attempts_started;
            stats.attempts_fenced += s.attempts_fenced + n.retired.attempts_fenced;
            stats.events_rejected += s.events_rejected + n.retired.events_rejected;
        }
        let first = self.nodes[0].core.as_ref().expect("all live");
        for job in self.jobs.iter().flatten() {
            tasks_failed += first.progress(&job.id).failed;
            tasks_cancelled += first.progress(&job.id).cancelled;
        }
        self.injected.net = self.net.stats;
        let finished_ms = self.finished_ms.unwrap_or(self.now);
        let converged_ms = self.converged_ms.unwrap_or(self.now);
        let digest = first.ledger().state_digest();
        self.trace.digest(&digest);
        for x in [
            finished_ms,
            converged_ms,
            self.injected.net.messages,
            self.injected.net.dropped,
            stats.attempts_started,
            stats.attempts_fenced,
        ] {
            self.trace.digest(&x.to_le_bytes());
        }
        Report {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            tasks: self.cfg.tasks,
            healed_ms: self.healed_ms.unwrap_or(self.now),
            finished_ms,
            converged_ms,
            wall_ms,
            injected: self.injected,
            events: first.ledger().event_count(),
            attempts_started: stats.attempts_started,
            tasks_started: self
                .started
                .keys()
                .map(|(task, _, rank)| (task, rank))
                .collect::<BTreeSet<_>>()
                .len() as u64,
            same_attempt_starts: self.started.values().map(|n| n - 1).sum(),
            attempts_fenced: stats.attempts_fenced,
            events_rejected: stats.events_rejected,
            tasks_failed,
            tasks_cancelled,
            death_to_rerun: Spread::of(&self.death_to_rerun),
            reruns_while_down: self.reruns_while_down,
            heal_to_converge: Spread::of(&self.heal_to_converge),
            run_digest: self.trace.finish(),
            end_ms: self.now,
            sent: self.sent,
            sent_liveness: self.sent_liveness,
        }
    }
}

/// Who keeps a connection to whom: everyone in small clusters; in larger
/// ones a ring plus a few random peers each (as a gossip mesh would), so
/// that sync rounds on connect stay linear in the cluster size.
fn link(nodes: &mut [SimNode], rng: &mut SeededRng) {
    let n = nodes.len();
    let mut links: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    if n <= LINKS * 2 {
        for (a, l) in links.iter_mut().enumerate() {
            l.extend((0..n).filter(|b| *b != a));
        }
    } else {
        for a in 0..n {
            let mut peers = vec![(a + 1) % n];
            peers.extend((0..LINKS - 1).map(|_| rng.gen_range(0..n)));
            for b in peers.into_iter().filter(|b| *b != a) {
                links[a].insert(b);
                links[b].insert(a);
            }
        }
    }
    for (node, l) in nodes.iter_mut().zip(links) {
        node.links = l.into_iter().collect();
    }
}

/// Whether `msg` only keeps membership (carries no ledger state).
fn is_liveness(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Heartbeat
            | Message::Ping { .. }
            | Message::Ack { .. }
            | Message::PingReq { .. }
            | Message::Members { .. }
    )
}

fn kind(msg: &Message) -> u64 {
    match msg {
        Message::Events { events } => events.len() as u64,
        Message::Heartbeat => 1 << 40,
        Message::SyncDigest { .. } => 2 << 40,
        Message::SyncIds { .. } => 3 << 40,
        Message::GetEvents { .. } => 4 << 40,
        Message::Ping { seq, .. } => (5 << 40) + seq,
        Message::Ack { seq, .. } => (6 << 40) + seq,
        Message::PingReq { seq, .. } => (7 << 40) + seq,
        Message::Members { members } => (8 << 40) + members.len() as u64,
    }
}

fn describe(msg: &Message, gossip: bool) -> String {
    let how = if gossip { "gossip" } else { "direct" };
    match msg {
        Message::Events { events } => format!("{how} {} events", events.len()),
        Message::Heartbeat => format!("{how} heartbeat"),
        Message::SyncDigest { .. } => format!("{how} sync digest"),
        Message::SyncIds { buckets, .. } => format!("{how} sync ids ({} buckets)", buckets.len()),
        Message::GetEvents { ids } => format!("{how} get {} events", ids.len()),
        Message::Ping { seq, rumors } => format!("{how} ping {seq} ({} rumors)", rumors.len()),
        Message::Ack { seq, rumors } => format!("{how} ack {seq} ({} rumors)", rumors.len()),
        Message::PingReq { seq, target, .. } => format!("{how} ping-req {seq} for {target}"),
        Message::Members { members } => format!("{how} {} members", members.len()),
    }
}
