//! The ledger fold: state is a function of the event *set*, and the rules
//! that turn facts into task state (claim winners, canonical results,
//! retries, reclaims, cancellation).

use peerbatch_protocol::event::{event_id, Claim};
use peerbatch_protocol::hrw;
use peerbatch_protocol::job::OnDependencyFailure;
use peerbatch_protocol::ledger::job_id_of;
use peerbatch_protocol::SeededRng;
use peerbatch_protocol::{
    Command, Event, EventBody, EventId, Identity, JobId, JobSpec, Ledger, NodeId, NodeInfo,
    Outcome, TaskRef, TaskResult, TaskSpec, TaskState, TaskView,
};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn identity(i: u8) -> Identity {
    Identity::from_seed([i + 1; 32])
}

fn signed(by: &Identity, body: EventBody) -> (EventId, Event) {
    let event = by.sign(body);
    (event_id(&event.encode()), event)
}

/// Who submits the jobs of these tests.
const SUBMITTER: u8 = 200;

fn job_event(tasks: u32, max_retries: u32) -> ((EventId, Event), JobId) {
    let job = JobSpec::array(
        "fold",
        TaskSpec::new("t", Command::Argv(vec!["true".into()]), max_retries),
        0,
        i64::from(tasks) - 1,
    );
    let event = signed(
        &identity(SUBMITTER),
        EventBody::JobSubmitted {
            job,
            submitted_ms: 1,
            nonce: 7,
        },
    );
    let id = job_id_of(&event.0);
    (event, id)
}

fn task(job: JobId, index: u32) -> TaskRef {
    TaskRef { job, index }
}

fn claims(by: &Identity, list: &[(TaskRef, u32)]) -> (EventId, Event) {
    let claims = list
        .iter()
        .map(|&(task, attempt)| Claim { task, attempt })
        .collect();
    signed(by, EventBody::Claims { claims })
}

fn reclaims(by: &Identity, list: &[(TaskRef, u32)]) -> (EventId, Event) {
    let claims = list
        .iter()
        .map(|&(task, attempt)| Claim { task, attempt })
        .collect();
    signed(by, EventBody::Reclaimed { claims })
}

fn result(task: TaskRef, attempt: u32, code: i32) -> TaskResult {
    TaskResult {
        task,
        attempt,
        outcome: Outcome::Exited(code),
        stdout: None,
        stderr: None,
        outputs: None,
        duration_ms: 10 + u64::from(attempt),
    }
}

fn finished(by: &Identity, list: &[(TaskRef, u32, i32)]) -> (EventId, Event) {
    let results = list
        .iter()
        .map(|&(task, attempt, code)| result(task, attempt, code))
        .collect();
    signed(by, EventBody::Finished { results })
}

fn fold<'a>(events: impl IntoIterator<Item = &'a (EventId, Event)>) -> Ledger {
    let mut ledger = Ledger::default();
    for (id, event) in events {
        ledger.insert(*id, event);
    }
    ledger
}

fn view(ledger: &Ledger, task: TaskRef) -> TaskView {
    ledger.view(task).expect("the job is known")
}

/// The node a claim race must go to: best HRW score, ties to the lower id.
fn best(task: TaskRef, attempt: u32, nodes: &[NodeId]) -> NodeId {
    *nodes
        .iter()
        .max_by(|a, b| {
            let (sa, sb) = (hrw::score(task, attempt, a), hrw::score(task, attempt, b));
            sa.cmp(&sb).then(b.cmp(a))
        })
        .expect("some claimers")
}

#[test]
fn competing_claims_resolve_to_the_best_rendezvous_score_in_any_order() {
    let (job_ev, job) = job_event(20, 3);
    let nodes: Vec<Identity> = (0..6).map(identity).collect();
    let ids: Vec<NodeId> = nodes.iter().map(Identity::node_id).collect();
    let mut rng = SeededRng::seed_from_u64(1);
    for index in 0..20 {
        let t = task(job, index);
        let mut events = vec![job_ev.clone()];
        events.extend(nodes.iter().map(|n| claims(n, &[(t, 0)])));
        let expected = best(t, 0, &ids);
        for _ in 0..10 {
            events.shuffle(&mut rng);
            let v = view(&fold(&events), t);
            assert_eq!(
                (v.state, v.attempt, v.node),
                (TaskState::Running, 0, Some(expected))
            );
        }
        // Each replica that saw only some claims still agrees once it has all.
        let mut partial = fold(&events[..3]);
        for (id, e) in &events[3..] {
            partial.insert(*id, e);
        }
        assert_eq!(view(&partial, t).node, Some(expected));
    }
}

#[test]
fn canonical_result_is_the_lowest_attempt_success_ties_to_the_lower_node() {
    let (job_ev, job) = job_event(1, 3);
    let t = task(job, 0);
    let (a, b, c) = (identity(1), identity(2), identity(3));
    let mut low = [a.node_id(), b.node_id()];
    low.sort();
    let events = vec![
        job_ev,
        claims(&a, &[(t, 0)]),
        claims(&b, &[(t, 0)]),
        finished(&c, &[(t, 1, 0)]),
        finished(&a, &[(t, 0, 0)]),
        finished(&b, &[(t, 0, 0)]),
        finished(&c, &[(t, 2, 1)]),
    ];
    let v = view(&fold(&events), t);
    assert_eq!(v.state, TaskState::Succeeded);
    assert_eq!((v.attempt, v.node), (0, Some(low[0])));
    assert_eq!(v.result, Some(result(t, 0, 0)));

    // A failure at a lower attempt does not beat a later success.
    let events = vec![
        events[0].clone(),
        claims(&a, &[(t, 0)]),
        finished(&a, &[(t, 0, 1)]),
        claims(&b, &[(t, 1)]),
        finished(&b, &[(t, 1, 0)]),
    ];
    let v = view(&fold(&events), t);
    assert_eq!((v.state, v.attempt), (TaskState::Succeeded, 1));
    assert_eq!(v.node, Some(b.node_id()));
}

#[test]
fn failures_retry_until_max_retries_then_fail() {
    let (job_ev, job) = job_event(1, 2);
    let t = task(job, 0);
    let n = identity(1);
    let mut events = vec![job_ev];
    assert_eq!(view(&fold(&events), t).state, TaskState::Pending);
    for attempt in 0..2 {
        events.push(claims(&n, &[(t, attempt)]));
        let v = view(&fold(&events), t);
        assert_eq!((v.state, v.attempt), (TaskState::Running, attempt));
        events.push(finished(&n, &[(t, attempt, 3)]));
        let v = view(&fold(&events), t);
        assert_eq!(
            (v.state, v.attempt, v.node),
            (TaskState::Pending, attempt + 1, None)
        );
    }
    events.push(claims(&n, &[(t, 2)]));
    events.push(finished(&n, &[(t, 2, 3)]));
    let v = view(&fold(&events), t);
    assert_eq!((v.state, v.attempt), (TaskState::Failed, 2));
    assert_eq!(v.result, Some(result(t, 2, 3)));
}

#[test]
fn reclaim_retries_below_the_cap_and_fails_the_final_attempt() {
    let (job_ev, job) = job_event(1, 1);
    let t = task(job, 0);
    let (runner, reaper) = (identity(1), identity(2));
    let mut events = vec![
        job_ev,
        claims(&runner, &[(t, 0)]),
        reclaims(&reaper, &[(t, 0)]),
    ];
    let v = view(&fold(&events), t);
    assert_eq!((v.state, v.attempt, v.node), (TaskState::Pending, 1, None));
    events.push(claims(&runner, &[(t, 1)]));
    events.push(reclaims(&reaper, &[(t, 1)]));
    let v = view(&fold(&events), t);
    assert_eq!((v.state, v.attempt), (TaskState::Failed, 1));
    assert_eq!((v.node, v.result), (Some(runner.node_id()), None));
    // The fenced-off runner's late success still becomes the canonical result.
    events.push(finished(&runner, &[(t, 0, 0)]));
    let v = view(&fold(&events), t);
    assert_eq!((v.state, v.attempt), (TaskState::Succeeded, 0));
}

#[test]
fn cancel_stops_open_tasks_and_never_reverts_terminal_ones() {
    let (job_ev, job) = job_event(4, 0);
    let n = identity(1);
    let (done, failed, running, pending) = (task(job, 0), task(job, 1), task(job, 2), task(job, 3));
    let cancel = signed(&identity(SUBMITTER), EventBody::JobCancelled { job });
    let events = vec![
        job_ev,
        claims(&n, &[(done, 0), (failed, 0), (running, 0)]),
        finished(&n, &[(done, 0, 0), (failed, 0, 1)]),
        cancel.clone(),
    ];
    let mut rng = SeededRng::seed_from_u64(2);
    let mut shuffled = events.clone();
    for _ in 0..10 {
        shuffled.shuffle(&mut rng);
        let ledger = fold(&shuffled);
        assert!(ledger.is_cancelled(&job));
        assert_eq!(view(&ledger, done).state, TaskState::Succeeded);
        assert_eq!(view(&ledger, failed).state, TaskState::Failed);
        assert_eq!(view(&ledger, running).state, TaskState::Cancelled);
        assert_eq!(view(&ledger, pending).state, TaskState::Cancelled);
        assert_eq!(ledger.state_digest(), fold(&events).state_digest());
    }
    // A second cancel of the same job changes nothing (nor may its author cancel it).
    let mut ledger = fold(&events);
    let digest = ledger.state_digest();
    let again = signed(&identity(8), EventBody::JobCancelled { job });
    let touched = ledger.insert(again.0, &again.1).expect("a new event");
    assert!(touched.cancelled_jobs.is_empty());
    assert_eq!(ledger.state_digest(), digest);
}

#[test]
fn duplicate_inserts_are_ignored() {
    let (job_ev, job) = job_event(2, 0);
    let c = claims(&identity(1), &[(task(job, 0), 0)]);
    let mut ledger = fold([&job_ev, &c]);
    assert!(ledger.insert(c.0, &c.1).is_none());
    assert!(ledger.insert(job_ev.0, &job_ev.1).is_none());
    assert_eq!(ledger.event_count(), 2);
}

// ----- property tests -----

const TASKS: u32 = 4;
const NODES: u8 = 4;

#[derive(Clone, Debug)]
enum Op {
    Claims(u8, Vec<(u32, u32)>),
    Finished(u8, Vec<(u32, u32, bool)>),
    Reclaimed(u8, Vec<(u32, u32)>),
    /// By the submitter when 0, else by a node that may not cancel.
    Cancel(u8),
    Announce(u8, u64, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let pairs = prop::collection::vec((0..TASKS, 0..4u32), 1..4);
    prop_oneof![
        4 => (node.clone(), pairs.clone()).prop_map(|(n, p)| Op::Claims(n, p)),
        3 => (node.clone(), prop::collection::vec((0..TASKS, 0..4u32, any::<bool>()), 1..4))
            .prop_map(|(n, r)| Op::Finished(n, r)),
        2 => (node.clone(), pairs).prop_map(|(n, p)| Op::Reclaimed(n, p)),
        1 => node.clone().prop_map(Op::Cancel),
        1 => (node, 0..3u64, 0..3u32).prop_map(|(n, seq, slots)| Op::Announce(n, seq, slots)),
    ]
}

fn build(ops: &[Op], job: JobId) -> Vec<(EventId, Event)> {
    let t = |index| task(job, index);
    ops.iter()
        .map(|op| match op {
            Op::Claims(n, list) => claims(
                &identity(*n),
                &list.iter().map(|&(i, a)| (t(i), a)).collect::<Vec<_>>(),
            ),
            Op::Finished(n, list) => finished(
                &identity(*n),
                &list
                    .iter()
                    .map(|&(i, a, ok)| (t(i), a, if ok { 0 } else { 1 }))
                    .collect::<Vec<_>>(),
            ),
            Op::Reclaimed(n, list) => reclaims(
                &identity(*n),
                &list.iter().map(|&(i, a)| (t(i), a)).collect::<Vec<_>>(),
            ),
            Op::Cancel(n) => {
                let by = if *n == 0 { SUBMITTER } else { *n };
                signed(&identity(by), EventBody::JobCancelled { job })
            }
            Op::Announce(n, seq, slots) => signed(
                &identity(*n),
                EventBody::NodeAnnounce {
                    seq: *seq,
                    info: NodeInfo {
                        slots: *slots,
                        memory_mb: 0,
                        gpus: 0,
                        labels: Vec::new(),
                        draining: false,
                        addrs: Vec::new(),
                        version: String::new(),
                    },
                },
            ),
        })
        .collect()
}

/// Everything a replica exposes about its state.
fn summary(ledger: &Ledger, job: JobId) -> (Vec<TaskView>, [u8; 32], Vec<(NodeId, NodeInfo)>) {
    let nodes = ledger
        .nodes()
        .map(|(id, info)| (*id, info.clone()))
        .collect();
    (ledger.job_views(&job), ledger.state_digest(), nodes)
}

/// An independent statement of the fold's rules for one task.
fn expected(events: &[(EventId, Event)], t: TaskRef, max_retries: u32) -> (TaskState, u32) {
    let mut claimers: Vec<(u32, NodeId)> = Vec::new();
    let mut results: Vec<(u32, NodeId, bool)> = Vec::new();
    let mut reclaimed: Vec<u32> = Vec::new();
    let mut cancelled = false;
    for (_, e) in events {
        match &e.body {
            EventBody::Claims { claims } => claimers.extend(
                claims
                    .iter()
                    .filter(|c| c.task == t)
                    .map(|c| (c.attempt, e.author)),
            ),
            EventBody::Finished { results: rs } => results.extend(
                rs.iter()
                    .filter(|r| r.task == t)
                    .map(|r| (r.attempt, e.author, r.outcome.success())),
            ),
            EventBody::Reclaimed { claims } => {
                reclaimed.extend(claims.iter().filter(|c| c.task == t).map(|c| c.attempt))
            }
            EventBody::JobCancelled { .. } => {
                cancelled |= e.author == identity(SUBMITTER).node_id()
            }
            _ => {}
        }
    }
    // What counts: attempts one after another, each once the one before
    // was closed; results from claimers; reclaims of counted attempts.
    let claimed = |a: u32, n: &NodeId| claimers.contains(&(a, *n));
    let closed =
        |a: u32| reclaimed.contains(&a) || results.iter().any(|r| r.0 == a && claimed(a, &r.1));
    let mut last = None;
    let mut next = 0;
    while claimers.iter().any(|c| c.0 == next) {
        last = Some(next);
        if !closed(next) {
            break;
        }
        next += 1;
    }
    let last_closed = last.is_some_and(closed);
    let counts = |a: u32| last.is_some_and(|l| a <= l);
    let results: Vec<_> = results
        .iter()
        .filter(|r| counts(r.0) && claimed(r.0, &r.1))
        .collect();
    let reclaimed: Vec<_> = reclaimed.iter().filter(|a| counts(**a)).collect();
    if let Some(&&(a, _, _)) = results.iter().filter(|r| r.2).min() {
        return (TaskState::Succeeded, a);
    }
    if let Some(&&(a, _, _)) = results.iter().filter(|r| r.0 >= max_retries).min() {
        return (TaskState::Failed, a);
    }
    if let Some(&&a) = reclaimed.iter().filter(|a| ***a >= max_retries).min() {
        return (TaskState::Failed, a);
    }
    let (state, attempt) = match last {
        None => (TaskState::Pending, 0),
        Some(a) if last_closed => (TaskState::Pending, a + 1),
        Some(a) => (TaskState::Running, a),
    };
    if cancelled {
        (TaskState::Cancelled, attempt)
    } else {
        (state, attempt)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_fold_depends_only_on_the_set_of_events(
        ops in prop::collection::vec(op(), 0..25),
        max_retries in 0..3u32,
        seed in any::<u64>(),
    ) {
        let (job_ev, job) = job_event(TASKS, max_retries);
        let mut events = vec![job_ev];
        events.extend(build(&ops, job));
        let reference = summary(&fold(&events), job);

        let mut rng = SeededRng::seed_from_u64(seed);
        // Any order.
        let mut shuffled = events.clone();
        shuffled.shuffle(&mut rng);
        prop_assert_eq!(&summary(&fold(&shuffled), job), &reference);
        // With duplicates.
        let mut doubled = shuffled.clone();
        for _ in 0..rng.gen_range(0..=events.len()) {
            let e = events[rng.gen_range(0..events.len())].clone();
            doubled.insert(rng.gen_range(0..=doubled.len()), e);
        }
        prop_assert_eq!(&summary(&fold(&doubled), job), &reference);
        // A subset first (as one replica would hold), the rest later.
        let split = rng.gen_range(0..=shuffled.len());
        let mut replica = fold(&shuffled[..split]);
        let before = summary(&replica, job);
        for (id, e) in &shuffled[split..] {
            replica.insert(*id, e);
        }
        let whole = fold(&events);
        prop_assert_eq!(replica.ids(), whole.ids());
        prop_assert_eq!(replica.fingerprints(), whole.fingerprints());
        prop_assert_eq!(&summary(&replica, job), &reference);
        // Monotonic: growing the set never takes a task out of a terminal
        // state, and never lowers the attempt of a task still open.
        for (old, new) in before.0.iter().zip(&reference.0) {
            prop_assert!(!old.state.terminal() || new.state.terminal(), "{:?} -> {:?}", old, new);
            if !new.state.terminal() {
                prop_assert!(old.attempt <= new.attempt, "{:?} -> {:?}", old, new);
            }
        }
    }

    #[test]
    fn the_fold_follows_the_written_rules(
        ops in prop::collection::vec(op(), 0..25),
        max_retries in 0..3u32,
    ) {
        let (job_ev, job) = job_event(TASKS, max_retries);
        let mut events = vec![job_ev];
        events.extend(build(&ops, job));
        let ledger = fold(&events);
        for index in 0..TASKS {
            let t = task(job, index);
            let v = view(&ledger, t);
            prop_assert_eq!((v.state, v.attempt), expected(&events, t, max_retries), "{:?}", v);
            match v.state {
                TaskState::Succeeded => {
                    let r = v.result.as_ref().expect("a canonical result");
                    prop_assert!(r.outcome.success() && r.attempt == v.attempt);
                }
                TaskState::Running => {
                    let claimers: Vec<NodeId> = events
                        .iter()
                        .filter(|(_, e)| matches!(&e.body, EventBody::Claims { claims }
                            if claims.contains(&Claim { task: t, attempt: v.attempt })))
                        .map(|(_, e)| e.author)
                        .collect();
                    prop_assert_eq!(v.node, Some(best(t, v.attempt, &claimers)));
                }
                TaskState::Pending => prop_assert!(v.node.is_none() && v.result.is_none()),
                TaskState::Failed | TaskState::Cancelled => {}
                TaskState::Blocked | TaskState::Skipped => prop_assert!(false, "no dependencies here"),
            }
        }
    }
}

#[test]
fn two_results_of_one_node_for_one_attempt_resolve_alike_in_either_order() {
    let (job_ev, job) = job_event(1, 0);
    let t = task(job, 0);
    let n = identity(1);
    let (fail, ok) = (finished(&n, &[(t, 0, 1)]), finished(&n, &[(t, 0, 0)]));
    let claim = claims(&n, &[(t, 0)]);
    let one = fold([&job_ev, &claim, &fail, &ok]);
    let other = fold([&job_ev, &ok, &fail, &claim]);
    assert_eq!(one.state_digest(), other.state_digest());
    assert_eq!(view(&one, t).state, TaskState::Succeeded);
}

/// A chain `a ← b ← c` plus `d` on `a`: each waits while its dependency
/// has not succeeded, and a failure skips everything downstream — the
/// same in any order of events.
#[test]
fn dependents_wait_for_success_and_are_skipped_after_a_failure_in_any_order() {
    let step = |id: &str, deps: &[&str]| {
        peerbatch_protocol::TaskGroup::One(TaskSpec {
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..TaskSpec::new(id, Command::Argv(vec!["true".into()]), 0)
        })
    };
    let spec = JobSpec::new(
        "chain",
        vec![
            step("c", &["b"]),
            step("b", &["a"]),
            step("a", &[]),
            step("d", &["a"]),
        ],
    );
    spec.validate().expect("a valid chain");
    let submit = signed(
        &identity(SUBMITTER),
        EventBody::JobSubmitted {
            job: spec,
            submitted_ms: 1,
            nonce: 1,
        },
    );
    let job = job_id_of(&submit.0);
    let (a, b, c, d) = (task(job, 2), task(job, 1), task(job, 0), task(job, 3));
    let states = |ledger: &Ledger| [a, b, c, d].map(|t| view(ledger, t).state);
    use TaskState::*;
    assert_eq!(
        states(&fold([&submit])),
        [Pending, Blocked, Blocked, Blocked]
    );

    let node = identity(1);
    let a_ok = finished(&node, &[(a, 0, 0)]);
    let b_failed = finished(&node, &[(b, 0, 1)]);
    let mut events = vec![submit.clone(), claims(&node, &[(a, 0)]), a_ok];
    assert_eq!(
        states(&fold(&events)),
        [Succeeded, Pending, Blocked, Pending]
    );
    events.extend([claims(&node, &[(b, 0)]), b_failed]);
    let mut rng = SeededRng::seed_from_u64(3);
    for _ in 0..10 {
        events.shuffle(&mut rng);
        let ledger = fold(&events);
        assert_eq!(states(&ledger), [Succeeded, Failed, Skipped, Pending]);
        let listed: Vec<TaskState> = ledger.job_views(&job).iter().map(|v| v.state).collect();
        assert_eq!(listed, vec![Skipped, Failed, Succeeded, Pending]);
    }
}

/// Exit codes mapped to actions: `ignore` succeeds, `fail_task` ends the
/// task with retries left, `fail_job` also skips every unfinished task of
/// the job — whichever order the events come in, the job before or after.
#[test]
fn exit_code_rules_decide_success_failure_and_job_failure_in_any_order() {
    use peerbatch_protocol::exit::{ExitAction, ExitRule};
    let rule = |from, to, action| ExitRule { from, to, action };
    let template = TaskSpec {
        exit_codes: vec![
            rule(3, 3, ExitAction::Ignore),
            rule(10, 19, ExitAction::FailTask),
            rule(42, 42, ExitAction::FailJob),
        ],
        ..TaskSpec::new("t", Command::Argv(vec!["x".into()]), 3)
    };
    let submit = signed(
        &identity(SUBMITTER),
        EventBody::JobSubmitted {
            job: JobSpec::array("rules", template, 0, 4),
            submitted_ms: 1,
            nonce: 2,
        },
    );
    let job = job_id_of(&submit.0);
    let node = identity(1);
    let all: Vec<TaskRef> = (0..5).map(|i| task(job, i)).collect();
    let mut events = vec![
        submit,
        claims(&node, &[(all[0], 0), (all[1], 0), (all[2], 0), (all[3], 0)]),
        finished(&node, &[(all[0], 0, 3), (all[1], 0, 12), (all[3], 0, 1)]),
    ];
    use TaskState::*;
    let states = |ledger: &Ledger| {
        all.iter()
            .map(|t| view(ledger, *t).state)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(&fold(&events)),
        [Succeeded, Failed, Running, Pending, Pending]
    );
    events.push(finished(&node, &[(all[2], 0, 42)]));
    let mut rng = SeededRng::seed_from_u64(5);
    for _ in 0..10 {
        events.shuffle(&mut rng);
        assert_eq!(
            states(&fold(&events)),
            [Succeeded, Failed, Failed, Skipped, Skipped]
        );
    }
}

/// A job `after` another, with `policy`, waiting on the job of `first`.
fn after_event(first: JobId, policy: OnDependencyFailure) -> ((EventId, Event), JobId) {
    let mut job = JobSpec::array(
        "after",
        TaskSpec::new("w", Command::Argv(vec!["true".into()]), 0),
        0,
        1,
    );
    job.after = vec![first];
    job.on_dependency_failure = policy;
    let event = signed(
        &identity(201),
        EventBody::JobSubmitted {
            job,
            submitted_ms: 2,
            nonce: 8,
        },
    );
    let id = job_id_of(&event.0);
    (event, id)
}

#[test]
fn a_job_after_another_is_blocked_until_it_succeeds_and_follows_its_policy_in_any_order() {
    let (first_event, first) = job_event(2, 0);
    let node = identity(1);
    let claim = claims(&node, &[(task(first, 0), 0), (task(first, 1), 0)]);
    for (codes, policy, expected) in [
        ((0, 0), OnDependencyFailure::Skip, TaskState::Pending),
        ((0, 1), OnDependencyFailure::Skip, TaskState::Skipped),
        ((1, 0), OnDependencyFailure::Fail, TaskState::Failed),
        ((0, 1), OnDependencyFailure::Run, TaskState::Pending),
    ] {
        let (waiting_event, waiting) = after_event(first, policy);
        let done = finished(
            &node,
            &[(task(first, 0), 0, codes.0), (task(first, 1), 0, codes.1)],
        );
        let events = [first_event.clone(), waiting_event, claim.clone(), done];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let all: Vec<_> = order.iter().map(|i| events[*i].clone()).collect();
            let ledger = fold(&all);
            for index in 0..2 {
                assert_eq!(view(&ledger, task(waiting, index)).state, expected);
            }
            // Without the other job's results it waits; without the
            // other job at all, too.
            let before = fold(all.iter().filter(|(id, _)| *id != events[3].0));
            assert_eq!(view(&before, task(waiting, 0)).state, TaskState::Blocked);
            let unknown = fold(all.iter().filter(|(id, _)| *id != events[0].0));
            assert_eq!(view(&unknown, task(waiting, 0)).state, TaskState::Blocked);
        }
    }
}

/// A job that runs `after` another whatever its outcome (`run`) waits for
/// every task of it to end, not only for the first failure; one that is
/// skipped or failed for it is so at the first failure.
#[test]
fn a_job_after_one_that_is_failing_waits_until_it_ended_when_it_runs_anyway() {
    let (first_event, first) = job_event(2, 0);
    let node = identity(1);
    let claim = claims(&node, &[(task(first, 0), 0), (task(first, 1), 0)]);
    // Task 0 failed at its last attempt; task 1 still runs.
    let failed = finished(&node, &[(task(first, 0), 0, 1)]);
    for (policy, failing, ended) in [
        (
            OnDependencyFailure::Run,
            TaskState::Blocked,
            TaskState::Pending,
        ),
        (
            OnDependencyFailure::Skip,
            TaskState::Skipped,
            TaskState::Skipped,
        ),
        (
            OnDependencyFailure::Fail,
            TaskState::Failed,
            TaskState::Failed,
        ),
    ] {
        let (waiting_event, waiting) = after_event(first, policy);
        let mut events = vec![
            first_event.clone(),
            waiting_event,
            claim.clone(),
            failed.clone(),
        ];
        let ledger = fold(&events);
        assert_eq!(view(&ledger, task(waiting, 0)).state, failing, "{policy:?}");
        events.push(finished(&node, &[(task(first, 1), 0, 0)]));
        let ledger = fold(&events);
        assert_eq!(view(&ledger, task(waiting, 0)).state, ended, "{policy:?}");
    }
}
