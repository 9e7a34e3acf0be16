//! The ids of the events a ledger holds, for telling a duplicate from a new
//! event and for listing a bucket in anti-entropy.
//!
//! Owns the set and where each id sits in it: the ids of events about live
//! work in a B-tree, inserted one at a time; those the ledger retires (events
//! about sealed or forgotten jobs only) in one sorted vector, 32 bytes an id
//! against about 46 in the B-tree, made afresh in one allocation at each
//! retirement, so no long-lived B-tree node is left among a finished job's
//! freed pages. Every id is in one of the two; the set's answers do not depend
//! on which. Must not decide which events retire (`ledger::seal` does).

use crate::ids::EventId;
use crate::sync::bucket_bounds;
use std::collections::{btree_set, BTreeSet};
use std::iter::Peekable;

#[derive(Clone, Debug, Default)]
pub struct EventIds {
    live: BTreeSet<EventId>,
    /// Sorted, without repeats, disjoint from `live`.
    retired: Vec<EventId>,
}

impl EventIds {
    pub fn contains(&self, id: &EventId) -> bool {
        self.live.contains(id) || self.retired.binary_search(id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.live.len() + self.retired.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many ids are in the B-tree (not retired).
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Every id, in order.
    pub fn iter(&self) -> Merged<'_> {
        self.range(&EventId([0; 32]), &EventId([0xff; 32]))
    }

    /// The ids from `lo` to `hi` (both included), in order.
    pub fn range(&self, lo: &EventId, hi: &EventId) -> Merged<'_> {
        let from = self.retired.partition_point(|id| id < lo);
        let to = self.retired.partition_point(|id| id <= hi);
        Merged {
            live: self.live.range(*lo..=*hi).peekable(),
            retired: self.retired[from..to.max(from)].iter().peekable(),
        }
    }

    /// The ids in anti-entropy bucket `bucket`, in order.
    pub fn bucket(&self, bucket: u8) -> Merged<'_> {
        let (lo, hi) = bucket_bounds(bucket);
        self.range(&lo, &hi)
    }

    /// Adds `id` as live; false if the set held it already.
    pub(super) fn insert(&mut self, id: EventId) -> bool {
        !self.contains(&id) && self.live.insert(id)
    }

    /// Moves those of `ids` that are live into the retired vector.
    pub(super) fn retire(&mut self, ids: impl IntoIterator<Item = EventId>) {
        let mut moved: Vec<EventId> = ids.into_iter().filter(|id| self.live.remove(id)).collect();
        if moved.is_empty() {
            return;
        }
        moved.sort_unstable();
        let mut merged = Vec::with_capacity(self.retired.len() + moved.len());
        let (mut old, mut new) = (self.retired.iter().peekable(), moved.iter().peekable());
        while let Some(id) = next_smaller(&mut old, &mut new) {
            merged.push(*id);
        }
        self.retired = merged;
    }

    /// Takes `ids` out of the set; returns those it held.
    pub(super) fn remove_all(&mut self, ids: &BTreeSet<EventId>) -> Vec<EventId> {
        let mut removed: Vec<EventId> = ids
            .iter()
            .filter(|id| self.live.remove(id))
            .copied()
            .collect();
        let retired = self.retired.len();
        if ids.iter().any(|id| self.retired.binary_search(id).is_ok()) {
            self.retired.retain(|id| {
                let gone = ids.contains(id);
                if gone {
                    removed.push(*id);
                }
                !gone
            });
        }
        if self.retired.len() < retired {
            self.retired.shrink_to_fit();
        }
        removed
    }
}

impl PartialEq for EventIds {
    fn eq(&self, other: &EventIds) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for EventIds {}

/// The smaller head of two sorted iterators, taken from it.
fn next_smaller<'a, A, B>(a: &mut Peekable<A>, b: &mut Peekable<B>) -> Option<&'a EventId>
where
    A: Iterator<Item = &'a EventId>,
    B: Iterator<Item = &'a EventId>,
{
    match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    }
}

/// The live and retired ids of a range, merged in order.
pub struct Merged<'a> {
    live: Peekable<btree_set::Range<'a, EventId>>,
    retired: Peekable<std::slice::Iter<'a, EventId>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a EventId;

    fn next(&mut self) -> Option<&'a EventId> {
        next_smaller(&mut self.live, &mut self.retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> EventId {
        EventId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn retired_ids_answer_as_live_ones_do() {
        let mut all = EventIds::default();
        let mut live = EventIds::default();
        for i in 0..500 {
            assert!(all.insert(id(i)));
            live.insert(id(i));
        }
        all.retire((0..200).map(id));
        all.retire((150..300).map(id));
        assert_eq!(all.live_len(), 200);
        assert_eq!(all, live);
        assert!(!all.insert(id(10)));
        assert!(all.contains(&id(299)) && !all.contains(&id(500)));
        for b in [0u8, 7, 255] {
            assert!(all.bucket(b).eq(live.bucket(b)));
            assert!(all.bucket(b).all(|i| i.0[0] == b));
        }
        let gone: BTreeSet<EventId> = [5, 250, 400, 600].into_iter().map(id).collect();
        let mut removed = all.remove_all(&gone);
        removed.sort();
        let mut expected: Vec<EventId> = [5, 250, 400].into_iter().map(id).collect();
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(all.len(), 497);
        assert!(!all.contains(&id(5)) && !all.contains(&id(400)));
    }
}
