//! The simulated network: loss, duplication, reordering, delay, partitions.
//!
//! Owns which deliveries happen and when: each message to each receiver is
//! lost, delayed, held back (reordered) or doubled by its own draw, and a
//! partition cuts links between two sides — both ways (symmetric), one way
//! (asymmetric) or on and off (flapping). Must not look inside messages or
//! touch cores; the world hands the deliveries to them.

use crate::config::SimConfig;
use crate::streams::Stream;
use peerbatch_protocol::SeededRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// The shape of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutKind {
    Symmetric,
    /// Side A does not hear side B; B hears A.
    Asymmetric,
    /// Symmetric, switched on and off every few hundred ms.
    Flapping,
}

struct Cut {
    kind: CutKind,
    side_a: Vec<bool>,
    on: bool,
}

/// Counts of what the network did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Deliveries attempted (a gossip counts once per receiver).
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

pub struct Network {
    rng: SeededRng,
    loss: f64,
    dup: f64,
    reorder: f64,
    reorder_ms: u64,
    delay_ms: (u64, u64),
    cut: Option<Cut>,
    pub stats: NetStats,
}

impl Network {
    pub fn new(cfg: &SimConfig) -> Network {
        Network {
            rng: Stream::Network.rng(cfg.seed),
            loss: cfg.faults.loss,
            dup: cfg.faults.dup,
            reorder: cfg.faults.reorder,
            reorder_ms: cfg.faults.reorder_ms,
            delay_ms: cfg.delay_ms,
            cut: None,
            stats: NetStats::default(),
        }
    }

    /// Whether `from` can reach `to` now.
    pub fn linked(&self, from: usize, to: usize) -> bool {
        match &self.cut {
            Some(c) if c.on => match c.kind {
                CutKind::Asymmetric => !c.side_a[to] || c.side_a[from],
                _ => c.side_a[from] == c.side_a[to],
            },
            _ => true,
        }
    }

    /// The delays after which one message from `from` reaches `to`: none
    /// (lost), one, or two (duplicated).
    pub fn route(&mut self, from: usize, to: usize) -> [Option<u64>; 2] {
        self.stats.messages += 1;
        if !self.linked(from, to) || (self.loss > 0.0 && self.rng.gen_bool(self.loss)) {
            self.stats.dropped += 1;
            return [None, None];
        }
        let first = Some(self.delay());
        let second = if self.dup > 0.0 && self.rng.gen_bool(self.dup) {
            self.stats.duplicated += 1;
            Some(self.delay())
        } else {
            None
        };
        [first, second]
    }

    fn delay(&mut self) -> u64 {
        let base = self.rng.gen_range(self.delay_ms.0..=self.delay_ms.1);
        if self.reorder > 0.0 && self.rng.gen_bool(self.reorder) {
            self.stats.reordered += 1;
            base + self.rng.gen_range(0..=self.reorder_ms)
        } else {
            base
        }
    }

    /// Splits the nodes into two random non-empty sides.
    pub fn partition(&mut self, kind: CutKind, nodes: usize, rng: &mut SeededRng) {
        let cut = rng.gen_range(1..nodes);
        let mut order: Vec<usize> = (0..nodes).collect();
        order.shuffle(rng);
        let mut side_a = vec![false; nodes];
        for &i in &order[..cut] {
            side_a[i] = true;
        }
        self.cut = Some(Cut {
            kind,
            side_a,
            on: true,
        });
    }

    /// Switches a flapping partition; false if there is none.
    pub fn flap(&mut self) -> bool {
        match &mut self.cut {
            Some(c) if c.kind == CutKind::Flapping => {
                c.on = !c.on;
                true
            }
            _ => false,
        }
    }

    pub fn heal(&mut self) {
        self.cut = None;
    }

    /// The liveness phase: no partition, no loss, duplication or reordering.
    pub fn calm(&mut self) {
        self.heal();
        self.loss = 0.0;
        self.dup = 0.0;
        self.reorder = 0.0;
    }
}
