//! The core's answers in anti-entropy rounds, each bounded whatever a peer
//! asks.
//!
//! Owns replying to `SyncDigest` (the ids of differing buckets, at most
//! `Config::sync_ids_limit` of them, whole buckets from a random one on,
//! or a window of one bucket larger than that), to `SyncIds` (each bucket
//! once: the events the peer lacks, and a request for those it has) and to
//! `GetEvents` (each id once, at most the limit), and sending events in
//! messages of bounded size with at most [`REPLY_LIMIT`] bytes per answer.
//! What is left out is asked again in a later round. Must not decide when a
//! round starts (`Core::handle_timeout` and `after_input` do) or change the
//! ledger.

use super::Core;
use crate::ids::{EventId, NodeId};
use crate::storage::EventStore;
use crate::sync::{Fingerprints, BUCKETS};
use crate::time::Millis;
use crate::wire::Message;
use rand::Rng;
use std::collections::BTreeSet;

/// Most bytes of events put in one direct message.
pub(super) const DIRECT_LIMIT: usize = 8 << 20;
/// Most bytes of events sent in answer to one request (`GetEvents`, or the
/// events a `SyncIds` shows the peer lacks).
pub const REPLY_LIMIT: usize = 16 << 20;

impl<S: EventStore> Core<S> {
    /// Step 2 of a round: the ids this node holds in the buckets that
    /// differ from the peer's. A digest answered less than `sync_ms` ago,
    /// with nothing changed here since, is not answered again (a node that
    /// was busy finds it queued once per round the peer started).
    pub(super) fn answer_digest(&mut self, now: Millis, from: NodeId, theirs: &Fingerprints) {
        let differing = self.ledger.fingerprints().differing(theirs);
        let ours = self.ledger.fingerprints();
        if differing.is_empty()
            || !self
                .rounds
                .answer(from, theirs, ours, now, self.cfg.sync_ms)
        {
            return;
        }
        let limit = self.cfg.sync_ids_limit.max(1);
        // From a random differing bucket on, so that one bucket that never
        // converges (an event the peer refuses) cannot starve the others.
        let start = self.rng.gen_range(0..differing.len());
        let mut budget = limit;
        let mut buckets = Vec::new();
        let mut partial = false;
        for b in differing[start..].iter().chain(&differing[..start]) {
            let held = self.ledger.fingerprints().buckets[*b as usize].count as usize;
            if held > budget {
                if buckets.is_empty() {
                    // A bucket larger than a reply: a window of it.
                    let skip = self.rng.gen_range(0..=held - limit);
                    let ids = self.ledger.ids().bucket(*b).skip(skip).take(limit);
                    buckets.push((*b, ids.copied().collect()));
                    partial = true;
                }
                break;
            }
            budget -= held;
            buckets.push((*b, self.ledger.ids().bucket(*b).copied().collect()));
        }
        if !partial {
            self.rounds.listed(buckets.iter().map(|(b, _)| *b), now);
        }
        self.send(from, Message::SyncIds { buckets, partial });
    }

    /// Step 3: asks for what the peer listed and this node lacks (but for
    /// buckets it listed whole to a peer less than `sync_ms` ago: what it
    /// lacks there is on its way), and sends what it holds in those buckets
    /// that the peer did not list. A bucket named twice counts once.
    pub(super) fn answer_ids(
        &mut self,
        now: Millis,
        from: NodeId,
        buckets: Vec<(u8, Vec<EventId>)>,
        partial: bool,
    ) {
        let limit = self.cfg.sync_ids_limit.max(1);
        let window = partial.then(|| buckets.last().map(|(b, _)| *b)).flatten();
        let mut named = BTreeSet::new();
        let mut missing = Vec::new();
        let mut extra = Vec::new();
        for (b, theirs) in buckets.into_iter().take(BUCKETS) {
            if !named.insert(b) {
                continue;
            }
            let theirs: BTreeSet<EventId> = theirs.into_iter().collect();
            if !self.rounds.coming(b, now, self.cfg.sync_ms) {
                let lacking = theirs.iter().filter(|id| !self.ledger.contains(id));
                missing.extend(lacking.take(limit - missing.len()));
            }
            let mine = match (theirs.first(), theirs.last()) {
                (Some(lo), Some(hi)) if window == Some(b) => self.ledger.ids().range(lo, hi),
                _ => self.ledger.ids().bucket(b),
            };
            extra.extend(mine.filter(|id| !theirs.contains(id)).copied());
        }
        if !missing.is_empty() {
            self.send(from, Message::GetEvents { ids: missing });
        }
        self.send_events(from, &extra);
    }

    /// Sends the events asked for, each once, at most the limit of them.
    pub(super) fn answer_get(&mut self, from: NodeId, ids: Vec<EventId>) {
        let limit = self.cfg.sync_ids_limit.max(1);
        let ids: BTreeSet<EventId> = ids.into_iter().take(limit).collect();
        let ids: Vec<EventId> = ids.into_iter().collect();
        self.send_events(from, &ids);
    }

    /// Sends stored events to a peer in messages of bounded size, at most
    /// [`REPLY_LIMIT`] bytes in all: only those the ledger holds (an event
    /// of a job forgotten here may still be in the store until the driver
    /// carries the forgetting out, and must not be handed on meanwhile).
    pub(super) fn send_events(&mut self, peer: NodeId, ids: &[EventId]) {
        let mut batch = Vec::new();
        let (mut size, mut total) = (0, 0);
        for id in ids {
            if !self.ledger.contains(id) {
                continue;
            }
            let Some(bytes) = self.store.get(id) else {
                continue;
            };
            if total + bytes.len() > REPLY_LIMIT && total > 0 {
                break;
            }
            total += bytes.len();
            if size + bytes.len() > DIRECT_LIMIT && !batch.is_empty() {
                let events = std::mem::take(&mut batch);
                self.send(peer, Message::Events { events });
                size = 0;
            }
            size += bytes.len();
            batch.push(bytes);
        }
        if !batch.is_empty() {
            self.send(peer, Message::Events { events: batch });
        }
    }
}
