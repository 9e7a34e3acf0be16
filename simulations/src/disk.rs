//! A simulated node's disk: its durable store and the write queue in front.
//!
//! Owns what survives a crash. Writes handed out by a core are durable only
//! once flushed (group commit, as the node's outbox does); a transmit polled
//! after a write waits for that flush, one with no write ahead of it goes at
//! once. A crash loses the queue; a wipe loses the store too. Must not
//! decide when to flush (the world schedules it) or look inside events
//! beyond the jobs their task facts name (the index every store keeps).
//!
//! Every node of a run that stores an event stores the same bytes, so an
//! event is kept once for the whole run ([`Registry`]: its bytes and the
//! jobs it names, decoded once) and a node's store is a set of bits over
//! the registry's slots: a mesh of 1,000 nodes holding 200,000 events
//! each keeps 25 KB of bits per node instead of a B-tree of ids and one of
//! (job, id) pairs (about 120 bytes an event, 24 GB in all).

use peerbatch_protocol::ledger::Tombstone;
use peerbatch_protocol::storage::Forgetting;
use peerbatch_protocol::{codec, Event, EventId, EventStore, JobId, Transmit};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Every event some core of this run verified (or signed) and persisted,
/// each in one slot: shared by all nodes' stores, so that each signature
/// is checked once per run instead of once per node, and each event's
/// bytes and index entries are held once.
#[derive(Default)]
pub struct Registry {
    slots: BTreeMap<EventId, u32>,
    ids: Vec<EventId>,
    bytes: Vec<Rc<[u8]>>,
    /// Every registered event that names the job in its task facts.
    by_job: BTreeMap<JobId, Vec<u32>>,
}

pub type Vouched = Rc<RefCell<Registry>>;

impl Registry {
    /// The slot of an event, registering it (and indexing it by the jobs
    /// its task facts name) if it is new.
    fn register(&mut self, id: EventId, bytes: Vec<u8>) -> u32 {
        if let Some(&slot) = self.slots.get(&id) {
            return slot;
        }
        let slot = u32::try_from(self.bytes.len()).expect("fewer than 2^32 events per run");
        if let Ok(event) = codec::decode::<Event>(&bytes) {
            for job in event.body.task_jobs() {
                self.by_job.entry(job).or_default().push(slot);
            }
        }
        self.slots.insert(id, slot);
        self.ids.push(id);
        self.bytes.push(bytes.into());
        slot
    }

    fn slot(&self, id: &EventId) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// The bytes of a registered event.
    pub fn get(&self, id: &EventId) -> Option<&[u8]> {
        self.slot(id).map(|slot| &*self.bytes[slot as usize])
    }
}

/// Which registry slots one node holds.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn contains(&self, slot: u32) -> bool {
        let (word, bit) = (slot as usize / 64, slot % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn insert(&mut self, slot: u32) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn remove(&mut self, slot: u32) {
        if let Some(w) = self.0.get_mut(slot as usize / 64) {
            *w &= !(1 << (slot % 64));
        }
    }
}

/// The store a simulated core reads: the slots durable on this node, their
/// bytes in the run-wide registry.
#[derive(Clone)]
pub struct SimStore {
    durable: Rc<RefCell<Bits>>,
    registry: Vouched,
    /// The jobs this node forgot.
    tombstones: Rc<RefCell<BTreeMap<JobId, Tombstone>>>,
}

impl EventStore for SimStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>> {
        let registry = self.registry.borrow();
        let slot = registry.slot(id)?;
        self.durable
            .borrow()
            .contains(slot)
            .then(|| registry.bytes[slot as usize].to_vec())
    }

    fn known_valid(&self, id: &EventId) -> bool {
        self.registry.borrow().slots.contains_key(id)
    }

    /// In id order, as a store indexed by (job, id) lists them.
    fn job_events(&self, job: &JobId) -> Vec<Vec<u8>> {
        let registry = self.registry.borrow();
        let durable = self.durable.borrow();
        let Some(slots) = registry.by_job.get(job) else {
            return Vec::new();
        };
        let mut held: Vec<u32> = (slots.iter().copied())
            .filter(|slot| durable.contains(*slot))
            .collect();
        held.sort_by_key(|slot| registry.ids[*slot as usize]);
        (held.iter())
            .map(|slot| registry.bytes[*slot as usize].to_vec())
            .collect()
    }

    fn tombstones(&self) -> Vec<(JobId, Tombstone)> {
        let tombstones = self.tombstones.borrow();
        tombstones.iter().map(|(j, t)| (*j, *t)).collect()
    }
}

impl SimStore {
    /// Removes durable events (and so their index entries).
    fn remove(&self, ids: &[EventId]) {
        let registry = self.registry.borrow();
        let mut durable = self.durable.borrow_mut();
        for slot in ids.iter().filter_map(|id| registry.slot(id)) {
            durable.remove(slot);
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
    pub fn new(registry: Vouched, group_commit: bool) -> Disk {
        Disk {
            store: SimStore {
                durable: Rc::default(),
                registry,
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
        let slot = self.store.registry.borrow().slot(id);
        slot.is_some_and(|slot| self.store.durable.borrow().contains(slot))
    }

    /// Every durable event, in id order: what a restarted core reads.
    pub fn events(&self) -> Vec<Vec<u8>> {
        let durable = self.store.durable.borrow();
        let registry = self.store.registry.borrow();
        (registry.slots.values())
            .filter(|slot| durable.contains(**slot))
            .map(|slot| registry.bytes[*slot as usize].to_vec())
            .collect()
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
        let slot = self.store.registry.borrow_mut().register(id, bytes);
        self.store.durable.borrow_mut().insert(slot);
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
        self.store.tombstones = Rc::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerbatch_protocol::event::{event_id, Claim, EventBody, Identity};
    use peerbatch_protocol::TaskRef;

    const JOB: JobId = JobId([7; 8]);

    /// A signed claim of task `index` of `JOB`: its id and bytes.
    fn claim(index: u32) -> (EventId, Vec<u8>) {
        let task = TaskRef { job: JOB, index };
        let claims = vec![Claim { task, attempt: 0 }];
        let bytes = Identity::from_seed([1; 32])
            .sign(EventBody::Claims { claims })
            .encode();
        (event_id(&bytes), bytes)
    }

    fn disk(registry: &Vouched, events: &[(EventId, Vec<u8>)]) -> Disk {
        let mut disk = Disk::new(registry.clone(), false);
        disk.write(events.to_vec(), Vec::new(), Vec::new());
        disk
    }

    #[test]
    fn nodes_storing_one_event_share_one_copy_and_each_answers_only_for_its_own() {
        let registry = Vouched::default();
        let (a, b) = (claim(0), claim(1));
        let one = disk(&registry, &[a.clone(), b.clone()]);
        let two = disk(&registry, std::slice::from_ref(&a));
        assert_eq!(registry.borrow().bytes.len(), 2, "each event held once");
        assert_eq!(two.store().get(&a.0), Some(a.1.clone()));
        assert_eq!(two.store().get(&b.0), None, "not stored on node two");
        assert!(
            two.store().known_valid(&b.0),
            "verified somewhere in the run"
        );
        assert_eq!(one.store().job_events(&JOB).len(), 2);
        assert_eq!(two.store().job_events(&JOB), vec![a.1]);
    }

    #[test]
    fn job_events_and_a_restart_read_events_in_id_order_and_a_forgetting_removes_them() {
        let registry = Vouched::default();
        let mut events: Vec<_> = (0..20).map(claim).collect();
        let mut disk = disk(&registry, &events);
        events.sort();
        let bytes: Vec<Vec<u8>> = events.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(disk.store().job_events(&JOB), bytes);
        assert_eq!(disk.events(), bytes);
        let gone: Vec<EventId> = events[..5].iter().map(|(id, _)| *id).collect();
        disk.write(Vec::new(), vec![Forgetting::Events(gone)], Vec::new());
        assert_eq!(disk.store().job_events(&JOB), bytes[5..].to_vec());
        assert!(!disk.durable(&events[0].0) && disk.durable(&events[5].0));
        disk.wipe();
        assert!(disk.events().is_empty() && disk.store().job_events(&JOB).is_empty());
    }
}
