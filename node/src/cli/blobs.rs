//! How the CLI moves one file or tree into and out of a node's store: by
//! path when the node may read and write the client's files itself (the
//! client read the node's own token file, so it runs as the node's account
//! or root), else as bytes in the HTTP body (a task's token, or a user
//! with `PEERBATCH_TOKEN`).
//!
//! The path routes are kept where they work because they are faster: the
//! node reads the file once and writes its chunks once, where a streamed
//! file also crosses the HTTP connection and is spooled to the node's disk
//! before it is chunked. Owns that choice; must not know how the node
//! stores blobs.

use crate::api::types::{PutPath, Status, StoredBlob};
use crate::bad_input::BadInput;
use crate::cli::text::{absolute, seg};
use crate::client::Client;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Stores a local file or directory tree (which must exist) on the node,
/// under `name` if given (which fires the functions whose blob trigger's
/// prefix it starts with).
pub fn store(client: &Client, path: &Path, name: Option<&str>) -> Result<StoredBlob> {
    let abs = absolute(path)?;
    let meta = fs::symlink_metadata(&abs)
        .map_err(|_| BadInput(format!("{}: no such file or directory", path.display())))?;
    if client.shares_files() {
        let name = name.map(str::to_string);
        return client.post_unbounded(
            "/v1/blobs",
            &PutPath {
                path: abs.into(),
                name,
            },
        );
    }
    if !meta.is_file() {
        return Err(BadInput(format!(
            "{}: only a regular file can be sent to the node with PEERBATCH_TOKEN \
             (inside a task, say); pack a directory into one file first",
            path.display()
        ))
        .into());
    }
    let file = fs::File::open(&abs).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    // The node refuses such a body too, but may close the connection
    // before the client has sent it and read the refusal.
    let limit = client.get::<Status>("/v1/status")?.store_limit;
    if let Some(limit) = limit.filter(|limit| len > *limit) {
        return Err(BadInput(format!(
            "{}: {len} bytes is larger than the node's --store-limit of {limit} bytes",
            path.display()
        ))
        .into());
    }
    let query = name.map_or_else(String::new, |n| format!("?name={}", seg(n)));
    let stored: StoredBlob = client.put_reader(&format!("/v1/blobs/stream{query}"), file, len)?;
    if stored.bytes != len {
        bail!(
            "{} changed size while it was being sent ({len} bytes before, {} stored)",
            path.display(),
            stored.bytes
        );
    }
    Ok(stored)
}

/// Writes file blob `id`'s bytes, as the node sends them, to a new file
/// at `out`; the number of bytes written. A partial file is removed.
pub fn fetch_to(client: &Client, id: &str, out: &Path) -> Result<u64> {
    let (len, mut body) = client.get_reader(&format!("/v1/blobs/{}/bytes", seg(id)))?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| BadInput(format!("{}: cannot create it: {e}", out.display())))?;
    let copied = (|| -> Result<u64> {
        let mut w = BufWriter::new(file);
        let n = std::io::copy(&mut body, &mut w).context("the node's answer broke off")?;
        w.flush()?;
        if len.is_some_and(|len| len != n) {
            bail!("the node sent {n} bytes of blob {id}, not all of it");
        }
        Ok(n)
    })();
    if copied.is_err() {
        let _ = fs::remove_file(out);
    }
    copied.with_context(|| format!("get {id} into {}", out.display()))
}
