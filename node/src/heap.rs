//! What the node asks of glibc's allocator: handing the pages it freed
//! back to the system.
//!
//! Owns every call into malloc's trimming (elsewhere than glibc it does
//! nothing). Must not decide when memory is freed: the driver calls it.

/// Hands glibc's free heap pages to the system: glibc keeps them
/// otherwise, and RSS would stay at the peak of the largest job.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns glibc's free heap pages to the
    // system; no memory in use moves.
    unsafe {
        libc::malloc_trim(0);
    }
}
