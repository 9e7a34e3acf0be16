//! What the process's allocator holds: jemalloc's own counters, for
//! `/metrics` and `bench --finished`.
//!
//! Owns reading them. RSS alone cannot tell the memory a node's state
//! takes (`allocated`) from pages the allocator keeps around it
//! (`resident` beyond it: free space in pages that still hold something,
//! and freed pages not yet purged). Must not change the allocator's
//! behaviour; the binary (`main.rs`) picks and tunes it. In a process whose
//! allocator is not jemalloc (the library's tests) the counters are near
//! zero.

use tikv_jemalloc_ctl::{epoch, stats};

/// jemalloc's totals at one moment, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes the program has allocated and not freed.
    pub allocated: u64,
    /// Bytes of physical memory in pages jemalloc maps and has touched
    /// (the allocator's part of RSS, its own metadata included).
    pub resident: u64,
}

/// The counters now, or `None` if jemalloc cannot give them.
pub fn stats() -> Option<HeapStats> {
    // jemalloc caches its statistics; advancing the epoch refreshes them.
    epoch::advance().ok()?;
    Some(HeapStats {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}
