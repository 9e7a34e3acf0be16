//! The command line: argument parsing and the client commands.
//!
//! Owns what each subcommand prints (tables, `--json`, progress bars) and its
//! exit status. Talks to a node only through `client`; must not reach into
//! a node's state directly. This file parses the arguments and dispatches;
//! the subcommands with more than a few lines have a module each below,
//! sharing `text`'s conversions; none of them imports this file.

pub(crate) mod blobs;
pub(crate) mod cluster;
pub(crate) mod files;
pub(crate) mod function_keys;
pub(crate) mod function_logs;
pub(crate) mod functions;
pub(crate) mod pool;
pub(crate) mod portal;
pub(crate) mod schedule;
pub(crate) mod submit;
pub(crate) mod text;

use crate::api::types::{
    Cancelled, Drain, Drained, Export, ExportBlob, ExportOutputs, ExportStarted, Forgotten, Job,
    OutputsExportStarted, Status, Task,
};
use crate::client::Client;
use crate::jobfile;
use crate::paths::DataDir;
use crate::serve::NodeOpts;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use peerbatch_protocol::job::{Command, JobSpec, TaskGroup, TaskSpec};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::bad_input::BadInput;
use submit::submit;
use text::{absolute, opt, print_json, seg};

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
    /// A node's API address (host:port, or https://host:port for a node
    /// serving beyond loopback) instead of the data dir's; needs PEERBATCH_TOKEN.
    #[arg(long, env = "PEERBATCH_API")]
    pub api: Option<String>,
    /// For an HTTPS node: the SHA-256 fingerprint (AB:CD:…) of its
    /// certificate, as the node prints it at start and `peerbatch status`
    /// shows it [default: the one in the data dir].
    #[arg(long, env = "PEERBATCH_API_FINGERPRINT")]
    pub api_fingerprint: Option<String>,
    /// For an HTTPS node started with --tls-cert: a PEM file of the
    /// authorities that may have issued its certificate (instead of a
    /// fingerprint).
    #[arg(long, env = "PEERBATCH_CA")]
    pub ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum NodeOp {
    /// Let NODE finish its running tasks and take no new ones (NODE: a peer id, a prefix, or `self`).
    Drain {
        /// The node: a peer id, a unique prefix of one, or `self`.
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Let a drained NODE take tasks again.
    Resume {
        /// The node: a peer id, a unique prefix of one, or `self`.
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

fn drain(client: &Client, node: &str, drain: bool) -> Result<()> {
    let r: Drained = client.post(&format!("/v1/nodes/{}/drain", seg(node)), &Drain { drain })?;
    let what = if drain { "drain" } else { "resume" };
    eprintln!("asked node {} to {what}", r.node);
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
        /// Where to write the key file (made readable by its owner only).
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
    /// Print a one-time link that logs a browser into the node's portal (its
    /// web pages, at the API address), and open it where a browser exists.
    Portal {
        /// Only print the link; start no browser.
        #[arg(long)]
        no_open: bool,
        /// Print the link and how long it stays usable as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Submit a job file (TOML).
    Submit {
        /// The job file; its relative paths are read from its directory.
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
        /// The job's name (default: the command).
        #[arg(long)]
        name: Option<String>,
        /// How many times a failed task is tried again.
        #[arg(long, default_value_t = jobfile::DEFAULT_MAX_RETRIES)]
        max_retries: u32,
        /// Show progress until the job ends; exit 1 if any task failed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
        /// The command and its arguments, run directly (not by a shell); after `--`.
        #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List jobs.
    Jobs {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show one job (by id, id prefix or name).
    Job {
        /// The job: its id, a unique id prefix, or its name.
        job: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a job's tasks.
    Tasks {
        /// The job: its id, a unique id prefix, or its name.
        job: String,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// This node's own state: slots, load, peers, ledger and store figures,
    /// and why it is not claiming if it is not.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List the nodes of the mesh.
    Nodes {
        /// Print the list as JSON.
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
        /// The job: its id, a unique id prefix, or its name.
        job: String,
        /// The task's id, as `tasks JOB` lists it.
        task: String,
        /// Print its standard error instead of its standard output.
        #[arg(long)]
        stderr: bool,
        /// Another instance of a multi-instance task (0 is the primary).
        #[arg(long, default_value_t = 0)]
        rank: u32,
        /// Stream the log while the task runs, from its first byte, from
        /// whichever node runs it; ends when the attempt ends (waits for a
        /// task that has not started).
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel a job: kill its running tasks everywhere.
    Cancel {
        /// The job: its id, a unique id prefix, or its name.
        job: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Forget a job that has ended on every node now, without waiting for
    /// its retention: its events, task views, logs and outputs (blobs that
    /// another job or a `put` still uses stay).
    Forget {
        /// The job: its id, a unique id prefix, or its name.
        job: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Store files or directory trees in this node's chunk store; prints one id per PATH.
    Put {
        /// Files or directories to store.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Put the one file under this name: functions deployed with
        /// --trigger blob:PREFIX, for a PREFIX it starts with, run with its id.
        #[arg(long)]
        name: Option<String>,
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
        cmd: crate::cli::files::PackageCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Functions: handlers deployed once and invoked over HTTP through any node.
    Fn {
        #[command(subcommand)]
        cmd: crate::cli::functions::FnCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Pools: nodes labelled pool=NAME, with a start task each runs as it joins.
    Pool {
        #[command(subcommand)]
        cmd: crate::cli::pool::PoolCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Recurring jobs: a job file submitted at every interval or cron occurrence.
    Schedule {
        #[command(subcommand)]
        cmd: crate::cli::schedule::ScheduleCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Start a 3-node local cluster, run an example job on it, and stop.
    Demo(crate::demo::DemoOpts),
    /// Measure task throughput and latency (or, with `transfer`, the data plane) on a local cluster.
    Bench(crate::bench::BenchOpts),
}

/// Copies `from` to `to` as it arrives, flushing each piece (a followed
/// log's lines show as they come).
fn copy_flushing(from: &mut impl std::io::Read, to: &mut impl Write) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf)? {
            0 => return Ok(()),
            n => {
                to.write_all(&buf[..n])?;
                to.flush()?;
            }
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let dir = DataDir::resolve(cli.data_dir)?;
    let connect = |c: &ClientOpts| {
        let trust = crate::client_tls::Trust {
            fingerprint: c.api_fingerprint.clone(),
            ca: c.ca.clone(),
        };
        Client::connect(&dir, c.api.clone(), &trust)
    };
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
        Cmd::Portal {
            no_open,
            json,
            client,
        } => crate::cli::portal::portal(&connect(&client)?, !no_open, json),
        Cmd::Invite { json, client } => crate::cli::cluster::invite(&connect(&client)?, json),
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
        Cmd::Jobs { json, client } => list_jobs(&connect(&client)?, json),
        Cmd::Job { job, json, client } => show_job(&connect(&client)?, &job, json),
        Cmd::Tasks { job, json, client } => list_tasks(&connect(&client)?, &job, json),
        Cmd::Status { json, client } => status(&connect(&client)?, json),
        Cmd::Nodes {
            json,
            waiting: true,
            client,
        } => crate::cli::cluster::waiting(&connect(&client)?, json),
        Cmd::Approve { peer, json, client } => {
            crate::cli::cluster::approve(&connect(&client)?, &peer, json)
        }
        Cmd::Nodes { json, client, .. } => list_nodes(&connect(&client)?, json),
        Cmd::Logs {
            job,
            task,
            stderr,
            rank,
            follow,
            client,
        } => {
            let stream = if stderr { "stderr" } else { "stdout" };
            let path = format!(
                "/v1/jobs/{}/tasks/{}/log?stream={stream}&rank={rank}&follow={follow}",
                seg(&job),
                seg(&task)
            );
            let (_, mut body) = connect(&client)?.get_reader(&path)?;
            copy_flushing(&mut body, &mut std::io::stdout())?;
            Ok(())
        }
        Cmd::Cancel { job, client } => {
            let path = format!("/v1/jobs/{}/cancel", seg(&job));
            let r: Cancelled = connect(&client)?.post(&path, &())?;
            eprintln!("cancelled job {}", r.job_id);
            Ok(())
        }
        Cmd::Forget { job, json, client } => {
            let path = format!("/v1/jobs/{}/forget", seg(&job));
            let r: Forgotten = connect(&client)?.post(&path, &())?;
            if json {
                print_json(&r)?;
            } else {
                eprintln!("forgetting job {} on every node", r.job_id);
            }
            Ok(())
        }
        Cmd::Put {
            paths,
            name,
            json,
            client,
        } => put(&connect(&client)?, &paths, name.as_deref(), json),
        Cmd::Get {
            id,
            out,
            json,
            no_store,
            client,
        } => get(&connect(&client)?, &id, &out, json, !no_store),
        Cmd::Package { cmd, client } => crate::cli::files::package(&connect(&client)?, cmd),
        Cmd::Fn { cmd, client } => crate::cli::functions::run(&connect(&client)?, cmd),
        Cmd::Pool { cmd, client } => crate::cli::pool::pool(&connect(&client)?, cmd),
        Cmd::Schedule { cmd, client } => crate::cli::schedule::schedule(&connect(&client)?, cmd),
        Cmd::Demo(opts) => crate::demo::run(opts),
        Cmd::Bench(opts) => match opts.what {
            Some(crate::bench::BenchWhat::Transfer(t)) => crate::transfer_bench::run(t),
            None if opts.tasks.finished > 0 => crate::bench_memory::run(&opts.tasks),
            None => crate::bench::tasks(opts.tasks),
        },
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

fn list_jobs(client: &Client, json: bool) -> Result<()> {
    let jobs: Vec<Job> = client.get("/v1/jobs")?;
    if json {
        return print_json(&jobs);
    }
    println!(
        "{:<17} {:<20} {:<10} {:>7} {:>7} {:>7} {:>7}",
        "ID", "NAME", "STATE", "TASKS", "DONE", "RUNNING", "FAILED"
    );
    for j in &jobs {
        println!(
            "{:<17} {:<20} {:<10} {:>7} {:>7} {:>7} {:>7}",
            j.id,
            j.name,
            j.state.name(),
            j.tasks,
            j.done(),
            j.running,
            j.failed
        );
    }
    Ok(())
}

fn show_job(client: &Client, job: &str, json: bool) -> Result<()> {
    let j: Job = client.get(&format!("/v1/jobs/{}", seg(job)))?;
    if json {
        return print_json(&j);
    }
    let rows: [(&str, String); 15] = [
        ("id", j.id.clone()),
        ("name", j.name.clone()),
        ("state", j.state.name().into()),
        ("priority", j.priority.to_string()),
        ("tasks", j.tasks.to_string()),
        ("pending", j.pending.to_string()),
        ("blocked", j.blocked.to_string()),
        ("running", j.running.to_string()),
        ("succeeded", j.succeeded.to_string()),
        ("failed", j.failed.to_string()),
        ("cancelled", j.cancelled.to_string()),
        ("skipped", j.skipped.to_string()),
        ("unschedulable", opt(&j.unschedulable)),
        ("submitted_by", j.submitted_by.clone()),
        (
            "forget_at",
            j.forget_at_ms.map_or_else(
                || "never (forget by hand)".into(),
                |ms| format!("{ms} ms since the epoch"),
            ),
        ),
    ];
    for (key, value) in rows {
        println!("{key:<13} {value}");
    }
    Ok(())
}

fn list_tasks(client: &Client, job: &str, json: bool) -> Result<()> {
    let tasks: Vec<Task> = client.get(&format!("/v1/jobs/{}/tasks", seg(job)))?;
    if json {
        return print_json(&tasks);
    }
    println!(
        "{:<16} {:<10} {:>7} {:>5}  NODE",
        "TASK", "STATE", "ATTEMPT", "EXIT"
    );
    for t in &tasks {
        let mut node = match &t.unschedulable {
            Some(why) => format!("unschedulable: {why}"),
            None => opt(&t.node),
        };
        if t.outcome == Some(crate::api::types::Outcome::TimedOut) {
            let limit = t.wall_clock_limit_ms.unwrap_or(0);
            node += &format!("  timed_out after {}", crate::sandbox::duration_text(limit));
        }
        println!(
            "{:<16} {:<10} {:>7} {:>5}  {node}",
            t.id,
            t.state.name(),
            t.attempt,
            opt(&t.exit_code),
        );
    }
    Ok(())
}

fn status(client: &Client, json: bool) -> Result<()> {
    let st: Status = client.get("/v1/status")?;
    if json {
        return print_json(&st);
    }
    let rows: [(&str, String); 19] = [
        ("node", st.node.clone()),
        ("version", st.version.clone()),
        ("tls_fingerprint", opt(&st.tls_fingerprint)),
        ("functions_url", opt(&st.functions_url)),
        ("slots", st.slots.to_string()),
        ("claimed", st.claimed.to_string()),
        ("running", st.running.to_string()),
        ("claiming", st.claiming.to_string()),
        ("draining", st.draining.to_string()),
        ("unavailable", opt(&st.unavailable)),
        ("storage_error", opt(&st.storage_error)),
        ("peers_connected", st.peers_connected.to_string()),
        ("events", st.events.to_string()),
        ("event_bytes", st.event_bytes.to_string()),
        ("attempts_started", st.attempts_started.to_string()),
        ("attempts_fenced", st.attempts_fenced.to_string()),
        ("chunks_fetched", st.chunks_fetched.to_string()),
        ("bad_chunks", st.bad_chunks.to_string()),
        ("store_limit", opt(&st.store_limit)),
    ];
    for (key, value) in rows {
        println!("{key:<17} {value}");
    }
    Ok(())
}

fn list_nodes(client: &Client, json: bool) -> Result<()> {
    let nodes: Vec<crate::api::types::Node> = client.get("/v1/nodes")?;
    if json {
        return print_json(&nodes);
    }
    println!(
        "{:<54} {:<5} {:>5} {:<9} LABELS",
        "NODE", "LIVE", "SLOTS", "STATE"
    );
    for n in &nodes {
        let me = if n.is_self { " (this node)" } else { "" };
        let state = if n.draining { "draining" } else { "ready" };
        println!(
            "{:<54} {:<5} {:>5} {:<9} {}{me}",
            n.id,
            n.live,
            n.slots,
            state,
            n.labels.join(",")
        );
    }
    Ok(())
}

/// What `put --json` prints for each path.
#[derive(Serialize)]
struct PutEntry {
    path: String,
    stored: crate::api::types::StoredBlob,
}

fn put(client: &Client, paths: &[PathBuf], name: Option<&str>, json: bool) -> Result<()> {
    if name.is_some() && paths.len() > 1 {
        return Err(BadInput("--name names one put: give one path with it".into()).into());
    }
    let most = peerbatch_protocol::trigger::MAX_BLOB_NAME_BYTES;
    if let Some(long) = name.filter(|n| n.len() > most) {
        let msg = format!(
            "--name is {} bytes; a blob name is at most {most}",
            long.len()
        );
        return Err(BadInput(msg).into());
    }
    let mut stored = Vec::new();
    for path in paths {
        let r = crate::cli::blobs::store(client, path, name)?;
        if json {
            stored.push(PutEntry {
                path: absolute(path)?,
                stored: r,
            });
        } else {
            println!("{}", r.id);
        }
    }
    if json {
        print_json(&stored)?;
    }
    Ok(())
}

/// What `get BLOB --json` prints when the bytes came over the API.
#[derive(Serialize)]
struct Fetched<'a> {
    blob: &'a str,
    out: &'a str,
    bytes_written: u64,
}

fn get(client: &Client, id: &str, out: &std::path::Path, json: bool, store: bool) -> Result<()> {
    let out = absolute(out)?;
    let is_blob = peerbatch_protocol::BlobId::parse(id).is_some();
    if is_blob && !client.shares_files() {
        let bytes = crate::cli::blobs::fetch_to(client, id, Path::new(&out))?;
        if json {
            print_json(&Fetched {
                blob: id,
                out: &out,
                bytes_written: bytes,
            })?;
        }
        eprintln!("wrote {out} ({bytes} bytes)");
        return Ok(());
    }
    let number = if is_blob {
        let body = ExportBlob {
            out: out.clone().into(),
            store,
        };
        let r: ExportStarted = client.post(&format!("/v1/blobs/{}/export", seg(id)), &body)?;
        r.export
    } else {
        export_outputs(client, id, &out, store)?
    };
    let e = follow_export(client, number)?;
    if json {
        print_json(&e)?;
    }
    eprintln!(
        "wrote {} ({} bytes; {} chunks fetched, {} already here)",
        out,
        opt(&e.bytes_written),
        e.chunks_fetched,
        e.chunks_present
    );
    Ok(())
}

/// Starts writing every output of job `job` under `out`; the export's number.
fn export_outputs(client: &Client, job: &str, out: &str, store: bool) -> Result<u64> {
    if !store {
        return Err(BadInput(format!(
            "--no-store applies to a blob id; the outputs of job {job:?} always go through the store"
        ))
        .into());
    }
    if client
        .get::<Job>(&format!("/v1/jobs/{}", seg(job)))
        .is_err()
    {
        return Err(BadInput(format!(
            "{job:?} is neither a blob id (64 hex digits) nor a job this node knows"
        ))
        .into());
    }
    let body = ExportOutputs { out: out.into() };
    let r: OutputsExportStarted =
        client.post(&format!("/v1/jobs/{}/outputs/export", seg(job)), &body)?;
    eprintln!(
        "job {}: outputs of {} tasks ({} of {} succeeded)",
        r.job_id, r.tasks_with_outputs, r.succeeded, r.tasks
    );
    Ok(r.export)
}

/// Shows export `number`'s progress until it is done; its last state.
fn follow_export(client: &Client, number: u64) -> Result<Export> {
    use crate::api::types::ExportState;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}  {msg}",
        )
        .context("progress template")?,
    );
    loop {
        let e: Export = client.get(&format!("/v1/exports/{number}"))?;
        bar.set_length(e.bytes_total);
        bar.set_position(e.bytes_done);
        bar.set_message(format!(
            "{} chunks fetched, {} already here",
            e.chunks_fetched, e.chunks_present
        ));
        match e.state {
            ExportState::Running => std::thread::sleep(Duration::from_millis(20)),
            ExportState::Done => {
                bar.finish_and_clear();
                return Ok(e);
            }
            ExportState::Failed => {
                bar.abandon();
                bail!("get {} failed: {}", e.blob, opt(&e.error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every subcommand, as `COMMAND --flag`, that shows
    /// no description in `--help`.
    fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undescribed(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_and_argument_of_every_command_has_help() {
        let mut missing = Vec::new();
        undescribed(&Cli::command(), "peerbatch", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
