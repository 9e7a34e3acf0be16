//! Whether this node takes new tasks, from its three causes: the driver's
//! availability policy (hours, load, idle: `Core::set_unavailable`), a
//! drain asked through the ledger (judged at each wall check by
//! `core::wall`), and a store that cannot be written (`Core::set_paused`:
//! local, never announced).
//!
//! Owns those flags and what is announced of them (`draining`). Must not
//! read the ledger or a clock: the core passes in what it judged.

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Availability {
    unavailable: bool,
    drain_requested: bool,
    paused: bool,
    /// Announced to peers: outside the policy or drained by request.
    draining: bool,
}

impl Availability {
    /// As this node last announced itself (before a restart): draining
    /// until the first wall check and the driver judge it again.
    pub fn restored(draining: bool) -> Availability {
        Availability {
            drain_requested: draining,
            draining,
            ..Availability::default()
        }
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    pub fn drain_requested(&self) -> bool {
        self.drain_requested
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Neither draining nor paused: may claim new tasks.
    pub fn willing(&self) -> bool {
        !self.draining && !self.paused
    }

    /// Sets the policy's verdict; true if what is announced changed.
    pub fn set_unavailable(&mut self, unavailable: bool) -> bool {
        self.unavailable = unavailable;
        self.refresh()
    }

    /// Sets the ledger's verdict; true if what is announced changed.
    pub fn set_drain_requested(&mut self, requested: bool) -> bool {
        self.drain_requested = requested;
        self.refresh()
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    fn refresh(&mut self) -> bool {
        let draining = self.unavailable || self.drain_requested;
        let changed = self.draining != draining;
        self.draining = draining;
        changed
    }
}
