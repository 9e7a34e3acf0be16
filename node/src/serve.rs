//! `peerbatch node`: assembling and running one node.
//!
//! Owns start-up and shut-down: the data dir, identity, database, chunk
//! store, network, executor, HTTP API and driver, wired together. Must not
//! contain protocol or request logic of its own.

use crate::api::guard;
use crate::api::{self, ApiState};
use crate::bad_input::BadInput;
use crate::driver::command::DriverHandle;
use crate::driver::Driver;
use crate::exec::Executor;
use crate::fetch::Fetcher;
use crate::jobprep::JobPrep;
use crate::metrics::Metrics;
use crate::net::{self, NetConfig};
use crate::paths::{self, DataDir};
use crate::pools::Pools;
use crate::sandbox::Sandbox;
use crate::stage::Stager;
use crate::store::blobs::BlobStore;
use crate::store::ledger::{LedgerStore, Reading};
use crate::store::reclaim::{Kept, Reclaimer};
use anyhow::{Context, Result};
use clap::Args;
use peerbatch_protocol::{Config, Core, Millis};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

#[derive(Args, Debug, Clone)]
pub struct NodeOpts {
    /// Multiaddr to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    pub listen: Vec<String>,
    /// Multiaddr of a peer to join, e.g. /ip4/10.0.0.5/tcp/4001 (repeatable).
    #[arg(long)]
    pub join: Vec<String>,
    /// Address of the local HTTP API (loopback only by default). Anywhere
    /// but 127.0.0.1 or ::1 it serves HTTPS only, with --tls-cert/--tls-key
    /// or a self-signed certificate made at first start (DATA/api-tls/).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub api: SocketAddr,
    /// PEM certificate (chain) the API serves HTTPS with, instead of a
    /// self-signed one; with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Tasks run at once (default: the number of CPUs).
    #[arg(long)]
    pub slots: Option<u32>,
    /// A label k=v advertised to the mesh (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Memory offered to tasks that ask for it, e.g. 16GiB (default: the machine's).
    #[arg(long, value_parser = crate::store::reclaim::parse_size)]
    pub memory: Option<u64>,
    /// GPUs offered to tasks that ask for them (default: NVIDIA devices found).
    #[arg(long)]
    pub gpus: Option<u32>,
    #[command(flatten)]
    pub keys: crate::membership::KeyOpts,
    /// Disable mDNS discovery on the LAN.
    #[arg(long)]
    pub no_mdns: bool,
    /// Reclaim cached blobs, least recently used first, above this size
    /// (e.g. 50GiB). Blobs put here, inputs of unfinished jobs and outputs
    /// within their job's retention are always kept.
    #[arg(long, value_parser = crate::store::reclaim::parse_size)]
    pub store_limit: Option<u64>,
    /// Bytes a second of sync replies one peer may make this node send
    /// (e.g. 16MiB; four seconds' worth at once); its sync requests past
    /// that are dropped, and it asks again in a later round.
    #[arg(long, value_parser = crate::store::reclaim::parse_size, default_value = "16MiB")]
    pub sync_rate: u64,
    /// Bytes a second of chunks one peer may make this node serve (e.g.
    /// 20MiB to leave most of a shared link to the machine's owner; a
    /// quarter second's worth at once); its fetches past that wait.
    #[arg(long, value_parser = crate::store::reclaim::parse_size, default_value = "1GiB")]
    pub chunk_rate: u64,
    /// Bytes of ledger writes and messages waiting to go out past which
    /// this node stops reading from peers until they are out (e.g. 16MiB
    /// on a machine short of memory).
    #[arg(long, value_parser = crate::store::reclaim::parse_size, default_value = "64MiB")]
    pub outbox_limit: u64,
    #[command(flatten)]
    pub policy: crate::availability::PolicyOpts,
    #[command(flatten)]
    pub sandbox: crate::sandbox::SandboxOpts,
    #[command(flatten)]
    pub functions: crate::functions::FunctionOpts,
    /// Largest package archive `package add` unpacks here (the sum of its
    /// files), e.g. 4GiB.
    #[arg(long, default_value = "16GiB", value_parser = crate::store::reclaim::parse_size)]
    pub max_package_size: u64,
    /// Lease of a claim: a peer suspected this long (its probes unanswered)
    /// loses its running tasks (ms).
    #[arg(long, default_value_t = 5_000, hide = true)]
    pub lease_ms: u64,
    /// Membership protocol period: each node probes one peer this often (ms).
    #[arg(long, default_value_t = 1_000, hide = true)]
    pub heartbeat_ms: u64,
    /// How far this machine's clock may be ahead of others' (e.g. 5m): a
    /// job is forgotten here this long after its retention ended by this
    /// clock, so skew never cuts a job's retention short.
    #[arg(long, default_value = "5m", value_parser = crate::jobfile::parse_duration_ms)]
    pub clock_skew: u64,
}

/// `os` and `arch` labels unless given, so tasks can ask for them.
fn with_default_labels(given: &[(String, String)]) -> Vec<(String, String)> {
    let mut labels = given.to_vec();
    for (k, v) in [
        ("os", std::env::consts::OS),
        ("arch", std::env::consts::ARCH),
    ] {
        if !labels.iter().any(|(gk, _)| gk == k) {
            labels.push((k.to_string(), v.to_string()));
        }
    }
    labels
}

/// Total memory from /proc/meminfo, in MB (0 if unknown).
fn detect_memory_mb() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// NVIDIA devices (`/dev/nvidia0`, `/dev/nvidia1`, …).
fn detect_gpus() -> u32 {
    std::fs::read_dir("/dev").map_or(0, |items| {
        items
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .count() as u32
    })
}

/// Refuses labels every node would refuse in this node's announce (the
/// user's to fix: exit 2), naming the label and the bound it breaks.
fn check_labels(labels: &[(String, String)]) -> Result<(), BadInput> {
    use peerbatch_protocol::validate;
    for (key, value) in labels {
        validate::check_labels(&[(key.clone(), value.clone())]).map_err(|e| {
            let label = format!("{key}={value}");
            let shown = match label.char_indices().nth(40) {
                Some((end, _)) => format!("{}…", &label[..end]),
                None => label,
            };
            BadInput(format!(
                "--label {shown}: {e}; the mesh refuses a node announcing a longer one"
            ))
        })?;
    }
    validate::check_labels(labels).map_err(|e| {
        BadInput(format!(
            "--label: {e} (counting the os and arch labels every node has); \
             the mesh refuses a node announcing more"
        ))
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} must be of the form key=value")),
    }
}

pub fn run(dir: DataDir, opts: NodeOpts) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(dir, opts))
}

async fn serve(dir: DataDir, opts: NodeOpts) -> Result<()> {
    let labels = with_default_labels(&opts.labels);
    check_labels(&labels)?;
    dir.create()?;
    // Before anything else touches the dir: a second node must not move
    // the first one's database aside or delete its files.
    let _lock = dir.lock().map_err(|e| match e {
        paths::LockError::Held { .. } => {
            anyhow::Error::new(crate::bad_input::BadInput(e.to_string()))
        }
        other => other.into(),
    })?;
    // Before anything is started: a bad account is the user's to fix (exit 2).
    crate::sandbox::task_user(&opts.sandbox)
        .map_err(|e| crate::bad_input::BadInput(e.to_string()))?;
    let clock = Instant::now();
    let seed = paths::load_or_create_seed(&dir)?;
    let (keypair, identity) = crate::identity::from_seed(seed)?;
    let peer_id = keypair.public().to_peer_id();
    let (store, set_aside) = LedgerStore::open(&dir.db_dir())?;
    if let Some(warning) = set_aside {
        tracing::warn!("{warning}");
    }
    let blobs = BlobStore::open(&dir.chunks_dir())?;
    let work = dir.work_dir();
    for leftover in [&work, &dir.unpack_dir(), &dir.fn_work_dir()] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("cannot clear {}", leftover.display()))?;
        }
    }
    let mut membership = crate::membership::choose(&dir, &opts.keys, peer_id)?;
    let parse_addrs = |list: &[String], what: &str| -> Result<Vec<libp2p::Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("--{what} {a:?} is not a multiaddr"))
            })
            .collect()
    };
    let mut listen = parse_addrs(&opts.listen, "listen")?;
    let join = [parse_addrs(&opts.join, "join")?, membership.join.clone()].concat();
    let tls = api::tls::for_api(
        &dir,
        &opts.api,
        opts.tls_cert.as_deref(),
        opts.tls_key.as_deref(),
    )?;
    if let Some(tls) = &tls {
        eprintln!(
            "API TLS certificate SHA-256 fingerprint: {}",
            tls.fingerprint
        );
    }
    if membership.waiting {
        let reach = crate::waiting::Reach {
            listen: listen.clone(),
            join: join.clone(),
            mdns: !opts.no_mdns,
        };
        let waited =
            crate::waiting::wait(&dir, keypair.clone(), reach, opts.api, tls.clone()).await?;
        let Some(approved) = waited else {
            tracing::info!("node {peer_id} stopped while waiting for approval");
            return Ok(());
        };
        membership.key = Some(approved.key);
        listen = approved.listen;
    }
    let standing = match &membership.key {
        Some(key) => net::Standing::Member(net::Lobby::new(key.clone(), peer_id)),
        None => net::Standing::Open,
    };
    let (net, net_events) = start_net(&keypair, &standing, &listen, &opts, join).await?;
    let slots = opts
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let memory_mb = opts.memory.map_or_else(detect_memory_mb, |b| b >> 20);
    let gpus = opts.gpus.unwrap_or_else(detect_gpus);
    let cfg = Config {
        slots,
        memory_mb,
        gpus,
        labels: labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        heartbeat_ms: opts.heartbeat_ms,
        lease_ms: opts.lease_ms,
        grace_ms: opts.lease_ms / 5,
        admins: membership
            .key
            .iter()
            .flat_map(|k| &k.admins)
            .filter_map(crate::identity::node_of)
            .collect(),
        forget_margin_ms: opts.clock_skew,
        ..Config::default()
    };
    let mut reading = Reading::default();
    let core = Core::new(
        identity,
        cfg,
        store.clone(),
        store.read_all(&mut reading),
        rand::random(),
        Millis(0),
    );
    for id in reading.damaged {
        tracing::warn!("stored event {id} no longer matches its hash: removed it, fetching it again from peers");
    }
    if let Some(e) = reading.failed {
        return Err(e.context(format!(
            "cannot read the ledger in {}",
            dir.db_dir().display()
        )));
    }
    let (exited_tx, exited_rx) = mpsc::unbounded_channel();
    let fetcher = Fetcher::new(net.clone(), blobs.clone());
    let stager = Stager::new(
        blobs.clone(),
        fetcher.clone(),
        dir.input_cache_dir(),
        dir.packages_dir(),
        crate::sandbox::task_user(&opts.sandbox)?.is_none(),
    );
    // A new token at every start: one read by someone else earlier stops working.
    let token = peerbatch_protocol::ids::to_hex(&rand::random::<[u8; 32]>());
    paths::write_private(&dir.token_file(), token.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(opts.api)
        .await
        .with_context(|| format!("cannot listen on --api {}", opts.api))?;
    let api_addr = listener.local_addr()?;
    let functions_listener = bind_functions(&dir, &opts, tls.as_ref()).await?;
    let api_url = api::tls::api_url(api_addr, tls.as_ref());
    paths::write_private(&dir.api_file(), api_url.as_bytes())?;
    let task_tokens = crate::task_tokens::TaskTokens::default();
    let sandbox = Sandbox::new(
        &opts.sandbox,
        job_manager_env(&api_url, tls.as_ref()),
        task_tokens.clone(),
    )?;
    sandbox.open_data_dir(&dir.root)?;
    let jobprep = JobPrep::new(
        dir.jobs_dir(),
        peer_id.to_string(),
        blobs.clone(),
        sandbox.clone(),
    );
    let runtime = crate::functions::Runtime::new(
        sandbox.clone(),
        stager.clone(),
        dir.fn_work_dir(),
        opts.functions.max_invocations.unwrap_or(slots) as usize,
        peer_id.to_string(),
    );
    let metrics = Metrics::new();
    let calls = crate::functions::calls::CallLog::new(metrics.clone());
    let functions = crate::functions::Router::new(runtime, net.clone(), calls);
    let exec = Executor::new(
        work,
        blobs.clone(),
        stager,
        jobprep.clone(),
        sandbox.clone(),
        peer_id.to_string(),
        exited_tx,
    );
    let (start_tx, start_rx) = mpsc::unbounded_channel();
    let pools = Pools::new(
        labels,
        dir.pools_dir(),
        blobs.clone(),
        sandbox.clone(),
        start_tx,
    );

    let (driver_handle, commands) = DriverHandle::channel();
    let reclaimer = Reclaimer::new(
        Kept::open(dir.kept_file()),
        opts.store_limit,
        dir.input_cache_dir(),
        dir.packages_dir(),
    );
    let api_state = ApiState {
        driver: driver_handle,
        data: api::DataPlane {
            blobs: blobs.clone(),
            fetcher: fetcher.clone(),
            ledger: store.clone(),
            reclaimer: reclaimer.clone(),
            live: exec.live().clone(),
        },
        unpack: crate::api::files::Unpack {
            dir: dir.unpack_dir(),
            max_bytes: opts.max_package_size,
        },
        cluster: crate::api::cluster::ClusterState {
            standing,
            listen_file: dir.listen_file(),
            net: net.clone(),
        },
        metrics: api::metrics::MetricsState::new(metrics.clone()),
        login: Default::default(),
        follow: Default::default(),
        tls_fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
        functions_url: functions_listener.as_ref().map(|f| f.url.clone()),
        functions: functions.clone(),
    };
    if let Some(f) = functions_listener {
        let app = api::invoke::listener(api_state.clone());
        tokio::spawn(guard::serve(f.listener, app, f.tls.map(|t| t.acceptor)));
        tracing::info!("functions listener {}", f.url);
    }
    let routes = api::router(api_state.clone()).merge(crate::portal::router(api_state));
    let access = guard::Access::new(&token, task_tokens).opening(crate::portal::ROUTES);
    let app = guard::guard(routes, access);
    let app = api::metrics::counted(app, metrics.clone());
    tokio::spawn(guard::serve(listener, app, tls.map(|t| t.acceptor)));
    tracing::info!(
        "node {peer_id} up: {slots} slots, API {api_url}, data dir {}; {}",
        dir.root.display(),
        sandbox.describe()
    );

    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    tokio::spawn(async move {
        crate::stop_signal::requested().await;
        let _ = shutdown_tx.send(());
    });
    let driver = Driver::new(core, store, net, fetcher, exec, dir.listen_file(), clock);
    driver
        .with_reclaimer(reclaimer)
        .with_metrics(metrics)
        .with_sync_rate(opts.sync_rate)
        .with_chunk_rate(opts.chunk_rate)
        .with_outbox_limit(opts.outbox_limit)
        .with_policy(opts.policy.clone())
        .with_functions(functions)
        .with_side_work(pools, start_rx, jobprep)
        .run(net_events, commands, exited_rx, shutdown_rx)
        .await;
    let _ = std::fs::remove_file(dir.api_file());
    tracing::info!("node {peer_id} stopped");
    Ok(())
}

/// The functions listener `--functions-listen` asks for, bound.
struct FunctionsListener {
    listener: tokio::net::TcpListener,
    tls: Option<api::tls::ApiTls>,
    /// `http://ADDR` or `https://ADDR`, the port bound if 0 was asked.
    url: String,
}

async fn bind_functions(
    dir: &DataDir,
    opts: &NodeOpts,
    api_tls: Option<&api::tls::ApiTls>,
) -> Result<Option<FunctionsListener>> {
    let Some(addr) = opts.functions.functions_listen else {
        return Ok(None);
    };
    let (cert, key) = (opts.tls_cert.as_deref(), opts.tls_key.as_deref());
    let tls = api::tls::for_functions(dir, &addr, api_tls, cert, key)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --functions-listen {addr}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr()?);
    Ok(Some(FunctionsListener { listener, tls, url }))
}

/// Starts the network on `listen` — after a wait for approval, the addresses the waiting node
/// listened on, or the configured ones if those cannot be had again.
async fn start_net(
    keypair: &libp2p::identity::Keypair,
    standing: &net::Standing,
    listen: &[libp2p::Multiaddr],
    opts: &NodeOpts,
    join: Vec<libp2p::Multiaddr>,
) -> Result<(net::Net, mpsc::Receiver<net::NetEvent>)> {
    let config = |listen: Vec<libp2p::Multiaddr>| NetConfig {
        keypair: keypair.clone(),
        listen,
        join: join.clone(),
        standing: standing.clone(),
        mdns: !opts.no_mdns,
    };
    match net::start(config(listen.to_vec())).await {
        Ok(started) => Ok(started),
        Err(e @ net::NetError::Listen { .. }) if opts.keys.wait_for_approval => {
            tracing::warn!("{e}; listening on --listen's addresses instead");
            let configured = opts.listen.iter().filter_map(|a| a.parse().ok()).collect();
            Ok(net::start(config(configured)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// What every task is told so that it can drive the mesh through this
/// node's API (a job manager submitting or watching jobs): the address (the
/// sandbox adds the command's own token), and a `PATH` of this binary's
/// directory (so that `peerbatch` is the node's own version) and the
/// system's, not the node's own `PATH`.
/// What a task needs to call this node's API: its address, and over TLS
/// the certificate's fingerprint to pin.
fn job_manager_env(api: &str, tls: Option<&api::tls::ApiTls>) -> Vec<(String, String)> {
    let mut env = vec![("PEERBATCH_API".to_string(), api.to_string())];
    if let Some(tls) = tls {
        env.push((
            "PEERBATCH_API_FINGERPRINT".to_string(),
            tls.fingerprint.clone(),
        ));
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
    if let Some(dir) = bin_dir {
        let system = "/usr/local/bin:/usr/bin:/bin";
        let joined =
            std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(system)));
        if let Some(p) = joined.ok().and_then(|p| p.into_string().ok()) {
            env.push(("PATH".to_string(), p));
        }
    }
    env
}
