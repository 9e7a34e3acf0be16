//! What a run shows: its figures, or the invariant it broke.
//!
//! Owns [`Report`], [`Violation`] and their printing. Must not compute
//! anything from the world; the world fills them in.

use crate::network::NetStats;
use std::fmt;

/// Faults the run actually injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub partitions: u32,
    pub flaps: u32,
    pub crashes: u32,
    pub wipes: u32,
    pub clock_jumps: u32,
    pub cancels: u32,
    /// Drains and resumes asked through the ledger.
    pub drains: u32,
    /// Writes lost because a crash came before their flush.
    pub unflushed_lost: u64,
    /// Events (or malformed messages) the faulty member sent.
    pub forged: u64,
    pub net: NetStats,
}

impl Injected {
    /// Every fault, each message fault counted once.
    pub fn total(&self) -> u64 {
        u64::from(self.partitions + self.flaps + self.crashes + self.wipes + self.clock_jumps)
            + u64::from(self.cancels + self.drains)
            + self.unflushed_lost
            + self.forged
            + self.net.dropped
            + self.net.duplicated
            + self.net.reordered
    }
}

/// Min, mean and max of some durations in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub min: u64,
    pub mean: f64,
    pub max: u64,
}

impl Spread {
    pub fn of(samples: &[u64]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        Spread {
            count: samples.len(),
            min: *samples.iter().min().expect("not empty"),
            mean: samples.iter().sum::<u64>() as f64 / samples.len() as f64,
            max: *samples.iter().max().expect("not empty"),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "none");
        }
        write!(
            f,
            "{} × min {} / mean {:.0} / max {} ms",
            self.count, self.min, self.mean, self.max
        )
    }
}

/// The figures of a finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub tasks: u32,
    /// Simulated ms at which the faults healed (end of the safety phase).
    pub healed_ms: u64,
    /// Simulated ms until every task was terminal on every node.
    pub finished_ms: u64,
    /// Simulated ms until every node held the same events and state.
    pub converged_ms: u64,
    pub wall_ms: u128,
    pub injected: Injected,
    /// Ledger events on each node at the end.
    pub events: usize,
    /// Attempts started on all nodes (the cores' counters, summed).
    pub attempts_started: u64,
    /// Tasks (each instance of a multi-instance task counted apart) that
    /// were started at least once.
    pub tasks_started: u64,
    /// Starts of an attempt number some node had already started.
    pub same_attempt_starts: u64,
    pub attempts_fenced: u64,
    pub events_rejected: u64,
    pub tasks_failed: u32,
    pub tasks_cancelled: u32,
    /// From a crash to the next start elsewhere of each task the dead node ran.
    pub death_to_rerun: Spread,
    /// Of those, the tasks started elsewhere while the dead node was still
    /// down (found dead by its peers, not given back by its restart).
    pub reruns_while_down: u64,
    /// From a partition's heal until every node held every event that
    /// existed anywhere at the heal.
    pub heal_to_converge: Spread,
    /// A hash of everything that happened, equal for equal configs.
    pub run_digest: [u8; 32],
    /// Simulated ms at the end of the run.
    pub end_ms: u64,
    /// Messages the cores sent (a gossip counted once per receiver), and
    /// of them those that only keep membership (liveness).
    pub sent: u64,
    pub sent_liveness: u64,
}

impl Report {
    /// Attempts started beyond the first of each task (retries included).
    pub fn duplicates(&self) -> u64 {
        self.attempts_started - self.tasks_started
    }

    /// Messages each node sent per simulated second, on average: all, and
    /// those that only keep membership.
    pub fn sent_per_node_second(&self) -> (f64, f64) {
        let per = |n: u64| n as f64 * 1000.0 / (self.nodes as f64 * self.end_ms.max(1) as f64);
        (per(self.sent), per(self.sent_liveness))
    }

    pub fn duplicates_per_1000(&self) -> f64 {
        self.duplicates() as f64 * 1000.0 / f64::from(self.tasks.max(1))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.injected;
        write!(
            f,
            "seed {}: {} nodes, {} tasks: healed at {:.3} s, terminal everywhere at {:.3} s, \
             converged at {:.3} s simulated, wall {:.3} s; {} messages ({} dropped, {} duplicated, \
             {} reordered); {} partitions ({} flaps), {} crashes, {} wipes, {} clock jumps, \
             {} cancels, {} drains, {} unflushed writes lost, {} forged; {} events, {} attempts started, \
             {} duplicates ({:.1} per 1000 tasks; {} of an attempt already started), \
             {} fenced, {} failed, {} cancelled; death→rerun {} ({} while the dead node was down); \
             heal→converge {}; digest {}",
            self.seed,
            self.nodes,
            self.tasks,
            self.healed_ms as f64 / 1000.0,
            self.finished_ms as f64 / 1000.0,
            self.converged_ms as f64 / 1000.0,
            self.wall_ms as f64 / 1000.0,
            i.net.messages,
            i.net.dropped,
            i.net.duplicated,
            i.net.reordered,
            i.partitions,
            i.flaps,
            i.crashes,
            i.wipes,
            i.clock_jumps,
            i.cancels,
            i.drains,
            i.unflushed_lost,
            i.forged,
            self.events,
            self.attempts_started,
            self.duplicates(),
            self.duplicates_per_1000(),
            self.same_attempt_starts,
            self.attempts_fenced,
            self.tasks_failed,
            self.tasks_cancelled,
            self.death_to_rerun,
            self.reruns_while_down,
            self.heal_to_converge,
            peerbatch_protocol::ids::to_hex(&self.run_digest[..8]),
        )
    }
}

/// An invariant that did not hold, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub what: String,
    /// The run's readable trace, when the config asked for one.
    pub trace: Vec<String>,
}

impl Violation {
    /// The kind of violation: its message up to the first node or task
    /// detail, to tell whether a smaller run fails the same way.
    pub fn kind(&self) -> &str {
        self.what.split(':').next().unwrap_or(&self.what)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: invariant violated at {} ms: {}",
            self.seed, self.at_ms, self.what
        )
    }
}

impl std::error::Error for Violation {}
