//! The `peerbatch` binary: parses the command line and maps errors to exit
//! statuses (2 for bad input, 1 for everything else). Owns nothing else.

mod api;
mod bench;
mod cli;
mod client;
mod cluster;
mod demo;
mod driver;
mod exec;
mod fetch;
mod identity;
mod jobfile;
mod net;
mod outbox;
mod paths;
mod pull;
mod serve;
mod store;
mod transfer_bench;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let is_node = matches!(cli.cmd, cli::Cmd::Node(_));
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
