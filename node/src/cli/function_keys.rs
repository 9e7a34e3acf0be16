//! The `fn keys` commands: create a function key (its secret printed
//! once), list a function's keys (never a secret), revoke one.
//!
//! Owns what they print; talks to the node only through `client`.

use crate::api::types::{CreateFunctionKey, FunctionKey, FunctionKeyCreated, FunctionKeyRevoked};
use crate::bad_input::BadInput;
use crate::cli::text::{print_json, seg};
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use peerbatch_protocol::function::{check_name, keys};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a key that lets callers on the LAN invoke function NAME on any
    /// node's --functions-listen address; prints its secret, shown only this once.
    Create {
        /// The function's name (only its owner or an admin may add keys).
        name: String,
        /// The key's label, to list and revoke it by: 1 to 64 letters,
        /// digits, `-`, `_` or `.`, unique among the function's live keys.
        #[arg(long, default_value = "default", value_name = "LABEL")]
        key_name: String,
        /// Print the function, the label and the secret as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List function NAME's keys, revoked ones too (labels, never secrets).
    List {
        /// The function's name.
        name: String,
        /// Print the keys as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke function NAME's key LABEL: it opens nothing on any node once
    /// the revocation reaches it.
    Revoke {
        /// The function's name (only its owner or an admin may revoke keys).
        name: String,
        /// The key's label, as `fn keys list` shows it.
        label: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Create {
            name,
            key_name,
            json,
        } => create(client, &name, key_name, json),
        KeysCmd::List { name, json } => list(client, &name, json),
        KeysCmd::Revoke { name, label, json } => {
            check_name(&name).map_err(|e| BadInput(e.to_string()))?;
            let path = format!("/v1/functions/{}/keys/{}", seg(&name), seg(&label));
            let r: FunctionKeyRevoked = client.delete(&path)?;
            if json {
                return print_json(&r);
            }
            println!("{} key {} revoked", r.name, r.label);
            Ok(())
        }
    }
}

fn create(client: &Client, name: &str, label: String, json: bool) -> Result<()> {
    check_name(name).map_err(|e| BadInput(e.to_string()))?;
    if !keys::label_ok(&label) {
        let why = format!("--key-name {label:?} must be 1 to 64 letters, digits, `-`, `_` or `.`");
        return Err(BadInput(why).into());
    }
    let path = format!("/v1/functions/{}/keys", seg(name));
    let body = CreateFunctionKey { label: Some(label) };
    let r: FunctionKeyCreated = client.post(&path, &body)?;
    if json {
        return print_json(&r);
    }
    eprintln!(
        "{} key {}: give it as `x-functions-key: KEY` or `?code=KEY`; it is not shown again",
        r.name, r.label
    );
    println!("{}", r.key);
    Ok(())
}

fn list(client: &Client, name: &str, json: bool) -> Result<()> {
    let keys: Vec<FunctionKey> = client.get(&format!("/v1/functions/{}/keys", seg(name)))?;
    if json {
        return print_json(&keys);
    }
    println!(
        "{:<24} {:<20} {:<20} CREATED BY",
        "LABEL", "CREATED", "REVOKED"
    );
    for k in &keys {
        let revoked = k.revoked_ms.map_or_else(|| "-".to_string(), utc);
        let created = utc(k.created_ms);
        println!(
            "{:<24} {created:<20} {revoked:<20} {}",
            k.label, k.created_by
        );
    }
    Ok(())
}

/// A wall-clock time in ms as UTC text.
fn utc(ms: u64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(ms as i64);
    at.map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}
