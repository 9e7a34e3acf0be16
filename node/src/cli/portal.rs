//! `peerbatch portal`: a one-time login link to the node's portal, printed
//! and opened in a browser where one exists.
//!
//! Owns what the subcommand prints and starting the browser; the code comes
//! from the node (`POST /v1/portal/login`).

use crate::api::types::PortalLogin;
use crate::cli::text::print_json;
use crate::client::Client;
use anyhow::Result;
use serde_json::json;
use std::process::{Command, Stdio};

pub fn portal(client: &Client, open: bool, json: bool) -> Result<()> {
    let answer: PortalLogin = client.post("/v1/portal/login", &json!({}))?;
    let url = format!("{}{}", client.base(), answer.path);
    if json {
        return print_json(&json!({ "url": url, "expires_in_s": answer.expires_in_s }));
    }
    println!("{url}");
    eprintln!(
        "a one-time link: it logs one browser in and expires in {} s",
        answer.expires_in_s
    );
    if open && browser_opened(&url) {
        eprintln!("opened it in the browser");
    }
    Ok(())
}

/// Opens `url` with `xdg-open` when a display is there to show it; false
/// when there is none or `xdg-open` cannot be run.
fn browser_opened(url: &str) -> bool {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    display
        && Command::new("xdg-open")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok()
}
