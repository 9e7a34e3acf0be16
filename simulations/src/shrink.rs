//! Shrinking a failing run to the smallest configuration that still fails.
//!
//! Owns the search: from a failing config, try smaller ones (fewer nodes,
//! tasks, jobs; each fault switched off or made rarer; a shorter fault
//! window), keep any that fails with the same kind of violation, and repeat
//! until nothing smaller fails or the time budget is spent. Then replay the
//! smallest with a readable trace. Must not judge runs itself: `world::run`
//! does.

use crate::config::{Faults, SimConfig};
use crate::report::Violation;
use crate::world::run;
use std::time::{Duration, Instant};

/// The smallest failing config found, its violation (with a trace) and
/// how many runs the search took.
pub struct Shrunk {
    pub cfg: SimConfig,
    pub violation: Violation,
    pub runs: u32,
}

pub fn shrink(cfg: &SimConfig, failure: Violation, budget: Duration) -> Shrunk {
    shrink_with(cfg, failure, budget, run)
}

/// [`shrink`] with the run under test passed in.
fn shrink_with(
    cfg: &SimConfig,
    failure: Violation,
    budget: Duration,
    run: impl Fn(&SimConfig) -> Result<crate::Report, Violation>,
) -> Shrunk {
    let start = Instant::now();
    let (mut best, mut violation, mut runs) = (cfg.clone(), failure, 0);
    'search: loop {
        for candidate in smaller(&best) {
            if start.elapsed() > budget {
                break 'search;
            }
            runs += 1;
            if let Err(v) = run(&candidate) {
                if v.kind() == violation.kind() {
                    best = candidate;
                    violation = v;
                    continue 'search;
                }
            }
        }
        break;
    }
    let traced = SimConfig {
        trace: true,
        ..best.clone()
    };
    // Same config, same run: it fails again, now with its trace.
    if let Err(v) = run(&traced) {
        violation = v;
    }
    Shrunk {
        cfg: best,
        violation,
        runs,
    }
}

/// Configs one step smaller than `c`, the biggest cuts first.
fn smaller(c: &SimConfig) -> Vec<SimConfig> {
    let mut out = Vec::new();
    let mut push = |next: SimConfig| {
        let next = SimConfig {
            gang: next.gang.min(next.nodes as u32),
            ..next
        };
        if next.to_string() != c.to_string() {
            out.push(next.checked_per_step_if_small());
        }
    };
    push(SimConfig {
        gang: 0,
        ..c.clone()
    });
    push(SimConfig {
        faulty: false,
        ..c.clone()
    });
    push(SimConfig {
        nodes: (c.nodes / 2).max(3).min(c.nodes),
        ..c.clone()
    });
    push(SimConfig {
        tasks: (c.tasks / 2).max(c.jobs),
        ..c.clone()
    });
    push(SimConfig {
        jobs: 1,
        ..c.clone()
    });
    let f = c.faults;
    let with = |faults: Faults| SimConfig {
        faults,
        ..c.clone()
    };
    for off in [
        Faults { partitions: 0, ..f },
        Faults { crashes: 0, ..f },
        Faults { wipes: 0, ..f },
        Faults {
            clock_jumps: 0,
            ..f
        },
        Faults { cancels: 0, ..f },
        Faults { loss: 0.0, ..f },
        Faults { dup: 0.0, ..f },
        Faults { reorder: 0.0, ..f },
        Faults { skew_ppm: 0, ..f },
        Faults { flush_ms: 0, ..f },
        Faults {
            fail_rate: 0.0,
            ..f
        },
        Faults {
            partitions: f.partitions.saturating_sub(1),
            ..f
        },
        Faults {
            crashes: f.crashes.saturating_sub(1),
            ..f
        },
        Faults {
            wipes: f.wipes.saturating_sub(1),
            ..f
        },
        Faults {
            clock_jumps: f.clock_jumps.saturating_sub(1),
            ..f
        },
    ] {
        push(with(off));
    }
    for fewer in [
        SimConfig {
            nodes: c.nodes.saturating_sub(1).max(3).min(c.nodes),
            ..c.clone()
        },
        SimConfig {
            tasks: c.tasks.saturating_sub(1).max(c.jobs),
            ..c.clone()
        },
        SimConfig {
            jobs: c.jobs.saturating_sub(1).max(1),
            ..c.clone()
        },
        SimConfig {
            fault_window_ms: (c.fault_window_ms / 2).max(2_000),
            ..c.clone()
        },
    ] {
        push(fewer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(what: &str) -> Violation {
        Violation {
            seed: 9,
            at_ms: 0,
            what: what.into(),
            trace: Vec::new(),
        }
    }

    /// A stand-in for the world that fails whenever there are at least 5
    /// nodes and a crash, and fails another way with fewer nodes.
    fn fake(cfg: &SimConfig) -> Result<crate::Report, Violation> {
        if cfg.faults.crashes > 0 && cfg.nodes < 5 {
            Err(violation("other: too few nodes"))
        } else if cfg.faults.crashes > 0 {
            Err(violation(&format!("liveness: {} nodes", cfg.nodes)))
        } else {
            run(&SimConfig {
                nodes: 3,
                tasks: 1,
                jobs: 1,
                ..SimConfig::default()
            }
            .calm())
        }
    }

    #[test]
    fn shrinking_keeps_the_failure_and_drops_everything_else() {
        let big = SimConfig {
            nodes: 40,
            tasks: 500,
            faults: Faults {
                crashes: 3,
                partitions: 2,
                clock_jumps: 1,
                wipes: 2,
                ..SimConfig::draw(9).faults
            },
            ..SimConfig::draw(9)
        };
        let first = fake(&big).unwrap_err();
        let small = shrink_with(&big, first, Duration::from_secs(60), fake);
        assert_eq!(small.cfg.nodes, 5);
        assert_eq!(small.cfg.faults.crashes, 1);
        assert_eq!(
            (
                small.cfg.faults.partitions,
                small.cfg.faults.clock_jumps,
                small.cfg.faults.wipes
            ),
            (0, 0, 0)
        );
        assert_eq!(small.cfg.tasks, 1);
        assert_eq!(small.violation.what, "liveness: 5 nodes");
    }
}
