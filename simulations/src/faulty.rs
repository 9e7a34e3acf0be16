//! The faulty member: one node of the run holds the cluster key and runs its
//! core like any other, but also signs, with its own valid key, events it
//! may not write — results for attempts it never claimed, reclaims and
//! claims past a task's last attempt, cancels of others' jobs, drains of
//! other nodes and drains dated at the end of time, jobs that validation
//! refuses, batches past their bounds, scheduled jobs of schedules that do
//! not exist — and malformed bytes, and replays of others' events.
//!
//! Owns the draw of those events from its own RNG stream (so a run's other
//! draws are unchanged) and the set of events forged, which invariant 7
//! (`invariants::check_authority`) folds away to show they changed nothing.
//! Must not route, deliver or judge anything: the world sends what it
//! draws, and the cores decide.

use crate::config::SimConfig;
use crate::invariants::Job;
use crate::streams::Stream;
use peerbatch_protocol::event::{event_id, Claim};
use peerbatch_protocol::schedule::Occurrence;
use peerbatch_protocol::trigger::{Cause, Firing, Origin};
use peerbatch_protocol::SeededRng;
use peerbatch_protocol::{
    BlobId, Command, Core, EventBody, EventId, EventStore, Identity, Input, JobSpec, NodeId,
    NodeInfo, Outcome, Source, TaskRef, TaskResult, TaskSpec, TaskState,
};
use rand::Rng;
use std::collections::BTreeSet;

/// The kinds of event the faulty member draws, one per forging.
const KINDS: u32 = 10;

pub struct Faulty {
    /// Its index among the run's nodes.
    pub node: usize,
    identity: Identity,
    rng: SeededRng,
    /// Every well-formed event it signed that it may not write: valid
    /// events the cores keep as facts but must never act on.
    pub forged: BTreeSet<EventId>,
}

impl Faulty {
    /// The faulty member of a run, if the config has one: a node drawn
    /// from its own stream, with that node's key.
    pub fn of(cfg: &SimConfig, node_seeds: &[[u8; 32]]) -> Option<Faulty> {
        if !cfg.faulty {
            return None;
        }
        let mut rng = Stream::Faulty.rng(cfg.seed);
        let node = rng.gen_range(0..node_seeds.len());
        Some(Faulty {
            node,
            identity: Identity::from_seed(node_seeds[node]),
            rng,
            forged: BTreeSet::new(),
        })
    }

    pub fn id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// How long until it forges again.
    pub fn pause_ms(&mut self) -> u64 {
        self.rng.gen_range(50..=1_000)
    }

    /// A delay to hold one forged message back by, so that forged events
    /// arrive out of order with everything else.
    pub fn delay_ms(&mut self) -> u64 {
        self.rng.gen_range(0..=2_000)
    }

    /// Draws one forging from what its own core knows: the encoded events
    /// to send (each to every node) and a word for the trace.
    pub fn draw<S: EventStore>(
        &mut self,
        core: &Core<S>,
        store: &S,
        jobs: &[Job],
        nodes: &[NodeId],
    ) -> (Vec<Vec<u8>>, &'static str) {
        let job = (!jobs.is_empty()).then(|| jobs[self.rng.gen_range(0..jobs.len())]);
        // Another node: the next one when the draw names this one (an
        // event "malformed" with its own id as author is simply its own,
        // and a drain it asks of itself counts).
        let pick = self.rng.gen_range(0..nodes.len());
        let other = match nodes[pick] == self.id() {
            true => nodes[(pick + 1) % nodes.len()],
            false => nodes[pick],
        };
        match self.rng.gen_range(0..KINDS) {
            0 => (
                self.foreign_result(core, job),
                "a result for another node's attempt",
            ),
            1 => (
                self.past_the_last(job),
                "claims and reclaims past the last attempt",
            ),
            2 => (self.cancel(core, job), "a cancel of another node's job"),
            3 => (self.drain(other), "a drain of another node"),
            4 => (self.drain(self.id()), "a drain dated at the end of time"),
            5 => (self.invalid_job(), "a job validation refuses"),
            6 => (self.oversized(job), "batches past their bounds"),
            7 => (
                self.stray_origin(),
                "a job of a schedule or function timer that does not exist",
            ),
            8 => (self.malformed(other), "malformed bytes"),
            _ => (self.replay(core, store), "a replay of another node's event"),
        }
    }

    /// Signs `body`; it is a forgery that must change nothing.
    fn forge(&mut self, body: EventBody) -> Vec<u8> {
        let bytes = self.identity.sign(body).encode();
        self.forged.insert(event_id(&bytes));
        bytes
    }

    /// A success for an attempt another node runs and this one never
    /// claimed (nor will: its core saw the other's claim).
    fn foreign_result<S: EventStore>(&mut self, core: &Core<S>, job: Option<Job>) -> Vec<Vec<u8>> {
        let Some(job) = job else {
            return Vec::new();
        };
        let me = self.id();
        let theirs: Vec<(TaskRef, u32)> = core
            .views(job.id)
            .into_iter()
            .filter(|v| v.state == TaskState::Running && v.node != Some(me))
            .filter(|v| !core.ledger().claimed_by(&v.task, v.attempt, &me))
            .map(|v| (v.task, v.attempt))
            .collect();
        if theirs.is_empty() {
            return Vec::new();
        }
        let (task, attempt) = theirs[self.rng.gen_range(0..theirs.len())];
        let result = TaskResult {
            task,
            attempt,
            outcome: Outcome::Exited(0),
            stdout: Some(BlobId([0xfa; 32])),
            stderr: None,
            outputs: Some(BlobId([0xfa; 32])),
            duration_ms: 1,
        };
        vec![self.forge(EventBody::Finished {
            results: vec![result],
        })]
    }

    /// Claims and reclaims of attempts past the job's max retries, which
    /// no node ever reaches: one event would fail every task if it counted.
    fn past_the_last(&mut self, job: Option<Job>) -> Vec<Vec<u8>> {
        let Some(job) = job else {
            return Vec::new();
        };
        let past = job.max_retries + 1 + self.rng.gen_range(0..3);
        let claims: Vec<Claim> = (0..job.tasks.min(500))
            .map(|index| Claim {
                task: TaskRef { job: job.id, index },
                attempt: past,
            })
            .collect();
        vec![
            self.forge(EventBody::Reclaimed {
                claims: claims.clone(),
            }),
            self.forge(EventBody::Claims { claims }),
        ]
    }

    fn cancel<S: EventStore>(&mut self, core: &Core<S>, job: Option<Job>) -> Vec<Vec<u8>> {
        let Some(job) = job else {
            return Vec::new();
        };
        if core.ledger().may_cancel(&job.id, &self.id()) {
            return Vec::new(); // its own job: a cancel it may write
        }
        vec![self.forge(EventBody::JobCancelled { job: job.id })]
    }

    /// A drain of `node`: another node's, at any time, or its own at the
    /// end of time.
    fn drain(&mut self, node: NodeId) -> Vec<Vec<u8>> {
        let at_ms = if node == self.id() {
            u64::MAX
        } else {
            self.rng.gen_range(0..=u64::MAX)
        };
        vec![self.forge(EventBody::DrainRequested {
            node,
            drain: true,
            at_ms,
        })]
    }

    fn invalid_job(&mut self) -> Vec<Vec<u8>> {
        let task = |id: &str| TaskSpec::new(id, Command::Shell("true".into()), 0);
        let mut job = JobSpec::array("forged", task("t"), 0, 0);
        match self.rng.gen_range(0..3) {
            0 => job = JobSpec::array("forged", task("t"), 0, 1_999_999),
            1 => job.groups[0].spec_mut().inputs.push(Input {
                path: "../../..".into(),
                source: Source::Blob(BlobId([1; 32])),
                within: String::new(),
            }),
            _ => job.groups[0].spec_mut().outputs.push("/etc/*".into()),
        }
        let nonce = self.rng.gen();
        vec![self.forge(EventBody::JobSubmitted {
            job,
            submitted_ms: 0,
            nonce,
        })]
    }

    fn oversized(&mut self, job: Option<Job>) -> Vec<Vec<u8>> {
        let task = TaskRef {
            job: job.map_or(peerbatch_protocol::JobId([0; 8]), |j| j.id),
            index: 0,
        };
        let claims = (0..2_001).map(|attempt| Claim { task, attempt }).collect();
        let info = NodeInfo {
            slots: 1,
            memory_mb: 0,
            gpus: 0,
            labels: vec![("k".into(), "v".repeat(10_000))],
            draining: false,
            addrs: Vec::new(),
            version: String::new(),
        };
        vec![
            self.forge(EventBody::Claims { claims }),
            self.forge(EventBody::NodeAnnounce {
                seq: u64::MAX,
                info,
            }),
        ]
    }

    /// A job fired by a schedule or, on odd times, a function timer that
    /// does not exist (no extra draw: the time's parity chooses).
    fn stray_origin(&mut self) -> Vec<Vec<u8>> {
        let mut job = JobSpec::array(
            "stray",
            TaskSpec::new("t", Command::Shell("true".into()), 0),
            0,
            0,
        );
        let at_ms = self.rng.gen_range(0..1 << 40);
        job.origin = Some(if at_ms % 2 == 0 {
            Origin::Schedule(Occurrence {
                schedule: "no-such-schedule".into(),
                at_ms,
            })
        } else {
            Origin::Function(Box::new(Firing {
                function: "no-such-function".into(),
                version: EventId([7; 32]),
                cause: Cause::Timer { at_ms },
            }))
        });
        let nonce = self.rng.gen();
        vec![self.forge(EventBody::JobSubmitted {
            job,
            submitted_ms: 0,
            nonce,
        })]
    }

    /// Bytes no node accepts: garbage, or an event that names `other` as
    /// its author under this node's signature.
    fn malformed(&mut self, other: NodeId) -> Vec<Vec<u8>> {
        if self.rng.gen_bool(0.5) {
            let len = self.rng.gen_range(0..200);
            return vec![(0..len).map(|_| self.rng.gen()).collect()];
        }
        let mut event = self.identity.sign(EventBody::DrainRequested {
            node: other,
            drain: true,
            at_ms: 0,
        });
        event.author = other;
        vec![event.encode()]
    }

    /// Another node's event, sent again: a relay, which changes nothing.
    fn replay<S: EventStore>(&mut self, core: &Core<S>, store: &S) -> Vec<Vec<u8>> {
        let ids = core.ledger().ids();
        if ids.is_empty() {
            return Vec::new();
        }
        let pick = self.rng.gen_range(0..ids.len());
        ids.iter()
            .nth(pick)
            .and_then(|id| store.get(id))
            .into_iter()
            .collect()
    }
}
