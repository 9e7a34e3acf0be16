//! `fn logs NAME`: a function's recent calls on every node, newest last,
//! each with the end of its handler's stderr; `--follow` keeps printing
//! new calls as nodes report them.
//!
//! Owns what it prints and following (asking again every
//! [`FOLLOW_EVERY`], telling new calls by each node's `seq`, and saying
//! how many calls a node ran that its record no longer held). Talks to the
//! node only through `client` (`GET /v1/functions/{name}/calls`).

use crate::api::types::{FunctionCall, FunctionCalls, Unanswered};
use crate::bad_input::BadInput;
use crate::cli::text::{print_json, seg};
use crate::client::Client;
use anyhow::Result;
use clap::Args;
use peerbatch_protocol::function::check_name;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// How often `--follow` asks for new calls.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct LogsArgs {
    /// The function's name.
    name: String,
    /// Keep printing new calls as they end (every second) until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Print the calls as JSON (with --follow, one call per line as it comes).
    #[arg(long)]
    json: bool,
    /// Show at most N of the newest calls first (each node keeps its 32
    /// newest per function; at most 1000).
    #[arg(long, value_name = "N", default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
}

pub fn run(client: &Client, args: LogsArgs) -> Result<()> {
    check_name(&args.name).map_err(|e| BadInput(e.to_string()))?;
    let path = format!(
        "/v1/functions/{}/calls?limit={}",
        seg(&args.name),
        args.limit
    );
    let first: FunctionCalls = client.get(&path)?;
    if args.json && !args.follow {
        return print_json(&first);
    }
    let mut follower = Follower::default();
    follower.show(&first, args.json)?;
    if args.follow {
        loop {
            std::thread::sleep(FOLLOW_EVERY);
            follower.show(&client.get(&path)?, args.json)?;
        }
    }
    if !args.json && first.calls.is_empty() {
        eprintln!("no calls of {} on the nodes that answered", args.name);
    }
    Ok(())
}

/// What has been printed: each node's newest call shown, and which nodes
/// did not answer last time.
#[derive(Default)]
struct Follower {
    shown: BTreeMap<String, u64>,
    unanswered: Vec<String>,
}

impl Follower {
    /// Prints the calls of `answer` not printed yet, oldest first.
    fn show(&mut self, answer: &FunctionCalls, json: bool) -> Result<()> {
        self.say_unanswered(&answer.unanswered);
        let mut out = std::io::stdout().lock();
        for call in &answer.calls {
            let shown = self.shown.get(&call.node).copied().unwrap_or(0);
            // A node that restarted counts from 1 again.
            let restarted = answer
                .calls
                .iter()
                .all(|c| c.node != call.node || c.call.seq < shown);
            let shown = if restarted { 0 } else { shown };
            if call.call.seq <= shown {
                continue;
            }
            let missed = call.call.seq - shown - 1;
            if shown > 0 && missed > 0 && !json {
                writeln!(
                    out,
                    "… {missed} calls on node {} not shown (the node keeps only its newest)",
                    call.node
                )?;
            }
            self.shown.insert(call.node.clone(), call.call.seq);
            match json {
                true => writeln!(out, "{}", serde_json::to_string(call)?)?,
                false => write!(out, "{}", text(call))?,
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Says on stderr which nodes did not answer, when that changes.
    fn say_unanswered(&mut self, unanswered: &[Unanswered]) {
        let nodes: Vec<String> = unanswered.iter().map(|u| u.node.clone()).collect();
        if nodes == self.unanswered {
            return;
        }
        for u in unanswered {
            eprintln!(
                "node {} did not answer ({}): its calls are missing",
                u.node, u.why
            );
        }
        self.unanswered = nodes;
    }
}

/// A call as lines: when, where, version, status and duration, then its
/// stderr and, if it failed, its answer, indented.
fn text(c: &FunctionCall) -> String {
    let call = &c.call;
    let when = chrono::DateTime::from_timestamp_millis(call.at_ms as i64).map_or_else(
        || call.at_ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    );
    let via = call
        .via
        .as_ref()
        .map_or_else(String::new, |v| format!(" via {v}"));
    let mut out = format!(
        "{when} v{} {} {} ms on {}{via}\n",
        call.version, call.status, call.duration_ms, c.node
    );
    for line in call.stderr.lines() {
        out.push_str(&format!("  | {line}\n"));
    }
    for line in call.answer.lines() {
        out.push_str(&format!("  = {line}\n"));
    }
    out
}
