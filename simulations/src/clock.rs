//! Simulated node clocks: skew and forward jumps of a monotonic clock.
//!
//! Owns the mapping between the world's time (global ms) and what one node's
//! monotonic clock reads. Each node starts at a random offset, runs fast or
//! slow by a few parts per million and may jump forward (a suspend); it
//! never runs backwards. Must not know about cores or messages.

use peerbatch_protocol::Millis;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_global: u64,
    base_local: u64,
    /// The rate in parts per million of the world's: 1_000_000 is exact.
    rate: u64,
}

impl Clock {
    pub fn new(now: u64, offset: u64, skew_ppm: i64) -> Clock {
        Clock {
            base_global: now,
            base_local: offset,
            rate: (1_000_000 + skew_ppm).max(1) as u64,
        }
    }

    /// What the node's clock reads at world time `t` (≥ the last jump).
    pub fn local(&self, t: u64) -> Millis {
        let elapsed = t.saturating_sub(self.base_global);
        Millis(self.base_local + elapsed * self.rate / 1_000_000)
    }

    /// The first world time, not before `now`, at which the node's clock
    /// reads `at` or later.
    pub fn global(&self, at: Millis, now: u64) -> u64 {
        if at <= self.local(now) {
            return now;
        }
        let ahead = at.0 - self.base_local;
        let mut t = self.base_global + (ahead * 1_000_000).div_ceil(self.rate);
        while self.local(t) < at {
            t += 1;
        }
        t.max(now)
    }

    /// The clock leaps `ms` ahead at world time `now`.
    pub fn jump(&mut self, now: u64, ms: u64) {
        self.base_local = self.local(now).0 + ms;
        self.base_global = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_inverts_local_for_fast_slow_and_jumped_clocks() {
        for skew in [-50_000, -7, 0, 13, 50_000] {
            let mut clock = Clock::new(100, 5_000_000, skew);
            clock.jump(300, 7_000);
            for at in [0u64, 5_007_000, 5_007_211, 5_100_000] {
                let t = clock.global(Millis(at), 400);
                assert!(t >= 400);
                assert!(clock.local(t) >= Millis(at), "skew {skew} at {at}");
                assert!(
                    t == 400 || clock.local(t - 1) < Millis(at),
                    "skew {skew} at {at}"
                );
            }
        }
    }
}
