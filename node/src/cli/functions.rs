//! The `fn` commands: deploy a function version, list functions and their
//! versions, roll back, remove, invoke one, enqueue a message and show a
//! queue (its keys: `cli::function_keys`; its calls: `cli::function_logs`).
//!
//! Owns what they print; talks to the node only through `client`.

use crate::api::types::{
    DeployFunction, Enqueued, Function, FunctionChanged, FunctionQueue, RollbackFunction,
    WarmWorkers,
};
use crate::bad_input::BadInput;
use crate::cli::text::{absolute, opt, print_json, seg};
use crate::client::Client;
use anyhow::{bail, Result};
use clap::Subcommand;
use peerbatch_protocol::function::check_name;
use std::io::{Read, Write};
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
        /// stdin, PEERBATCH_FN_* variables, stdout is the response (with
        /// --warm: started once, taking calls from the Lambda runtime API).
        #[arg(long)]
        command: String,
        /// What invokes it (repeatable): `http` for ANY /fn/NAME/... on any
        /// node; `queue` for each message `fn enqueue` adds; `timer:"*/5 * * * *"`
        /// (cron, local time) or `timer:"every 30s"` once per occurrence
        /// mesh-wide; `blob:PREFIX` for each `put --name` starting with PREFIX.
        #[arg(long = "trigger", default_value = "http")]
        triggers: Vec<String>,
        /// Attempts at a queue message's, timer's or blob's invocation
        /// (retried with back-off) before it fails; a message is then a dead letter.
        #[arg(long, value_name = "N", default_value_t = peerbatch_protocol::trigger::DEFAULT_MAX_ATTEMPTS)]
        max_attempts: u32,
        /// Kill the handler and answer 504 after this long, e.g. 30s, 2m (at most 15m).
        #[arg(long, value_parser = crate::jobfile::parse_duration_ms, default_value = "30s")]
        timeout: u64,
        /// Never run a call twice: if the node running it dies before
        /// answering, answer 502 instead of trying once more elsewhere.
        #[arg(long)]
        no_retry: bool,
        #[command(flatten)]
        warm: WarmArgs,
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
    /// Add the bytes on stdin (at most 64 KiB) as a message to function NAME's queue;
    /// some node runs the handler with it on stdin, at least once.
    Enqueue {
        /// The function's name (deployed with --trigger queue).
        name: String,
        /// Print the message's job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show function NAME's queue: messages pending, running and done, and the
    /// dead letters with their last error.
    Queue {
        /// The function's name.
        name: String,
        /// Print the queue as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show function NAME's recent calls on every node, newest last, with
    /// the end of each handler's stderr (--follow: and new ones as they end).
    Logs {
        #[command(flatten)]
        args: crate::cli::function_logs::LogsArgs,
    },
    /// Create, list or revoke the keys that open a function to callers on
    /// the LAN (a node's --functions-listen address).
    Keys {
        #[command(subcommand)]
        cmd: crate::cli::function_keys::KeysCmd,
    },
}

/// `fn deploy`'s warm-mode flags.
#[derive(clap::Args)]
pub struct WarmArgs {
    /// Keep the handler running between calls: it takes them from the AWS
    /// Lambda runtime API at $AWS_LAMBDA_RUNTIME_API (GET
    /// /2018-06-01/runtime/invocation/next, POST …/{id}/response), so
    /// Lambda runtime clients work unchanged.
    #[arg(long)]
    warm: bool,
    /// Warm workers each available node keeps up even without calls.
    #[arg(long, requires = "warm", default_value_t = 0, value_name = "N")]
    min_warm: u32,
    /// Most warm workers of this version on one node (1 to 64); calls
    /// beyond them go to other nodes or wait briefly, then get 503.
    #[arg(long, requires = "warm", default_value_t = 4, value_name = "N")]
    max_per_node: u32,
    /// Stop a warm worker beyond --min-warm after it waited this long for a
    /// call, e.g. 30s, 10m (1s to 24h).
    #[arg(long, requires = "warm", value_parser = crate::jobfile::parse_duration_ms,
        default_value = "10m", value_name = "DUR")]
    idle_timeout: u64,
}

impl WarmArgs {
    fn workers(&self) -> Option<WarmWorkers> {
        self.warm.then_some(WarmWorkers {
            min_warm: self.min_warm,
            max_per_node: self.max_per_node,
            idle_timeout_ms: self.idle_timeout,
        })
    }
}

pub fn run(client: &Client, cmd: FnCmd) -> Result<()> {
    match cmd {
        FnCmd::Deploy {
            name,
            dir,
            command,
            triggers,
            max_attempts,
            timeout,
            no_retry,
            warm,
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
                max_attempts: Some(max_attempts),
                warm: warm.workers(),
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
                "{:<8} {:<8} {:<10} {:<12} {:<18} {:<24} COMMAND",
                "VERSION", "SERVING", "TIMEOUT", "MODE", "BUNDLE", "TRIGGERS"
            );
            for v in &f.versions {
                let serving = if v.serving { "*" } else { "" };
                let timeout = crate::sandbox::duration_text(v.timeout_ms);
                let mode = v.warm.map_or("per-call".to_string(), |w| {
                    format!("warm {}-{}", w.min_warm, w.max_per_node)
                });
                let bundle = &v.bundle[..16.min(v.bundle.len())];
                let triggers = v.triggers.join(",");
                println!(
                    "{:<8} {serving:<8} {timeout:<10} {mode:<12} {bundle:<18} {triggers:<24} {}",
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
        FnCmd::Enqueue { name, json } => enqueue(client, &name, json),
        FnCmd::Queue { name, json } => queue(client, &name, json),
        FnCmd::Logs { args } => crate::cli::function_logs::run(client, args),
        FnCmd::Keys { cmd } => crate::cli::function_keys::run(client, cmd),
    }
}

fn enqueue(client: &Client, name: &str, json: bool) -> Result<()> {
    check_name(name).map_err(|e| BadInput(e.to_string()))?;
    let limit = peerbatch_protocol::trigger::MAX_MESSAGE_BYTES;
    let mut message = Vec::new();
    std::io::stdin()
        .take(limit as u64 + 1)
        .read_to_end(&mut message)?;
    if message.len() > limit {
        let msg = format!("the message on stdin is over {limit} bytes, the most a message may be");
        return Err(BadInput(msg).into());
    }
    let path = format!("/v1/functions/{}/queue", seg(name));
    let (status, answer) = client.send_bytes("POST", &path, &message)?;
    if status != 200 {
        bail!("{} (HTTP {status})", error_text(&answer));
    }
    let e: Enqueued = serde_json::from_slice(&answer)?;
    if json {
        return print_json(&e);
    }
    println!("{}", e.job_id);
    Ok(())
}

fn queue(client: &Client, name: &str, json: bool) -> Result<()> {
    let q: FunctionQueue = client.get(&format!("/v1/functions/{}/queue", seg(name)))?;
    if json {
        return print_json(&q);
    }
    println!(
        "pending {}  running {}  done {}  dead {}",
        q.pending,
        q.running,
        q.done,
        q.dead_letters.len()
    );
    if q.dead_letters.is_empty() {
        return Ok(());
    }
    println!("{:<18} {:<8} {:<8} ERROR", "JOB", "BYTES", "ATTEMPTS");
    for d in &q.dead_letters {
        println!(
            "{:<18} {:<8} {:<8} {}",
            d.job_id, d.message_bytes, d.attempts, d.error
        );
    }
    Ok(())
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
    bail!("{} (HTTP {status})", error_text(&answer))
}

/// A refusal's message: its `ErrorBody`, else its text.
fn error_text(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    serde_json::from_str::<crate::api::types::ErrorBody>(&text)
        .map_or_else(|_| text.trim_end().to_string(), |e| e.error)
}
