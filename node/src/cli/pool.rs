//! The `pool` commands: define a pool's start task, list pools with their
//! nodes' start-task results, print a node's start-task output.
//!
//! Owns what they print; talks to the node only through `client`. A node
//! joins pool NAME with `peerbatch node --label pool=NAME`.

use crate::api::types::{DefinePool, Named, Pool};
use crate::cli::text::{print_json, seg};
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use std::io::Write;

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Give pool NAME a start task, run once by each node labelled pool=NAME as it joins.
    Add {
        /// The pool: nodes labelled pool=NAME belong to it.
        name: String,
        /// A command line run by /bin/sh -c, e.g. "apt-get install -y ffmpeg".
        #[arg(long)]
        start_task: String,
        /// Keep a node out of the pool's work until its start task succeeded.
        #[arg(long)]
        wait_for_success: bool,
    },
    /// List pools and each node's start-task result.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's start-task output (NODE: a peer id or a prefix).
    Logs {
        /// The pool.
        name: String,
        /// The node: a peer id or a unique prefix of one.
        node: String,
        /// Print its standard error instead of its standard output.
        #[arg(long)]
        stderr: bool,
    },
}

pub fn pool(client: &Client, cmd: PoolCmd) -> Result<()> {
    match cmd {
        PoolCmd::Add {
            name,
            start_task,
            wait_for_success,
        } => {
            let body = DefinePool {
                name: name.clone(),
                start_task,
                wait_for_success,
            };
            let _: Named = client.post("/v1/pools", &body)?;
            eprintln!("pool {name} defined; nodes labelled pool={name} run its start task");
            Ok(())
        }
        PoolCmd::List { json } => {
            let list: Vec<Pool> = client.get("/v1/pools")?;
            if json {
                return print_json(&list);
            }
            for p in &list {
                println!(
                    "{}  start task: {}  wait for success: {}",
                    p.name, p.start_task, p.wait_for_success
                );
                for n in &p.nodes {
                    println!("  {:<54} {}", n.node, n.start_task);
                }
            }
            Ok(())
        }
        PoolCmd::Logs { name, node, stderr } => {
            let stream = if stderr { "stderr" } else { "stdout" };
            let bytes = client.get_bytes(&format!(
                "/v1/pools/{}/logs/{}?stream={stream}",
                seg(&name),
                seg(&node)
            ))?;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
    }
}
