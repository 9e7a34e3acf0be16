//! The node's wall clock, read in one place.
//!
//! Owns turning `SystemTime` into the milliseconds since the Unix epoch that
//! the protocol core takes as wall time (schedules, pools, drains, deadlines).
//! Must not hold state or judge time: the core and its callers do.

/// Wall-clock time in ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_millis() as u64)
}
