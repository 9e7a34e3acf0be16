//! Ledger events: what they say, how they are signed and how they are named.
//!
//! Owns the event types, the node identity that signs them and their id (the
//! blake3 hash of the encoded, signed event). Must not interpret events; the
//! fold in `ledger` does that.

use crate::codec::{self, CodecError};
pub use crate::exit::{Outcome, TaskResult};
use crate::ids::{BlobId, EventId, JobId, NodeId, TaskRef};
use crate::job::JobSpec;
pub use crate::resources::NodeInfo;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A (task, attempt) pair: the unit of claiming and reclaiming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Claim {
    pub task: TaskRef,
    pub attempt: u32,
}

/// How a command that is not a task attempt ended (a pool's start task).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideResult {
    pub outcome: Outcome,
    pub stdout: Option<BlobId>,
    pub stderr: Option<BlobId>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    JobSubmitted {
        job: JobSpec,
        /// Submitter's wall clock, for display and FIFO order only.
        submitted_ms: u64,
        nonce: u64,
    },
    JobCancelled {
        job: JobId,
    },
    Claims {
        claims: Vec<Claim>,
    },
    Finished {
        results: Vec<TaskResult>,
    },
    /// Attempts whose lease ran out; each makes the next attempt claimable.
    Reclaimed {
        claims: Vec<Claim>,
    },
    NodeAnnounce {
        seq: u64,
        info: NodeInfo,
    },
    /// Asks `node` to drain (finish running tasks, take no new ones) or to
    /// resume; the newest request per node wins.
    DrainRequested {
        node: NodeId,
        drain: bool,
        at_ms: u64,
    },
    /// A pool's start task: run once by each node labelled `pool=NAME` as
    /// it joins (a new definition replaces one of the same name).
    PoolDefined {
        name: String,
        start_task: crate::job::Command,
        /// The node offers the pool's label only after the task succeeded.
        wait_for_success: bool,
        added_ms: u64,
    },
    /// A node's run of a pool's start task (for definition `definition`).
    StartTaskFinished {
        pool: String,
        definition: EventId,
        result: SideResult,
    },
    /// A job schedule (a new version replaces one of the same name).
    ScheduleAdded {
        name: String,
        recurrence: crate::schedule::Recurrence,
        template: JobSpec,
        added_ms: u64,
    },
    /// Stops the schedule version added by event `added`.
    ScheduleRemoved {
        name: String,
        added: EventId,
    },
    /// An application package version: immutable once added.
    PackageAdded {
        name: String,
        version: String,
        blob: BlobId,
        added_ms: u64,
    },
    /// A function deployed, rolled back or removed.
    Function(crate::function::FunctionEvent),
    /// One step of forming a multi-instance task's gang for an attempt.
    Gang {
        task: TaskRef,
        attempt: u32,
        step: crate::gang::GangStep,
    },
    /// Asks every node to forget `job` as soon as it has ended, without
    /// waiting for its retention (counts from its submitter or an admin).
    JobForgotten {
        job: JobId,
    },
}

impl EventBody {
    /// The jobs whose tasks this event states facts about (claims,
    /// results, reclaims, gang steps), each once, in order.
    pub fn task_jobs(&self) -> std::collections::BTreeSet<JobId> {
        let tasks: Box<dyn Iterator<Item = &TaskRef>> = match self {
            EventBody::Claims { claims } | EventBody::Reclaimed { claims } => {
                Box::new(claims.iter().map(|c| &c.task))
            }
            EventBody::Finished { results } => Box::new(results.iter().map(|r| &r.task)),
            EventBody::Gang { task, .. } => Box::new(std::iter::once(task)),
            _ => Box::new(std::iter::empty()),
        };
        tasks.map(|t| t.job).collect()
    }
}

/// A signed, immutable ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub author: NodeId,
    pub body: EventBody,
    pub signature: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("event signature does not verify for author {0}")]
    BadSignature(NodeId),
}

/// A node's signing key; its public half is the node's id.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, body: EventBody) -> Event {
        let author = self.node_id();
        let signature = self
            .key
            .sign(&codec::encode(&(&author, &body)))
            .to_bytes()
            .to_vec();
        Event {
            author,
            body,
            signature,
        }
    }
}

impl Event {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and verifies an event from its bytes.
    pub fn decode_verified(bytes: &[u8]) -> Result<Event, EventError> {
        let event: Event = codec::decode(bytes)?;
        event.verify()?;
        Ok(event)
    }

    pub fn verify(&self) -> Result<(), EventError> {
        self.verify_with(&self.author_key()?)
    }

    /// The author's public key, to verify more of its events with
    /// [`Event::verify_with`] without parsing it again.
    pub fn author_key(&self) -> Result<VerifyingKey, EventError> {
        VerifyingKey::from_bytes(&self.author.0).map_err(|_| EventError::BadSignature(self.author))
    }

    /// Verifies the signature with a key from [`Event::author_key`]; a key
    /// of another author fails.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), EventError> {
        let bad = || EventError::BadSignature(self.author);
        if key.as_bytes() != &self.author.0 {
            return Err(bad());
        }
        let sig: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| bad())?;
        key.verify(
            &codec::encode(&(&self.author, &self.body)),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| bad())
    }
}

/// The id of an encoded event.
pub fn event_id(bytes: &[u8]) -> EventId {
    EventId(*blake3::hash(bytes).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_events_verify_and_tampering_is_caught() {
        let id = Identity::from_seed([7; 32]);
        let event = id.sign(EventBody::JobCancelled { job: JobId([1; 8]) });
        let bytes = event.encode();
        assert_eq!(Event::decode_verified(&bytes).unwrap(), event);
        let mut forged = event.clone();
        forged.body = EventBody::JobCancelled { job: JobId([2; 8]) };
        assert_eq!(
            Event::decode_verified(&forged.encode()),
            Err(EventError::BadSignature(id.node_id()))
        );
    }
}
