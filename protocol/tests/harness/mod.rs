//! The driver the protocol tests play by hand: one `Core` over a
//! `MemStore`, persisting before it sends, collecting its actions; and
//! the few jobs and lookups the tests share. Each test file uses part of it.
#![allow(dead_code)]

use peerbatch_protocol::core::Destination;
use peerbatch_protocol::event::event_id;
use peerbatch_protocol::{
    Action, Command, Config, Core, EventBody, Identity, JobId, JobSpec, MemStore, Message, Millis,
    NodeId, Outcome, TaskRef, TaskResult, TaskSpec, TaskState, Transmit,
};

pub struct Node {
    pub seed: [u8; 32],
    pub core: Core<MemStore>,
    pub store: MemStore,
    pub actions: Vec<Action>,
}

impl Node {
    pub fn new(seed: u8, cfg: Config) -> Node {
        let seed = [seed; 32];
        let store = MemStore::default();
        let core = Core::new(
            Identity::from_seed(seed),
            cfg,
            store.clone(),
            Vec::new(),
            u64::from(seed[0]),
            Millis(0),
        );
        Node {
            seed,
            core,
            store,
            actions: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.core.node_id()
    }

    pub fn identity(&self) -> Identity {
        Identity::from_seed(self.seed)
    }

    /// Plays the driver: persist, then collect what is sent and what to do.
    pub fn pump(&mut self) -> Vec<Transmit> {
        while let Some((id, bytes)) = self.core.poll_persist() {
            self.store.put(id, bytes);
        }
        while let Some(f) = self.core.poll_forgetting() {
            self.store.apply(&f);
        }
        let mut sent = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            if let Message::Events { events } = &t.msg {
                for bytes in events {
                    assert!(self.store.contains(&event_id(bytes)), "sent before stored");
                }
            }
            sent.push(t);
        }
        while let Some(a) = self.core.poll_action() {
            self.actions.push(a);
        }
        sent
    }

    pub fn timeout(&mut self, now: u64) -> Vec<Transmit> {
        self.core.handle_timeout(Millis(now), now);
        self.pump()
    }

    pub fn runs(&self) -> Vec<(TaskRef, u32)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Run { task, attempt, .. } => Some((*task, *attempt)),
                Action::Kill { .. } => None,
            })
            .collect()
    }

    pub fn kills(&self) -> Vec<(TaskRef, u32)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Kill { task, attempt } => Some((*task, *attempt)),
                Action::Run { .. } => None,
            })
            .collect()
    }

    pub fn exit(
        &mut self,
        now: u64,
        task: TaskRef,
        attempt: u32,
        outcome: Outcome,
    ) -> Vec<Transmit> {
        self.core.task_exited(
            Millis(now),
            TaskResult {
                task,
                attempt,
                outcome,
                stdout: None,
                stderr: None,
                outputs: None,
                duration_ms: 5,
            },
        );
        self.pump()
    }

    /// Events `by` signed, arriving here by gossip from it.
    pub fn hear(&mut self, now: u64, by: &Identity, bodies: Vec<EventBody>) -> Vec<Transmit> {
        let events = bodies.into_iter().map(|b| by.sign(b).encode()).collect();
        self.core
            .handle_gossip(Millis(now), by.node_id(), Message::Events { events });
        self.pump()
    }
}

/// Every event in `sent`, as a gossip message from `from` to `to`.
pub fn deliver(now: u64, from: &Node, sent: &[Transmit], to: &mut Node) -> Vec<Transmit> {
    for t in sent {
        match &t.to {
            Destination::Gossip => {
                to.core.handle_gossip(Millis(now), from.id(), t.msg.clone());
            }
            Destination::Peer(p) if *p == to.id() => {
                to.core
                    .handle_message(Millis(now), from.id(), t.msg.clone())
            }
            Destination::Peer(_) => {}
        }
    }
    to.pump()
}

pub fn events_of(sent: &[Transmit]) -> Vec<Vec<u8>> {
    sent.iter()
        .filter_map(|t| match &t.msg {
            Message::Events { events } => Some(events.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn spec(tasks: u32, max_retries: u32) -> JobSpec {
    JobSpec::array(
        "core",
        TaskSpec::new("t", Command::Argv(vec!["true".into()]), max_retries),
        0,
        i64::from(tasks) - 1,
    )
}

pub fn submit(node: &mut Node, now: u64, tasks: u32, max_retries: u32) -> (JobId, Vec<Transmit>) {
    let (job, _) = node
        .core
        .submit(Millis(now), spec(tasks, max_retries), now)
        .expect("a valid job");
    (job, node.pump())
}

pub fn task(job: JobId, index: u32) -> TaskRef {
    TaskRef { job, index }
}

pub fn state(node: &Node, t: TaskRef) -> (TaskState, u32, Option<NodeId>) {
    let v = node.core.view(t).expect("a known task");
    (v.state, v.attempt, v.node)
}

/// Runs every attempt a lone node starts to `outcome` until `job` has no
/// task left; returns the time then.
pub fn run_to_end(a: &mut Node, job: JobId, outcome: Outcome) -> u64 {
    run_to_end_from(a, job, 0, outcome)
}

/// As [`run_to_end`], from time `start`, leaving other jobs' attempts be.
pub fn run_to_end_from(a: &mut Node, job: JobId, start: u64, outcome: Outcome) -> u64 {
    let total = a.core.ledger().job(&job).expect("a known job").task_count;
    let (mut now, mut done) = (start, 0);
    while a.core.progress(&job).done() < total {
        let runs: Vec<_> = a.runs().into_iter().filter(|(t, _)| t.job == job).collect();
        if done < runs.len() {
            let (t, attempt) = runs[done];
            done += 1;
            now += 1;
            a.exit(now, t, attempt, outcome.clone());
        } else {
            now = a.core.poll_timeout().expect("a timer").0.max(now);
            a.timeout(now);
        }
        assert!(now < 600_000, "stuck: {:?}", a.core.progress(&job));
    }
    now
}
