//! The operator's request to stop a node: Ctrl-C or SIGTERM.
//!
//! Owns only waiting for that signal, so that both phases of a node (waiting for approval in
//! `waiting`, running as a member in `serve`) stop the same way. Must not decide what stopping
//! does: each caller shuts its own parts down.

/// Resolves at Ctrl-C or SIGTERM, or at once if SIGTERM cannot be watched (said as an error).
pub(crate) async fn requested() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
