//! The driver: the one task that owns the protocol core on a real node.
//!
//! Owns the loop that feeds the core (network events, API requests, executor
//! reports, timeouts) and carries its outputs out in the order the design
//! requires: persist to sled and flush, then transmit, then act. Must not
//! touch the libp2p Swarm (only `net` does) or decide protocol questions
//! (only the core does).
//!
//! The API and the portal reach it only through [`command`]: a typed
//! command with a oneshot reply, answered in `answer`.

mod answer;
pub mod command;

use crate::availability::{local_minute, other_load_per_cpu, OnLeave, PolicyOpts};
use crate::budget::{
    chunk_burst, Budgets, DEFAULT_CHUNK_RATE, DEFAULT_SYNC_RATE, SYNC_BURST_SECONDS,
};
use crate::chunk_server::ChunkServer;
use crate::exec::{Attempt, Executor, GangEnv};
use crate::fetch::Fetcher;
use crate::identity::{peer_of, Connected};
use crate::jobprep::JobPrep;
use crate::metrics::Metrics;
use crate::net::{self, Net, NetEvent};
use crate::outbox::Item;
use crate::pools::{Pools, StartDone};
use crate::stage::StagedInput;
use crate::store::blobs::BlobStore;
use crate::store::ledger::LedgerStore;
use crate::store::reclaim::{ledger_pins, Reclaimer};
use crate::wallclock::wall_ms;
use libp2p::{Multiaddr, PeerId};
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{FetchRequest, FetchResponse};
use peerbatch_protocol::core::Destination;
use peerbatch_protocol::gang::GangPlace;
use peerbatch_protocol::storage::Forgetting;
use peerbatch_protocol::{
    Action, BlobId, Core, EventId, GossipVerdict, JobId, Message, Millis, NodeId, ResolvedTask,
    Source, TaskRef, TaskResult, TaskState,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// Fetch requests answered at once (each may hold a 16 MiB batch).
const SERVING: usize = 4;

/// Bytes handed to the outbox and not yet written or sent past which the
/// driver stops taking network input (the network then stops reading from
/// peers), so a slow disk or a flood cannot grow the queue without bound:
/// `--outbox-limit`, 64 MiB by default.
const DEFAULT_OUTBOX_LIMIT: usize = 64 << 20;

/// How often the chunk store is checked against `--store-limit`.
const RECLAIM_EVERY: Duration = Duration::from_secs(2);

pub struct Driver {
    core: Core<LedgerStore>,
    store: LedgerStore,
    blobs: BlobStore,
    net: Net,
    fetcher: Fetcher,
    listen_file: PathBuf,
    exec: Executor,
    clock: Instant,
    kills: HashMap<(TaskRef, u32), oneshot::Sender<()>>,
    listening: Vec<Multiaddr>,
    outbox: mpsc::UnboundedSender<Item>,
    /// What the outbox holds (it subtracts what it is done with).
    outbox_load: Arc<crate::outbox::Load>,
    outbox_limit: usize,
    /// Times network input was held because the outbox was over its limit.
    input_held: u64,
    /// What each peer's sync requests made this node send.
    sync_budget: Budgets<NodeId>,
    /// What each peer's fetch requests made this node send.
    chunk_budget: Arc<Mutex<Budgets<PeerId>>>,
    /// Why the ledger cannot be written right now, if it cannot.
    storage: watch::Receiver<Option<String>>,
    reclaimer: Option<Reclaimer>,
    policy: PolicyOpts,
    pools: Option<Pools>,
    start_done: Option<mpsc::UnboundedReceiver<StartDone>>,
    jobprep: Option<JobPrep>,
    /// Why this node offers no slots now (drained, outside its policy).
    unavailable: Option<String>,
    /// Whether the availability policy kept this node from new tasks at
    /// the last tick.
    outside_policy: bool,
    /// Fetch requests being answered at once.
    serving: Arc<Semaphore>,
    /// Peers' `LiveLog` requests waiting for bytes.
    live_polls: Arc<Semaphore>,
    chunks: ChunkServer,
    /// Both names of each connected peer.
    connected: Connected,
    metrics: Metrics,
    /// Runs the function calls other nodes send here.
    functions: Option<crate::functions::Router>,
}

impl Driver {
    pub fn new(
        core: Core<LedgerStore>,
        store: LedgerStore,
        net: Net,
        fetcher: Fetcher,
        exec: Executor,
        listen_file: PathBuf,
        clock: Instant,
    ) -> Driver {
        let (outbox, outbox_load, storage) = crate::outbox::spawn(store.clone(), net.clone());
        let blobs = fetcher.store().clone();
        let chunks = ChunkServer::new(blobs.clone(), fetcher.stats.clone(), fetcher.spread.clone());
        Driver {
            core,
            store,
            blobs,
            net,
            fetcher,
            listen_file,
            exec,
            clock,
            kills: HashMap::new(),
            listening: Vec::new(),
            outbox,
            outbox_load,
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            input_held: 0,
            sync_budget: Budgets::new(DEFAULT_SYNC_RATE, SYNC_BURST_SECONDS * DEFAULT_SYNC_RATE),
            chunk_budget: Arc::new(Mutex::new(Budgets::new(
                DEFAULT_CHUNK_RATE,
                chunk_burst(DEFAULT_CHUNK_RATE),
            ))),
            storage,
            reclaimer: None,
            policy: PolicyOpts::default(),
            pools: None,
            start_done: None,
            jobprep: None,
            unavailable: None,
            outside_policy: false,
            serving: Arc::new(Semaphore::new(SERVING)),
            live_polls: Arc::new(Semaphore::new(crate::live_logs::MAX_POLLS)),
            chunks,
            connected: Connected::default(),
            metrics: Metrics::default(),
            functions: None,
        }
    }

    /// Reports attempts' run times to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Driver {
        self.metrics = metrics;
        self
    }

    /// Answers each peer's sync requests with at most `rate` bytes a second.
    pub fn with_sync_rate(mut self, rate: u64) -> Driver {
        self.sync_budget = Budgets::new(rate, SYNC_BURST_SECONDS * rate);
        self
    }

    /// Serves each peer's fetches at most `rate` bytes of chunks a second.
    pub fn with_chunk_rate(self, rate: u64) -> Driver {
        *lock(&self.chunk_budget) = Budgets::new(rate, chunk_burst(rate));
        self
    }

    /// Holds network input while the outbox holds more than `limit` bytes.
    pub fn with_outbox_limit(mut self, limit: u64) -> Driver {
        self.outbox_limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self
    }

    /// Offers slots only as `policy` allows.
    /// Answers the function calls other nodes send here with `router`.
    pub fn with_functions(mut self, router: crate::functions::Router) -> Driver {
        self.functions = Some(router);
        self
    }

    pub fn with_policy(mut self, policy: PolicyOpts) -> Driver {
        self.policy = policy;
        self
    }

    /// Runs pool start tasks and job preparation and release here.
    pub fn with_side_work(
        mut self,
        pools: Pools,
        start_done: mpsc::UnboundedReceiver<StartDone>,
        jobprep: JobPrep,
    ) -> Driver {
        self.pools = Some(pools);
        self.start_done = Some(start_done);
        self.jobprep = Some(jobprep);
        self
    }

    /// Starts due pool start tasks, announces the pools this node is ready
    /// for, and releases jobs that ended.
    fn side_work_tick(&mut self) {
        let now = self.now();
        if let Some(pools) = self.pools.as_mut() {
            let labels = pools.tick(&self.core);
            self.core.set_labels(now, labels);
        }
        if let Some(jobprep) = &self.jobprep {
            let ended = jobprep
                .jobs()
                .into_iter()
                .filter(|job| {
                    let total = self.core.ledger().job(job).map_or(0, |j| j.task_count);
                    self.core.ledger().is_cancelled(job) || self.core.progress(job).done() >= total
                })
                .collect();
            jobprep.release_ended(&ended);
        }
    }

    fn on_start_done(&mut self, done: StartDone) {
        tracing::info!(
            "start task of pool {} ended: {:?}",
            done.pool,
            done.result.outcome
        );
        let now = self.now();
        self.core
            .report_start_task(now, &done.pool, done.definition, done.result);
        if let Some(pools) = self.pools.as_mut() {
            pools.finished(&done.definition);
        }
        self.side_work_tick();
    }

    /// Tells the core whether the availability policy lets this node take
    /// new tasks (a drain asked through the ledger is the core's to judge)
    /// and keeps the reason `status` shows.
    fn availability_tick(&mut self) {
        let (_, running) = self.core.local_load();
        let outside = self.policy.outside(
            local_minute(),
            other_load_per_cpu(running),
            self.policy.idle_secs(),
        );
        let now = self.now();
        if outside.is_some() != self.outside_policy {
            match &outside {
                Some(why) => tracing::info!("not taking new tasks: {why}"),
                None => tracing::info!("taking tasks again"),
            }
            self.outside_policy = outside.is_some();
            self.core.set_unavailable(now, self.outside_policy);
            if self.outside_policy && self.policy.on_leave == OnLeave::Requeue {
                self.core.requeue_local(now);
            }
        }
        self.unavailable = match self.core.drain_requested() {
            true => Some("drained by request".to_string()),
            false => outside,
        };
    }

    /// Bounds the chunk store (see `store::reclaim`).
    pub fn with_reclaimer(mut self, reclaimer: Reclaimer) -> Driver {
        self.reclaimer = Some(reclaimer);
        self
    }

    fn reclaim_tick(&self) {
        let Some(r) = &self.reclaimer else { return };
        if !r.due(&self.blobs) {
            return;
        }
        let pinned_at = std::time::SystemTime::now();
        let mut pins = ledger_pins(&self.core, wall_ms());
        pins.extend(self.fetcher.exporting());
        r.maybe_start(&self.blobs, pins, pinned_at);
    }

    fn now(&self) -> Millis {
        Millis(self.clock.elapsed().as_millis() as u64)
    }

    pub async fn run(
        mut self,
        mut net_events: mpsc::Receiver<NetEvent>,
        mut commands: mpsc::Receiver<command::Command>,
        mut exited: mpsc::UnboundedReceiver<TaskResult>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        let mut dial_tick = tokio::time::interval(Duration::from_secs(2));
        let mut reclaim_tick = tokio::time::interval(RECLAIM_EVERY);
        let mut storage = self.storage.clone();
        let mut start_done = self
            .start_done
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        // Whether network input was held at the last turn.
        let mut held = false;
        loop {
            let room = self.outbox_has_room();
            if !room && !held {
                self.input_held += 1;
                tracing::debug!("network input held: the outbox is over its limit");
            }
            held = !room;
            let deadline = self
                .core
                .poll_timeout()
                .map(|t| self.clock + Duration::from_millis(t.0));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(event) = net_events.recv(), if room => {
                    self.on_net(event).await;
                    for _ in 0..256 {
                        match net_events.try_recv() {
                            Ok(event) => self.on_net(event).await,
                            Err(_) => break,
                        }
                    }
                }
                Some(command) = commands.recv() => self.on_command(command),
                Some(done) = exited.recv() => {
                    self.on_exited(done);
                    while let Ok(done) = exited.try_recv() {
                        self.on_exited(done);
                    }
                }
                _ = sleep => {
                    let now = self.now();
                    self.core.handle_timeout(now, wall_ms());
                }
                _ = dial_tick.tick() => {
                    self.dial_known_nodes().await;
                    self.availability_tick();
                    self.keep_warm();
                    self.side_work_tick();
                }
                _ = reclaim_tick.tick() => self.reclaim_tick(),
                Some(done) = start_done.recv() => self.on_start_done(done),
                Ok(()) = storage.changed() => {
                    // Claims need a writable ledger; running tasks go on.
                    let failing = storage.borrow_and_update().is_some();
                    let now = self.now();
                    self.core.set_paused(now, failing);
                }
                _ = &mut shutdown => break,
            }
            self.pump();
        }
        for (_, kill) in self.kills.drain() {
            let _ = kill.send(());
        }
        if let Some(functions) = &self.functions {
            functions.stop_warm().await;
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!("final flush failed: {e:#}");
        }
    }

    fn on_exited(&mut self, done: TaskResult) {
        self.kills.remove(&(done.task, done.attempt));
        (self.metrics).task_ran(Duration::from_millis(done.duration_ms));
        let now = self.now();
        self.core.task_exited(now, done);
    }

    /// Takes in one network event. Awaits only room in the network's
    /// command channel, which its event loop keeps draining even while it
    /// waits for room in the event channel (see `net`).
    async fn on_net(&mut self, event: NetEvent) {
        let now = self.now();
        match event {
            NetEvent::Listening(addr) => {
                self.listening.push(addr);
                let me = self.net.local_peer_id();
                let addrs: Vec<String> = self
                    .listening
                    .iter()
                    .map(|a| format!("{a}/p2p/{me}"))
                    .collect();
                if let Err(e) =
                    crate::paths::write_private(&self.listen_file, addrs.join("\n").as_bytes())
                {
                    tracing::warn!("{e:#}");
                }
                self.core.set_addrs(now, addrs);
            }
            NetEvent::PeerConnected(peer) => {
                if let Some(node) = self.connected.connect(peer) {
                    self.core.handle_peer_up(now, node);
                }
            }
            NetEvent::PeerDisconnected(peer) => {
                if let Some(node) = self.connected.disconnect(&peer) {
                    self.core.handle_peer_down(now, node);
                }
            }
            NetEvent::Gossip {
                source,
                data,
                ticket,
            } => {
                let verdict = match self.decode_from(&source, &data) {
                    Some((node, msg)) => match self.core.handle_gossip(now, node, msg) {
                        GossipVerdict::Accept => net::GossipVerdict::Accept,
                        GossipVerdict::Reject => net::GossipVerdict::Reject,
                        GossipVerdict::Ignore => net::GossipVerdict::Ignore,
                    },
                    None => net::GossipVerdict::Reject,
                };
                self.net.judge_gossip(ticket, verdict).await;
            }
            NetEvent::Message { from, data } => {
                let Some((node, msg)) = self.decode_from(&from, &data) else {
                    return;
                };
                let asks = matches!(
                    msg,
                    Message::SyncDigest { .. }
                        | Message::SyncIds { .. }
                        | Message::GetEvents { .. }
                );
                if asks {
                    let load = &self.outbox_load;
                    let refused = sync_refusal(&mut self.sync_budget, load, &node, &from);
                    if let Some(why) = refused {
                        // It asks again next round.
                        tracing::debug!("sync request from {from} dropped: {why}");
                        return;
                    }
                }
                self.core.handle_message(now, node, msg);
                if asks {
                    // Charge the answer now, before the next request is judged.
                    self.pump();
                }
            }
            NetEvent::Invoke { from, data, reply } => self.answer_invoke(from, &data, reply),
            NetEvent::Fetch { from, data, reply } => {
                if let Ok(FetchRequest::LiveLog {
                    task,
                    attempt,
                    stderr,
                    offset,
                }) = codec::decode::<FetchRequest>(&data)
                {
                    self.answer_live_log(reply, task, attempt, stderr, offset);
                    return;
                }
                // Reading chunks is disk IO: keep it off the driver. A
                // bounded number at once bounds the memory that requests
                // for batches (up to 16 MiB each) can make us hold.
                // A peer past its byte budget waits (its requests only).
                let (server, net) = (self.chunks.clone(), self.net.clone());
                let (serving, budget) = (self.serving.clone(), self.chunk_budget.clone());
                let stats = self.fetcher.stats.clone();
                tokio::spawn(async move {
                    let permit = serve_turn(&serving, &budget, &from, &stats).await;
                    let answered = tokio::task::spawn_blocking(move || {
                        let answer = server.answer(&from, &data);
                        lock(&budget).charge(&from, answer.len(), Instant::now());
                        answer
                    })
                    .await;
                    match answered {
                        Ok(answer) => net.respond(reply, answer).await,
                        Err(e) => tracing::error!("answering a fetch from {from} failed: {e}"),
                    }
                    drop(permit);
                });
            }
        }
    }

    /// Answers a peer's `LiveLog` request once there are bytes to send
    /// (at most `live_logs::MAX_POLLS` waiting at once).
    fn answer_live_log(
        &self,
        reply: net::FetchReply,
        task: TaskRef,
        attempt: u32,
        stderr: bool,
        offset: u64,
    ) {
        let (live, net) = (self.exec.live().clone(), self.net.clone());
        let turn = self.live_polls.clone().try_acquire_owned();
        tokio::spawn(async move {
            let answer = match turn {
                Ok(_turn) => live.answer(task, attempt, stderr, offset).await,
                Err(_) => FetchResponse::LiveLogNotHere,
            };
            net.respond(reply, codec::encode(&answer)).await;
        });
    }

    /// Peers with a live connection now.
    /// Connected peers whose announce says they are not drained: where
    /// function calls may go.
    fn willing_peers(&self) -> Vec<PeerId> {
        let ledger = self.core.ledger();
        let willing = |p: &PeerId| {
            let node = self.connected.node_of(p);
            node.and_then(|n| ledger.node(&n))
                .is_some_and(|i| !i.draining)
        };
        self.connected_peers().into_iter().filter(willing).collect()
    }

    /// Hands the functions' warm pools the warm versions serving now and
    /// whether this node takes calls (they stop every worker when not).
    fn keep_warm(&self) {
        let Some(functions) = &self.functions else {
            return;
        };
        let (ledger, wall) = (self.core.ledger(), wall_ms());
        let serving = (ledger.function_names())
            .filter_map(|name| ledger.function(name, wall))
            .filter_map(|f| Some((f.name.clone(), f.serving()?.clone())))
            .filter(|(_, v)| v.spec.warm.is_some_and(|w| w.min_warm > 0))
            .collect();
        functions.keep_warm(serving, self.unavailable.is_none(), self.willing_peers());
    }

    /// Runs a function call another node sent here, if this node can, and
    /// answers it (off the driver); or answers from the record of calls.
    fn answer_invoke(&self, from: PeerId, data: &[u8], reply: net::FetchReply) {
        use crate::functions::route::{InvokeAnswer, PeerAsk};
        let Some(router) = self.functions.clone() else {
            return;
        };
        let net = self.net.clone();
        let request = match codec::decode::<PeerAsk>(data) {
            Ok(PeerAsk::Invoke(request)) => request,
            Ok(PeerAsk::Calls(ask)) => {
                let answer = codec::encode(&router.calls().answer(&ask, wall_ms()));
                tokio::spawn(async move { net.respond(reply, answer).await });
                return;
            }
            Err(e) => {
                let answer = InvokeAnswer::Declined(format!("not a function call: {e}"));
                tokio::spawn(async move { net.respond(reply, codec::encode(&answer)).await });
                tracing::debug!("garbled function call from {from}");
                return;
            }
        };
        let known = self.core.ledger().function(&request.name, wall_ms());
        let version = known
            .and_then(|f| f.versions.into_iter().find(|v| v.event == request.version))
            .ok_or_else(|| {
                format!(
                    "version {} of {} not known here",
                    request.version, request.name
                )
            });
        let (available, peers) = (self.unavailable.is_none(), self.willing_peers());
        tokio::spawn(async move {
            let answer = router.serve(from, version, available, peers, request).await;
            net.respond(reply, codec::encode(&answer)).await;
        });
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        let peers = self.core.peers();
        let nodes = peers.iter().filter(|(_, p)| p.connected).map(|(n, _)| n);
        self.connected.peers_of(nodes)
    }

    fn decode_from(&self, peer: &PeerId, data: &[u8]) -> Option<(NodeId, Message)> {
        let node = self.connected.node_of(peer)?;
        match codec::decode::<Message>(data) {
            Ok(msg) => Some((node, msg)),
            Err(e) => {
                tracing::warn!("dropped a garbled message from {peer}: {e}");
                None
            }
        }
    }

    /// Dials nodes the ledger knows (their announced addresses) that we are
    /// not connected to: peer exchange through the ledger.
    async fn dial_known_nodes(&mut self) {
        let me = self.core.node_id();
        let peers = self.core.peers();
        let targets: Vec<(PeerId, Vec<Multiaddr>)> = self
            .core
            .ledger()
            .nodes()
            .filter(|(id, _)| **id != me && !peers.get(id).is_some_and(|p| p.connected))
            .filter_map(|(id, info)| {
                let addrs = info.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((peer_of(id)?, addrs))
            })
            .collect();
        for (peer, addrs) in targets {
            self.net.dial(peer, addrs).await;
        }
    }

    /// Carries the core's outputs out: persists and transmits go to the
    /// outbox in order (it flushes before sending); actions run at once.
    fn pump(&mut self) {
        let mut persists = Vec::new();
        while let Some(p) = self.core.poll_persist() {
            persists.push(p);
        }
        if !persists.is_empty() {
            self.outbox(Item::Persist(persists));
        }
        let mut gone = std::collections::BTreeSet::new();
        while let Some(f) = self.core.poll_forgetting() {
            if let Forgetting::Job { blobs, .. } = &f {
                gone.extend(blobs.iter().copied());
            }
            self.outbox(Item::Forget(f));
        }
        if let (false, Some(r)) = (gone.is_empty(), &self.reclaimer) {
            let mut pins = ledger_pins(&self.core, wall_ms());
            pins.extend(self.fetcher.exporting());
            r.drop_forgotten(&self.blobs, gone, pins);
        }
        while let Some(t) = self.core.poll_transmit() {
            if let Destination::Peer(node) = &t.to {
                let bytes = crate::outbox::wire_size(&t.msg);
                self.sync_budget.charge(node, bytes, Instant::now());
            }
            self.outbox(Item::Transmit(t));
        }
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Run {
                    task,
                    attempt,
                    job_name,
                    spec,
                    gang,
                } => {
                    let inputs = self.resolve_inputs(task, &spec);
                    let gang = gang.map(|place| self.gang_env(place));
                    let job = self.core.ledger().job(&task.job).map(|j| &j.spec);
                    let (preparation, release) =
                        job.map_or((None, None), |j| (j.preparation.clone(), j.release.clone()));
                    let origin = job.and_then(|j| j.origin.as_ref());
                    let prelude = crate::functions::triggers::prelude(origin, attempt);
                    let kill = self.exec.start(Attempt {
                        task,
                        attempt,
                        job_name,
                        spec: *spec,
                        inputs,
                        peers: self.connected_peers(),
                        preparation,
                        release,
                        gang,
                        prelude,
                    });
                    self.kills.insert((task, attempt), kill);
                }
                Action::Kill { task, attempt } => {
                    if let Some(kill) = self.kills.remove(&(task, attempt)) {
                        let _ = kill.send(());
                    }
                }
            }
        }
    }

    /// A gang's members as an instance is told them: each one's address
    /// (its first announced non-loopback IP, else loopback) and peer id.
    fn gang_env(&self, place: GangPlace) -> GangEnv {
        let (hosts, node_ids) = place
            .hosts
            .iter()
            .map(|node| {
                let addrs = self.core.ledger().node(node).map(|i| i.addrs.as_slice());
                let ips: Vec<std::net::IpAddr> = addrs
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.split('/').nth(2)?.parse().ok())
                    .collect();
                let ip = ips
                    .iter()
                    .find(|ip| !ip.is_loopback())
                    .or(ips.first())
                    .map_or_else(|| "127.0.0.1".to_string(), ToString::to_string);
                let id = peer_of(node).map_or_else(|| node.to_string(), |p| p.to_string());
                (ip, id)
            })
            .unzip();
        GangEnv {
            rank: place.rank,
            hosts,
            node_ids,
        }
    }

    fn outbox(&self, item: Item) {
        self.outbox_load.add(&item);
        if self.outbox.send(item).is_err() {
            tracing::error!("the outbox has stopped; dropping output");
        }
    }

    fn outbox_has_room(&self) -> bool {
        self.outbox_load.bytes() < self.outbox_limit
    }

    /// Answers `reply` with how many peers acknowledged holding event `id`
    /// (0 when there are none), once it is durable here.
    fn replicate_then_reply(&mut self, event: EventId, reply: oneshot::Sender<usize>) {
        self.pump();
        let peers = self.connected_peers();
        self.outbox(Item::Replicate {
            event,
            peers,
            reply,
        });
    }

    /// A task's inputs with `from_task` sources turned into the outputs
    /// blob of that task's canonical result.
    fn resolve_inputs(&self, task: TaskRef, spec: &ResolvedTask) -> Vec<StagedInput> {
        let ledger = self.core.ledger();
        let outputs_of = |from: &str| -> Result<BlobId, String> {
            let index = ledger
                .job(&task.job)
                .and_then(|j| j.spec.position_of(from))
                .ok_or_else(|| format!("task {from:?} is not in this job"))?;
            let view = self.core.view(TaskRef {
                job: task.job,
                index,
            });
            match view {
                Some(v) if v.state == TaskState::Succeeded => v
                    .result
                    .as_ref()
                    .and_then(|r| r.outputs)
                    .ok_or_else(|| format!("task {from:?} stored no outputs")),
                _ => Err(format!("task {from:?} has not succeeded")),
            }
        };
        spec.inputs
            .iter()
            .map(|i| StagedInput {
                path: i.path.clone(),
                blob: match &i.source {
                    Source::Blob(id) => Ok(*id),
                    Source::Task(from) => outputs_of(from),
                },
                within: i.within.clone(),
            })
            .collect()
    }

    /// Finds a job by full id, unique id prefix or unique name.
    fn resolve_job(&self, text: &str) -> Result<JobId, String> {
        if let Some(id) = JobId::parse(text) {
            if self.core.ledger().job(&id).is_some() {
                return Ok(id);
            }
        }
        let matches: Vec<JobId> = self
            .core
            .ledger()
            .jobs()
            .filter(|j| j.id.to_string().starts_with(text) || j.spec.name == text)
            .map(|j| j.id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("no job {text:?} on this node")),
            many => Err(format!(
                "{text:?} matches {} jobs ({}); give more of the id",
                many.len(),
                many.iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Why a sync request (`SyncDigest`, `SyncIds`, `GetEvents`) from `node`
/// (peer `peer`) goes unanswered now, if it does: the peer is past its byte
/// budget, or answers to it still wait in the outbox for it to acknowledge
/// earlier ones (so a peer that stops acknowledging cannot grow the outbox
/// by asking again).
pub(crate) fn sync_refusal(
    budget: &mut Budgets<NodeId>,
    load: &crate::outbox::Load,
    node: &NodeId,
    peer: &PeerId,
) -> Option<SyncRefusal> {
    if !budget.wait(node, Instant::now()).is_zero() {
        Some(SyncRefusal::PastBudget)
    } else if load.backlogged(peer) {
        Some(SyncRefusal::AnswersWait)
    } else {
        None
    }
}

/// See [`sync_refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SyncRefusal {
    #[error("past its byte budget")]
    PastBudget,
    #[error("earlier answers to it wait for its acknowledgement")]
    AnswersWait,
}

/// Waits for a turn to answer a fetch from `from`: one of the `serving`
/// permits, taken while the peer's chunk budget is not in debt. The budget
/// is judged with the permit held, so of a burst of requests only as many
/// as there are permits pass before the first answer is charged.
async fn serve_turn(
    serving: &Arc<Semaphore>,
    budget: &Mutex<Budgets<PeerId>>,
    from: &PeerId,
    stats: &crate::transfer_stats::FetchStats,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let mut deferred = false;
    loop {
        // Never closed, so acquiring cannot fail.
        let permit = serving.clone().acquire_owned().await.ok();
        let wait = lock(budget).wait(from, Instant::now());
        if wait.is_zero() {
            return permit;
        }
        drop(permit);
        if !deferred {
            deferred = true;
            stats.fetches_deferred.fetch_add(1, Relaxed);
        }
        tokio::time::sleep(wait).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
