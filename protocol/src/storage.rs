//! Where a core reads events it has persisted.
//!
//! Owns the [`EventStore`] trait and an in-memory implementation for tests and
//! the simulator (which indexes events by the jobs their task facts name,
//! as every store must). Writes do not go through here: the core hands them out with
//! `poll_persist`, so the driver can flush them before anything is sent.

use crate::event::Event;
use crate::ids::{EventId, JobId};
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
}

/// Events in memory, shared between a simulated node's core and its "disk".
#[derive(Clone, Default)]
pub struct MemStore {
    events: Rc<RefCell<BTreeMap<EventId, Vec<u8>>>>,
    by_job: Rc<RefCell<JobIndex>>,
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
}
