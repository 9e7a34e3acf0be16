//! A simulated node's disk: its durable store and the write queue in front.
//!
//! Owns what survives a crash. Writes handed out by a core are durable only
//! once flushed (group commit, as the node's outbox does); a transmit polled
//! after a write waits for that flush, one with no write ahead of it goes at
//! once. A crash loses the queue; a wipe loses the store too. Must not
//! decide when to flush (the world schedules it) or look inside events.

use peerbatch_protocol::ledger::Tombstone;
use peerbatch_protocol::storage::{index_event, indexed, unindex_event, Forgetting, JobIndex};
use peerbatch_protocol::{EventId, EventStore, JobId, Transmit};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

/// Every event some core of this run verified (or signed) and persisted,
/// with its bytes: shared by all nodes' stores, so that each signature is
/// checked once per run instead of once per node and each event's bytes
/// are held once.
pub type Vouched = Rc<RefCell<BTreeMap<EventId, Rc<[u8]>>>>;

/// The store a simulated core reads: the ids durable on this node, their
/// bytes in the run-wide map.
#[derive(Clone)]
pub struct SimStore {
    durable: Rc<RefCell<BTreeSet<EventId>>>,
    /// The durable events by the jobs their task facts name.
    by_job: Rc<RefCell<JobIndex>>,
    vouched: Vouched,
    /// The jobs this node forgot.
    tombstones: Rc<RefCell<BTreeMap<JobId, Tombstone>>>,
}

impl EventStore for SimStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>> {
        if !self.durable.borrow().contains(id) {
            return None;
        }
        self.vouched.borrow().get(id).map(|b| b.to_vec())
    }

    fn known_valid(&self, id: &EventId) -> bool {
        self.vouched.borrow().contains_key(id)
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

impl SimStore {
    /// Removes durable events and their index entries.
    fn remove(&self, ids: &[EventId]) {
        let bytes = self.vouched.borrow();
        let mut durable = self.durable.borrow_mut();
        let mut by_job = self.by_job.borrow_mut();
        for id in ids {
            if let (true, Some(b)) = (durable.remove(id), bytes.get(id)) {
                unindex_event(&mut by_job, *id, b);
            }
        }
    }

    /// Carries out a core's forgetting.
    fn forget(&self, forgetting: &Forgetting) {
        self.remove(forgetting.events());
        forgetting.apply_to(&mut self.tombstones.borrow_mut());
    }
}

enum Write {
    Persist(EventId, Vec<u8>),
    Forget(Forgetting),
    Send(Transmit),
}

pub struct Disk {
    store: SimStore,
    queue: VecDeque<Write>,
    /// Writes wait for a flush (else they are durable when handed out).
    group_commit: bool,
}

impl Disk {
    pub fn new(vouched: Vouched, group_commit: bool) -> Disk {
        Disk {
            store: SimStore {
                durable: Rc::default(),
                by_job: Rc::default(),
                vouched,
                tombstones: Rc::default(),
            },
            queue: VecDeque::new(),
            group_commit,
        }
    }

    pub fn store(&self) -> SimStore {
        self.store.clone()
    }

    pub fn durable(&self, id: &EventId) -> bool {
        self.store.durable.borrow().contains(id)
    }

    /// Every durable event, in id order: what a restarted core reads.
    pub fn events(&self) -> Vec<Vec<u8>> {
        let durable = self.store.durable.borrow();
        let bytes = self.store.vouched.borrow();
        durable.iter().map(|id| bytes[id].to_vec()).collect()
    }

    /// The bytes of an event written here but not flushed yet.
    pub fn queued(&self, id: &EventId) -> Option<Vec<u8>> {
        self.queue.iter().find_map(|w| match w {
            Write::Persist(queued, bytes) if queued == id => Some(bytes.clone()),
            _ => None,
        })
    }

    /// Queues one pump's outputs; returns the transmits that may go now.
    /// True in the second field when a flush must be scheduled.
    pub fn write(
        &mut self,
        persists: Vec<(EventId, Vec<u8>)>,
        forgetting: Vec<Forgetting>,
        transmits: Vec<Transmit>,
    ) -> (Vec<Transmit>, bool) {
        let was_empty = self.queue.is_empty();
        if !self.group_commit {
            for (id, bytes) in persists {
                self.persist(id, bytes);
            }
            for f in &forgetting {
                self.store.forget(f);
            }
            return (transmits, false);
        }
        self.queue
            .extend(persists.into_iter().map(|(id, b)| Write::Persist(id, b)));
        self.queue.extend(forgetting.into_iter().map(Write::Forget));
        if self.queue.is_empty() {
            return (transmits, false);
        }
        self.queue.extend(transmits.into_iter().map(Write::Send));
        (Vec::new(), was_empty)
    }

    /// Makes every queued write durable; returns the transmits that waited.
    pub fn flush(&mut self) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(w) = self.queue.pop_front() {
            match w {
                Write::Persist(id, bytes) => self.persist(id, bytes),
                Write::Forget(f) => self.store.forget(&f),
                Write::Send(t) => out.push(t),
            }
        }
        out
    }

    fn persist(&mut self, id: EventId, bytes: Vec<u8>) {
        if self.store.durable.borrow_mut().insert(id) {
            index_event(&mut self.store.by_job.borrow_mut(), id, &bytes);
        }
        self.store
            .vouched
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| bytes.into());
    }

    /// Power loss: what was not flushed is gone. Returns how many writes.
    pub fn crash(&mut self) -> usize {
        let lost = self
            .queue
            .iter()
            .filter(|w| matches!(w, Write::Persist(..)))
            .count();
        self.queue.clear();
        lost
    }

    /// The storage is wiped: the node will start with nothing.
    pub fn wipe(&mut self) {
        self.crash();
        self.store.durable = Rc::default();
        self.store.by_job = Rc::default();
        self.store.tombstones = Rc::default();
    }
}
