//! One peer cannot exhaust a node: the real `Core` under requests and
//! events chosen to make it allocate or send without bound. Each test plays
//! the driver by hand.

use peerbatch_protocol::core::Destination;
use peerbatch_protocol::event::event_id;
use peerbatch_protocol::job::OnDependencyFailure;
use peerbatch_protocol::sync::Fingerprints;
use peerbatch_protocol::{
    Action, BlobId, Command, Config, Core, Event, EventBody, EventId, Identity, JobId, JobSpec,
    Ledger, MemStore, Message, Millis, NodeId, Outcome, TaskGroup, TaskResult, TaskSpec, TaskState,
    TaskView,
};

/// A core, its store, and what it sent.
struct Node {
    core: Core<MemStore>,
    store: MemStore,
    sent: Vec<(Destination, Message)>,
}

impl Node {
    fn new(seed: u8, slots: u32) -> Node {
        let cfg = Config {
            slots,
            max_prefetch: 0,
            ..Config::default()
        };
        Node::holding(seed, cfg, Vec::new())
    }

    /// A node restarted on a store holding `events`.
    fn holding(seed: u8, cfg: Config, events: Vec<Vec<u8>>) -> Node {
        let store = MemStore::default();
        for bytes in &events {
            store.put(event_id(bytes), bytes.clone());
        }
        let core = Core::new(
            Identity::from_seed([seed; 32]),
            cfg,
            store.clone(),
            events,
            u64::from(seed),
            Millis(0),
        );
        Node {
            core,
            store,
            sent: Vec::new(),
        }
    }

    /// Persists, then collects transmits; runs every started attempt to
    /// an exit that `outcome` picks by task index.
    fn pump(&mut self, now: u64, outcome: &dyn Fn(u32) -> Outcome) {
        loop {
            while let Some((id, bytes)) = self.core.poll_persist() {
                self.store.put(id, bytes);
            }
            while let Some(t) = self.core.poll_transmit() {
                self.sent.push((t.to, t.msg));
            }
            let mut exited = Vec::new();
            while let Some(action) = self.core.poll_action() {
                if let Action::Run { task, attempt, .. } = action {
                    exited.push(TaskResult {
                        task,
                        attempt,
                        outcome: outcome(task.index),
                        stdout: None,
                        stderr: None,
                        outputs: None,
                        duration_ms: 1,
                    });
                }
            }
            if exited.is_empty() {
                return;
            }
            for result in exited {
                self.core.task_exited(Millis(now), result);
            }
        }
    }

    /// Runs the core's timers until `until` ms.
    fn run_until(&mut self, until: u64, outcome: &dyn Fn(u32) -> Outcome) {
        let mut now = 0;
        while now < until {
            self.core.handle_timeout(Millis(now), now);
            self.pump(now, outcome);
            now = self.core.poll_timeout().map_or(until, |t| t.0.max(now + 1));
        }
    }

    /// A job's views as a fresh fold of every stored event gives them.
    fn fold(&self, job: JobId) -> Vec<TaskView> {
        let mut ledger = Ledger::default();
        for bytes in self.store.all() {
            let event: Event = peerbatch_protocol::codec::decode(&bytes).unwrap();
            ledger.insert(event_id(&bytes), &event);
        }
        ledger.job_views(&job)
    }

    fn states(&self, job: JobId) -> Vec<TaskState> {
        self.core.views(job).into_iter().map(|v| v.state).collect()
    }

    /// Answers `msg` from `peer`; returns the ids listed in `SyncIds` and
    /// the events sent back.
    fn answer(&mut self, peer: NodeId, msg: Message) -> (usize, usize) {
        self.sent.clear();
        self.core.handle_message(Millis(1), peer, msg);
        self.pump(1, &|_| exit(0));
        let (mut ids, mut events) = (0, 0);
        for (dest, msg) in &self.sent {
            match msg {
                _ if *dest != Destination::Peer(peer) => {}
                Message::SyncIds { buckets, .. } => {
                    ids += buckets.iter().map(|b| b.1.len()).sum::<usize>()
                }
                Message::Events { events: e } => events += e.len(),
                _ => {}
            }
        }
        (ids, events)
    }
}

fn shell(id: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..TaskSpec::new(id, Command::Shell("true".into()), 0)
    }
}

/// `maps` map tasks, a reducer on `*` and a summary listing `map0..map9`.
fn map_reduce(maps: i64, on_failure: OnDependencyFailure) -> JobSpec {
    let mut job = JobSpec::new(
        "mr",
        vec![
            TaskGroup::Array {
                template: shell("map", &[]),
                start: 0,
                end: maps - 1,
                step: 1,
            },
            TaskGroup::One(shell("reduce", &["*"])),
            TaskGroup::One(shell("summary", &["map0..map9"])),
        ],
    );
    job.on_dependency_failure = on_failure;
    job
}

fn exit(code: i32) -> Outcome {
    Outcome::Exited(code)
}

#[test]
fn a_reducer_on_star_runs_after_every_other_task_and_the_cache_equals_the_fold() {
    let mut node = Node::new(1, 64);
    let (job, _) = node
        .core
        .submit(Millis(0), map_reduce(2_000, OnDependencyFailure::Skip), 0)
        .unwrap();
    let reducer = 2_000;
    let before = node.states(job);
    assert_eq!(before[reducer], TaskState::Blocked);
    node.run_until(60_000, &|_| exit(0));
    let states = node.states(job);
    assert!(
        states.iter().all(|s| *s == TaskState::Succeeded),
        "{states:?}"
    );
    assert!(node.core.ledger().is_sealed(&job), "finished a while ago");
    assert_eq!(node.core.views(job), node.fold(job));

    // One failed map: the reducer is skipped; the summary runs (map0..9 ok).
    let mut node = Node::new(2, 64);
    let (job, _) = node
        .core
        .submit(Millis(0), map_reduce(500, OnDependencyFailure::Skip), 0)
        .unwrap();
    node.run_until(60_000, &|i| exit(if i == 321 { 1 } else { 0 }));
    let states = node.states(job);
    assert_eq!(states[321], TaskState::Failed);
    assert_eq!(states[500], TaskState::Skipped);
    assert_eq!(states[501], TaskState::Succeeded);
    assert_eq!(node.core.views(job), node.fold(job));
}

#[test]
fn a_peer_job_past_the_task_limit_builds_no_views() {
    let mut node = Node::new(1, 4);
    let peer = Identity::from_seed([9; 32]);
    let huge = JobSpec::array("huge", shell("t", &[]), 0, i64::from(u32::MAX) - 1);
    let event = peer.sign(EventBody::JobSubmitted {
        job: huge,
        submitted_ms: 0,
        nonce: 0,
    });
    node.core.handle_message(
        Millis(1),
        peer.node_id(),
        Message::Events {
            events: vec![event.encode()],
        },
    );
    node.pump(1, &|_| exit(0));
    // Refused by validation, as a local submit would be: not even stored.
    assert!(!node.core.ledger().contains(&event_id(&event.encode())));
    assert_eq!(node.core.stats().events_rejected, 1);
    assert_eq!(node.core.ledger().jobs().count(), 0);
    let (job, _) = node
        .core
        .submit(Millis(2), map_reduce(10, OnDependencyFailure::Skip), 0)
        .unwrap();
    assert_eq!(node.states(job).len(), 12);
}

/// `n` signed package versions from one author.
fn packages(n: u32) -> Vec<Vec<u8>> {
    let author = Identity::from_seed([7; 32]);
    (0..n)
        .map(|i| {
            let body = EventBody::PackageAdded {
                name: "tool".into(),
                version: format!("1.{i}"),
                blob: BlobId([3; 32]),
                added_ms: u64::from(i),
            };
            author.sign(body).encode()
        })
        .collect()
}

#[test]
fn repeated_ids_and_buckets_are_answered_once_and_replies_are_capped() {
    let events = packages(20_000);
    let mut node = Node::holding(1, Config::default(), events.clone());
    let peer = Identity::from_seed([9; 32]).node_id();
    let one = event_id(&events[0]);

    // One id named 100,000 times: one event back, not 100,000.
    let (_, sent) = node.answer(
        peer,
        Message::GetEvents {
            ids: vec![one; 100_000],
        },
    );
    assert_eq!(sent, 1);

    // One bucket named 256 times: its events once.
    let bucket = one.0[0];
    let in_bucket = events.iter().filter(|e| event_id(e).0[0] == bucket).count();
    let msg = Message::SyncIds {
        buckets: vec![(bucket, Vec::new()); 256],
        partial: false,
    };
    assert_eq!(node.answer(peer, msg).1, in_bucket);

    // An empty digest: at most one reply's worth of ids, not all 20,000.
    let msg = Message::SyncDigest {
        fingerprints: Fingerprints::default(),
    };
    let (ids, _) = node.answer(peer, msg);
    let limit = Config::default().sync_ids_limit;
    assert!(ids > 0 && ids <= limit, "{ids} ids listed");

    // Every id asked at once: at most the limit sent back.
    let all: Vec<EventId> = events.iter().map(|e| event_id(e)).collect();
    let (_, sent) = node.answer(peer, Message::GetEvents { ids: all });
    assert_eq!(sent, limit);
}

/// Moves direct messages between `a` and `b` until neither sends one, and
/// runs one sync round each `sync_ms`; returns the rounds it took for `b`
/// to hold every event `a` holds.
fn sync_until_equal(a: &mut Node, b: &mut Node, max_rounds: u64) -> u64 {
    let (ia, ib) = (a.core.node_id(), b.core.node_id());
    a.core.handle_peer_up(Millis(0), ib);
    b.core.handle_peer_up(Millis(0), ia);
    let step = a.core.config().sync_ms;
    for round in 0..max_rounds {
        let now = round * step;
        exchange(a, b, now);
        if b.core.ledger().event_count() == a.core.ledger().event_count() {
            return round;
        }
    }
    panic!(
        "{} of {} events after {max_rounds} rounds",
        b.core.ledger().event_count(),
        a.core.ledger().event_count()
    );
}

/// Runs both nodes' timers at `now` and moves direct messages between
/// them until neither sends one; returns how many events `a` sent `b`.
fn exchange(a: &mut Node, b: &mut Node, now: u64) -> usize {
    let (ia, ib) = (a.core.node_id(), b.core.node_id());
    a.core.handle_timeout(Millis(now), now);
    b.core.handle_timeout(Millis(now), now);
    let mut to_b = 0;
    loop {
        a.pump(now, &|_| exit(0));
        b.pump(now, &|_| exit(0));
        if a.sent.is_empty() && b.sent.is_empty() {
            return to_b;
        }
        let (for_b, for_a) = (std::mem::take(&mut a.sent), std::mem::take(&mut b.sent));
        to_b += events_in(&for_b, ib);
        deliver(ia, for_b, b, now);
        deliver(ib, for_a, a, now);
    }
}

/// Hands `to` what was sent to it directly.
fn deliver(from: NodeId, sent: Vec<(Destination, Message)>, to: &mut Node, now: u64) {
    for (dest, msg) in sent {
        if dest == Destination::Peer(to.core.node_id()) {
            to.core.handle_message(Millis(now), from, msg);
        }
    }
}

#[test]
fn a_fresh_node_catches_up_a_100000_event_ledger_with_capped_replies() {
    let mut a = Node::holding(1, Config::default(), packages(100_000));
    let mut b = Node::holding(2, Config::default(), Vec::new());
    let rounds = sync_until_equal(&mut a, &mut b, 40);
    assert!(rounds < 40);
}

#[test]
fn buckets_larger_than_a_reply_are_caught_up_window_by_window() {
    // 4,000 events in 256 buckets: ~16 a bucket, 5 ids a reply.
    let cfg = Config {
        sync_ids_limit: 5,
        sync_ms: 100,
        ..Config::default()
    };
    let mut a = Node::holding(1, cfg.clone(), packages(4_000));
    let mut b = Node::holding(2, cfg, packages(50));
    sync_until_equal(&mut a, &mut b, 20_000);
}

/// Events `a` sent `b` directly in `sent`.
fn events_in(sent: &[(Destination, Message)], to: NodeId) -> usize {
    let to_b = sent.iter().filter(|(d, _)| *d == Destination::Peer(to));
    to_b.map(|(_, msg)| match msg {
        Message::Events { events } => events.len(),
        _ => 0,
    })
    .sum()
}

#[test]
fn a_fresh_node_busy_for_several_rounds_is_sent_each_event_about_once() {
    let ledger = 20_000;
    let mut a = Node::holding(1, Config::default(), packages(ledger));
    let mut b = Node::holding(2, Config::default(), Vec::new());
    let (ia, ib) = (a.core.node_id(), b.core.node_id());
    // `a` announces itself first, so that its ledger stays as it is.
    a.run_until(1, &|_| exit(0));
    a.core.handle_peer_up(Millis(1), ib);
    b.core.handle_peer_up(Millis(1), ia);
    let step = a.core.config().sync_ms;
    // `b` is busy for five of `a`'s rounds: what `a` sends it waits in
    // its inbox, and `b` answers nothing meanwhile.
    let mut inbox = Vec::new();
    for round in 1..6 {
        let now = round * step;
        a.core.handle_timeout(Millis(now), now);
        a.pump(now, &|_| exit(0));
        inbox.append(&mut a.sent);
    }
    let mut to_b = events_in(&inbox, ib);
    let now = 6 * step;
    deliver(ia, inbox, &mut b, now);
    for round in 6..40 {
        to_b += exchange(&mut a, &mut b, round * step);
    }
    let held = b.core.ledger().event_count();
    assert_eq!(held, a.core.ledger().event_count());
    assert!(
        to_b < 2 * ledger as usize,
        "{to_b} events sent for a ledger of {ledger}"
    );
}
