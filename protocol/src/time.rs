//! Protocol time: milliseconds on the caller's monotonic clock.
//!
//! Owns the [`Millis`] type only. The protocol never reads a clock; the node
//! or the simulator passes `now` into every input.

use serde::{Deserialize, Serialize};

/// A point on the caller's monotonic clock, in milliseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
