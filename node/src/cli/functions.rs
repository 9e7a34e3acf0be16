//! The `fn` commands: deploy a function version, list functions and their
//! versions, roll back, remove, and invoke one.
//!
//! Owns what they print; talks to the node only through `client`.

use crate::api::types::{DeployFunction, Function, FunctionChanged, RollbackFunction};
use crate::bad_input::BadInput;
use crate::cli::text::{absolute, opt, print_json, seg};
use crate::client::Client;
use anyhow::{bail, Result};
use clap::Subcommand;
use peerbatch_protocol::function::check_name;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FnCmd {
    /// Publish DIR (a directory or .tar/.tar.gz/.tgz archive) as a new version of function NAME; every node serves it.
    Deploy {
        /// The function's name: 1 to 64 letters, digits, `-`, `_` or `.`.
        name: String,
        /// The bundle: its files are the handler's working directory.
        dir: PathBuf,
        /// The handler, run by /bin/sh -c once per call: the request body on
        /// stdin, PEERBATCH_FN_* variables, stdout is the response.
        #[arg(long)]
        command: String,
        /// What invokes it (repeatable): `http` for ANY /fn/NAME/... on any node.
        #[arg(long = "trigger", default_value = "http")]
        triggers: Vec<String>,
        /// Kill the handler and answer 504 after this long, e.g. 30s, 2m (at most 15m).
        #[arg(long, value_parser = crate::jobfile::parse_duration_ms, default_value = "30s")]
        timeout: u64,
        /// Never run a call twice: if the node running it dies before
        /// answering, answer 502 instead of trying once more elsewhere.
        #[arg(long)]
        no_retry: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the functions the mesh knows and the version each serves.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the versions of function NAME, oldest first.
    Versions {
        /// The function's name.
        name: String,
        /// Print the function and its versions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve an earlier VERSION (its number in `fn versions`) of function NAME again.
    Rollback {
        /// The function's name.
        name: String,
        /// The version to serve again, its number in `fn versions`.
        version: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving function NAME (only the node that deployed it or an admin may).
    Remove {
        /// The function's name.
        name: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call function NAME through this node and print its response.
    Invoke {
        /// The function's name.
        name: String,
        /// The request body: text, or @FILE for a file's bytes (none by default).
        #[arg(long)]
        data: Option<String>,
        /// The HTTP method of the call.
        #[arg(long, default_value = "POST")]
        method: String,
        /// A path after /fn/NAME, handed to the handler as PEERBATCH_FN_PATH.
        #[arg(long, default_value = "")]
        path: String,
    },
}

pub fn run(client: &Client, cmd: FnCmd) -> Result<()> {
    match cmd {
        FnCmd::Deploy {
            name,
            dir,
            command,
            triggers,
            timeout,
            no_retry,
            json,
        } => {
            check_name(&name).map_err(|e| BadInput(e.to_string()))?;
            if std::fs::symlink_metadata(&dir).is_err() {
                let missing = format!("{}: no such file or directory", dir.display());
                return Err(BadInput(missing).into());
            }
            let body = DeployFunction {
                name,
                path: absolute(&dir)?.into(),
                command,
                triggers,
                timeout_ms: Some(timeout),
                retry: !no_retry,
            };
            let r: FunctionChanged = client.post_unbounded("/v1/functions", &body)?;
            changed(&r, json, "deployed")
        }
        FnCmd::List { json } => {
            let list: Vec<Function> = client.get("/v1/functions")?;
            if json {
                return print_json(&list);
            }
            println!("{:<24} {:<8} {:<9} COMMAND", "NAME", "SERVING", "VERSIONS");
            for f in &list {
                let serving = f.serving.and_then(|n| f.versions.get(n as usize - 1));
                let command = serving.map_or("-", |v| v.command.as_str());
                let number = opt(&f.serving);
                println!(
                    "{:<24} {number:<8} {:<9} {command}",
                    f.name,
                    f.versions.len()
                );
            }
            Ok(())
        }
        FnCmd::Versions { name, json } => {
            let f: Function = client.get(&format!("/v1/functions/{}", seg(&name)))?;
            if json {
                return print_json(&f);
            }
            println!(
                "{:<8} {:<8} {:<10} {:<18} COMMAND",
                "VERSION", "SERVING", "TIMEOUT", "BUNDLE"
            );
            for v in &f.versions {
                let serving = if v.serving { "*" } else { "" };
                let timeout = crate::sandbox::duration_text(v.timeout_ms);
                let bundle = &v.bundle[..16.min(v.bundle.len())];
                println!(
                    "{:<8} {serving:<8} {timeout:<10} {bundle:<18} {}",
                    v.number, v.command
                );
            }
            Ok(())
        }
        FnCmd::Rollback {
            name,
            version,
            json,
        } => {
            let path = format!("/v1/functions/{}/rollback", seg(&name));
            let r: FunctionChanged = client.post(&path, &RollbackFunction { version })?;
            changed(&r, json, "rolled back")
        }
        FnCmd::Remove { name, json } => {
            let r: FunctionChanged = client.delete(&format!("/v1/functions/{}", seg(&name)))?;
            changed(&r, json, "removed")
        }
        FnCmd::Invoke {
            name,
            data,
            method,
            path,
        } => invoke(client, &name, data, &method, &path),
    }
}

fn changed(r: &FunctionChanged, json: bool, how: &str) -> Result<()> {
    if json {
        return print_json(r);
    }
    match r.serving {
        Some(n) => println!("{} {how}: serving version {n}", r.name),
        None => println!("{} {how}: serving nothing", r.name),
    }
    Ok(())
}

fn invoke(
    client: &Client,
    name: &str,
    data: Option<String>,
    method: &str,
    path: &str,
) -> Result<()> {
    check_name(name).map_err(|e| BadInput(e.to_string()))?;
    let body = match data.as_deref() {
        None => Vec::new(),
        Some(d) => match d.strip_prefix('@') {
            Some(file) => {
                std::fs::read(file).map_err(|e| BadInput(format!("--data @{file}: {e}")))?
            }
            None => d.as_bytes().to_vec(),
        },
    };
    let rest: String = (path.split('/').filter(|p| !p.is_empty()))
        .map(|p| format!("/{}", seg(p)))
        .collect();
    let (status, answer) = client.send_bytes(method, &format!("/fn/{}{rest}", seg(name)), &body)?;
    if status == 200 {
        std::io::stdout().write_all(&answer)?;
        return Ok(());
    }
    let text = String::from_utf8_lossy(&answer);
    let msg = serde_json::from_str::<crate::api::types::ErrorBody>(&text)
        .map_or_else(|_| text.trim_end().to_string(), |e| e.error);
    bail!("{msg} (HTTP {status})")
}
