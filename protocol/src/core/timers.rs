//! The core's own periodic steps on its monotonic clock: the scan (leases,
//! liveness, claims; every `heartbeat_ms`), the anti-entropy round (every
//! `sync_ms`), the wall check (every `wall_check_ms`, `core::wall`) and
//! the next gang re-invite, and the earliest of them.
//!
//! Owns when each is next due. Must not decide what a step does, nor
//! know the other parts' deadlines (`Core::poll_timeout` adds those).

use crate::time::Millis;

/// A periodic step.
#[derive(Clone, Copy, Debug)]
pub(super) enum Every {
    Scan,
    Sync,
    Wall,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Timers {
    scan: Millis,
    sync: Millis,
    wall: Millis,
    /// When a primary recruiting a gang invites again, if one is waiting.
    pub gang: Option<Millis>,
}

impl Timers {
    /// Every step due at once.
    pub fn new(now: Millis) -> Timers {
        Timers {
            scan: now,
            sync: now,
            wall: now,
            gang: None,
        }
    }

    /// Whether `step` is due at `now`; if it is, it is next due `period_ms`
    /// later.
    pub fn due(&mut self, step: Every, now: Millis, period_ms: u64) -> bool {
        let at = match step {
            Every::Scan => &mut self.scan,
            Every::Sync => &mut self.sync,
            Every::Wall => &mut self.wall,
        };
        if now < *at {
            return false;
        }
        *at = now.plus(period_ms);
        true
    }

    /// The earliest of these.
    pub fn next(&self) -> Millis {
        let periodic = self.scan.min(self.sync).min(self.wall);
        self.gang.map_or(periodic, |g| periodic.min(g))
    }
}
