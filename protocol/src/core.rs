//! The per-node protocol state machine.
//!
//! Owns one node's view of the mesh: the ledger replica, the claim queues ranked by rendezvous hashing, leases and reclaiming, the
//! tasks this node runs, event batching and anti-entropy rounds; peer
//! liveness is `membership`'s (SWIM probing), read here. Inputs are
//! `handle_*` calls with the current time; outputs are pulled with
//! `poll_persist`, `poll_transmit`, `poll_action` and `poll_timeout`.
//!
//! The driver must write (and flush) every persist it polled before sending
//! any transmit polled after it: nothing is gossiped before it is durable.
//! Must not do IO, read a clock or use an unseeded RNG.

use crate::deps::Tally;
use crate::event::SideResult;
use crate::event::{event_id, Claim, Event, EventBody, EventError, Identity, NodeInfo, TaskResult};
use crate::exit::{verdict, Verdict};
use crate::function::{ChangeRefused, FunctionEvent};
use crate::gang::{GangPlace, GangStep};
use crate::hrw;
use crate::ids::{BlobId, EventId, JobId, NodeId, TaskRef};
use crate::job::Command;
use crate::job::{JobError, JobSpec, ResolvedTask};
use crate::ledger::{dependency_tally, job_id_of, JobOutcome, Ledger, TaskState, TaskView};
use crate::per_task::PerTask;
use crate::resources::{Amount, Resources};
use crate::schedule::CronZone;
use crate::storage::EventStore;
use crate::time::Millis;
use crate::validate::{
    fit_reason, MAX_ADDRS, MAX_ADDR_BYTES, MAX_CLAIMS_PER_EVENT, MAX_RESULTS_PER_EVENT,
};
use crate::wire::Message;
use crate::SeededRng;
use availability::Availability;
use ed25519_dalek::VerifyingKey;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use timers::{Every, Timers};

mod antientropy;
mod availability;
mod batch;
mod forget;
mod gangs;
mod load;
mod membership;
mod queues;
mod rounds;
mod timers;
mod wall;

pub use membership::{Liveness, PeerState};

pub use antientropy::REPLY_LIMIT;
pub use forget::ForgetRefused;

/// Largest encoded message sent by gossip; bigger ones go directly to peers.
pub const GOSSIP_LIMIT: usize = 60 * 1024;

/// Tunables. The defaults suit a LAN; tests and the simulator shorten them.
#[derive(Clone, Debug)]
pub struct Config {
    pub slots: u32,
    /// Memory and GPUs this node offers to tasks that ask for them.
    pub memory_mb: u64,
    pub gpus: u32,
    pub labels: Vec<(String, String)>,
    pub version: String,
    /// The membership protocol period: each node probes one peer this
    /// often (and checks leases as often).
    pub heartbeat_ms: u64,
    /// A peer suspected for this long (its probes unanswered, on this
    /// node's clock) is dead: not ranked for new claims.
    pub lease_ms: u64,
    /// Extra wait past the lease before a dead peer's claims are reclaimed.
    pub grace_ms: u64,
    /// δ: the rank-k node waits k·δ before claiming.
    pub claim_step_ms: u64,
    /// Claims and results are batched into one event per this interval.
    pub batch_ms: u64,
    /// Interval of anti-entropy rounds.
    pub sync_ms: u64,
    /// Most event ids in one anti-entropy reply, and most events sent for
    /// one `GetEvents`; the rest waits for the next round.
    pub sync_ids_limit: usize,
    /// Claim ahead enough work to cover this long at the observed task length.
    pub prefetch_horizon_ms: u64,
    pub max_prefetch: u32,
    /// A job whose tasks have all been terminal this long (and that this
    /// node no longer runs) is sealed: its task facts and views leave
    /// memory and are read back from the store when asked for.
    pub seal_after_ms: u64,
    /// The cluster's admin nodes: besides its submitter, an admin may
    /// cancel any job; besides the node itself, it may drain or resume
    /// any node (see `ledger`). Every node must hold the same set.
    pub admins: BTreeSet<NodeId>,
    /// How far this node's wall clock may be ahead of a submitter's: a job
    /// is forgotten this long after its retention ended by the reader's
    /// clock (see `core::forget`).
    pub forget_margin_ms: u64,
    /// How long a forgotten job's tombstone is kept (late copies of its
    /// events are dropped while it is).
    pub tombstone_ms: u64,
    /// How often schedules, timer triggers, jobs' `max_wall_clock` and
    /// retention are judged on the wall clock (see `core::wall`).
    pub wall_check_ms: u64,
    /// The k-th ranked node fires a due schedule or timer occurrence k
    /// times this long after it, if no one has.
    pub fire_step_ms: u64,
    /// The time zone cron expressions are read in.
    pub cron_zone: CronZone,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            slots: 1,
            memory_mb: 0,
            gpus: 0,
            labels: Vec::new(),
            version: String::new(),
            heartbeat_ms: 1_000,
            lease_ms: 5_000,
            grace_ms: 1_000,
            claim_step_ms: 100,
            batch_ms: 20,
            sync_ms: 2_000,
            sync_ids_limit: 16_384,
            prefetch_horizon_ms: 50,
            max_prefetch: 256,
            seal_after_ms: 1_000,
            admins: BTreeSet::new(),
            forget_margin_ms: crate::ledger::CLOCK_AHEAD_MS,
            tombstone_ms: 30 * 86_400_000,
            wall_check_ms: 250,
            fire_step_ms: 1_000,
            cron_zone: CronZone::Local,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Gossip,
    Peer(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    pub msg: Message,
}

/// Work for the node's executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Run {
        task: TaskRef,
        attempt: u32,
        job_name: String,
        spec: Box<ResolvedTask>,
        /// For an instance of a multi-instance task: its rank and hosts.
        gang: Option<GangPlace>,
    },
    /// Stop an attempt: its claim was lost, fenced or its job cancelled.
    Kill { task: TaskRef, attempt: u32 },
}

/// What a gossip message was worth, for the gossip layer: pass it on,
/// drop it and count it against its sender (garbled, forged or refused
/// events, or a message that is never gossiped), or drop it (nothing new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipVerdict {
    Accept,
    Reject,
    Ignore,
}

/// Counts of a job's tasks by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pending: u32,
    pub blocked: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub skipped: u32,
}

impl Progress {
    fn slot(&mut self, state: TaskState) -> &mut u32 {
        match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Blocked => &mut self.blocked,
            TaskState::Running => &mut self.running,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Skipped => &mut self.skipped,
        }
    }

    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.cancelled + self.skipped
    }
}

/// Counts of what a core holds per task (see [`Core::held`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub views: usize,
    pub dep_tallies: usize,
    pub task_facts: usize,
    pub sealed_jobs: usize,
    /// Ids of events about live work (the others are retired: see
    /// `ledger::EventIds`).
    pub live_event_ids: usize,
}

/// Node-local counters, for operators and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events_rejected: u64,
    /// Events received that the ledger already held (gossip and sync
    /// delivering the same event more than once).
    pub events_duplicate: u64,
    /// Claims this node made on tasks.
    pub claims: u64,
    /// Anti-entropy rounds this node started with a peer.
    pub sync_rounds: u64,
    pub attempts_started: u64,
    /// Running attempts this node stopped because the ledger moved on to
    /// another attempt or another node's claim.
    pub attempts_fenced: u64,
    /// Events received about jobs this node forgot, dropped.
    pub events_forgotten: u64,
    /// Jobs this node forgot.
    pub jobs_forgotten: u64,
}

#[derive(Clone, Copy, Debug)]
struct Local {
    attempt: u32,
    published: bool,
    running: bool,
    killed: bool,
    /// What the task takes while it runs here.
    need: Amount,
    /// This node's rank in the attempt's gang, for a multi-instance task
    /// (0: the primary, whose claim it is).
    rank: Option<u32>,
    /// The gang round this node invited (primary) or joined (member).
    round: Option<u32>,
    /// A primary whose round was declined (or that found too few nodes
    /// with room) invites again at this time.
    reinvite_at: Option<Millis>,
}

/// Claim queue order: higher priority first; among equal priority, jobs
/// take turns task by task (every job's n-th task before any job's
/// n+1-th), so a small job is not stuck behind a big one and submitters
/// share the mesh; then the older job.
pub struct Core<S> {
    identity: Identity,
    me: NodeId,
    cfg: Config,
    store: S,
    ledger: Ledger,
    /// Parsed public keys of the authors of verified events.
    author_keys: BTreeMap<NodeId, VerifyingKey>,
    rng: SeededRng,
    membership: membership::Membership,
    /// Whether it takes new tasks, and what it announces of that.
    availability: Availability,
    addrs: Vec<String>,
    /// Every live task's view, each job's in one block.
    views: PerTask<TaskView>,
    /// How each task's dependencies stand by `views`, kept as they change
    /// (a task waiting for 100,000 others is judged without reading them).
    dep_tallies: BTreeMap<TaskRef, Tally>,
    progress: BTreeMap<JobId, Progress>,
    /// Jobs whose tasks are all terminal, and when each is next checked
    /// for sealing (see `seal_next`).
    finished: BTreeMap<JobId, Millis>,
    running_by: BTreeMap<NodeId, BTreeSet<TaskRef>>,
    eligible: Vec<NodeId>,
    /// Until when every peer in `eligible` is surely still live (the
    /// earliest end of a suspicion among them): before then a peer that
    /// comes back can be added alone instead of recomputing the set.
    eligible_until: Millis,
    queues: queues::ClaimQueues,
    local: BTreeMap<TaskRef, Local>,
    waiting: VecDeque<TaskRef>,
    /// Jobs waiting (`after`) for each job.
    waiters: BTreeMap<JobId, BTreeSet<JobId>>,
    /// Gang tasks whose invite names this node, to answer.
    invites: BTreeSet<TaskRef>,
    running: u32,
    /// Slots, memory and GPUs the running attempts take.
    in_use: Amount,
    avg_task_ms: Option<f64>,
    batch: batch::Batcher,
    announce_due: bool,
    resync: BTreeSet<NodeId>,
    /// Digests sent and unanswered, and digests answered, per peer.
    rounds: rounds::Rounds,
    transmits: VecDeque<Transmit>,
    persists: VecDeque<(EventId, Vec<u8>)>,
    forgetting: VecDeque<crate::storage::Forgetting>,
    actions: VecDeque<Action>,
    /// When the scan, sync round, wall check and gang re-invite are due.
    timers: Timers,
    stats: Stats,
}

/// Stored events decoded one at a time (they were verified when they
/// came), so a job's are never all held decoded at once.
fn decoded(stored: &[Vec<u8>]) -> impl Iterator<Item = Event> + '_ {
    stored
        .iter()
        .filter_map(|bytes| crate::codec::decode_stored(bytes).ok())
}

impl<S: EventStore> Core<S> {
    /// Builds a core from its durable events: `stored` yields every stored
    /// event once, in any order (they were verified when first received);
    /// each job's task facts are then read again from `store` by job, and
    /// a finished job is sealed before the next is read (see `load`).
    /// Claims this node held before a restart are reclaimed at once (see
    /// `refresh`): their processes died with the old incarnation.
    pub fn new(
        identity: Identity,
        cfg: Config,
        store: S,
        stored: impl IntoIterator<Item = Vec<u8>>,
        rng_seed: u64,
        now: Millis,
    ) -> Core<S> {
        let me = identity.node_id();
        let ledger = Ledger::with_admins(cfg.admins.clone());
        let membership =
            membership::Membership::new(me, cfg.heartbeat_ms, cfg.lease_ms, rng_seed, now);
        let mut core = Core {
            identity,
            me,
            cfg,
            store,
            ledger,
            author_keys: BTreeMap::new(),
            rng: SeededRng::seed_from_u64(rng_seed),
            membership,
            availability: Availability::default(),
            addrs: Vec::new(),
            views: PerTask::default(),
            dep_tallies: BTreeMap::new(),
            progress: BTreeMap::new(),
            finished: BTreeMap::new(),
            running_by: BTreeMap::new(),
            eligible: Vec::new(),
            eligible_until: Millis(0),
            queues: queues::ClaimQueues::default(),
            local: BTreeMap::new(),
            waiting: VecDeque::new(),
            invites: BTreeSet::new(),
            waiters: BTreeMap::new(),
            running: 0,
            in_use: Amount::default(),
            avg_task_ms: None,
            batch: batch::Batcher::default(),
            announce_due: true,
            timers: Timers::new(now),
            resync: BTreeSet::new(),
            rounds: rounds::Rounds::default(),
            transmits: VecDeque::new(),
            persists: VecDeque::new(),
            forgetting: VecDeque::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
        };
        for (job, tombstone) in core.store.tombstones() {
            core.ledger.restore_tombstone(job, tombstone);
        }
        core.load(now, stored);
        if let Some(info) = core.ledger.node(&me) {
            // Until the first wall check and the driver judge it again.
            core.availability = Availability::restored(info.draining);
        }
        core
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn progress(&self, job: &JobId) -> Progress {
        self.progress.get(job).copied().unwrap_or_default()
    }

    /// The replicated views of one job's tasks, in index order: cached
    /// for a live job, folded from the store for a sealed one.
    pub fn views(&self, job: JobId) -> Vec<TaskView> {
        if self.ledger.is_sealed(&job) {
            let stored = self.store.job_events(&job);
            return self.ledger.sealed_views(job, decoded(&stored));
        }
        self.views.job(job).map(|(_, v)| v.clone()).collect()
    }

    /// One task's view (for a sealed job, its job's are folded first).
    pub fn view(&self, task: TaskRef) -> Option<TaskView> {
        if self.ledger.is_sealed(&task.job) {
            return self.views(task.job).into_iter().find(|v| v.task == task);
        }
        self.views.get(&task).cloned()
    }

    /// What this core holds in memory per task: cached views and
    /// dependency tallies, tasks with facts, the jobs sealed, and the ids
    /// of events about live work.
    pub fn held(&self) -> Held {
        let (sealed_jobs, task_facts) = self.ledger.held();
        Held {
            views: self.views.len(),
            dep_tallies: self.dep_tallies.len(),
            task_facts,
            sealed_jobs,
            live_event_ids: self.ledger.ids().live_len(),
        }
    }

    /// A job's stored events that name its tasks, decoded (they were
    /// verified when they came), with their ids.
    fn stored_with_ids(&self, job: &JobId) -> Vec<(EventId, Event)> {
        self.store
            .job_events(job)
            .iter()
            .filter_map(|bytes| Some((event_id(bytes), crate::codec::decode_stored(bytes).ok()?)))
            .collect()
    }

    pub fn peers(&self) -> &BTreeMap<NodeId, PeerState> {
        self.membership.peers()
    }

    /// Whether this node holds `peer` live now: alive, or suspected for
    /// less than a lease.
    pub fn is_live(&self, peer: &NodeId, now: Millis) -> bool {
        *peer == self.me || self.membership.live(peer, now)
    }

    /// Tasks this node has claimed and not finished, and how many run now.
    pub fn local_load(&self) -> (usize, u32) {
        (self.local.len(), self.running)
    }

    pub fn draining(&self) -> bool {
        self.availability.draining()
    }

    // ----- inputs -----

    pub fn handle_peer_up(&mut self, now: Millis, peer: NodeId) {
        self.membership.connection(now, peer, true);
        self.rounds.forget(&peer);
        self.send_digest(now, peer);
        self.after_input(now);
    }

    pub fn handle_peer_down(&mut self, now: Millis, peer: NodeId) {
        self.membership.connection(now, peer, false);
        self.rounds.forget(&peer);
        self.after_input(now);
    }

    /// A message that arrived by gossip, authored by `from`, and whether
    /// the gossip layer should pass it on.
    pub fn handle_gossip(&mut self, now: Millis, from: NodeId, msg: Message) -> GossipVerdict {
        self.heard(now, from);
        let verdict = match msg {
            Message::Events { events } => {
                let rejected = self.stats.events_rejected;
                let new = self.receive_events(now, events);
                if self.stats.events_rejected > rejected {
                    GossipVerdict::Reject
                } else if new > 0 {
                    GossipVerdict::Accept
                } else {
                    GossipVerdict::Ignore
                }
            }
            Message::Heartbeat => GossipVerdict::Accept,
            // Anti-entropy and probes are between two nodes, never gossiped.
            Message::SyncDigest { .. }
            | Message::SyncIds { .. }
            | Message::GetEvents { .. }
            | Message::Ping { .. }
            | Message::Ack { .. }
            | Message::PingReq { .. }
            | Message::Members { .. } => GossipVerdict::Reject,
        };
        self.after_input(now);
        verdict
    }

    /// A message sent directly to this node by `from`.
    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        self.heard(now, from);
        match msg {
            Message::Events { events } => {
                if self.receive_events(now, events) > 0 {
                    self.resync.insert(from);
                }
            }
            Message::Heartbeat => {}
            Message::SyncDigest { fingerprints } => self.answer_digest(now, from, &fingerprints),
            Message::SyncIds { buckets, partial } => {
                self.rounds.answered_by(from);
                self.answer_ids(now, from, buckets, partial)
            }
            Message::GetEvents { ids } => self.answer_get(from, ids),
            probe @ (Message::Ping { .. }
            | Message::Ack { .. }
            | Message::PingReq { .. }
            | Message::Members { .. }) => self.membership.handle(now, from, probe),
        }
        self.after_input(now);
    }

    /// Runs what is due at `now` on this node's monotonic clock, with
    /// `wall_ms` its wall clock (ms since the Unix epoch), which schedules,
    /// timer triggers, deadlines and retention are judged by.
    pub fn handle_timeout(&mut self, now: Millis, wall_ms: u64) {
        // Probes first: a timer that fired far too late (this node was
        // stopped, suspended, starved) moves suspicions on by as much, as
        // the silence was this node's, before leases are judged.
        self.membership.tick(now);
        self.membership_news(now);
        if self.timers.due(Every::Scan, now, self.cfg.heartbeat_ms) {
            self.update_eligible_and_queues(now);
            self.scan_leases(now);
        }
        if self.timers.due(Every::Sync, now, self.cfg.sync_ms) {
            let connected: Vec<NodeId> = self
                .membership
                .peers()
                .iter()
                .filter(|(_, p)| p.connected)
                .map(|(id, _)| *id)
                .collect();
            if !connected.is_empty() {
                // A random partner: replicas that all walked the peers in the
                // same order would all ask the same node at the same time.
                let peer = connected[self.rng.gen_range(0..connected.len())];
                if self.send_digest(now, peer) {
                    self.stats.sync_rounds += 1;
                }
            }
        }
        self.wall_tick(now, wall_ms);
        self.after_input(now);
    }

    /// Submits a job from this node. The returned event id is durable once
    /// the persists polled after this call are flushed.
    pub fn submit(
        &mut self,
        now: Millis,
        job: JobSpec,
        wall_ms: u64,
    ) -> Result<(JobId, EventId), JobError> {
        job.validate()?;
        if let Some(unknown) = job.after.iter().find(|j| self.ledger.job(j).is_none()) {
            return Err(JobError::UnknownAfter(*unknown));
        }
        let nonce = self.rng.gen();
        let origin = job.origin.clone();
        let id = self.publish(
            now,
            EventBody::JobSubmitted {
                job,
                submitted_ms: wall_ms,
                nonce,
            },
        );
        self.after_input(now);
        let job = (origin.as_ref())
            .and_then(crate::trigger::Origin::job_id)
            .unwrap_or_else(|| job_id_of(&id));
        Ok((job, id))
    }

    /// Asks a node (this one or another) to drain or resume; false if this
    /// node may not (only the node itself or an admin may).
    pub fn request_drain(&mut self, now: Millis, node: NodeId, drain: bool, wall_ms: u64) -> bool {
        if !self.ledger.may_drain(&self.me, &node) {
            return false;
        }
        self.publish(
            now,
            EventBody::DrainRequested {
                node,
                drain,
                at_ms: wall_ms,
            },
        );
        self.after_input(now);
        true
    }

    /// Gives back every attempt that runs or waits to run here: each is
    /// reclaimed, so its next attempt is claimable elsewhere, and the ones
    /// running are killed when the reclaim lands.
    pub fn requeue_local(&mut self, now: Millis) {
        // Another node's gang instance is not this node's to give back.
        let mine: Vec<Claim> = self
            .local
            .iter()
            .filter(|(_, l)| l.published && l.rank.is_none_or(|r| r == 0))
            .map(|(task, l)| Claim {
                task: *task,
                attempt: l.attempt,
            })
            .collect();
        self.batch.reclaim(mine, now, self.cfg.batch_ms);
        self.after_input(now);
    }

    /// Adds (or replaces) a job schedule for the whole mesh.
    pub fn add_schedule(
        &mut self,
        now: Millis,
        name: &str,
        recurrence: crate::schedule::Recurrence,
        template: JobSpec,
        wall_ms: u64,
    ) -> Result<EventId, String> {
        crate::schedule::check_name(name)?;
        template.validate().map_err(|e| e.to_string())?;
        let id = self.publish(
            now,
            EventBody::ScheduleAdded {
                name: name.to_string(),
                recurrence,
                template,
                added_ms: wall_ms,
            },
        );
        self.after_input(now);
        Ok(id)
    }

    /// Stops the schedule active at wall-clock time `wall_ms`; false if no
    /// schedule has that name or this node may not remove it (only its
    /// author or an admin may).
    pub fn remove_schedule(&mut self, now: Millis, name: &str, wall_ms: u64) -> bool {
        let Some(added) = self
            .ledger
            .schedules(wall_ms)
            .find(|s| s.name == name && self.ledger.may_remove_schedule(s, &self.me))
            .map(|s| s.event)
        else {
            return false;
        };
        self.publish(
            now,
            EventBody::ScheduleRemoved {
                name: name.to_string(),
                added,
            },
        );
        self.after_input(now);
        true
    }

    /// This node's rank among the live, willing nodes for deciding who
    /// acts first on `task` (0: this node goes first).
    pub fn rank_for(&self, task: TaskRef) -> usize {
        hrw::rank(task, 0, &self.me, &self.eligible)
    }

    /// Records an application package version for the whole mesh. Adding
    /// the same content again is a no-op; other content under a version
    /// already known is refused (versions are immutable).
    pub fn add_package(
        &mut self,
        now: Millis,
        name: &str,
        version: &str,
        blob: BlobId,
        wall_ms: u64,
    ) -> Result<Option<EventId>, String> {
        crate::files::check_package(name, version).map_err(|e| e.to_string())?;
        if let Some(old) = self.ledger.package(name, version) {
            if old.blob == blob {
                return Ok(None);
            }
            return Err(format!(
                "package {name}@{version} already exists with other content ({}); versions are immutable, add a new version",
                old.blob
            ));
        }
        let id = self.publish(
            now,
            EventBody::PackageAdded {
                name: name.to_string(),
                version: version.to_string(),
                blob,
                added_ms: wall_ms,
            },
        );
        self.after_input(now);
        Ok(Some(id))
    }

    /// Deploys, rolls back or removes a function, or creates or revokes
    /// one of its keys, for the whole mesh; refuses a change to a function
    /// of another node unless this one is an admin, a change other than a
    /// deploy of an unknown function, and a key change the fold would
    /// ignore (`FunctionView::refuses_key_change`).
    pub fn change_function(
        &mut self,
        now: Millis,
        event: FunctionEvent,
        wall_ms: u64,
    ) -> Result<EventId, ChangeRefused> {
        crate::function::check(&event)?;
        let name = event.name().to_string();
        match self.ledger.function(&name, wall_ms) {
            Some(f) if !f.may_change(&self.me, self.ledger.admins()) => {
                return Err(ChangeRefused::NotOwner {
                    name,
                    owner: f.owner,
                })
            }
            Some(f) => f.refuses_key_change(&event)?,
            None if !matches!(event, FunctionEvent::Deployed { .. }) => {
                return Err(ChangeRefused::Unknown(name))
            }
            _ => {}
        }
        let id = self.publish(now, EventBody::Function(event));
        self.after_input(now);
        Ok(id)
    }

    /// Changes the labels this node announces (a pool it joins once its
    /// start task succeeded, say); tasks are ranked again.
    pub fn set_labels(&mut self, now: Millis, labels: Vec<(String, String)>) {
        if self.cfg.labels != labels {
            self.cfg.labels = labels;
            self.announce_due = true;
            self.requeue(now);
        }
        self.after_input(now);
    }

    /// Defines (or redefines) a pool's start task for the whole mesh.
    pub fn define_pool(
        &mut self,
        now: Millis,
        name: &str,
        start_task: Command,
        wait_for_success: bool,
        wall_ms: u64,
    ) -> Result<EventId, String> {
        crate::schedule::check_name(name).map_err(|e| e.replace("schedule", "pool"))?;
        let id = self.publish(
            now,
            EventBody::PoolDefined {
                name: name.to_string(),
                start_task,
                wait_for_success,
                added_ms: wall_ms,
            },
        );
        self.after_input(now);
        Ok(id)
    }

    /// Records how this node's run of a pool's start task ended.
    pub fn report_start_task(
        &mut self,
        now: Millis,
        pool: &str,
        definition: EventId,
        mut result: SideResult,
    ) {
        fit_reason(&mut result.outcome);
        self.publish(
            now,
            EventBody::StartTaskFinished {
                pool: pool.to_string(),
                definition,
                result,
            },
        );
        self.after_input(now);
    }

    /// Cancels a job everywhere; false if the job is unknown or this node
    /// may not cancel it (only its submitter or an admin may).
    pub fn cancel(&mut self, now: Millis, job: JobId) -> bool {
        if !self.ledger.may_cancel(&job, &self.me) {
            return false;
        }
        if !self.ledger.is_cancelled(&job) {
            self.publish(now, EventBody::JobCancelled { job });
        }
        self.after_input(now);
        true
    }

    /// Stop (or resume) claiming new work; running tasks finish.
    /// Stops or resumes claiming here without telling the mesh (the node
    /// cannot write its ledger, say). Tasks already claimed run on.
    pub fn set_paused(&mut self, now: Millis, paused: bool) {
        self.availability.set_paused(paused);
        self.after_input(now);
    }

    pub fn paused(&self) -> bool {
        self.availability.paused()
    }

    /// Whether the node's availability policy (hours, load, idle; the
    /// driver judges it) keeps it from taking new tasks. A drain asked
    /// through the ledger is the core's to judge (`core::wall`).
    pub fn set_unavailable(&mut self, now: Millis, unavailable: bool) {
        self.announce_due |= self.availability.set_unavailable(unavailable);
        self.after_input(now);
    }

    /// Whether the ledger asks this node to drain (as of the last wall
    /// check).
    pub fn drain_requested(&self) -> bool {
        self.availability.drain_requested()
    }

    /// The addresses peers can dial this node at, announced in the ledger
    /// (as many and as long as every node accepts; the rest are left out).
    pub fn set_addrs(&mut self, now: Millis, mut addrs: Vec<String>) {
        addrs.retain(|a| a.len() <= MAX_ADDR_BYTES);
        addrs.truncate(MAX_ADDRS);
        if self.addrs != addrs {
            self.addrs = addrs;
            self.announce_due = true;
        }
        self.after_input(now);
    }

    /// The executor reports that an attempt's process ended.
    pub fn task_exited(&mut self, now: Millis, mut result: TaskResult) {
        fit_reason(&mut result.outcome);
        let (task, attempt) = (result.task, result.attempt);
        let Some(local) = self.local.get(&task).copied() else {
            return;
        };
        if local.attempt != attempt || !local.running {
            return;
        }
        self.local.remove(&task);
        self.running -= 1;
        self.in_use.sub(local.need);
        // A killed attempt's task may be claimable again (its attempt was
        // reclaimed); it was kept out of the queue while the process ran.
        let pending = self
            .views
            .get(&task)
            .filter(|v| v.state == TaskState::Pending);
        if let Some(attempt) = pending.map(|v| v.attempt) {
            self.queues.remove(task);
            self.enqueue(task, attempt, now);
        }
        if local.rank.is_some_and(|r| r > 0) {
            // Another node's gang: its primary's exit is the task's result.
            if !local.killed {
                self.publish_step(now, task, attempt, GangStep::Exited { result });
            }
        } else if !local.killed {
            let ms = result.duration_ms.max(1) as f64;
            self.avg_task_ms = Some(match self.avg_task_ms {
                Some(avg) => avg * 0.9 + ms * 0.1,
                None => ms,
            });
            // Published at once when another task waits for it, or when it
            // fails its job: the job's other claims here must not start.
            let hurry = self.awaited(&result.task) || self.fails_job(&result);
            self.batch.result(result, now, self.cfg.batch_ms);
            if hurry {
                self.batch.hurry(now);
            }
        }
        self.after_input(now);
    }

    // ----- outputs -----

    pub fn poll_persist(&mut self) -> Option<(EventId, Vec<u8>)> {
        self.persists.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.timers.next().min(self.membership.next_wake());
        if let Some(due) = self.batch.due() {
            next = next.min(due);
        }
        if let Some(at) = self.queues.steal_at() {
            next = next.min(at);
        }
        if let Some(at) = self.finished.values().min() {
            next = next.min(*at);
        }
        Some(next)
    }

    // ----- internals -----

    fn heard(&mut self, now: Millis, from: NodeId) {
        self.membership.heard(now, from);
        self.membership_news(now);
    }

    /// Sends what membership has to send, ranks again over the peers
    /// whose liveness changed, and starts an anti-entropy round with each
    /// connected peer heard again after a suspicion (a partition that
    /// healed): the events either side missed meanwhile flow at once, not
    /// at the random rounds of `sync_ms`.
    fn membership_news(&mut self, now: Millis) {
        for (peer, msg) in self.membership.take_out() {
            self.send(peer, msg);
        }
        for peer in self.membership.take_revived() {
            if self
                .membership
                .peers()
                .get(&peer)
                .is_some_and(|p| p.connected)
            {
                // What it was sent while silent was likely lost.
                self.rounds.forget(&peer);
                self.send_digest(now, peer);
            }
        }
        let changed = self.membership.take_changed();
        if !changed.is_empty() {
            self.reconsider(now, &changed);
        }
    }

    fn after_input(&mut self, now: Millis) {
        self.membership_news(now);
        if self.announce_due {
            self.announce_due = false;
            let info = NodeInfo {
                slots: self.cfg.slots,
                memory_mb: self.cfg.memory_mb,
                gpus: self.cfg.gpus,
                labels: self.cfg.labels.clone(),
                draining: self.availability.draining(),
                addrs: self.addrs.clone(),
                version: self.cfg.version.clone(),
            };
            let mine = self.ledger.node(&self.me).cloned();
            if mine.as_ref() != Some(&info) {
                let seq = self.ledger.announce_seq(&self.me).map_or(0, |s| s + 1);
                self.publish(now, EventBody::NodeAnnounce { seq, info });
            }
        }
        self.schedule(now);
        self.answer_invites(now);
        self.invite_gangs(now);
        // A due batch first: a result in it that fails its job skips the
        // job's other claims before they start.
        if self.batch.is_due(now) {
            self.flush_batch(now);
            self.schedule(now);
        }
        // A freed slot takes the next durable claim at once, not at the next batch.
        self.start_ready();
        for peer in std::mem::take(&mut self.resync) {
            self.send_digest(now, peer);
        }
        self.seal_next(now);
    }

    fn capacity(&self) -> u32 {
        if !self.availability.willing() || !self.self_eligible() {
            return 0;
        }
        let prefetch = match self.avg_task_ms {
            Some(avg) => ((self.cfg.prefetch_horizon_ms as f64 / avg) * self.cfg.slots as f64)
                .min(self.cfg.max_prefetch as f64) as u32,
            None => 0,
        };
        let claimed: u32 = self.local.values().map(|l| l.need.slots).sum();
        (self.cfg.slots + prefetch).saturating_sub(claimed)
    }

    /// This node's capacity for tasks that ask for resources.
    fn limit(&self) -> Amount {
        Amount {
            slots: self.cfg.slots,
            memory_mb: self.cfg.memory_mb,
            gpus: self.cfg.gpus,
        }
    }

    /// What a task asks for (the default for an unknown job).
    fn resources_of(&self, task: TaskRef) -> Resources {
        self.ledger
            .job(&task.job)
            .and_then(|j| j.spec.template(task.index))
            .map(|t| t.resources.clone())
            .unwrap_or_default()
    }

    /// This node's own offer, as it announces it.
    fn my_info(&self) -> NodeInfo {
        NodeInfo {
            slots: self.cfg.slots,
            memory_mb: self.cfg.memory_mb,
            gpus: self.cfg.gpus,
            labels: self.cfg.labels.clone(),
            draining: self.availability.draining(),
            addrs: Vec::new(),
            version: String::new(),
        }
    }

    /// The live, willing nodes that could run a task needing `r`; claims
    /// on it are ranked among these only.
    /// Borrowed for a task with default needs (most are), which every
    /// eligible node fits: no copy of a 1,000-node set per task ranked.
    fn candidates(&self, r: &Resources) -> Cow<'_, [NodeId]> {
        if *r == Resources::default() {
            return Cow::Borrowed(&self.eligible);
        }
        let mine = self.my_info();
        let fit = self.eligible.iter().filter(|id| {
            let info = if **id == self.me {
                Some(&mine)
            } else {
                self.ledger.node(id)
            };
            info.is_some_and(|i| r.misfit(i).is_none())
        });
        Cow::Owned(fit.copied().collect())
    }

    /// Whether this node is among the nodes claims are ranked over
    /// (`eligible` is sorted).
    fn self_eligible(&self) -> bool {
        self.eligible.binary_search(&self.me).is_ok()
    }

    /// Whether `task`'s result may be the last one a waiting task or job
    /// needs: a dependent with every other dependency ended, or a job
    /// waiting (`after`) for this task's job, of which it is the last.
    fn awaited(&self, task: &TaskRef) -> bool {
        let Some(record) = self.ledger.job(&task.job) else {
            return false;
        };
        let job_waited = self.waiters.get(&task.job).is_some_and(|w| !w.is_empty());
        if job_waited && self.progress(&task.job).done() + 1 >= record.task_count {
            return true;
        }
        let Some(graph) = &record.deps else {
            return false;
        };
        graph.dependents(task.index).any(|index| {
            let dependent = TaskRef {
                job: task.job,
                index,
            };
            let tally = self
                .dep_tallies
                .get(&dependent)
                .copied()
                .unwrap_or_default();
            u64::from(tally.succeeded) + u64::from(tally.broken) + 1
                >= u64::from(graph.dep_count(index))
        })
    }

    /// Whether `task` waited for other tasks of its job.
    fn has_dependencies(&self, task: &TaskRef) -> bool {
        self.ledger
            .job(&task.job)
            .and_then(|j| j.deps.as_ref())
            .is_some_and(|g| g.dep_count(task.index) > 0)
    }

    /// Signs, stores and announces one event of this node's own.
    fn publish(&mut self, now: Millis, body: EventBody) -> EventId {
        let event = self.identity.sign(body);
        let bytes = event.encode();
        let id = event_id(&bytes);
        if let Some(touched) = self.ledger.insert(id, &event) {
            self.persists.push_back((id, bytes.clone()));
            if bytes.len() + 16 <= GOSSIP_LIMIT {
                self.transmits.push_back(Transmit {
                    to: Destination::Gossip,
                    msg: Message::Events {
                        events: vec![bytes],
                    },
                });
            } else {
                let peers: Vec<NodeId> = self
                    .membership
                    .peers()
                    .iter()
                    .filter(|(_, p)| p.connected)
                    .map(|(id, _)| *id)
                    .collect();
                for peer in peers {
                    self.send(
                        peer,
                        Message::Events {
                            events: vec![bytes.clone()],
                        },
                    );
                }
            }
            self.apply_touched(now, touched);
        }
        id
    }

    fn flush_batch(&mut self, now: Millis) {
        let batch::Batch {
            claims,
            reclaims,
            results,
        } = self.batch.take(now);
        for chunk in claims.chunks(MAX_CLAIMS_PER_EVENT) {
            self.publish(
                now,
                EventBody::Claims {
                    claims: chunk.to_vec(),
                },
            );
        }
        for claim in &claims {
            if let Some(local) = self.local.get_mut(&claim.task) {
                if local.attempt == claim.attempt {
                    local.published = true;
                }
            }
        }
        for chunk in reclaims.chunks(MAX_CLAIMS_PER_EVENT) {
            self.publish(
                now,
                EventBody::Reclaimed {
                    claims: chunk.to_vec(),
                },
            );
        }
        for chunk in results.chunks(MAX_RESULTS_PER_EVENT) {
            self.publish(
                now,
                EventBody::Finished {
                    results: chunk.to_vec(),
                },
            );
        }
        self.invite_gangs(now);
        self.start_ready();
    }

    /// Verifies and applies events from a peer; returns how many were new.
    fn receive_events(&mut self, now: Millis, events: Vec<Vec<u8>>) -> usize {
        let mut new = 0;
        for bytes in events {
            let id = event_id(&bytes);
            if self.ledger.contains(&id) {
                self.stats.events_duplicate += 1;
                continue;
            }
            let Ok(event) = self.decode_verified(&id, &bytes) else {
                self.stats.events_rejected += 1;
                continue;
            };
            if self.ledger.about_forgotten(&id, &event.body) {
                self.stats.events_forgotten += 1;
                continue;
            }
            match self.ledger.admit(id, &event) {
                Ok(Some(touched)) => {
                    new += 1;
                    self.persists.push_back((id, bytes));
                    self.apply_touched(now, touched);
                }
                Ok(None) => {}
                Err(_) => self.stats.events_rejected += 1,
            }
        }
        new
    }

    /// [`Event::decode_verified`], parsing each author's key only once and
    /// skipping events the store vouches for.
    fn decode_verified(&mut self, id: &EventId, bytes: &[u8]) -> Result<Event, EventError> {
        let event: Event = crate::codec::decode(bytes)?;
        if self.store.known_valid(id) {
            return Ok(event);
        }
        let key = match self.author_keys.get(&event.author) {
            Some(key) => *key,
            None => event.author_key()?,
        };
        event.verify_with(&key)?;
        self.author_keys.insert(event.author, key);
        Ok(event)
    }

    fn apply_touched(&mut self, now: Millis, touched: crate::ledger::Touched) {
        let named: BTreeSet<JobId> = (touched.new_jobs.iter().chain(&touched.cancelled_jobs))
            .copied()
            .chain(touched.tasks.iter().map(|t| t.job))
            .filter(|job| self.ledger.is_sealed(job))
            .collect();
        for job in named {
            // A late fact about a sealed job: its facts come back first.
            self.refresh_job(now, job);
        }
        for job in touched.new_jobs.into_iter().chain(touched.cancelled_jobs) {
            self.refresh_job(now, job);
        }
        for task in touched.tasks {
            self.refresh(now, task);
        }
        if !touched.nodes.is_empty() {
            self.reconsider(now, &touched.nodes);
        }
    }

    fn refresh_job(&mut self, now: Millis, job: JobId) {
        if self.ledger.is_sealed(&job) {
            let stored = self.store.job_events(&job);
            self.ledger.unseal(job, decoded(&stored));
            // Its views are folded afresh below, and counted again.
            self.progress.remove(&job);
        }
        let Some(record) = self.ledger.job(&job) else {
            return;
        };
        for other in &record.spec.after {
            self.waiters.entry(*other).or_default().insert(job);
        }
        self.views.size_job(job, record.task_count);
        let order: Vec<u32> = match &record.deps {
            Some(graph) => graph.order().to_vec(),
            None => (0..record.task_count).collect(),
        };
        for index in order {
            self.refresh(now, TaskRef { job, index });
        }
    }

    /// How job `job` stands for the jobs waiting for it, from the views.
    fn outcome_of(&self, job: &JobId) -> JobOutcome {
        job_outcome(&self.progress, &self.ledger, job)
    }

    /// Recomputes a task's view, and its dependents' while their
    /// dependencies' states change, and the jobs waiting for its job
    /// (`after`) when that job's outcome changes.
    fn refresh(&mut self, now: Millis, task: TaskRef) {
        let before = self.outcome_of(&task.job);
        self.refresh_within_job(now, task);
        if self.outcome_of(&task.job) != before {
            let waiting: Vec<JobId> = self
                .waiters
                .get(&task.job)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default();
            for job in waiting {
                self.refresh_job(now, job);
            }
        }
    }

    fn refresh_within_job(&mut self, now: Millis, task: TaskRef) {
        let mut work = vec![task];
        while let Some(task) = work.pop() {
            let Some(old_state) = self.refresh_one(now, task) else {
                continue;
            };
            let new_state = self.views.get(&task).map(|v| v.state);
            let (old, new) = (dependency_tally(old_state), dependency_tally(new_state));
            if old == new {
                continue;
            }
            if let Some(graph) = self.ledger.job(&task.job).and_then(|j| j.deps.as_ref()) {
                for index in graph.dependents(task.index) {
                    let dependent = TaskRef {
                        job: task.job,
                        index,
                    };
                    let tally = self.dep_tallies.entry(dependent).or_default();
                    tally.remove(old);
                    tally.add(new);
                    work.push(dependent);
                }
            }
        }
    }

    /// Recomputes one task's view and follows its consequences here.
    /// Returns the previous state if the view changed.
    fn refresh_one(&mut self, now: Millis, task: TaskRef) -> Option<Option<TaskState>> {
        let (progress, ledger) = (&self.progress, &self.ledger);
        let view = ledger.view_with(
            task,
            || self.dep_tallies.get(&task).copied().unwrap_or_default(),
            |job| job_outcome(progress, ledger, job),
        )?;
        let old = self.views.get(&task);
        if old == Some(&view) {
            return None;
        }
        let old_state = old.map(|v| v.state);
        let progress = self.progress.entry(task.job).or_default();
        if let Some(old) = old {
            *progress.slot(old.state) -= 1;
            if old.state == TaskState::Running {
                for node in hosts_of(old) {
                    if let Some(set) = self.running_by.get_mut(node) {
                        set.remove(&task);
                    }
                }
            }
        }
        *progress.slot(view.state) += 1;
        let total = self.ledger.job(&task.job).map_or(0, |j| j.task_count);
        if progress.done() >= total {
            let due = now.plus(self.cfg.seal_after_ms);
            self.finished.entry(task.job).or_insert(due);
        }
        if view.state == TaskState::Running {
            for node in hosts_of(&view) {
                self.running_by.entry(*node).or_default().insert(task);
            }
        }
        self.queues.remove(task);
        if let Some(local) = self.local.get(&task).copied() {
            let lost = match (view.state, local.rank) {
                (TaskState::Running, Some(rank)) if rank > 0 => {
                    // Dropped when its round is replaced or declined.
                    let joined = view.gang.as_ref().is_some_and(|g| {
                        Some(g.round) == local.round
                            && !g.declined
                            && g.hosts.get(rank as usize) == Some(&self.me)
                    });
                    view.attempt != local.attempt || !joined
                }
                (TaskState::Pending, _) => view.attempt > local.attempt,
                (TaskState::Running, _) => {
                    view.attempt > local.attempt || view.node != Some(self.me)
                }
                _ => true,
            };
            if lost {
                // Fenced: the ledger moved on to another attempt or runner
                // (not a cancel or an end) while this one ran.
                let moved_on = matches!(view.state, TaskState::Pending | TaskState::Running);
                self.stats.attempts_fenced += u64::from(moved_on && local.running);
                self.lose(task, local);
            }
        }
        // After `lose`: a claim dropped before it ran leaves the task claimable.
        if view.state == TaskState::Pending && !self.local.contains_key(&task) {
            self.enqueue(task, view.attempt, now);
        }
        // A claim of this node that no process here runs and that has no
        // result waiting: an earlier incarnation's (restarted, or its store
        // wiped and rebuilt from peers). Its heartbeats would renew the
        // lease forever, so reclaim the attempt now.
        let member = view.gang.as_ref().is_some_and(|g| {
            g.formed
                && g.hosts[1..].contains(&self.me)
                && !self
                    .ledger
                    .gang(&task)
                    .is_some_and(|s| s.exited(view.attempt, &self.me))
        });
        let orphan = view.state == TaskState::Running
            && (view.node == Some(self.me) || member)
            && !self.local.contains_key(&task)
            && !self.batch.has_result(task, view.attempt);
        if orphan {
            let claim = Claim {
                task,
                attempt: view.attempt,
            };
            self.batch.reclaim([claim], now, self.cfg.batch_ms);
        }
        let invited = view
            .gang
            .as_ref()
            .is_some_and(|g| g.hosts[1..].contains(&self.me));
        let declined = view.gang.as_ref().is_some_and(|g| g.declined);
        self.views.insert(task, view);
        if invited {
            self.invites.insert(task);
        }
        if declined {
            self.invite_again(now, task);
        }
        Some(old_state)
    }

    /// Seals the first finished job whose time has come, if it is still
    /// finished, nothing of it runs or waits to be published here, and the
    /// store holds all it needs (else it is checked again later): its task
    /// facts and views leave memory. One job per call, so that a node with
    /// many to seal (after a restart) keeps answering.
    fn seal_next(&mut self, now: Millis) {
        let Some((job, due)) = self
            .finished
            .iter()
            .map(|(j, d)| (*j, *d))
            .min_by_key(|(_, d)| *d)
        else {
            return;
        };
        if due > now {
            return;
        }
        self.finished.remove(&job);
        if !self.every_task_ended(job) || self.ledger.is_sealed(&job) {
            return;
        }
        if self.busy_with(job) || !self.seal(job, &self.stored_with_ids(&job)) {
            self.finished.insert(job, now.plus(self.cfg.seal_after_ms));
        }
    }

    /// Whether every task of known job `job` is terminal.
    fn every_task_ended(&self, job: JobId) -> bool {
        let total = self.ledger.job(&job).map_or(u32::MAX, |j| j.task_count);
        self.progress(&job).done() >= total
    }

    /// Seals finished job `job` (see [`Ledger::seal`]) given `stored`, its
    /// events as the store holds them, and drops its cached views and
    /// dependency tallies; false, changing nothing, if the ledger refuses.
    fn seal(&mut self, job: JobId, stored: &[(EventId, Event)]) -> bool {
        if !self.ledger.seal(job, stored) {
            return false;
        }
        let tasks: Vec<TaskRef> = self
            .dep_tallies
            .range(TaskRef::all_of(job))
            .map(|(t, _)| *t)
            .collect();
        for task in tasks {
            self.dep_tallies.remove(&task);
        }
        self.views.remove_job(&job);
        true
    }

    /// Whether `result` fails its whole job by the task's exit-code rules.
    fn fails_job(&self, result: &TaskResult) -> bool {
        let task = result.task;
        let template = (self.ledger.job(&task.job)).and_then(|j| j.spec.template(task.index));
        template.is_some_and(|t| verdict(&result.outcome, &t.exit_codes) == Verdict::FailJob)
    }

    /// Whether this node still runs, or has yet to publish, something of `job`.
    fn busy_with(&self, job: JobId) -> bool {
        let of_job = |task: &TaskRef| task.job == job;
        self.local.range(TaskRef::all_of(job)).next().is_some()
            || self.invites.range(TaskRef::all_of(job)).next().is_some()
            || self.batch.holds_any(of_job)
    }

    fn lose(&mut self, task: TaskRef, local: Local) {
        if local.running {
            if !local.killed {
                if let Some(l) = self.local.get_mut(&task) {
                    l.killed = true;
                }
                self.actions.push_back(Action::Kill {
                    task,
                    attempt: local.attempt,
                });
            }
        } else {
            self.local.remove(&task);
            self.waiting.retain(|t| *t != task);
            // Not yet in the ledger: withdraw it. Published later, it could
            // outrank the claim it lost to and leave the task to no runner.
            if !local.published {
                self.batch.withdraw_claim(task);
            }
        }
    }

    fn queue_key(&self, task: TaskRef) -> queues::QueueKey {
        let (priority, submitted) = self
            .ledger
            .job(&task.job)
            .map_or((0, 0), |j| (j.spec.priority, j.submitted_ms));
        (-(priority as i64), task.index, submitted, task)
    }

    fn enqueue(&mut self, task: TaskRef, attempt: u32, ready: Millis) {
        if self.availability.draining()
            || !self.self_eligible()
            || self.ledger.is_cancelled(&task.job)
        {
            return;
        }
        let r = self.resources_of(task);
        if r.misfit(&self.my_info()).is_some() {
            return;
        }
        let rank = hrw::rank(task, attempt, &self.me, self.candidates(&r).iter());
        let key = self.queue_key(task);
        self.queues.insert(rank, key, attempt, ready);
    }

    /// Recomputes the set of live, willing nodes that claims are ranked over.
    fn update_eligible(&mut self, now: Millis) -> bool {
        let mut eligible: Vec<NodeId> = self
            .ledger
            .nodes()
            .filter(|(id, info)| info.slots > 0 && !info.draining && **id != self.me)
            .filter(|(id, _)| self.membership.live(id, now))
            .map(|(id, _)| *id)
            .collect();
        if self.cfg.slots > 0 && !self.availability.draining() {
            eligible.push(self.me);
        }
        eligible.sort();
        self.eligible_until = eligible
            .iter()
            .filter(|id| **id != self.me)
            .map(|id| self.membership.live_until(id))
            .min()
            .unwrap_or(Millis(u64::MAX));
        let changed = eligible != self.eligible;
        self.eligible = eligible;
        changed
    }

    /// `peers` came back or announced something new. While no eligible
    /// peer can have expired (and this node's own announce is not among
    /// them), the set `update_eligible` would compute is the old one with
    /// just these peers in or out — O(log n) each instead of a scan of the
    /// cluster per peer, which made start-up O(n³) in large clusters.
    fn reconsider(&mut self, now: Millis, peers: &[NodeId]) {
        if now > self.eligible_until || peers.contains(&self.me) {
            self.update_eligible_and_queues(now);
            return;
        }
        let mut changed = false;
        for peer in peers {
            let willing = self
                .ledger
                .node(peer)
                .is_some_and(|i| i.slots > 0 && !i.draining);
            let wanted = willing && self.membership.live(peer, now);
            if wanted {
                let until = self.membership.live_until(peer);
                self.eligible_until = self.eligible_until.min(until);
            }
            match (self.eligible.binary_search(peer), wanted) {
                (Err(at), true) => {
                    self.eligible.insert(at, *peer);
                    changed = true;
                }
                (Ok(at), false) => {
                    self.eligible.remove(at);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.requeue(now);
        }
    }

    fn update_eligible_and_queues(&mut self, now: Millis) {
        if self.update_eligible(now) {
            self.requeue(now);
        }
    }

    /// Re-ranks every pending task over the new eligible set, keeping when
    /// each became ready.
    fn requeue(&mut self, now: Millis) {
        let ready = self.queues.take_ready_times();
        let pending: Vec<(TaskRef, u32)> = self
            .views
            .values()
            .filter(|v| v.state == TaskState::Pending && !self.local.contains_key(&v.task))
            .map(|v| (v.task, v.attempt))
            .collect();
        for (task, attempt) in pending {
            let since = ready.get(&task).copied().unwrap_or(now);
            self.enqueue(task, attempt, since);
        }
    }

    /// Reclaims attempts held by nodes suspected (or, never heard, silent
    /// since this node started) for longer than lease + grace.
    /// Nodes stagger by their rank for the next attempt so one usually acts.
    fn scan_leases(&mut self, now: Millis) {
        let expiry = self.cfg.lease_ms + self.cfg.grace_ms;
        let mut reclaims = Vec::new();
        for (node, tasks) in &self.running_by {
            if *node == self.me {
                continue;
            }
            let silent = self.membership.silent_for(node, now);
            if silent <= expiry {
                continue;
            }
            for task in tasks {
                let Some(view) = self.views.get(task) else {
                    continue;
                };
                let candidates = self.candidates(&self.resources_of(*task));
                let rank = hrw::rank(*task, view.attempt + 1, &self.me, candidates.iter()) as u64;
                if silent > expiry + rank * self.cfg.claim_step_ms {
                    reclaims.push(Claim {
                        task: *task,
                        attempt: view.attempt,
                    });
                }
            }
        }
        if !reclaims.is_empty() {
            self.batch.reclaim(reclaims, now, self.cfg.batch_ms);
        }
    }

    /// Claims queued tasks up to this node's capacity: its own first-choice
    /// tasks from the front, then (after k·δ) rank-k tasks from the back, so
    /// that a helper and the first choice rarely pick the same task.
    fn schedule(&mut self, now: Millis) {
        let mut capacity = self.capacity();
        self.queues.clear_steal();
        // Gang tasks that cannot form now: passed over this round.
        let mut passed = BTreeSet::new();
        let mut hurry = false;
        let step = self.cfg.claim_step_ms;
        while capacity > 0 {
            let Some((task, attempt)) = self.queues.next_pick(now, step, &passed) else {
                break;
            };
            let r = self.resources_of(task);
            let need = r.amount();
            let gang = r.instances > 1;
            if gang && !self.gang_can_form(task, attempt, &r) {
                passed.insert(task);
                continue;
            }
            if r.is_sized() || gang {
                // Sized tasks are claimed only into room free right now.
                let mut claimed = Amount::default();
                for l in self.local.values() {
                    claimed.add(l.need);
                }
                if !claimed.room_for(need, self.limit()) {
                    break;
                }
            }
            self.queues.remove(task);
            self.local.insert(
                task,
                Local {
                    attempt,
                    published: false,
                    running: false,
                    killed: false,
                    need,
                    rank: gang.then_some(0),
                    round: None,
                    reinvite_at: None,
                },
            );
            self.waiting.push_back(task);
            (self.batch).claim(Claim { task, attempt }, now, self.cfg.batch_ms);
            self.stats.claims += 1;
            capacity = capacity.saturating_sub(need.slots);
            hurry |= self.has_dependencies(&task);
        }
        if hurry {
            self.batch.hurry(now);
        }
    }

    /// Starts claimed tasks whose claim is durable, in claim order, while
    /// their slots, memory and GPUs are free.
    /// A gang instance starts once its gang has formed and its room is
    /// free (a primary may have lent its room to another gang while it
    /// recruited); other tasks start into room no gang instance keeps.
    fn start_ready(&mut self) {
        let limit = self.limit();
        loop {
            let mut taken = self.in_use;
            for l in self.local.values() {
                if l.rank.is_some() && !l.running {
                    taken.add(l.need);
                }
            }
            let Some(pos) = self.waiting.iter().position(|t| {
                self.local.get(t).is_some_and(|l| match l.rank {
                    Some(_) => {
                        l.published
                            && self.gang_formed(*t, l.attempt)
                            && self.in_use.room_for(l.need, limit)
                    }
                    None => l.published && taken.room_for(l.need, limit),
                })
            }) else {
                break;
            };
            let Some(task) = self.waiting.remove(pos) else {
                break;
            };
            let Some(local) = self.local.get_mut(&task) else {
                continue;
            };
            let spec = self
                .ledger
                .job(&task.job)
                .and_then(|j| j.spec.task(task.index).map(|s| (j.spec.name.clone(), s)));
            let Some((job_name, spec)) = spec else {
                self.local.remove(&task);
                continue;
            };
            local.running = true;
            self.in_use.add(local.need);
            self.running += 1;
            self.stats.attempts_started += 1;
            let gang = local.rank.and_then(|rank| {
                let hosts = self.views.get(&task)?.gang.as_ref()?.hosts.clone();
                Some(GangPlace { rank, hosts })
            });
            self.actions.push_back(Action::Run {
                task,
                attempt: local.attempt,
                job_name,
                spec: Box::new(spec),
                gang,
            });
        }
    }

    /// Whether `attempt` of gang task `task` has formed.
    fn gang_formed(&self, task: TaskRef, attempt: u32) -> bool {
        self.views.get(&task).is_some_and(|v| {
            v.state == TaskState::Running
                && v.attempt == attempt
                && v.gang.as_ref().is_some_and(|g| g.formed)
        })
    }

    fn send(&mut self, peer: NodeId, msg: Message) {
        self.transmits.push_back(Transmit {
            to: Destination::Peer(peer),
            msg,
        });
    }

    /// Starts a round with `peer`, unless a digest sent to it less than
    /// `sync_ms` ago is unanswered (its answer would list the same ids);
    /// whether it did.
    fn send_digest(&mut self, now: Millis, peer: NodeId) -> bool {
        if !self.rounds.ask(peer, now, self.cfg.sync_ms) {
            return false;
        }
        let fingerprints = self.ledger.fingerprints().clone();
        self.send(peer, Message::SyncDigest { fingerprints });
        true
    }
}

/// The nodes a running task occupies: its runner (a gang's primary while
/// it recruits), or its formed gang's hosts.
fn hosts_of(view: &TaskView) -> &[NodeId] {
    match &view.gang {
        Some(g) if g.formed => &g.hosts,
        _ => view.node.as_slice(),
    }
}

/// How `job` stands for the jobs waiting for it, from its tasks' counts
/// (a forgotten job's from its tombstone, as in the fold).
fn job_outcome(progress: &BTreeMap<JobId, Progress>, ledger: &Ledger, job: &JobId) -> JobOutcome {
    if let Some(outcome) = ledger.kept_outcome(job) {
        return outcome;
    }
    let (Some(p), Some(record)) = (progress.get(job), ledger.job(job)) else {
        return JobOutcome::Unfinished;
    };
    JobOutcome::of(
        p.succeeded,
        p.failed + p.cancelled + p.skipped,
        record.task_count,
    )
}
