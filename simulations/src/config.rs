//! What one simulated run is made of: cluster size, workload and faults.
//!
//! Owns [`SimConfig`], its swarm draw from a single seed
//! ([`SimConfig::draw`]) and the flags that reproduce it. Must not run
//! anything: the world (`world`) turns a config into a run, and every random
//! choice inside the run comes from streams seeded by `seed` (`streams`).

use crate::streams::Stream;
use peerbatch_protocol::schedule::CronZone;
use peerbatch_protocol::{Config, SeededRng};
use rand::Rng;
use std::fmt;

/// One simulated run: the world, the workload and the faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Tasks in all, split at random over `jobs` task-array jobs.
    pub tasks: u32,
    pub jobs: u32,
    /// Each job draws its max retries from `0..=max_retries`.
    pub max_retries: u32,
    /// Simulated task duration range in ms, inclusive.
    pub task_ms: (u64, u64),
    /// Delivery delay range in ms, inclusive.
    pub delay_ms: (u64, u64),
    pub faults: Faults,
    /// The safety phase: jobs are submitted and faults strike in
    /// `[0, fault_window_ms]`; then every fault heals.
    pub fault_window_ms: u64,
    /// Per-task checks of one node after every input it handles (else
    /// every second: the per-step check costs O(tasks) per input).
    pub check_every_step: bool,
    /// Record a readable trace of the run (for a failing run's replay).
    pub trace: bool,
    /// Protocol tunables of every node.
    pub core: Config,
    /// The first job's tasks are multi-instance tasks of this many
    /// instances (0 or 1: ordinary tasks). At most `nodes`.
    pub gang: u32,
    /// One node is a faulty member: besides running its core, it signs
    /// events it may not write (see `faulty`).
    pub faulty: bool,
    /// Jobs' retention, when the run forgets them (`None`: kept); each
    /// node's wall clock is then ahead of the world's by up to the core's
    /// `forget_margin_ms`.
    pub retention_ms: Option<u64>,
}

/// What goes wrong in a run; the default is nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability that an attempt exits with code 1 instead of 0.
    pub fail_rate: f64,
    /// How many jobs are cancelled, from a random node at a random time.
    pub cancels: u32,
    /// Probability that one delivery (gossip or direct) is lost.
    pub loss: f64,
    /// Probability that one delivery arrives twice.
    pub dup: f64,
    /// Probability that one delivery is held back by up to `reorder_ms`,
    /// so that later messages overtake it.
    pub reorder: f64,
    pub reorder_ms: u64,
    /// Partitions, one after another: each is symmetric, asymmetric (one
    /// side hears the other but not back) or flapping (on and off).
    pub partitions: u32,
    /// Nodes that crash (losing processes, in-flight messages and every
    /// write not yet flushed) and restart from their store.
    pub crashes: u32,
    /// Nodes whose storage is wiped while they are down: they restart empty
    /// and rebuild from peers.
    pub wipes: u32,
    /// Forward jumps of one node's monotonic clock (a suspend, a VM pause).
    pub clock_jumps: u32,
    /// Each node's clock runs fast or slow by up to this many parts per million.
    pub skew_ppm: u32,
    /// A node's writes become durable up to this long after they are
    /// handed out (group commit); transmits queued behind them wait.
    pub flush_ms: u64,
}

/// The core's defaults, with cron read in UTC so a replay does not depend
/// on the machine's time zone.
fn core_defaults() -> Config {
    Config {
        cron_zone: CronZone::Utc,
        ..Config::default()
    }
}

impl Default for SimConfig {
    /// A calm mid-sized run: 10 % loss and nothing else.
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 50,
            tasks: 2_000,
            jobs: 2,
            max_retries: 3,
            task_ms: (100, 1_000),
            delay_ms: (1, 20),
            faults: Faults {
                loss: 0.1,
                ..Faults::default()
            },
            fault_window_ms: 20_000,
            check_every_step: false,
            trace: false,
            core: core_defaults(),
            gang: 0,
            faulty: false,
            retention_ms: None,
        }
    }
}

/// How long anti-entropy is given to bring every node every result after
/// the faults and the work: five rounds of the default `sync_ms`.
const CATCH_UP_MS: u64 = 10_000;

impl SimConfig {
    /// Simulated time one node needs for the whole workload, on average.
    pub fn expected_work_ms(&self) -> u64 {
        let per_task = (self.task_ms.0 + self.task_ms.1) / 2;
        let slots = self.nodes as u64 * u64::from(self.core.slots.max(1));
        u64::from(self.tasks) * per_task * u64::from(self.max_retries + 1) / slots
    }

    /// The swarm: everything drawn from one seed. Most runs are small (a
    /// handful to a few dozen nodes) so that checks after every step stay
    /// cheap; one in twenty draws up to 1,000 nodes.
    pub fn draw(seed: u64) -> SimConfig {
        let mut rng = Stream::Draw.rng(seed);
        let nodes = if rng.gen_bool(0.05) {
            rng.gen_range(100..=1_000)
        } else {
            rng.gen_range(3..=40)
        };
        let tasks = if nodes > 100 {
            rng.gen_range(nodes as u32..=4 * nodes as u32)
        } else {
            rng.gen_range(1..=600)
        };
        let jobs = rng.gen_range(1..=tasks.min(6));
        let maybe = |rng: &mut SeededRng, p: f64, hi: u32| {
            if rng.gen_bool(p) {
                rng.gen_range(1..=hi)
            } else {
                0
            }
        };
        let lo_task = rng.gen_range(5..=500);
        let lo_delay = rng.gen_range(1..=20);
        let mut cfg = SimConfig {
            seed,
            nodes,
            tasks,
            jobs,
            max_retries: rng.gen_range(0..=4),
            task_ms: (lo_task, lo_task + rng.gen_range(0..=2_000)),
            delay_ms: (lo_delay, lo_delay + rng.gen_range(0..=100)),
            faults: Faults {
                fail_rate: if rng.gen_bool(0.4) {
                    rng.gen_range(0.0..0.4)
                } else {
                    0.0
                },
                cancels: maybe(&mut rng, 0.3, jobs),
                loss: if rng.gen_bool(0.8) {
                    rng.gen_range(0.0..0.3)
                } else {
                    0.0
                },
                dup: if rng.gen_bool(0.5) {
                    rng.gen_range(0.0..0.2)
                } else {
                    0.0
                },
                reorder: if rng.gen_bool(0.5) {
                    rng.gen_range(0.0..0.2)
                } else {
                    0.0
                },
                reorder_ms: rng.gen_range(10..=2_000),
                partitions: maybe(&mut rng, 0.5, 3),
                crashes: maybe(&mut rng, 0.5, 4),
                wipes: maybe(&mut rng, 0.3, 2),
                clock_jumps: maybe(&mut rng, 0.3, 3),
                skew_ppm: if rng.gen_bool(0.5) {
                    rng.gen_range(0..=50_000)
                } else {
                    0
                },
                flush_ms: if rng.gen_bool(0.5) {
                    rng.gen_range(1..=30)
                } else {
                    0
                },
            },
            fault_window_ms: rng.gen_range(5_000..=40_000),
            check_every_step: false,
            trace: false,
            core: Config {
                slots: rng.gen_range(1..=4),
                ..core_defaults()
            },
            // Its own stream: the draws above stay what they were.
            gang: {
                let mut g = Stream::Gang.rng(seed);
                if nodes <= 40 && g.gen_bool(0.3) {
                    g.gen_range(2..=nodes.min(5) as u32)
                } else {
                    0
                }
            },
            // Its own stream too; one seed in two of up to 40 nodes.
            faulty: nodes <= 40 && Stream::Faulty.rng(seed).gen_bool(0.5),
            retention_ms: None,
        };
        // Forgetting in one seed in two of up to 40 nodes, its own stream:
        // a retention past the fault window, the workload and a catch-up
        // after both, so that every node has every result of a job before
        // any forgets it (a node that misses them keeps a job it saw
        // unfinished: see ARCHITECTURE.md). A job is forgotten about a
        // second after it ended when its horizon has passed, so a
        // retention shorter than the work left laggards no time.
        let mut forget = Stream::Forget.rng(seed);
        if nodes <= 40 && forget.gen_bool(0.5) {
            let window = cfg.fault_window_ms;
            let after = cfg.expected_work_ms() + CATCH_UP_MS;
            cfg.retention_ms = Some(forget.gen_range(window..=2 * window) + after);
        }
        cfg.with_forgetting().checked_per_step_if_small()
    }

    /// Turns on the per-step checks when the run is small enough for them
    /// (nodes × tasks ≤ 5,000): each costs O(tasks).
    /// A short clock-skew margin when the run forgets jobs (the default,
    /// five minutes, would outlast the run).
    pub fn with_forgetting(mut self) -> SimConfig {
        if self.retention_ms.is_some() {
            self.core.forget_margin_ms = 1_000;
        }
        self
    }

    pub fn checked_per_step_if_small(self) -> SimConfig {
        SimConfig {
            check_every_step: self.nodes as u64 * u64::from(self.tasks) <= 5_000,
            ..self
        }
    }

    /// The same run with every fault switched off (for benchmarks).
    pub fn calm(self) -> SimConfig {
        SimConfig {
            faults: Faults::default(),
            ..self
        }
    }

    /// Whether a task of a job with `max_retries` may end failed: attempts
    /// fail on purpose, or enough disruptions (or heavy loss, which can
    /// starve a lease) may reclaim one attempt each.
    pub fn may_fail(&self, max_retries: u32) -> bool {
        self.faults.fail_rate > 0.0
            || self.faults.loss > 0.1
            || self.faults.partitions > 0
            || self.faults.clock_jumps > 0
            || self.faults.crashes + self.faults.wipes > max_retries
    }

    /// Whether a check-out of the config is sane (the command line's job).
    pub fn validate(&self) -> Result<(), String> {
        let p = |x: f64| (0.0..1.0).contains(&x);
        if !p(self.faults.loss)
            || !p(self.faults.dup)
            || !p(self.faults.reorder)
            || !(0.0..=1.0).contains(&self.faults.fail_rate)
        {
            return Err("--loss, --dup and --reorder must be in [0, 1), --fail in [0, 1]".into());
        }
        if self.nodes < 2 || self.tasks == 0 || self.jobs == 0 || self.jobs > self.tasks {
            return Err("need --nodes >= 2 and 1 <= --jobs <= --tasks".into());
        }
        if self.task_ms.0 == 0 || self.task_ms.0 > self.task_ms.1 {
            return Err("--task-ms needs 0 < MIN <= MAX".into());
        }
        if self.delay_ms.0 > self.delay_ms.1 {
            return Err("--delay-ms needs MIN <= MAX".into());
        }
        if self.gang as usize > self.nodes {
            return Err("--gang needs at most --nodes instances".into());
        }
        Ok(())
    }
}

/// The command-line flags that reproduce the config exactly.
impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--seed {} --nodes {} --tasks {} --jobs {} --max-retries {} --fail {} \
             --task-ms {}-{} --cancels {} --loss {} --dup {} --reorder {} --reorder-ms {} \
             --delay-ms {}-{} --partitions {} --crashes {} --wipes {} --clock-jumps {} \
             --skew-ppm {} --flush-ms {} --fault-window-ms {} --slots {} --gang {} --faulty {} --retention-ms {}{}",
            self.seed,
            self.nodes,
            self.tasks,
            self.jobs,
            self.max_retries,
            self.faults.fail_rate,
            self.task_ms.0,
            self.task_ms.1,
            self.faults.cancels,
            self.faults.loss,
            self.faults.dup,
            self.faults.reorder,
            self.faults.reorder_ms,
            self.delay_ms.0,
            self.delay_ms.1,
            self.faults.partitions,
            self.faults.crashes,
            self.faults.wipes,
            self.faults.clock_jumps,
            self.faults.skew_ppm,
            self.faults.flush_ms,
            self.fault_window_ms,
            self.core.slots,
            self.gang,
            u8::from(self.faulty),
            self.retention_ms.unwrap_or(0),
            if self.check_every_step {
                " --check-every-step"
            } else {
                ""
            },
        )
    }
}
