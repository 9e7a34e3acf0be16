//! The cluster-membership commands: `invite` (a join token for this node's cluster).
//!
//! Owns what they print; talks to the node only through `client`.

use crate::cli::print_json;
use crate::client::Client;
use anyhow::Result;

/// Prints a one-line join token (`--json`: with its addresses and admins apart).
pub fn invite(client: &Client, json: bool) -> Result<()> {
    let invite = client.get("/v1/invite")?;
    if json {
        return print_json(&invite);
    }
    println!("{}", invite["token"].as_str().unwrap_or_default());
    eprintln!("join with: peerbatch node --join-token TOKEN  (the token holds the cluster key: share it privately)");
    Ok(())
}
