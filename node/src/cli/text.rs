//! How the CLI turns values into text: an optional value as a table cell,
//! a pretty-printed JSON answer, a URL path segment, a user's path made
//! absolute for the API.
//!
//! Owns only these conversions, shared by every subcommand's module. Must not
//! talk to a node or parse arguments.

use crate::bad_input::BadInput;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// The absolute form of a path the user gave (the node has another working
/// directory), as text for the API.
pub fn absolute(path: &std::path::Path) -> Result<String> {
    let abs = std::path::absolute(path)
        .map_err(|e| BadInput(format!("{}: cannot make it absolute: {e}", path.display())))?;
    match abs.into_os_string().into_string() {
        Ok(text) => Ok(text),
        Err(_) => Err(BadInput(format!("{}: path is not UTF-8", path.display())).into()),
    }
}

/// Prints `v` as pretty JSON and a newline, through one buffer: standard
/// output flushes at every line otherwise, a write per line of a list of
/// 100,000 tasks.
pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// An optional value as plain text ("-" for none).
pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

/// Percent-encodes one URL path segment.
pub fn seg(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
