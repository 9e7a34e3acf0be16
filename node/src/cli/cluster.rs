//! The cluster-membership commands: `invite` (a join token for this node's cluster),
//! `nodes --waiting` (peers waiting for approval) and `approve PEER`.
//!
//! Owns what they print; talks to the node only through `client`, reading the JSON types of
//! `api::types`.

use crate::api::types::{Approved, Invite, Waiting};
use crate::cli::text::{print_json, seg};
use crate::client::Client;
use anyhow::Result;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a one-line join token (`--json`: with its addresses and admins apart).
pub fn invite(client: &Client, json: bool) -> Result<()> {
    let invite: Invite = client.get("/v1/invite")?;
    if json {
        return print_json(&invite);
    }
    println!("{}", invite.token);
    eprintln!("join with: peerbatch node --join-token TOKEN  (the token holds the cluster key: share it privately)");
    Ok(())
}

/// Lists the peers waiting for approval that this node met.
pub fn waiting(client: &Client, json: bool) -> Result<()> {
    let list: Vec<Waiting> = client.get("/v1/waiting")?;
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        eprintln!("no peer waits for approval here (a node started with --wait-for-approval shows once it reaches this one)");
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ago = |ms: u64| format!("{}s ago", now.saturating_sub(ms) / 1000);
    println!(
        "{:<54} {:<24} {:<34} {:>10} {:>10}",
        "PEER", "HOST", "ADDRESS", "FIRST", "LAST"
    );
    for w in &list {
        println!(
            "{:<54} {:<24} {:<34} {:>10} {:>10}",
            w.peer,
            w.host,
            w.addr,
            ago(w.first_seen_ms),
            ago(w.last_seen_ms)
        );
    }
    eprintln!("check a peer id with its machine's log before approving: `peerbatch approve PEER`");
    Ok(())
}

/// Hands `peer` the cluster key (this node must be an admin) and waits until it stored it.
pub fn approve(client: &Client, peer: &str, json: bool) -> Result<()> {
    let path = format!("/v1/waiting/{}/approve", seg(peer));
    let approved: Approved = client.post(&path, &())?;
    if json {
        return print_json(&approved);
    }
    println!(
        "approved {}: it stored the cluster key from {} and joins the cluster",
        approved.peer, approved.by
    );
    Ok(())
}
