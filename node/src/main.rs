//! The `peerbatch` binary: parses the command line, sets up logging, calls
//! into the library and maps errors to exit statuses (2 for bad input, 1 for
//! everything else). Owns nothing else.

use clap::Parser;
use peerbatch::cli;
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
        // A log that cannot be written (a full disk) must cost nothing:
        // reporting that on standard error, the default, panics when that
        // fails too, killing whichever task was logging.
        .log_internal_errors(false)
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
