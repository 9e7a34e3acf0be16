//! A node holds in memory only what deciding needs: a finished job's tasks
//! leave the core and are read back from the store with the same answers,
//! and a late fact about a finished job still counts.

mod harness;

use harness::*;
use peerbatch_protocol::event::Claim;
use peerbatch_protocol::{
    Config, Core, EventBody, EventStore, Identity, JobId, Message, Millis, Outcome, TaskRef,
    TaskResult, TaskState,
};

#[test]
fn a_finished_job_leaves_the_cores_memory_and_reads_back_the_same() {
    let (mut a, job, now) = finished_job(200);
    let before = a.core.views(job);
    let digest = a.core.ledger().state_digest();
    assert_eq!(a.core.held().views, 200);
    assert_eq!(a.core.held().task_facts, 200);

    a.timeout(now + Config::default().seal_after_ms);
    let held = a.core.held();
    assert_eq!(
        (
            held.views,
            held.dep_tallies,
            held.task_facts,
            held.sealed_jobs
        ),
        (0, 0, 0, 1)
    );
    assert_eq!(a.core.views(job), before);
    assert_eq!(a.core.view(task(job, 7)).as_ref(), Some(&before[7]));
    assert_eq!(a.core.ledger().state_digest(), digest);
    assert_eq!(a.core.progress(&job).succeeded, 200);
}

#[test]
fn a_late_result_about_a_sealed_job_counts_and_the_job_seals_again_once_stored() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 3, 0);
    let now = run_to_end(&mut a, job, Outcome::Exited(1));
    let wait = Config::default().seal_after_ms;
    a.timeout(now + wait);
    assert!(a.core.ledger().is_sealed(&job));

    // Another node had claimed task 1's attempt 0 too, and it succeeded:
    // its events arrive late, and are not written to the store yet.
    let b = Identity::from_seed([2; 32]);
    let t = task(job, 1);
    let result = success(t);
    let events = [
        EventBody::Claims {
            claims: vec![Claim {
                task: t,
                attempt: 0,
            }],
        },
        EventBody::Finished {
            results: vec![result],
        },
    ]
    .into_iter()
    .map(|body| b.sign(body).encode())
    .collect();
    let late = now + wait + 1;
    a.core
        .handle_gossip(Millis(late), b.node_id(), Message::Events { events });
    let shown = |a: &Node| a.core.view(t).map(|v| (v.state, v.node));
    assert_eq!(shown(&a), Some((TaskState::Succeeded, Some(b.node_id()))));
    let p = a.core.progress(&job);
    assert_eq!((p.succeeded, p.failed), (1, 2));

    // Not sealed while the store lacks what the core knows…
    a.core.handle_timeout(Millis(late + wait), late + wait);
    assert!(!a.core.ledger().is_sealed(&job));
    // …and sealed once it holds it, with the same answers.
    a.pump();
    a.timeout(late + 2 * wait);
    assert!(a.core.ledger().is_sealed(&job));
    assert_eq!(shown(&a), Some((TaskState::Succeeded, Some(b.node_id()))));
    assert_eq!(a.core.views(job)[0].state, TaskState::Failed);
    assert_eq!(a.core.progress(&job).succeeded, 1);
}

#[test]
fn a_late_claim_not_yet_stored_keeps_its_job_unsealed_so_the_result_after_it_counts() {
    let wait = Config::default().seal_after_ms;
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    // B ranks before A: of two successes of one attempt, B's is canonical.
    let b = (2..=u8::MAX)
        .map(|seed| Identity::from_seed([seed; 32]))
        .find(|b| b.node_id() < a.id())
        .expect("a node id below A's");
    let (job, _) = submit(&mut a, 0, 1, 0);
    let now = run_to_end(&mut a, job, Outcome::Exited(0));
    a.timeout(now + wait);
    assert!(a.core.ledger().is_sealed(&job));

    // B claimed attempt 0 too, on the other side of a partition. Its claim
    // arrives first and is not written yet when the job's time to seal
    // comes again: the claim changes no view, but it is a fact the store
    // lacks.
    let t = task(job, 0);
    let claim = EventBody::Claims {
        claims: vec![Claim {
            task: t,
            attempt: 0,
        }],
    };
    let late = now + wait + 1;
    let gossip = |a: &mut Node, now: u64, body: EventBody| {
        let events = vec![b.sign(body).encode()];
        a.core
            .handle_gossip(Millis(now), b.node_id(), Message::Events { events });
    };
    gossip(&mut a, late, claim);
    a.core.handle_timeout(Millis(late + wait), late + wait);
    assert!(
        !a.core.ledger().is_sealed(&job),
        "sealed while the store lacks a claim it knows"
    );

    // B's result follows: it counts, as it does on every node that folds
    // both events.
    let result = success(t);
    gossip(
        &mut a,
        late + wait + 1,
        EventBody::Finished {
            results: vec![result],
        },
    );
    a.pump();
    let shown = |a: &Node| a.core.view(t).map(|v| (v.state, v.node));
    assert_eq!(shown(&a), Some((TaskState::Succeeded, Some(b.node_id()))));
    a.timeout(late + 3 * wait);
    assert!(a.core.ledger().is_sealed(&job));
    assert_eq!(shown(&a), Some((TaskState::Succeeded, Some(b.node_id()))));
}

#[test]
fn a_sealed_jobs_event_ids_retire_and_a_late_copy_of_its_events_is_dropped_as_a_duplicate() {
    let wait = Config::default().seal_after_ms;
    let (mut a, job, now) = finished_job(200);
    let ids = a.core.ledger().ids().clone();
    let fingerprints = a.core.ledger().fingerprints().clone();
    let live = a.core.held().live_event_ids;
    a.timeout(now + wait);
    assert!(a.core.ledger().is_sealed(&job));
    let stored = a.store.job_events(&job);
    assert_eq!(a.core.held().live_event_ids, live - stored.len());
    assert_eq!(a.core.ledger().ids(), &ids);

    // Every event of the job again, as a peer late to gossip them sends them.
    let peer = Identity::from_seed([2; 32]).node_id();
    let duplicates = a.core.stats().events_duplicate;
    let events = stored.clone();
    a.core
        .handle_gossip(Millis(now + 2 * wait), peer, Message::Events { events });
    a.pump();
    let dropped = a.core.stats().events_duplicate - duplicates;
    assert_eq!(dropped, stored.len() as u64);
    assert!(a.core.ledger().is_sealed(&job));
    assert_eq!(a.core.held().task_facts, 0);
    assert_eq!(a.core.ledger().fingerprints(), &fingerprints);
}

#[test]
fn a_fresh_node_catches_up_with_a_sealed_job_whose_event_ids_retired() {
    let wait = Config::default().seal_after_ms;
    let (mut a, job, end) = finished_job(300);
    let mut now = end + wait;
    a.timeout(now);
    assert!(a.core.ledger().is_sealed(&job));
    let mut b = Node::new(2, Config::default());
    a.core.handle_peer_up(Millis(now), b.id());
    b.core.handle_peer_up(Millis(now), a.id());
    let (mut to_b, mut to_a) = (a.pump(), b.pump());
    for _ in 0..10 {
        while !to_a.is_empty() || !to_b.is_empty() {
            let next_to_a = deliver(now, &a, &to_b, &mut b);
            to_b = deliver(now, &b, &to_a, &mut a);
            to_a = next_to_a;
        }
        if a.core
            .ledger()
            .ids()
            .iter()
            .all(|id| b.core.ledger().contains(id))
        {
            break;
        }
        now += Config::default().sync_ms;
        to_b = a.timeout(now);
        to_a = b.timeout(now);
    }
    assert_eq!(b.core.views(job), a.core.views(job));
    assert_eq!(b.core.progress(&job).succeeded, 300);
}

/// A restart reads the ledger job by job and seals each finished job
/// before it reads the next, so it never holds every finished task's facts
/// at once (a node with a million finished tasks peaked at 700 MiB while
/// it started); the answers are those the node gave before.
#[test]
fn a_restarted_node_holds_no_finished_jobs_facts_and_answers_the_same() {
    let wait = Config::default().seal_after_ms;
    let (mut a, first, end) = finished_job(200);
    let mut waiting = spec(100, 0);
    waiting.after = vec![first];
    let (second, _) = a.core.submit(Millis(end), waiting, end).unwrap();
    a.pump();
    let end = run_to_end_from(&mut a, second, end, Outcome::Exited(0));
    a.timeout(end + wait);
    let (live, _) = a
        .core
        .submit(Millis(end + wait), spec(30, 0), end + wait)
        .unwrap();
    a.pump();
    let answers = |a: &Node| {
        let jobs = [first, second, live];
        let views = jobs.map(|j| a.core.views(j));
        (
            views,
            jobs.map(|j| a.core.progress(&j)),
            a.core.ledger().state_digest(),
        )
    };
    let before = answers(&a);
    let live_facts = a.core.held().task_facts;
    assert!(live_facts > 0);

    let store = a.store.clone();
    let events = store.all();
    let restarted = Node {
        core: Core::new(
            a.identity(),
            Config::default(),
            store.clone(),
            events,
            3,
            Millis(0),
        ),
        ..a
    };
    let held = restarted.core.held();
    assert_eq!((held.sealed_jobs, held.task_facts), (2, live_facts));
    let after = answers(&restarted);
    assert_eq!(after.0, before.0);
    assert_eq!(after.1[..2], before.1[..2]);
    assert_eq!(after.2, before.2);
}

/// A lone node that ran a job of `tasks` tasks to success: the node, the
/// job and when its last task ended.
fn finished_job(tasks: u32) -> (Node, JobId, u64) {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, tasks, 0);
    let now = run_to_end(&mut a, job, Outcome::Exited(0));
    (a, job, now)
}

/// Attempt 0 of `t` exited 0.
fn success(t: TaskRef) -> TaskResult {
    TaskResult {
        task: t,
        attempt: 0,
        outcome: Outcome::Exited(0),
        stdout: None,
        stderr: None,
        outputs: None,
        duration_ms: 1,
    }
}
