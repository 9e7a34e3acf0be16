//! Membership and liveness, SWIM-style (the model is HashiCorp
//! memberlist): which peers this node holds alive, suspect or unheard of,
//! judged on this node's own clock.
//!
//! Owns the probe cycle — one peer per period, in a shuffled round-robin
//! order; `PingReq`s to a few relays when the direct `Ping` goes
//! unanswered; suspicion when nothing at all was heard from the peer since
//! the probe went out — the incarnation numbers by which a suspected node
//! refutes, the rumors piggybacked on probe messages, and the members list
//! exchanged on connect. A suspect stays live for the suspicion timeout
//! (the lease) from when this node learned of it, then is dead until it
//! is heard again. A suspicion, whoever raised it, is checked by this
//! node itself: it pings the suspect at once and again each period while
//! the suspicion runs, and any answer clears it here — so a lease expires
//! only if this node itself heard nothing from the holder for a lease.
//! Each node sends a bounded number of messages per period whatever the
//! mesh's size (more only while it holds suspects, at most
//! [`SUSPECT_PINGS`] a period).
//!
//! Must not touch the ledger, claims or leases: the core reads
//! [`Membership::live`], [`Membership::live_until`] and
//! [`Membership::silent_for`] and decides (and syncs with the suspects
//! heard again, [`Membership::take_revived`]).

use crate::ids::NodeId;
use crate::time::Millis;
use crate::wire::{Message, Rumor, MAX_MEMBERS, MAX_RUMORS};
use crate::SeededRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// Relays asked when a direct probe goes unanswered (memberlist's
/// `IndirectChecks`).
const RELAYS: usize = 3;
/// A rumor rides on this many messages per ⌈log10(members + 1)⌉ before it
/// is dropped (memberlist's `RetransmitMult`).
const RETRANSMIT_MULT: u32 = 4;
/// Most pings this node keeps waiting for at once outside its probe (a
/// flood of `PingReq`s or rumors beyond it is not pinged).
const MAX_ASKED: usize = 64;
/// Suspects pinged again each period while their suspicion runs.
const SUSPECT_PINGS: usize = 3;

/// How this node holds a peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// Never heard from, nor of as alive.
    #[default]
    Unknown,
    /// Alive: its lease holds.
    Alive,
    /// Suspected since `since` (this node's clock): live until the
    /// suspicion timeout passes, then dead until heard again.
    Suspect { since: Millis },
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PeerState {
    pub connected: bool,
    /// When a message from the peer itself last arrived.
    pub last_heard: Option<Millis>,
    pub incarnation: u64,
    pub liveness: Liveness,
}

/// This period's probe.
#[derive(Clone, Copy, Debug)]
struct Probe {
    target: NodeId,
    seq: u64,
    sent: Millis,
    acked: bool,
    relays_asked: bool,
}

/// A ping this node sent apart from its probe: for a relay request, or to
/// tell a peer it is suspected.
#[derive(Clone, Copy, Debug)]
struct Asked {
    target: NodeId,
    /// The node and seq to relay the ack to.
    relay_for: Option<(NodeId, u64)>,
    until: Millis,
}

pub struct Membership {
    me: NodeId,
    incarnation: u64,
    period_ms: u64,
    suspicion_ms: u64,
    started: Millis,
    rng: SeededRng,
    peers: BTreeMap<NodeId, PeerState>,
    /// Probe order; `next` is the next index probed.
    order: Vec<NodeId>,
    next: usize,
    probe: Option<Probe>,
    next_probe: Millis,
    seq: u64,
    asked: BTreeMap<u64, Asked>,
    /// Rumors to piggyback, one per member, with how often each was sent.
    rumors: BTreeMap<NodeId, (Rumor, u32)>,
    out: Vec<(NodeId, Message)>,
    changed: BTreeSet<NodeId>,
    /// Suspected peers heard from directly again since the last call.
    revived: BTreeSet<NodeId>,
}

impl Membership {
    /// Membership probing one peer each `period_ms`, holding a suspect live
    /// for `suspicion_ms`.
    pub fn new(
        me: NodeId,
        period_ms: u64,
        suspicion_ms: u64,
        rng_seed: u64,
        now: Millis,
    ) -> Membership {
        Membership {
            me,
            incarnation: 0,
            period_ms: period_ms.max(1),
            suspicion_ms,
            started: now,
            rng: SeededRng::seed_from_u64(rng_seed ^ 0x5317_u64.rotate_left(40)),
            peers: BTreeMap::new(),
            order: Vec::new(),
            next: 0,
            probe: None,
            next_probe: now,
            seq: 0,
            asked: BTreeMap::new(),
            rumors: BTreeMap::new(),
            out: Vec::new(),
            changed: BTreeSet::new(),
            revived: BTreeSet::new(),
        }
    }

    pub fn peers(&self) -> &BTreeMap<NodeId, PeerState> {
        &self.peers
    }

    /// Messages to send, in order.
    pub fn take_out(&mut self) -> Vec<(NodeId, Message)> {
        std::mem::take(&mut self.out)
    }

    /// Peers whose liveness changed since the last call.
    pub fn take_changed(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Peers that were suspected (or dead) here and from which a message
    /// came again since the last call: out of reach for a while, they
    /// likely miss events this node holds, and it theirs.
    pub fn take_revived(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.revived).into_iter().collect()
    }

    /// Whether `peer` counts as live now.
    pub fn live(&self, peer: &NodeId, now: Millis) -> bool {
        now <= self.live_until(peer)
    }

    /// Until when `peer` surely stays live without news (`Millis(0)` if
    /// it is not live).
    pub fn live_until(&self, peer: &NodeId) -> Millis {
        match self.peers.get(peer).map(|p| p.liveness) {
            Some(Liveness::Alive) => Millis(u64::MAX),
            Some(Liveness::Suspect { since }) => since.plus(self.suspicion_ms),
            _ => Millis(0),
        }
    }

    /// How long `peer`'s lease has gone unrenewed: nothing while it is
    /// alive, since the suspicion while suspect, since this node started
    /// if never heard.
    pub fn silent_for(&self, peer: &NodeId, now: Millis) -> u64 {
        match self.peers.get(peer).map(|p| p.liveness) {
            Some(Liveness::Alive) => 0,
            Some(Liveness::Suspect { since }) => now.since(since),
            _ => now.since(self.started),
        }
    }

    /// The next time [`Membership::tick`] has something to do.
    pub fn next_wake(&self) -> Millis {
        let relays_due = self
            .probe
            .filter(|p| !p.relays_asked)
            .map(|p| p.sent.plus(self.probe_timeout()));
        relays_due.map_or(self.next_probe, |t| t.min(self.next_probe))
    }

    /// A message from `from` itself arrived: it is alive now.
    pub fn heard(&mut self, now: Millis, from: NodeId) {
        if from == self.me {
            return;
        }
        let p = self.entry(from);
        p.last_heard = Some(now);
        if matches!(p.liveness, Liveness::Suspect { .. }) {
            self.revived.insert(from);
        }
        self.vouch(from);
    }

    /// A connection to `peer` came up (it is heard) or went down; on
    /// connect it gets this node's members list.
    pub fn connection(&mut self, now: Millis, peer: NodeId, up: bool) {
        if peer == self.me {
            return;
        }
        self.entry(peer).connected = up;
        if up {
            self.heard(now, peer);
            let members = self.members();
            self.out.push((peer, Message::Members { members }));
        }
    }

    /// A membership message (`Ping`, `Ack`, `PingReq`, `Members`) from
    /// `from`; anything else is not membership's and is ignored.
    pub fn handle(&mut self, now: Millis, from: NodeId, msg: Message) {
        match msg {
            Message::Ping { seq, rumors } => {
                self.merge_all(now, &rumors, MAX_RUMORS);
                let rumors = self.piggyback();
                self.out.push((from, Message::Ack { seq, rumors }));
            }
            Message::Ack { seq, rumors } => {
                self.merge_all(now, &rumors, MAX_RUMORS);
                self.acked(from, seq);
            }
            Message::PingReq {
                seq,
                target,
                rumors,
            } => {
                self.merge_all(now, &rumors, MAX_RUMORS);
                let ours = target != self.me && target != from;
                if ours && self.asked.len() < MAX_ASKED {
                    self.ping(now, target, Some((from, seq)));
                }
            }
            Message::Members { members } => self.merge_all(now, &members, MAX_MEMBERS),
            _ => {}
        }
    }

    /// Runs the probe cycle: relays asked once the direct ping timed out;
    /// at each period's end, the unanswered target suspected and the next
    /// one probed. A timer that fires far past its time means this node
    /// was not running: its suspicions move on by as much and the probe
    /// under way is dropped, since the silence was its own.
    pub fn tick(&mut self, now: Millis) {
        let late = now.since(self.next_probe);
        if late > self.suspicion_ms / 2 {
            self.woke_late(now, late);
        }
        self.asked.retain(|_, a| a.until >= now);
        if let Some(p) = self.probe {
            let due = p.sent.plus(self.probe_timeout());
            if !p.relays_asked && now >= due && !self.answered(&p) {
                self.ask_relays(p);
            }
            if let Some(p) = self.probe.as_mut() {
                p.relays_asked |= now >= due;
            }
        }
        if now >= self.next_probe {
            self.next_probe = now.plus(self.period_ms);
            if let Some(p) = self.probe.take() {
                if !self.answered(&p) {
                    self.suspect(now, p.target);
                }
            }
            self.ping_suspects(now);
            self.start_probe(now);
        }
    }

    // ----- internals -----

    fn probe_timeout(&self) -> u64 {
        self.period_ms * 2 / 5
    }

    fn entry(&mut self, node: NodeId) -> &mut PeerState {
        if !self.peers.contains_key(&node) {
            // At a random place, so that new members are not all probed last.
            let at = self.rng.gen_range(0..=self.order.len());
            self.order.insert(at, node);
            if at < self.next {
                self.next += 1;
            }
        }
        self.peers.entry(node).or_default()
    }

    fn vouch(&mut self, node: NodeId) {
        let p = self.entry(node);
        if p.liveness != Liveness::Alive {
            p.liveness = Liveness::Alive;
            self.changed.insert(node);
        }
    }

    fn answered(&self, p: &Probe) -> bool {
        p.acked
            || self
                .peers
                .get(&p.target)
                .and_then(|s| s.last_heard)
                .is_some_and(|t| t >= p.sent)
    }

    fn woke_late(&mut self, now: Millis, late: u64) {
        for p in self.peers.values_mut() {
            if let Liveness::Suspect { since } = &mut p.liveness {
                *since = since.plus(late).min(now);
            }
        }
        self.probe = None;
        self.asked.clear();
        self.next_probe = now;
    }

    /// Pings a few of the suspects whose suspicion still runs: an answer
    /// clears the suspicion here before it can expire.
    fn ping_suspects(&mut self, now: Millis) {
        let mut running: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, p)| matches!(p.liveness, Liveness::Suspect { .. }) && self.live(id, now))
            .map(|(id, _)| *id)
            .collect();
        for _ in 0..SUSPECT_PINGS.min(running.len()) {
            let suspect = running.swap_remove(self.rng.gen_range(0..running.len()));
            if self.asked.len() < MAX_ASKED {
                self.ping(now, suspect, None);
            }
        }
    }

    fn start_probe(&mut self, now: Millis) {
        if self.order.is_empty() {
            return;
        }
        if self.next >= self.order.len() {
            self.next = 0;
            // A fresh order each round, as memberlist shuffles its nodes.
            for i in (1..self.order.len()).rev() {
                let j = self.rng.gen_range(0..=i);
                self.order.swap(i, j);
            }
        }
        let target = self.order[self.next];
        self.next += 1;
        let seq = self.next_seq();
        let rumors = self.piggyback();
        self.out.push((target, Message::Ping { seq, rumors }));
        self.probe = Some(Probe {
            target,
            seq,
            sent: now,
            acked: false,
            relays_asked: false,
        });
    }

    fn ask_relays(&mut self, p: Probe) {
        let mut relays: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, s)| **id != p.target && s.liveness == Liveness::Alive)
            .map(|(id, _)| *id)
            .collect();
        for _ in 0..RELAYS.min(relays.len()) {
            let relay = relays.swap_remove(self.rng.gen_range(0..relays.len()));
            let rumors = self.piggyback();
            self.out.push((
                relay,
                Message::PingReq {
                    seq: p.seq,
                    target: p.target,
                    rumors,
                },
            ));
        }
    }

    /// Pings `target` outside the probe cycle.
    fn ping(&mut self, now: Millis, target: NodeId, relay_for: Option<(NodeId, u64)>) {
        let seq = self.next_seq();
        self.asked.insert(
            seq,
            Asked {
                target,
                relay_for,
                until: now.plus(self.period_ms),
            },
        );
        let rumors = self.piggyback();
        self.out.push((target, Message::Ping { seq, rumors }));
    }

    fn acked(&mut self, from: NodeId, seq: u64) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            p.acked = true;
            let target = p.target;
            self.vouch(target);
            return;
        }
        let Some(asked) = self.asked.remove(&seq) else {
            return;
        };
        if asked.target != from {
            // A relay answers only for its own probes' targets.
            self.asked.insert(seq, asked);
            return;
        }
        if let Some((origin, their_seq)) = asked.relay_for {
            let rumors = self.piggyback();
            self.out.push((
                origin,
                Message::Ack {
                    seq: their_seq,
                    rumors,
                },
            ));
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// This node's own probe of `target` went unanswered.
    fn suspect(&mut self, now: Millis, target: NodeId) {
        let Some(p) = self.peers.get(&target) else {
            return;
        };
        // A peer never heard from stays unheard: its silence counts from
        // this node's start already.
        if p.liveness != Liveness::Alive {
            return;
        }
        let rumor = Rumor {
            node: target,
            incarnation: p.incarnation,
            suspect: true,
        };
        self.merge(now, rumor);
    }

    fn merge_all(&mut self, now: Millis, rumors: &[Rumor], limit: usize) {
        for rumor in rumors.iter().take(limit) {
            self.merge(now, *rumor);
        }
    }

    /// Takes in what some node says of a member, by SWIM's rules: a
    /// suspicion counts at the member's incarnation or later, an alive word
    /// only at a later one; of itself, this node refutes a suspicion.
    fn merge(&mut self, now: Millis, rumor: Rumor) {
        if rumor.node == self.me {
            if rumor.suspect && rumor.incarnation >= self.incarnation {
                self.incarnation = rumor.incarnation + 1;
                self.spread(self.own_rumor());
            }
            return;
        }
        let started = self.started;
        let p = self.entry(rumor.node);
        let news = if rumor.suspect {
            let fresh = rumor.incarnation > p.incarnation;
            let since = match p.liveness {
                Liveness::Alive => Some(now),
                Liveness::Unknown => Some(now.min(started)),
                Liveness::Suspect { .. } if fresh => None,
                Liveness::Suspect { .. } => return,
            };
            if rumor.incarnation < p.incarnation {
                return;
            }
            p.incarnation = rumor.incarnation;
            if let Some(since) = since {
                p.liveness = Liveness::Suspect { since };
                self.changed.insert(rumor.node);
                self.spread(rumor);
                // Check it here, and tell it (the rumor rides along) so
                // that it can refute.
                if self.asked.len() < MAX_ASKED {
                    self.ping(now, rumor.node, None);
                }
                return;
            }
            true
        } else {
            let stale = rumor.incarnation < p.incarnation
                || (rumor.incarnation == p.incarnation && p.liveness != Liveness::Unknown);
            if stale {
                return;
            }
            p.incarnation = rumor.incarnation;
            self.vouch(rumor.node);
            true
        };
        if news {
            self.spread(rumor);
        }
    }

    fn own_rumor(&self) -> Rumor {
        Rumor {
            node: self.me,
            incarnation: self.incarnation,
            suspect: false,
        }
    }

    fn spread(&mut self, rumor: Rumor) {
        self.rumors.insert(rumor.node, (rumor, 0));
    }

    /// The rumors to put on the next message: the least sent first, each
    /// dropped once sent enough times for the mesh's size.
    fn piggyback(&mut self) -> Vec<Rumor> {
        let members = self.peers.len() as f64 + 1.0;
        let limit = RETRANSMIT_MULT * (members + 1.0).log10().ceil().max(1.0) as u32;
        let mut by_sends: Vec<(u32, NodeId)> = self
            .rumors
            .iter()
            .map(|(n, (_, sent))| (*sent, *n))
            .collect();
        by_sends.sort_unstable();
        let mut picked = Vec::new();
        for (_, node) in by_sends.into_iter().take(MAX_RUMORS) {
            if let Some((rumor, sent)) = self.rumors.get_mut(&node) {
                picked.push(*rumor);
                *sent += 1;
                if *sent >= limit {
                    self.rumors.remove(&node);
                }
            }
        }
        picked
    }

    /// Every member this node has word of, and itself.
    fn members(&self) -> Vec<Rumor> {
        let known = self.peers.iter().filter_map(|(node, p)| {
            let suspect = match p.liveness {
                Liveness::Unknown => return None,
                Liveness::Alive => false,
                Liveness::Suspect { .. } => true,
            };
            Some(Rumor {
                node: *node,
                incarnation: p.incarnation,
                suspect,
            })
        });
        std::iter::once(self.own_rumor())
            .chain(known)
            .take(MAX_MEMBERS)
            .collect()
    }
}
