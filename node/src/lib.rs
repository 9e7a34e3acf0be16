//! The peerbatch node as a library: everything the `peerbatch` binary runs
//! (the mesh, the ledger cache, the executor, the HTTP API and the command
//! line), so that the binary stays a thin edge and fuzz targets can reach the
//! decoders of untrusted input.
//!
//! Public are only the modules something outside this crate calls: `cli`
//! (the binary's entry point), `jobfile` (the job-file parser) and `net`
//! (its request-response framing). The rest stays private so that the
//! compiler still reports what nothing uses.

mod api;
mod availability;
mod bad_input;
mod bench;
mod bench_forget;
mod bench_memory;
mod budget;
mod captures;
mod chunk_server;
pub mod cli;
mod client;
mod client_tls;
mod cluster;
mod demo;
mod draft;
mod driver;
mod exec;
mod fetch;
mod functions;
mod heap;
mod identity;
pub mod jobfile;
mod jobprep;
mod live_logs;
mod membership;
mod metrics;
pub mod net;
mod outbox;
mod paths;
mod pools;
mod portal;
mod sandbox;
mod serve;
mod side;
mod spawn;
mod stage;
mod stop_signal;
mod store;
mod sweep;
mod task_tokens;
mod transfer_bench;
mod transfer_stats;
mod waiting;
mod wallclock;
mod workdir;
