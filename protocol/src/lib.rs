//! peerbatch-protocol: the sans-IO core of peerbatch.
//!
//! This crate owns what nodes say to each other and how they agree: ledger
//! events and their signatures, the deterministic fold from events to task
//! state, rendezvous-hash claiming, leases, batching and anti-entropy sync.
//! It must not touch IO: no tokio, no sockets, no files, no wall clock and no
//! thread RNG. Time comes in as [`Millis`], randomness as a seeded RNG, and
//! every effect goes out through the `poll_*` methods of [`Core`].

#![forbid(unsafe_code)]

pub mod codec;
pub mod content;
pub mod core;
pub mod deps;
pub mod event;
pub mod exit;
pub mod files;
pub mod function;
pub mod gang;
pub mod hrw;
pub mod ids;
pub mod job;
pub mod ledger;
mod per_task;
pub mod resources;
pub mod schedule;
pub mod storage;
pub mod sync;
pub mod time;
pub mod trigger;
pub mod validate;
pub mod wire;

pub use crate::core::{Action, Config, Core, Destination, GossipVerdict, Transmit};
pub use event::{Event, EventBody, Identity, NodeInfo, Outcome, TaskResult};
pub use files::{Input, PackageUse, Source};
pub use ids::{BlobId, EventId, JobId, NodeId, TaskRef};
pub use job::{Command, JobSpec, ResolvedTask, TaskGroup, TaskSpec};
pub use ledger::{Ledger, TaskState, TaskView};
pub use storage::{EventStore, MemStore};
pub use time::Millis;
pub use wire::Message;

/// The random number generator of the core and the simulator: seeded, and
/// the same sequence on every platform and release (ChaCha8), so a
/// simulator seed replays exactly.
pub type SeededRng = rand_chacha::ChaCha8Rng;
