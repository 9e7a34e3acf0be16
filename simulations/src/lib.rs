//! peerbatch-simulations: many protocol cores in one process, under faults.
//!
//! Owns the simulated world around real [`peerbatch_protocol::Core`]s and
//! the swarm tester built on it. From one seed a run draws its cluster
//! size, workload and faults ([`SimConfig::draw`]); it then runs a safety
//! phase (faults strike, DESIGN.md's invariants 2–7 are checked after every
//! step) and a liveness phase (faults healed, every task must end within a
//! bound). Same [`SimConfig`] ⇒ the same run, event for event. A failing
//! run shrinks to the smallest config that still fails ([`shrink`]). Must
//! drive the cores only through their public API and never copy protocol
//! logic.
//!
//! Modules: `config` (what a run is made of), `streams` (per-concern RNGs),
//! `workload` (jobs and the executor's draws), `network` (message faults
//! and partitions), `clock` (skew and jumps), `disk` (durable store, flush
//! queue, crash and wipe), `faulty` (a member that forges events),
//! `invariants` (the checks), `world` (the event loop), `report`, `trace`,
//! `shrink`.

#![forbid(unsafe_code)]

mod clock;
mod config;
mod disk;
mod faulty;
mod invariants;
mod network;
mod report;
mod shrink;
mod starts;
mod streams;
mod trace;
mod workload;
mod world;

pub use config::{Faults, SimConfig};
pub use network::NetStats;
pub use report::{Injected, Report, Spread, Violation};
pub use shrink::{shrink, Shrunk};
pub use world::run;
