//! The command line: argument parsing and the client commands.
//!
//! Owns what each subcommand prints (tables, `--json`, progress bars) and its
//! exit status. Talks to a node only through `client`; must not reach into
//! a node's state directly.

use crate::client::Client;
use crate::jobfile;
use crate::paths::DataDir;
use crate::serve::NodeOpts;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use peerbatch_protocol::job::{Command, JobSpec, TaskGroup, TaskSpec};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::bad_input::BadInput;
use crate::cli_submit::submit;
use crate::cli_text::{absolute, print_json, s, seg};

#[derive(Parser)]
#[command(
    name = "peerbatch",
    version,
    about = "A peer-to-peer compute grid: start a node on every machine, submit jobs from any of them."
)]
pub struct Cli {
    /// The node's data directory [env: PEERBATCH_DATA_DIR; default: $XDG_DATA_HOME/peerbatch]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// A node's API address (host:port) instead of the data dir's; needs PEERBATCH_TOKEN.
    #[arg(long, env = "PEERBATCH_API")]
    pub api: Option<String>,
}

#[derive(Subcommand)]
pub enum NodeOp {
    /// Let NODE finish its running tasks and take no new ones (NODE: a peer id, a prefix, or `self`).
    Drain {
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Let a drained NODE take tasks again.
    Resume {
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

fn drain(client: &Client, node: &str, drain: bool) -> Result<()> {
    let r = client.post(
        &format!("/v1/nodes/{}/drain", seg(node)),
        &json!({ "drain": drain }),
    )?;
    let what = if drain { "drain" } else { "resume" };
    eprintln!("asked node {} to {what}", s(&r["node"]));
    Ok(())
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a node on this machine, or drain/resume one: `peerbatch node drain NODE`.
    #[command(args_conflicts_with_subcommands = true)]
    Node {
        #[command(subcommand)]
        op: Option<NodeOp>,
        #[command(flatten)]
        opts: Box<NodeOpts>,
    },
    /// Make a cluster key file for --cluster-key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a one-line token another machine joins this node's cluster with
    /// (`peerbatch node --join-token TOKEN`): the cluster key, this node's addresses, the admins.
    Invite {
        /// Print the token, its addresses and the admin list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Submit a job file (TOML).
    Submit {
        file: PathBuf,
        /// Show progress until the job ends; exit 1 if any task failed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Submit one command, or an array of it: `peerbatch run --array 1-100 -- CMD ARGS...`.
    Run {
        /// Index range, e.g. 1-100 or 0..=9; fills {index} and $PEERBATCH_TASK_INDEX.
        #[arg(long)]
        array: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = jobfile::DEFAULT_MAX_RETRIES)]
        max_retries: u32,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
        #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List jobs.
    Jobs {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show one job (by id, id prefix or name).
    Job {
        job: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a job's tasks.
    Tasks {
        job: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// This node's own state: slots, load, peers, ledger and store figures,
    /// and why it is not claiming if it is not.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List the nodes of the mesh.
    Nodes {
        #[arg(long)]
        json: bool,
        /// List instead the peers without the cluster key that this node met and that wait
        /// for an admin's approval (`peerbatch node --wait-for-approval`): peer id, host name,
        /// address, first and last seen.
        #[arg(long)]
        waiting: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Hand the cluster key to a peer waiting for approval (see `nodes --waiting`), over a
    /// connection to that peer id bound to its TLS session; run on an admin node of the
    /// cluster. Waits until the peer stored the key (at most a minute).
    Approve {
        /// The waiting peer's id, as its log and `nodes --waiting` show it.
        peer: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print a finished task's stdout (or stderr), wherever it ran.
    Logs {
        job: String,
        task: String,
        #[arg(long)]
        stderr: bool,
        /// Another instance of a multi-instance task (0 is the primary).
        #[arg(long, default_value_t = 0)]
        rank: u32,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel a job: kill its running tasks everywhere.
    Cancel {
        job: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Store files or directory trees in this node's chunk store; prints one id per PATH.
    Put {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print what was stored as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Fetch a file or tree by id — or every output of a job, as OUT/TASK/... —
    /// from wherever it lives in the mesh and write it at --out.
    Get {
        /// A blob id (64 hex digits), or a job (id, id prefix or name).
        id: String,
        /// Where to write it: must not exist (a tree may go into an empty directory).
        #[arg(long)]
        out: PathBuf,
        /// Print the finished export as JSON.
        #[arg(long)]
        json: bool,
        /// Write a file's fetched chunks only into --out, keeping no copy
        /// in the node's store (the node does not serve the file
        /// afterwards, and an interrupted get starts over). Without it, a
        /// file over 16 MiB is kept once: the store's copy, linked at
        /// --out read-only where the file system allows. Trees and job
        /// outputs always go through the store.
        #[arg(long)]
        no_store: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Application packages: directories or archives tasks find under $PEERBATCH_PACKAGES/NAME.
    Package {
        #[command(subcommand)]
        cmd: crate::cli_files::PackageCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Pools: nodes labelled pool=NAME, with a start task each runs as it joins.
    Pool {
        #[command(subcommand)]
        cmd: crate::cli_pool::PoolCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Recurring jobs: a job file submitted at every interval or cron occurrence.
    Schedule {
        #[command(subcommand)]
        cmd: crate::cli_schedule::ScheduleCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Start a 3-node local cluster, run an example job on it, and stop.
    Demo(crate::demo::DemoOpts),
    /// Measure task throughput and latency (or, with `transfer`, the data plane) on a local cluster.
    Bench(crate::bench::BenchOpts),
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let dir = DataDir::resolve(cli.data_dir)?;
    let connect = |c: &ClientOpts| Client::connect(&dir, c.api.clone());
    match cli.cmd {
        Cmd::Node { op: None, opts } => crate::serve::run(dir, *opts),
        Cmd::Node {
            op: Some(NodeOp::Drain { node, client }),
            ..
        } => drain(&connect(&client)?, &node, true),
        Cmd::Node {
            op: Some(NodeOp::Resume { node, client }),
            ..
        } => drain(&connect(&client)?, &node, false),
        Cmd::Keygen { out } => {
            crate::net::write_cluster_key(&out)?;
            eprintln!(
                "wrote a new cluster key to {} (mode 0600); give every node --cluster-key {}",
                out.display(),
                out.display()
            );
            Ok(())
        }
        Cmd::Invite { json, client } => crate::cli_cluster::invite(&connect(&client)?, json),
        Cmd::Submit { file, wait, client } => {
            let draft = jobfile::load(&file).map_err(|e| BadInput(e.to_string()))?;
            let client = connect(&client)?;
            let spec = crate::draft::finish(&client, draft)?;
            submit(&client, spec, wait)
        }
        Cmd::Run {
            array,
            name,
            max_retries,
            wait,
            client,
            command,
        } => {
            let spec = run_spec(array, name, max_retries, command)?;
            submit(&connect(&client)?, spec, wait)
        }
        Cmd::Jobs { json, client } => {
            let jobs = connect(&client)?.get("/v1/jobs")?;
            if json {
                return print_json(&jobs);
            }
            println!(
                "{:<17} {:<20} {:<10} {:>7} {:>7} {:>7} {:>7}",
                "ID", "NAME", "STATE", "TASKS", "DONE", "RUNNING", "FAILED"
            );
            for j in jobs.as_array().into_iter().flatten() {
                let done = ["succeeded", "failed", "cancelled", "skipped"]
                    .iter()
                    .map(|k| j[*k].as_u64().unwrap_or(0))
                    .sum::<u64>();
                println!(
                    "{:<17} {:<20} {:<10} {:>7} {:>7} {:>7} {:>7}",
                    s(&j["id"]),
                    s(&j["name"]),
                    s(&j["state"]),
                    j["tasks"],
                    done,
                    j["running"],
                    j["failed"]
                );
            }
            Ok(())
        }
        Cmd::Job { job, json, client } => {
            let j = connect(&client)?.get(&format!("/v1/jobs/{}", seg(&job)))?;
            if json {
                return print_json(&j);
            }
            for key in [
                "id",
                "name",
                "state",
                "priority",
                "tasks",
                "pending",
                "blocked",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                "skipped",
                "unschedulable",
                "submitted_by",
            ] {
                println!("{key:<13} {}", s(&j[key]));
            }
            Ok(())
        }
        Cmd::Tasks { job, json, client } => {
            let tasks = connect(&client)?.get(&format!("/v1/jobs/{}/tasks", seg(&job)))?;
            if json {
                return print_json(&tasks);
            }
            println!(
                "{:<16} {:<10} {:>7} {:>5}  NODE",
                "TASK", "STATE", "ATTEMPT", "EXIT"
            );
            for t in tasks.as_array().into_iter().flatten() {
                let mut node = match t["unschedulable"].as_str() {
                    Some(why) => format!("unschedulable: {why}"),
                    None => s(&t["node"]),
                };
                if t["outcome"] == "timed_out" {
                    let limit = t["wall_clock_limit_ms"].as_u64().unwrap_or(0);
                    node += &format!("  timed_out after {}", crate::sandbox::duration_text(limit));
                }
                println!(
                    "{:<16} {:<10} {:>7} {:>5}  {node}",
                    s(&t["id"]),
                    s(&t["state"]),
                    t["attempt"],
                    s(&t["exit_code"]),
                );
            }
            Ok(())
        }
        Cmd::Status { json, client } => {
            let st = connect(&client)?.get("/v1/status")?;
            if json {
                return print_json(&st);
            }
            for key in [
                "node",
                "version",
                "slots",
                "claimed",
                "running",
                "claiming",
                "draining",
                "unavailable",
                "storage_error",
                "peers_connected",
                "events",
                "event_bytes",
                "attempts_started",
                "attempts_fenced",
                "chunks_fetched",
                "bad_chunks",
                "store_limit",
            ] {
                println!("{key:<17} {}", s(&st[key]));
            }
            Ok(())
        }
        Cmd::Nodes {
            json,
            waiting: true,
            client,
        } => crate::cli_cluster::waiting(&connect(&client)?, json),
        Cmd::Approve { peer, json, client } => {
            crate::cli_cluster::approve(&connect(&client)?, &peer, json)
        }
        Cmd::Nodes { json, client, .. } => {
            let nodes = connect(&client)?.get("/v1/nodes")?;
            if json {
                return print_json(&nodes);
            }
            println!(
                "{:<54} {:<5} {:>5} {:<9} LABELS",
                "NODE", "LIVE", "SLOTS", "STATE"
            );
            for n in nodes.as_array().into_iter().flatten() {
                let me = if n["self"] == true {
                    " (this node)"
                } else {
                    ""
                };
                let state = if n["draining"] == true {
                    "draining"
                } else {
                    "ready"
                };
                let labels: Vec<String> = n["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                println!(
                    "{:<54} {:<5} {:>5} {:<9} {}{me}",
                    s(&n["id"]),
                    n["live"],
                    n["slots"],
                    state,
                    labels.join(",")
                );
            }
            Ok(())
        }
        Cmd::Logs {
            job,
            task,
            stderr,
            rank,
            client,
        } => {
            let stream = if stderr { "stderr" } else { "stdout" };
            let bytes = connect(&client)?.get_bytes(&format!(
                "/v1/jobs/{}/tasks/{}/log?stream={stream}&rank={rank}",
                seg(&job),
                seg(&task)
            ))?;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        Cmd::Cancel { job, client } => {
            let r =
                connect(&client)?.post(&format!("/v1/jobs/{}/cancel", seg(&job)), &json!({}))?;
            eprintln!("cancelled job {}", s(&r["job_id"]));
            Ok(())
        }
        Cmd::Put {
            paths,
            json,
            client,
        } => put(&connect(&client)?, &paths, json),
        Cmd::Get {
            id,
            out,
            json,
            no_store,
            client,
        } => get(&connect(&client)?, &id, &out, json, !no_store),
        Cmd::Package { cmd, client } => crate::cli_files::package(&connect(&client)?, cmd),
        Cmd::Pool { cmd, client } => crate::cli_pool::pool(&connect(&client)?, cmd),
        Cmd::Schedule { cmd, client } => crate::cli_schedule::schedule(&connect(&client)?, cmd),
        Cmd::Demo(opts) => crate::demo::run(opts),
        Cmd::Bench(opts) => crate::bench::run(opts),
    }
}

fn run_spec(
    array: Option<String>,
    name: Option<String>,
    max_retries: u32,
    command: Vec<String>,
) -> Result<JobSpec> {
    let program = command.first().cloned().unwrap_or_default();
    let name = name.unwrap_or(program);
    let spec = match array {
        None => JobSpec::new(
            name,
            vec![TaskGroup::One(TaskSpec::new(
                "t1",
                Command::Argv(command),
                max_retries,
            ))],
        ),
        Some(range) => {
            let (start, end) =
                jobfile::parse_range(&range).map_err(|e| BadInput(format!("--array: {e}")))?;
            JobSpec::array(
                name,
                TaskSpec::new("", Command::Argv(command), max_retries),
                start,
                end,
            )
        }
    };
    spec.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok(spec)
}

fn put(client: &Client, paths: &[PathBuf], json: bool) -> Result<()> {
    let mut stored = Vec::new();
    for path in paths {
        let r = crate::cli_blobs::store(client, path)?;
        if json {
            stored.push(json!({ "path": absolute(path)?, "stored": r }));
        } else {
            println!("{}", r.id);
        }
    }
    if json {
        print_json(&Value::Array(stored))?;
    }
    Ok(())
}

fn get(client: &Client, id: &str, out: &std::path::Path, json: bool, store: bool) -> Result<()> {
    let out = absolute(out)?;
    let is_blob = peerbatch_protocol::BlobId::parse(id).is_some();
    if is_blob && !client.shares_files() {
        let bytes = crate::cli_blobs::fetch_to(client, id, Path::new(&out))?;
        if json {
            print_json(&json!({ "blob": id, "out": out, "bytes_written": bytes }))?;
        }
        eprintln!("wrote {out} ({bytes} bytes)");
        return Ok(());
    }
    let r = if is_blob {
        client.post(
            &format!("/v1/blobs/{}/export", seg(id)),
            &json!({ "out": out, "store": store }),
        )?
    } else {
        if !store {
            return Err(BadInput(format!(
                "--no-store applies to a blob id; the outputs of job {id:?} always go through the store"
            ))
            .into());
        }
        if client.get(&format!("/v1/jobs/{}", seg(id))).is_err() {
            return Err(BadInput(format!(
                "{id:?} is neither a blob id (64 hex digits) nor a job this node knows"
            ))
            .into());
        }
        let r = client.post(
            &format!("/v1/jobs/{}/outputs/export", seg(id)),
            &json!({ "out": out }),
        )?;
        eprintln!(
            "job {}: outputs of {} tasks ({} of {} succeeded)",
            s(&r["job_id"]),
            r["tasks_with_outputs"],
            r["succeeded"],
            r["tasks"]
        );
        r
    };
    let number = r["export"]
        .as_u64()
        .context("the node did not say which export it started")?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}  {msg}",
        )
        .context("progress template")?,
    );
    loop {
        let e = client.get(&format!("/v1/exports/{number}"))?;
        bar.set_length(e["bytes_total"].as_u64().unwrap_or(0));
        bar.set_position(e["bytes_done"].as_u64().unwrap_or(0));
        bar.set_message(format!(
            "{} chunks fetched, {} already here",
            e["chunks_fetched"], e["chunks_present"]
        ));
        match e["state"].as_str() {
            Some("running") => std::thread::sleep(Duration::from_millis(20)),
            Some("done") => {
                bar.finish_and_clear();
                if json {
                    print_json(&e)?;
                }
                eprintln!(
                    "wrote {} ({} bytes; {} chunks fetched, {} already here)",
                    out, e["bytes_written"], e["chunks_fetched"], e["chunks_present"]
                );
                return Ok(());
            }
            _ => {
                bar.abandon();
                bail!("get {id} failed: {}", s(&e["error"]));
            }
        }
    }
}
