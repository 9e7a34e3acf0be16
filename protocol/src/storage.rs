//! Where a core reads events it has persisted.
//!
//! Owns the [`EventStore`] trait and an in-memory implementation for tests and
//! the simulator. Writes do not go through here: the core hands them out with
//! `poll_persist`, so the driver can flush them before anything is sent.

use crate::ids::EventId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Read access to durable events, by id.
pub trait EventStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>>;

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
}

impl MemStore {
    pub fn put(&self, id: EventId, bytes: Vec<u8>) {
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
}
