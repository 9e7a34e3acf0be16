//! Where a core reads events it has persisted.
//!
//! Owns the [`EventStore`] trait and an in-memory implementation for tests and
//! the simulator (which indexes events by the jobs their task facts name,
//! as every store must). Writes do not go through here: the core hands them out with
//! `poll_persist`, so the driver can flush them before anything is sent.

use crate::event::Event;
use crate::ids::{BlobId, EventId, JobId};
use crate::ledger::Tombstone;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Read access to durable events, by id.
pub trait EventStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>>;

    /// Every stored event that states facts about tasks of `job` (see
    /// [`crate::event::EventBody::task_jobs`]), in any order: what the core
    /// reads back for a finished job it no longer holds in memory.
    fn job_events(&self, job: &JobId) -> Vec<Vec<u8>>;

    /// Whether the event with this id is already known to carry a valid
    /// signature (verified before by this process), so the core may skip
    /// checking it again. The id is the hash of the bytes, so a true answer
    /// is only ever about these exact bytes. Default: never.
    fn known_valid(&self, _id: &EventId) -> bool {
        false
    }

    /// The tombstones of the jobs this store's node forgot (see
    /// [`Forgetting`]), read once when the core starts.
    fn tombstones(&self) -> Vec<(JobId, Tombstone)>;
}

/// What the store must do because the core forgot something; polled with
/// `Core::poll_forgetting` after the persists before it were polled, and
/// carried out after them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forgetting {
    /// A job was forgotten: remove these events (and their index entries)
    /// and keep its tombstone. `blobs` are the logs and outputs its results
    /// named, which the node stops keeping for it.
    Job {
        job: JobId,
        tombstone: Tombstone,
        events: Vec<EventId>,
        blobs: Vec<BlobId>,
    },
    /// Remove these events: stored copies about jobs already forgotten
    /// (found when the core started).
    Events(Vec<EventId>),
    /// This job's tombstone is no longer needed, nor these requests to
    /// forget it.
    DropTombstone { job: JobId, events: Vec<EventId> },
}

impl Forgetting {
    /// The events to remove.
    pub fn events(&self) -> &[EventId] {
        match self {
            Forgetting::Job { events, .. }
            | Forgetting::Events(events)
            | Forgetting::DropTombstone { events, .. } => events,
        }
    }

    /// The tombstone to keep (`Some`) or drop (`None`) for a job, if any.
    pub fn tombstone(&self) -> Option<(JobId, Option<Tombstone>)> {
        match self {
            Forgetting::Job { job, tombstone, .. } => Some((*job, Some(*tombstone))),
            Forgetting::Events(_) => None,
            Forgetting::DropTombstone { job, .. } => Some((*job, None)),
        }
    }

    /// Keeps or drops its tombstone in a store's map of them.
    pub fn apply_to(&self, tombstones: &mut BTreeMap<JobId, Tombstone>) {
        match self.tombstone() {
            Some((job, Some(t))) => drop(tombstones.insert(job, t)),
            Some((job, None)) => drop(tombstones.remove(&job)),
            None => {}
        }
    }
}

/// Events in memory, shared between a simulated node's core and its "disk".
#[derive(Clone, Default)]
pub struct MemStore {
    events: Rc<RefCell<BTreeMap<EventId, Vec<u8>>>>,
    by_job: Rc<RefCell<JobIndex>>,
    tombstones: Rc<RefCell<BTreeMap<JobId, Tombstone>>>,
}

/// Event ids by the jobs their task facts name.
pub type JobIndex = BTreeSet<(JobId, EventId)>;

/// Adds an event's entries to a job index (bytes that do not decode name
/// no job).
pub fn index_event(index: &mut JobIndex, id: EventId, bytes: &[u8]) {
    if let Ok(event) = crate::codec::decode::<Event>(bytes) {
        index.extend(event.body.task_jobs().into_iter().map(|job| (job, id)));
    }
}

/// Takes an event's entries out of a job index.
pub fn unindex_event(index: &mut JobIndex, id: EventId, bytes: &[u8]) {
    let mut entries = JobIndex::new();
    index_event(&mut entries, id, bytes);
    for entry in entries {
        index.remove(&entry);
    }
}

/// The ids a job index holds for `job`.
pub fn indexed(index: &JobIndex, job: &JobId) -> Vec<EventId> {
    let lo = (*job, EventId([0; 32]));
    let hi = (*job, EventId([0xff; 32]));
    index.range(lo..=hi).map(|(_, id)| *id).collect()
}

impl MemStore {
    pub fn put(&self, id: EventId, bytes: Vec<u8>) {
        index_event(&mut self.by_job.borrow_mut(), id, &bytes);
        self.events.borrow_mut().insert(id, bytes);
    }

    /// Carries out what the core's forgetting asks of its store.
    pub fn apply(&self, forgetting: &Forgetting) {
        let mut events = self.events.borrow_mut();
        let mut index = self.by_job.borrow_mut();
        for id in forgetting.events() {
            if let Some(bytes) = events.remove(id) {
                unindex_event(&mut index, *id, &bytes);
            }
        }
        forgetting.apply_to(&mut self.tombstones.borrow_mut());
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.events.borrow().contains_key(id)
    }

    /// Every stored event, in id order.
    pub fn all(&self) -> Vec<Vec<u8>> {
        self.events.borrow().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.events.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.borrow().is_empty()
    }
}

impl EventStore for MemStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>> {
        self.events.borrow().get(id).cloned()
    }

    fn job_events(&self, job: &JobId) -> Vec<Vec<u8>> {
        let ids = indexed(&self.by_job.borrow(), job);
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    fn tombstones(&self) -> Vec<(JobId, Tombstone)> {
        let tombstones = self.tombstones.borrow();
        tombstones.iter().map(|(j, t)| (*j, *t)).collect()
    }
}
