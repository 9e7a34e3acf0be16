//! The `peerbatch` binary: parses the command line and maps errors to exit
//! statuses (2 for bad input, 1 for everything else). Owns nothing else.

mod api;
mod api_files;
mod api_pools;
mod api_schedules;
mod availability;
mod bench;
mod chunk_server;
mod cli;
mod cli_files;
mod cli_pool;
mod cli_schedule;
mod client;
mod cluster;
mod demo;
mod draft;
mod driver;
mod exec;
mod fetch;
mod identity;
mod jobfile;
mod jobprep;
mod net;
mod outbox;
mod paths;
mod pools;
mod pull;
mod schedules;
mod serve;
mod side;
mod stage;
mod store;
mod sweep;
mod transfer_bench;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let is_node = matches!(cli.cmd, cli::Cmd::Node { op: None, .. });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| if is_node { "info" } else { "warn" }.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<cli::BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
