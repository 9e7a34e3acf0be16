//! The `peerbatch` binary: parses the command line, sets up logging, calls
//! into the library and maps errors to exit statuses (2 for bad input, 1 for
//! everything else), and picks the process's allocator. Owns nothing else.

use clap::Parser;
use peerbatch::cli;
use std::process::ExitCode;

/// jemalloc: it hands freed pages back to the system by itself (see
/// [`MALLOC_CONF`]), where glibc's malloc kept a finished job's pages,
/// pinned by the few small allocations still alive among them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread purges
/// pages a second after they were last used (`dirty_decay_ms`), straight
/// back to the system (`muzzy_decay_ms`), so a node's RSS follows what it
/// holds rather than the peak of the largest job it ran; and one arena
/// (`narenas`), not four per CPU: each arena keeps its own partly used
/// pages after a burst of work, which cost 7-8 MiB of RSS per node after
/// 200,000 tasks (BENCHMARKS, "After the burst") for no throughput a
/// node's few busy threads could measure.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: ConfString =
    ConfString(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1".as_ptr());

/// A C string pointer that can be a `static` (jemalloc reads a `const char *`).
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: it points to a static string, never written to.
unsafe impl Sync for ConfString {}

/// `RUST_LOG`, else `info` for a node and `warn` for a command; either way
/// without gossipsub's warning per message it drops for a slow peer (the
/// message printed whole; the node sums those into one line a minute,
/// `net/slow_peers`) unless `RUST_LOG` names gossipsub.
fn log_filter(is_node: bool) -> tracing_subscriber::EnvFilter {
    let default = if is_node { "info" } else { "warn" };
    let asked = std::env::var("RUST_LOG").unwrap_or_else(|_| default.into());
    let quiet = if asked.contains("gossipsub") {
        ""
    } else {
        ",libp2p_gossipsub::behaviour=error"
    };
    tracing_subscriber::EnvFilter::try_new(format!("{asked}{quiet}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let is_node = matches!(cli.cmd, cli::Cmd::Node { op: None, .. });
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(is_node))
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
