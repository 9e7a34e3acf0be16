//! The per-node state machine, driven by hand: rejection of bad events,
//! claim races, stealing, leases, restarts. Each test plays the driver.

mod harness;

use harness::*;
use peerbatch_protocol::core::{Destination, Liveness};
use peerbatch_protocol::event::Claim;
use peerbatch_protocol::exit::{ExitAction, ExitRule};
use peerbatch_protocol::gang::GangStep;
use peerbatch_protocol::{
    codec, hrw, Action, Command, Config, Core, EventBody, Identity, JobId, JobSpec, Message,
    Millis, NodeId, NodeInfo, Outcome, TaskGroup, TaskRef, TaskSpec, TaskState, Transmit,
};

#[test]
fn garbled_oversized_and_forged_events_are_rejected_and_change_nothing() {
    let peer = Node::new(2, Config::default());
    // An admin, so that its genuine cancel counts.
    let admins = std::collections::BTreeSet::from([peer.id()]);
    let mut a = Node::new(
        1,
        Config {
            admins,
            ..Config::default()
        },
    );
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 2, 0);
    let digest = a.core.ledger().state_digest();
    let count = a.core.ledger().event_count();

    let good = peer.identity().sign(EventBody::JobCancelled { job });
    let mut forged = good.clone();
    forged.author = a.id();
    let mut tampered = good.encode();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut wrong_version = good.encode();
    wrong_version[0] = codec::VERSION + 1;
    let mut trailing = good.encode();
    trailing.push(0);
    let mut oversized = vec![codec::VERSION];
    oversized.resize(codec::MAX_SIZE + 1, 0);
    let bad = vec![
        Vec::new(),
        vec![codec::VERSION, 0xff, 0xff, 0xff],
        forged.encode(),
        tampered,
        wrong_version,
        trailing,
        oversized,
    ];
    let n = bad.len() as u64;
    a.core.handle_gossip(
        Millis(10),
        peer.id(),
        Message::Events {
            events: bad.clone(),
        },
    );
    assert!(a.core.poll_persist().is_none());
    a.core
        .handle_message(Millis(11), peer.id(), Message::Events { events: bad });
    assert!(a.core.poll_persist().is_none());
    a.pump();
    assert_eq!(a.core.stats().events_rejected, 2 * n);
    assert_eq!(a.core.ledger().event_count(), count);
    assert_eq!(a.core.ledger().state_digest(), digest);
    assert!(!a.core.ledger().is_cancelled(&job));

    // The genuine event still gets in.
    a.core.handle_gossip(
        Millis(12),
        peer.id(),
        Message::Events {
            events: vec![good.encode()],
        },
    );
    a.pump();
    assert!(a.core.ledger().is_cancelled(&job));
    assert_eq!(a.core.stats().events_rejected, 2 * n);
}

#[test]
fn a_lone_node_runs_a_job_to_completion_one_slot_at_a_time() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 3, 0);
    let mut now = 0;
    let mut done = 0;
    while a.core.progress(&job).succeeded < 3 {
        assert!(a.core.local_load().1 <= 1, "more running than slots");
        let runs = a.runs();
        if done < runs.len() {
            let (t, attempt) = runs[done];
            done += 1;
            now += 7;
            a.exit(now, t, attempt, Outcome::Exited(0));
        } else {
            now = a.core.poll_timeout().expect("a timer").0.max(now);
            a.timeout(now);
        }
        assert!(now < 10_000, "stuck: {:?}", a.core.progress(&job));
    }
    assert_eq!(a.runs().len(), 3);
    assert_eq!(a.core.stats().attempts_started, 3);
    for index in 0..3 {
        assert_eq!(state(&a, task(job, index)).0, TaskState::Succeeded);
    }
}

#[test]
fn claims_made_apart_resolve_alike_and_the_loser_is_killed() {
    let mut a = Node::new(1, Config::default());
    let mut b = Node::new(2, Config::default());
    a.timeout(0);
    b.timeout(0);
    let (job, sent) = submit(&mut a, 0, 1, 0);
    let t = task(job, 0);
    // B learns of the job but not of A's claim, nor that A is a worker.
    let job_event = sent
        .iter()
        .find(|t| match &t.msg {
            Message::Events { events } => events.iter().any(|e| {
                matches!(
                    codec::decode::<peerbatch_protocol::Event>(e).map(|e| e.body),
                    Ok(EventBody::JobSubmitted { .. })
                )
            }),
            _ => false,
        })
        .cloned()
        .expect("the submit is gossiped");
    let b_sent = deliver(1, &a, &[job_event], &mut b);
    assert_eq!(a.runs(), vec![(t, 0)]);
    assert_eq!(b.runs(), vec![(t, 0)]);

    // Now each hears everything the other said.
    deliver(5, &b, &b_sent, &mut a);
    let a_all: Vec<Transmit> = vec![Transmit {
        to: Destination::Gossip,
        msg: Message::Events {
            events: a.store.all(),
        },
    }];
    deliver(5, &a, &a_all, &mut b);
    let winner = if hrw::outranks(t, 0, &a.id(), &b.id()) {
        a.id()
    } else {
        b.id()
    };
    assert_eq!(state(&a, t), (TaskState::Running, 0, Some(winner)));
    assert_eq!(state(&b, t), (TaskState::Running, 0, Some(winner)));
    let (loser, kept) = if winner == a.id() { (&b, &a) } else { (&a, &b) };
    assert_eq!(loser.kills(), vec![(t, 0)]);
    assert!(kept.kills().is_empty());
    assert_eq!(loser.core.stats().attempts_fenced, 1);
}

/// A node that is rank 1 for every task of a job: it may only steal, after δ.
fn rank_one_pair(cfg: &Config, max_retries: u32) -> (Node, Node, JobId) {
    for seed in 2..100 {
        let mut a = Node::new(1, cfg.clone());
        let mut b = Node::new(seed, cfg.clone());
        let a_sent = a.timeout(0);
        let b_sent = b.timeout(0);
        deliver(1, &a, &a_sent, &mut b);
        deliver(1, &b, &b_sent, &mut a);
        let (job, _) = submit(&mut b, 2, 1, max_retries);
        if hrw::outranks(task(job, 0), 0, &b.id(), &a.id()) {
            return (a, b, job);
        }
    }
    panic!("no seed makes B the first choice");
}

#[test]
fn a_helper_wakes_when_its_steal_delay_is_over_not_before() {
    let cfg = Config {
        claim_step_ms: 100,
        ..Config::default()
    };
    let (mut a, b, job) = rank_one_pair(&cfg, 0);
    // B claimed at once; A only learns of the job (B's claim is lost).
    let job_events: Vec<Vec<u8>> = b
        .store
        .all()
        .into_iter()
        .filter(|e| {
            matches!(
                codec::decode::<peerbatch_protocol::Event>(e).map(|e| e.body),
                Ok(EventBody::JobSubmitted { .. })
            )
        })
        .collect();
    a.core
        .handle_gossip(Millis(10), b.id(), Message::Events { events: job_events });
    a.pump();
    assert!(a.runs().is_empty(), "rank 1 must wait");
    assert_eq!(a.core.poll_timeout(), Some(Millis(110)));
    // Woken early (by anything), it still waits and asks again for 110.
    a.timeout(60);
    assert!(a.runs().is_empty());
    assert_eq!(a.core.poll_timeout(), Some(Millis(110)));
    a.timeout(110);
    assert_eq!(a.runs(), vec![(task(job, 0), 0)]);
    assert!(a.core.poll_timeout() > Some(Millis(110)));
}

#[test]
fn a_claim_that_lost_before_it_was_published_is_withdrawn() {
    let cfg = Config {
        batch_ms: 20,
        ..Config::default()
    };
    let mut a = Node::new(1, cfg.clone());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 3, 0);
    let (t0, t1) = (task(job, 0), task(job, 1));
    assert_eq!(a.runs(), vec![(t0, 0)]);
    // Task 0 ends within the batch interval: the claim of task 1 waits for
    // the next batch, due at 20.
    a.exit(1, t0, 0, Outcome::Exited(0));
    // Another node claims task 1 meanwhile; A's pending claim would outrank it.
    let rival = (2..=255u8)
        .map(|s| Identity::from_seed([s; 32]))
        .find(|r| hrw::outranks(t1, 0, &a.id(), &r.node_id()))
        .expect("some node A outranks");
    let claim = rival.sign(EventBody::Claims {
        claims: vec![Claim {
            task: t1,
            attempt: 0,
        }],
    });
    a.core.handle_gossip(
        Millis(2),
        rival.node_id(),
        Message::Events {
            events: vec![claim.encode()],
        },
    );
    a.pump();
    let sent = a.timeout(20);
    for bytes in events_of(&sent) {
        let event = codec::decode::<peerbatch_protocol::Event>(&bytes).expect("own event");
        if let EventBody::Claims { claims } = event.body {
            assert!(claims.iter().all(|c| c.task != t1), "lost claim published");
        }
    }
    assert_eq!(
        state(&a, t1),
        (TaskState::Running, 0, Some(rival.node_id()))
    );
    assert!(!a.runs().contains(&(t1, 0)));
}

#[test]
fn a_silent_node_is_reclaimed_after_lease_and_grace() {
    let cfg = Config::default();
    let (mut a, mut b, job) = rank_one_pair(&cfg, 1);
    let t = task(job, 0);
    assert_eq!(b.runs(), vec![(t, 0)]);
    let all = vec![Transmit {
        to: Destination::Gossip,
        msg: Message::Events {
            events: b.store.all(),
        },
    }];
    deliver(10, &b, &all, &mut a);
    assert_eq!(state(&a, t), (TaskState::Running, 0, Some(b.id())));
    // B falls silent; A keeps ticking.
    let silent_from = 10;
    let mut now = 10;
    while a.runs().is_empty() {
        now = a.core.poll_timeout().expect("a timer").0.max(now + 1);
        a.timeout(now);
        assert!(now < 30_000, "never reclaimed");
    }
    assert!(
        now - silent_from > cfg.lease_ms + cfg.grace_ms,
        "reclaimed at {now}"
    );
    assert_eq!(a.runs(), vec![(t, 1)]);
    assert_eq!(state(&a, t), (TaskState::Running, 1, Some(a.id())));

    // B was only slow: its late success for attempt 0 becomes canonical and
    // A's attempt 1 is stopped.
    let sent = b.exit(now, t, 0, Outcome::Exited(0));
    let later = b.timeout(now + 50);
    deliver(now + 60, &b, &[sent, later].concat(), &mut a);
    assert_eq!(state(&a, t), (TaskState::Succeeded, 0, Some(b.id())));
    assert_eq!(a.kills(), vec![(t, 1)]);
    a.exit(now + 61, t, 1, Outcome::Signaled(9));
    a.timeout(now + 100);
    assert_eq!(state(&a, t), (TaskState::Succeeded, 0, Some(b.id())));
}

/// Fires a node's timers from `now` until it starts something, within a
/// second; returns the time it did.
fn run_timers_until_a_start(node: &mut Node, mut now: u64) -> u64 {
    let limit = now + 1_000;
    while node.runs().is_empty() {
        assert!(now < limit, "nothing was started (again) within a second");
        node.timeout(now);
        now = node.core.poll_timeout().expect("a timer").0.max(now + 1);
    }
    now
}

/// A node alone that has claimed and started the one task of its job.
fn a_lone_node_running_one_task() -> (Node, TaskRef) {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 1, 2);
    let t = task(job, 0);
    assert_eq!(a.runs(), vec![(t, 0)]);
    (a, t)
}

#[test]
fn a_restarted_node_reclaims_what_its_old_incarnation_ran() {
    let (a, t) = a_lone_node_running_one_task();
    // Crash: the process dies with the node; restart from the store.
    let store = a.store.clone();
    let mut restarted = Node {
        seed: a.seed,
        core: Core::new(
            a.identity(),
            Config::default(),
            store.clone(),
            store.all(),
            9,
            Millis(1_000),
        ),
        store,
        actions: Vec::new(),
    };
    assert_eq!(state(&restarted, t), (TaskState::Running, 0, Some(a.id())));
    let now = run_timers_until_a_start(&mut restarted, 1_000);
    assert_eq!(restarted.runs(), vec![(t, 1)]);
    assert_eq!(state(&restarted, t), (TaskState::Running, 1, Some(a.id())));
    restarted.exit(now, t, 1, Outcome::Exited(0));
    restarted.timeout(now + 100);
    assert_eq!(
        state(&restarted, t),
        (TaskState::Succeeded, 1, Some(a.id()))
    );
}

/// Found by the simulator (seed 36 of the swarm: two storage wipes): a
/// node whose store was wiped rebuilt its own old claim from peers, showed
/// it running on itself for ever (its heartbeats kept the lease alive) and
/// never ran it again.
#[test]
fn a_node_rebuilt_from_peers_after_a_wipe_reclaims_its_lost_claims() {
    let (a, t) = a_lone_node_running_one_task();
    let held_by_peers = a.store.all();
    // The store is wiped; the node starts empty and hears its events back.
    let mut wiped = Node::new(1, Config::default());
    wiped.timeout(1_000);
    let peer = Node::new(2, Config::default());
    wiped.core.handle_message(
        Millis(1_001),
        peer.id(),
        Message::Events {
            events: held_by_peers,
        },
    );
    let sent = wiped.pump();
    let reclaimed = events_of(&sent).into_iter().any(|bytes| {
        matches!(
            codec::decode::<peerbatch_protocol::Event>(&bytes).map(|e| e.body),
            Ok(EventBody::Reclaimed { claims }) if claims == vec![Claim { task: t, attempt: 0 }]
        )
    });
    assert!(reclaimed, "the lost claim was not reclaimed");
    run_timers_until_a_start(&mut wiped, 1_001);
    assert_eq!(wiped.runs(), vec![(t, 1)]);
}

/// A lone node with one slot running the 3-task job `spec`: task 0 ran
/// and exited 0, so, with short tasks, it claims ahead; task 1 runs and
/// task 2 waits for the slot. Returns the node, the job and the time.
fn running_one_claiming_ahead(spec: JobSpec) -> (Node, JobId, Millis) {
    let cfg = Config {
        prefetch_horizon_ms: 10_000,
        ..Config::default()
    };
    let mut a = Node::new(1, cfg);
    a.timeout(0);
    let (job, _) = a.core.submit(Millis(0), spec, 0).expect("a valid job");
    a.pump();
    let (t0, t1) = (task(job, 0), task(job, 1));
    assert_eq!(a.runs(), vec![(t0, 0)]);
    // Claims made ahead are published at the next batch.
    a.exit(1, t0, 0, Outcome::Exited(0));
    let due = a.core.poll_timeout().expect("a batch");
    a.timeout(due.0);
    assert_eq!(a.runs(), vec![(t0, 0), (t1, 0)]);
    assert_eq!(a.core.local_load(), (2, 1));
    (a, job, due)
}

#[test]
fn a_freed_slot_starts_the_next_durable_claim_at_once() {
    let (mut a, job, due) = running_one_claiming_ahead(spec(3, 0));
    let (t0, t1, t2) = (task(job, 0), task(job, 1), task(job, 2));
    // Task 1 is fenced off for good (reclaimed at its last attempt) …
    let reaper = Identity::from_seed([77; 32]);
    let reclaim = reaper.sign(EventBody::Reclaimed {
        claims: vec![Claim {
            task: t1,
            attempt: 0,
        }],
    });
    a.core.handle_gossip(
        due,
        reaper.node_id(),
        Message::Events {
            events: vec![reclaim.encode()],
        },
    );
    a.pump();
    assert_eq!(a.kills(), vec![(t1, 0)]);
    // … and once its process is gone the claimed task 2 runs, with no batch due.
    a.exit(due.0 + 1, t1, 0, Outcome::Signaled(9));
    assert_eq!(a.runs(), vec![(t0, 0), (t1, 0), (t2, 0)]);
    assert_eq!(state(&a, t1).0, TaskState::Failed);
}

#[test]
fn a_node_announce_makes_its_sender_eligible_and_draining_stops_claims() {
    let mut a = Node::new(1, Config::default());
    let mut b = Node::new(2, Config::default());
    let a_sent = a.timeout(0);
    deliver(1, &a, &a_sent, &mut b);
    let info = b.core.ledger().node(&a.id()).cloned();
    assert_eq!(
        info,
        Some(NodeInfo {
            slots: 1,
            memory_mb: 0,
            gpus: 0,
            labels: Vec::new(),
            draining: false,
            addrs: Vec::new(),
            version: String::new(),
        })
    );
    a.core.set_unavailable(Millis(2), true);
    let sent = a.pump();
    deliver(3, &a, &sent, &mut b);
    assert!(b.core.ledger().node(&a.id()).expect("announced").draining);
    let (job, _) = submit(&mut a, 4, 2, 0);
    assert!(a.runs().is_empty(), "a draining node claims nothing");
    assert_eq!(a.core.progress(&job).pending, 2);
}

#[test]
fn attempts_fenced_off_here_are_claimed_again_at_the_next_attempt() {
    let cfg = Config {
        prefetch_horizon_ms: 10_000,
        ..Config::default()
    };
    let mut a = Node::new(1, cfg);
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 3, 2);
    let (t0, t1, t2) = (task(job, 0), task(job, 1), task(job, 2));
    a.exit(1, t0, 0, Outcome::Exited(0));
    let due = a.core.poll_timeout().expect("a batch");
    a.timeout(due.0);
    // Task 1 runs, task 2 is claimed and waits for the slot.
    assert_eq!(a.runs(), vec![(t0, 0), (t1, 0)]);
    assert_eq!(a.core.local_load(), (2, 1));
    // Another node believes A dead and reclaims both attempts.
    let reaper = Identity::from_seed([77; 32]);
    let reclaim = reaper.sign(EventBody::Reclaimed {
        claims: vec![
            Claim {
                task: t1,
                attempt: 0,
            },
            Claim {
                task: t2,
                attempt: 0,
            },
        ],
    });
    a.core.handle_gossip(
        due,
        reaper.node_id(),
        Message::Events {
            events: vec![reclaim.encode()],
        },
    );
    a.pump();
    assert_eq!(a.kills(), vec![(t1, 0)]);
    a.exit(due.0 + 1, t1, 0, Outcome::Signaled(9));
    let mut now = due.0 + 1;
    let mut exited = 2;
    while a.core.progress(&job).succeeded < 3 {
        assert!(now < 5_000, "stuck at {:?}", a.core.progress(&job));
        let runs = a.runs();
        if exited < runs.len() {
            let (t, attempt) = runs[exited];
            exited += 1;
            now += 3;
            a.exit(now, t, attempt, Outcome::Exited(0));
        } else {
            now = a.core.poll_timeout().expect("a timer").0.max(now + 1);
            a.timeout(now);
        }
    }
    let runs = a.runs();
    assert!(
        runs.contains(&(t1, 1)) && runs.contains(&(t2, 1)),
        "{runs:?}"
    );
}

/// A node that was itself stopped (SIGSTOP, suspend) past the lease does
/// not blame its peers for the silence it could not hear: on waking it
/// gives them a fresh lease instead of reclaiming their tasks at once.
#[test]
fn a_node_that_was_paused_does_not_reclaim_on_waking() {
    let cfg = Config::default();
    let (mut a, b, job) = rank_one_pair(&cfg, 1);
    let t = task(job, 0);
    assert_eq!(b.runs(), vec![(t, 0)]);
    let all = vec![Transmit {
        to: Destination::Gossip,
        msg: Message::Events {
            events: b.store.all(),
        },
    }];
    deliver(10, &b, &all, &mut a);
    // A's next timer fires 20 s late: it was paused, not B.
    let woke = a.core.poll_timeout().expect("a timer").0 + 20_000;
    a.timeout(woke);
    assert!(a.runs().is_empty(), "reclaimed on waking: {:?}", a.runs());
    assert_eq!(state(&a, t), (TaskState::Running, 0, Some(b.id())));
    // If B stays silent from then on, it loses the task after a lease.
    let mut now = woke;
    while a.runs().is_empty() {
        now = a.core.poll_timeout().expect("a timer").0.max(now + 1);
        a.timeout(now);
        assert!(now < woke + 30_000, "never reclaimed");
    }
    assert!(
        now - woke > cfg.lease_ms,
        "reclaimed {} ms after waking",
        now - woke
    );
    assert_eq!(a.runs(), vec![(t, 1)]);
}

/// Jobs of equal priority take turns: a small job submitted after a big
/// one runs its tasks among the big one's first tasks, not after all of them.
#[test]
fn jobs_of_equal_priority_take_turns_task_by_task() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (big, _) = submit(&mut a, 0, 20, 0);
    let (small, _) = submit(&mut a, 1, 2, 0);
    let mut now = 1;
    let mut done = 0;
    while a.core.progress(&small).succeeded < 2 {
        let runs = a.runs();
        if done < runs.len() {
            let (t, attempt) = runs[done];
            done += 1;
            now += 7;
            a.exit(now, t, attempt, Outcome::Exited(0));
        } else {
            now = a.core.poll_timeout().expect("a timer").0.max(now);
            a.timeout(now);
        }
        assert!(now < 10_000, "stuck");
    }
    let big_done = a.core.progress(&big).succeeded;
    assert!(
        big_done <= 3,
        "the small job waited for {big_done} tasks of the big one"
    );
}

/// Delivers everything the nodes send to every other node, at `now`, until
/// nothing more is sent.
fn settle(nodes: &mut [Node], now: u64) {
    let sent = (0..nodes.len()).map(|i| (i, nodes[i].pump())).collect();
    spread(nodes, now, sent);
}

/// Delivers `sent` (by sender) and whatever it makes the nodes send, to
/// every other node, until nothing more is sent.
fn spread(nodes: &mut [Node], now: u64, sent: Vec<(usize, Vec<Transmit>)>) {
    let mut queue = sent;
    while let Some((from, sent)) = queue.pop() {
        if sent.is_empty() {
            continue;
        }
        for to in 0..nodes.len() {
            if to == from {
                continue;
            }
            let (a, b) = if from < to {
                let (l, r) = nodes.split_at_mut(to);
                (&l[from], &mut r[0])
            } else {
                let (l, r) = nodes.split_at_mut(from);
                (&r[0], &mut l[to])
            };
            let more = deliver(now, a, &sent, b);
            queue.push((to, more));
        }
    }
}

/// Fires every node's timers `times` times, `every` ms apart from `from`,
/// delivering what they send each time.
fn tick(nodes: &mut [Node], from: u64, every: u64, times: u64) {
    for k in 0..times {
        let now = from + k * every;
        for n in nodes.iter_mut() {
            n.core.handle_timeout(Millis(now), now);
        }
        settle(nodes, now);
    }
}

/// Five one-slot nodes that have all heard from each other.
fn five_nodes() -> Vec<Node> {
    let mut nodes: Vec<Node> = (1..=5).map(|s| Node::new(s, Config::default())).collect();
    for n in nodes.iter_mut() {
        n.core.handle_timeout(Millis(0), 0);
    }
    settle(&mut nodes, 0);
    nodes
}

fn gang_job(node: &mut Node, now: u64, instances: u32, max_retries: u32) -> TaskRef {
    let mut t = TaskSpec::new("mpi", Command::Argv(vec!["true".into()]), max_retries);
    t.resources.instances = instances;
    let (job, _) = node
        .core
        .submit(
            Millis(now),
            JobSpec::new("gang", vec![TaskGroup::One(t)]),
            now,
        )
        .expect("a valid job");
    task(job, 0)
}

/// One start of a gang instance: the node, its rank, the gang's hosts.
type GangRun = (NodeId, u32, Vec<NodeId>);

/// Every node's gang starts.
fn gang_runs(nodes: &[Node]) -> Vec<GangRun> {
    let mut runs = Vec::new();
    for n in nodes {
        for a in &n.actions {
            if let Action::Run {
                gang: Some(place), ..
            } = a
            {
                runs.push((n.id(), place.rank, place.hosts.clone()));
            }
        }
    }
    runs.sort_by_key(|(_, rank, _)| *rank);
    runs
}

/// Five nodes running a gang of `instances` on as many of them: the
/// nodes, its task, and every start (see [`gang_runs`]).
fn a_started_gang(instances: u32) -> (Vec<Node>, TaskRef, Vec<GangRun>) {
    let mut nodes = five_nodes();
    let t = gang_job(&mut nodes[0], 10, instances, 0);
    settle(&mut nodes, 10);
    tick(&mut nodes, 35, 25, 9);
    let runs = gang_runs(&nodes);
    assert_eq!(runs.len(), instances as usize, "{runs:?}");
    (nodes, t, runs)
}

#[test]
fn a_gang_starts_on_distinct_nodes_at_once_and_the_primary_exit_is_the_tasks() {
    let (mut nodes, t, runs) = a_started_gang(4);
    let hosts = &runs[0].2;
    let mut distinct = hosts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4);
    for (rank, (node, r, h)) in runs.iter().enumerate() {
        assert_eq!((*r as usize, h), (rank, hosts));
        assert_eq!(hosts[rank], *node);
    }
    let primary = nodes.iter().position(|n| n.id() == hosts[0]).unwrap();
    let secondary = nodes.iter().position(|n| n.id() == hosts[1]).unwrap();
    // A secondary's own exit code is not the task's.
    let sent = nodes[secondary].exit(300, t, 0, Outcome::Exited(5));
    spread(&mut nodes, 300, vec![(secondary, sent)]);
    assert_eq!(state(&nodes[primary], t).0, TaskState::Running);
    let sent = nodes[primary].exit(310, t, 0, Outcome::Exited(0));
    spread(&mut nodes, 310, vec![(primary, sent)]);
    for n in &nodes {
        assert_eq!(state(n, t).0, TaskState::Succeeded);
    }
    let others = hosts[2..]
        .iter()
        .map(|h| nodes.iter().find(|n| n.id() == *h).unwrap());
    for n in others {
        assert_eq!(n.kills(), vec![(t, 0)], "the other instances are stopped");
    }
}

#[test]
fn a_gang_larger_than_the_mesh_is_never_claimed() {
    let mut nodes = five_nodes();
    let t = gang_job(&mut nodes[0], 10, 6, 0);
    tick(&mut nodes, 10, 25, 10);
    assert!(gang_runs(&nodes).is_empty());
    for n in &nodes {
        assert_eq!(state(n, t), (TaskState::Pending, 0, None));
    }
}

#[test]
fn a_declined_gang_is_invited_again_later_without_using_a_retry() {
    let mut nodes = five_nodes();
    // Every node but the submitter stops claiming (locally, unannounced):
    // the submitter claims, and its invitees decline.
    for n in nodes.iter_mut().skip(1) {
        n.core.set_paused(Millis(5), true);
    }
    let t = gang_job(&mut nodes[0], 10, 3, 0);
    settle(&mut nodes, 10);
    tick(&mut nodes, 60, 50, 19);
    assert!(gang_runs(&nodes).is_empty());
    let gang = nodes[0].core.view(t).and_then(|v| v.gang.clone());
    let gang = gang.expect("the primary still holds its claim");
    assert!(gang.round >= 1 && gang.declined, "invited again: {gang:?}");
    for n in nodes.iter_mut().skip(1) {
        n.core.set_paused(Millis(1000), false);
    }
    tick(&mut nodes, 1000, 50, 400);
    let runs = gang_runs(&nodes);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(
        state(&nodes[0], t).1,
        0,
        "still attempt 0: max_retries 0 and not failed"
    );
}

/// A primary that replaces a formed round (its invite timed out on its
/// side before the last join reached it) invites members whose instances
/// of the old round still run. Each answers the new round once its old
/// instance has exited (it dropped the invite before, and the round
/// waited a whole lease for answers that never came).
#[test]
fn a_member_still_stopping_an_instance_of_a_replaced_round_answers_the_new_round_once_it_exits() {
    let (mut nodes, t, runs) = a_started_gang(3);
    let hosts = runs[0].2.clone();
    let at = |id: NodeId| nodes.iter().position(|n| n.id() == id).expect("a node");
    let (primary, member) = (at(hosts[0]), at(hosts[1]));
    let invite = EventBody::Gang {
        task: t,
        attempt: 0,
        step: GangStep::Invite {
            round: 1,
            hosts: hosts.clone(),
        },
    };
    let by = nodes[primary].identity();
    nodes[member].hear(300, &by, vec![invite]);
    assert_eq!(
        nodes[member].kills(),
        vec![(t, 0)],
        "the old instance stops"
    );
    let answered = |n: &Node| (n.core.ledger().gang(&t)).is_some_and(|g| g.answered(0, 1, &n.id()));
    assert!(!answered(&nodes[member]), "joined while its instance runs");
    nodes[member].exit(310, t, 0, Outcome::Signaled(9));
    assert!(answered(&nodes[member]), "round 1 never answered");
}

/// A job of `n` tasks where each depends on the one before.
/// A result whose exit code fails its job leaves at once, and the job's
/// other claims on this node are dropped instead of started into the slot
/// it frees (before, the next claim started and was killed a batch later).
#[test]
fn a_result_that_fails_its_job_leaves_at_once_and_the_jobs_next_claim_here_never_starts() {
    let mut template = TaskSpec::new("t", Command::Argv(vec!["true".into()]), 0);
    template.exit_codes = vec![ExitRule {
        from: 4,
        to: 4,
        action: ExitAction::FailJob,
    }];
    let (mut a, job, due) = running_one_claiming_ahead(JobSpec::array("fails", template, 0, 2));
    let (t0, t1, t2) = (task(job, 0), task(job, 1), task(job, 2));
    let sent = a.exit(due.0 + 1, t1, 0, Outcome::Exited(4));
    assert!(
        !events_of(&sent).is_empty(),
        "the failing result waited for the batch window"
    );
    assert_eq!(a.runs(), vec![(t0, 0), (t1, 0)], "task 2 started");
    assert_eq!(state(&a, t2).0, TaskState::Skipped);
    assert_eq!(a.core.local_load(), (0, 0));
}

fn chain(n: u32) -> JobSpec {
    let groups = (0..n)
        .map(|i| {
            let mut t = TaskSpec::new(format!("c{i}"), Command::Argv(vec!["true".into()]), 0);
            if i > 0 {
                t.depends_on = vec![format!("c{}", i - 1)];
            }
            TaskGroup::One(t)
        })
        .collect();
    JobSpec::new("chain", groups)
}

#[test]
fn a_chain_link_publishes_its_result_and_starts_the_next_task_at_once_while_arrays_keep_the_batch_window(
) {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = a.core.submit(Millis(0), chain(4), 0).expect("a valid job");
    a.pump();
    // Each task exits 1 ms after it starts: the next one must start then,
    // not a batch window (20 ms) or two later.
    let mut now = 0;
    for index in 0..4 {
        let started = a.runs().into_iter().find(|(t, _)| t.index == index);
        let Some((t, attempt)) = started else {
            panic!("link {index} had not started by {now} ms");
        };
        now += 1;
        a.exit(now, t, attempt, Outcome::Exited(0));
        if let Some(due) = a.core.poll_timeout().filter(|due| due.0 <= now) {
            a.timeout(due.0.max(now));
        }
    }
    let ends = a.core.poll_timeout().expect("a timer").0.max(now);
    a.timeout(ends);
    assert_eq!(a.core.progress(&job).succeeded, 4);

    // An array's results still wait for the window after a batch.
    let (array, _) = submit(&mut a, ends, 4, 0);
    let now = a.core.poll_timeout().expect("a timer").0.max(ends);
    a.timeout(now);
    let runs: Vec<(TaskRef, u32)> = a
        .runs()
        .into_iter()
        .filter(|(t, _)| t.job == array)
        .collect();
    assert!(!runs.is_empty(), "the array started");
    let (t, attempt) = runs[0];
    let sent = a.exit(now + 1, t, attempt, Outcome::Exited(0));
    assert!(
        events_of(&sent).is_empty(),
        "an array task's result left before the batch window"
    );
}

/// A partition healed: a node that hears again from a peer it suspected
/// starts an anti-entropy round with it at once, so the events either side
/// missed flow now rather than at a later random round (a mesh of 26
/// nodes took 3.5 s to converge after a heal, and a job's retention could
/// run out on the others before a node cut off from its submitter learned
/// of it).
#[test]
fn a_node_hearing_again_from_a_peer_it_suspected_syncs_with_it_at_once() {
    let cfg = Config::default();
    let (mut a, b) = (Node::new(1, cfg.clone()), Node::new(2, cfg.clone()));
    a.core.handle_peer_up(Millis(0), b.id());
    a.pump();
    // B falls silent: A's probes go unanswered until it suspects B.
    let mut now = 0;
    let suspected = |a: &Node| {
        let p = a.core.peers().get(&b.id()).map(|p| p.liveness);
        matches!(p, Some(Liveness::Suspect { .. }))
    };
    while !suspected(&a) {
        now = a.core.poll_timeout().expect("a timer").0.max(now + 1);
        a.timeout(now);
        assert!(now < 10_000, "never suspected");
    }
    // Short of the next sync round, B's ping arrives.
    now += 1;
    a.core.handle_message(
        Millis(now),
        b.id(),
        Message::Ping {
            seq: 1,
            rumors: Vec::new(),
        },
    );
    let sent = a.pump();
    let digest = |t: &Transmit| {
        t.to == Destination::Peer(b.id()) && matches!(t.msg, Message::SyncDigest { .. })
    };
    assert!(sent.iter().any(digest), "no digest to B in {sent:?}");
}
