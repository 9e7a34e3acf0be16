//! The error that means "the user's input was wrong": the binary's edge maps
//! it to exit status 2.
//!
//! Owns only that type, so that any part of the node (the CLI, `serve`'s
//! start-up checks) can say so without importing the CLI. Must not format or
//! print anything.

/// Bad input from the user: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
