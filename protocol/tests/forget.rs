//! A ledger that forgets: a job that has ended leaves every node once its
//! retention has passed (judged on the node's own clock, with a margin for
//! skew) or its submitter or an admin asked, and nothing of it comes back.

mod harness;

use harness::*;
use peerbatch_protocol::{
    Config, Core, EventBody, Identity, JobId, Message, Millis, Outcome, TaskState,
};

const RETENTION_MS: u64 = 60_000;

/// Submits a job of `tasks` tasks kept `RETENTION_MS` at wall time `wall`,
/// runs it to its end on the lone node `a` and lets it seal; returns the
/// job, the submit's bytes and the time then.
fn finished_job(a: &mut Node, tasks: u32, wall: u64) -> (JobId, Vec<u8>, u64) {
    let mut job = spec(tasks, 0);
    job.retention_ms = RETENTION_MS;
    let (id, _) = a.core.submit(Millis(1), job, wall).expect("a valid job");
    let sent = a.pump();
    let submit = events_of(&sent).remove(0);
    let mut now = run_to_end(a, id, Outcome::Exited(0)).max(1);
    now += Config::default().seal_after_ms;
    a.timeout(now);
    assert!(a.core.ledger().is_sealed(&id), "{:?}", a.core.progress(&id));
    (id, submit, now)
}

fn lone(seed: u8) -> Node {
    let mut a = Node::new(seed, Config::default());
    a.timeout(0);
    a
}

#[test]
fn a_finished_job_past_its_retention_and_margin_leaves_the_ledger_the_store_and_the_fingerprints() {
    let mut a = lone(1);
    let before = a.core.ledger().fingerprints().clone();
    let (job, _, now) = finished_job(&mut a, 30, 1_000);
    let horizon = 1_000 + RETENTION_MS + Config::default().forget_margin_ms;
    assert_eq!(a.core.forget_at(&job), Some(horizon));

    a.core.forget_expired(Millis(now), horizon - 1);
    a.pump();
    assert!(
        a.core.ledger().job(&job).is_some(),
        "forgotten before the margin passed"
    );

    a.core.forget_expired(Millis(now), horizon);
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());
    assert!(a.core.views(job).is_empty());
    assert_eq!(a.core.ledger().fingerprints(), &before);
    assert_eq!(a.store.len(), a.core.ledger().event_count());
    assert_eq!(a.core.stats().jobs_forgotten, 1);
}

#[test]
fn a_job_with_tasks_left_is_not_forgotten_past_its_horizon() {
    let mut a = Node::new(1, Config::default());
    let mut job = spec(3, 0);
    job.retention_ms = RETENTION_MS;
    // No slot is free here (the node never ran its first timeout): the
    // tasks stay pending.
    let (id, _) = a.core.submit(Millis(1), job, 0).expect("a valid job");
    a.pump();
    a.core.forget_expired(Millis(10_000), u64::MAX / 2);
    a.pump();
    assert!(a.core.ledger().job(&id).is_some());
    assert_eq!(a.core.progress(&id).done(), 0);
}

#[test]
fn a_late_copy_of_a_forgotten_jobs_events_is_dropped_and_a_restart_does_not_bring_it_back() {
    let mut a = lone(1);
    let (job, submit, now) = finished_job(&mut a, 5, 0);
    let stored_before: Vec<Vec<u8>> = a.store.all();
    a.core.forget_expired(Millis(now), u64::MAX / 2);
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());

    // Every event of the job, sent again by a peer.
    let peer = Identity::from_seed([9; 32]).node_id();
    a.core.handle_message(
        Millis(now + 1),
        peer,
        Message::Events {
            events: stored_before.clone(),
        },
    );
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());
    assert!(a.core.stats().events_forgotten > 0);
    assert!(!a
        .store
        .contains(&peerbatch_protocol::event::event_id(&submit)));

    // The submit written behind the forgetting (an outbox that was late):
    // a restart on this store drops it again and does not fold the job.
    a.store
        .put(peerbatch_protocol::event::event_id(&submit), submit.clone());
    let mut b = Core::new(
        a.identity(),
        Config::default(),
        a.store.clone(),
        a.store.all(),
        1,
        Millis(0),
    );
    assert!(b.ledger().job(&job).is_none());
    while let Some(f) = b.poll_forgetting() {
        a.store.apply(&f);
    }
    assert!(!a
        .store
        .contains(&peerbatch_protocol::event::event_id(&submit)));
}

/// The driver carries a forgetting out on its store after the core made
/// it (the outbox writes behind): meanwhile the job's events are still in
/// the store, and a peer asking for them gets none (they were once sent,
/// and the driver then sent events it had just removed).
#[test]
fn a_forgotten_jobs_events_left_in_the_store_are_not_sent_to_a_peer_that_asks() {
    let mut a = lone(1);
    let (job, submit, now) = finished_job(&mut a, 5, 0);
    a.core.forget_expired(Millis(now), u64::MAX / 2);
    assert!(a.core.ledger().job(&job).is_none());
    let id = peerbatch_protocol::event::event_id(&submit);
    assert!(
        a.store.contains(&id),
        "the forgetting is not carried out yet"
    );

    let peer = Identity::from_seed([9; 32]).node_id();
    a.core
        .handle_message(Millis(now + 1), peer, Message::GetEvents { ids: vec![id] });
    let mut sent = Vec::new();
    while let Some(t) = a.core.poll_transmit() {
        sent.push(t);
    }
    let events = events_of(&sent);
    assert!(events.is_empty(), "sent {} forgotten events", events.len());
}

/// A job waiting (`after`) for one this node forgot reads its outcome from
/// the tombstone in the core's cached views as in the fold (the core read
/// a forgotten job as unfinished and showed the waiting task blocked).
#[test]
fn a_job_after_one_forgotten_here_shows_the_same_in_the_cached_view_as_in_the_fold() {
    let mut a = lone(1);
    let (first, _, now) = finished_job(&mut a, 1, 0);
    a.core.forget_expired(Millis(now), u64::MAX / 2);
    a.pump();
    assert!(a.core.ledger().is_forgotten(&first));

    let mut job = spec(1, 0);
    job.after = vec![first];
    let submit = EventBody::JobSubmitted {
        job,
        submitted_ms: now,
        nonce: 7,
    };
    a.hear(now + 1, &Identity::from_seed([9; 32]), vec![submit]);
    let second = (a.core.ledger().jobs())
        .find(|j| j.spec.after == [first])
        .expect("the waiting job")
        .id;
    let t = task(second, 0);
    let cached = a.core.view(t).map(|v| v.state);
    assert_eq!(cached, a.core.ledger().view(t).map(|v| v.state));
    assert_ne!(cached, Some(TaskState::Blocked));
}

#[test]
fn two_nodes_that_differ_only_in_a_forgotten_job_have_the_same_fingerprints() {
    let mut a = lone(1);
    let mut b = lone(2);
    // Each knows the other's announce.
    let (ea, eb) = (a.store.all(), b.store.all());
    let events = |events| Message::Events { events };
    a.core.handle_message(Millis(1), b.id(), events(eb));
    b.core.handle_message(Millis(1), a.id(), events(ea));
    a.pump();
    b.pump();
    let same =
        |a: &Node, b: &Node| a.core.ledger().fingerprints() == b.core.ledger().fingerprints();
    assert!(same(&a, &b));
    let (job, _, now) = finished_job(&mut a, 4, 0);
    assert!(!same(&a, &b));
    a.core.forget_expired(Millis(now), u64::MAX / 2);
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());
    assert!(same(&a, &b), "fingerprints differ");
}

#[test]
fn only_the_submitter_or_an_admin_may_forget_a_job_early() {
    let mut a = lone(1);
    let (job, _, now) = finished_job(&mut a, 2, 0);
    let other = Identity::from_seed([7; 32]);
    a.hear(now, &other, vec![EventBody::JobForgotten { job }]);
    a.core.forget_expired(Millis(now + 1), 0);
    a.pump();
    assert!(
        a.core.ledger().job(&job).is_some(),
        "forgotten at a non-admin's request"
    );

    a.core
        .forget(Millis(now + 2), job)
        .expect("the submitter may");
    a.pump();
    a.core.forget_expired(Millis(now + 3), 0);
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());
}

#[test]
fn a_node_away_when_a_job_was_forgotten_by_request_forgets_it_once_it_hears_the_request() {
    let mut a = lone(1);
    let mut b = lone(2);
    let (job, _, now) = finished_job(&mut a, 3, 0);
    let events = |events| Message::Events { events };
    b.core
        .handle_message(Millis(now), a.id(), events(a.store.all()));
    b.pump();
    b.timeout(now + 5_000);
    assert!(b.core.ledger().is_sealed(&job));

    // B is away while A's submitter asks to forget the job and A does.
    a.core
        .forget(Millis(now + 1), job)
        .expect("the submitter may");
    a.pump();
    a.core.forget_expired(Millis(now + 2), 0);
    a.pump();
    assert!(a.core.ledger().job(&job).is_none());

    // Back, B hears what A still holds: the request, not the job.
    b.core
        .handle_message(Millis(now + 6_000), a.id(), events(a.store.all()));
    b.pump();
    b.core.forget_expired(Millis(now + 6_001), 0);
    b.pump();
    assert!(b.core.ledger().job(&job).is_none());
    // B's own announce was all A lacked; now they hold the same.
    a.core
        .handle_message(Millis(now + 7_000), b.id(), events(b.store.all()));
    a.pump();
    assert!(a.core.ledger().fingerprints() == b.core.ledger().fingerprints());
    assert!(a.core.ledger().job(&job).is_none());

    // Once the tombstone's time is over, the request goes too.
    let later = u64::MAX / 2;
    a.core.forget_expired(Millis(now + 8_000), later);
    a.pump();
    assert!(a.core.ledger().tombstones().next().is_none());
    assert!(!a.store.all().iter().any(|bytes| {
        let event: peerbatch_protocol::Event = peerbatch_protocol::codec::decode(bytes).unwrap();
        matches!(event.body, EventBody::JobForgotten { .. })
    }));
}
