//! Harness for end-to-end tests: real `peerbatch` processes on loopback.
//!
//! Owns building the binary once, starting, killing and restarting node
//! processes in temporary data dirs, running CLI commands against them, and
//! making and hashing test files.
//! Must not reach into a node's internals: everything goes through the
//! binary, as a user would.

pub mod tools;
pub mod webdriver;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Node flags for tests: two slots, short leases and heartbeats.
pub const FAST: &[&str] = &[
    "--slots",
    "2",
    "--lease-ms",
    "2000",
    "--heartbeat-ms",
    "400",
];

/// `peerbatch node` flags that choose how a node gets its cluster key.
const KEY_FLAGS: &[&str] = &["--cluster-key", "--join-token", "--insecure-open"];

/// One cluster key shared by the nodes this test process starts with [`Node::start`] or
/// [`Node::start_with`] (made once by `peerbatch keygen`, so it lists no admins), so that
/// nodes joined by address or found by mDNS form one cluster, as nodes given one key file do.
/// The file is removed when the test process exits; files of test processes that were
/// killed are removed by the next one.
pub fn shared_key() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        remove_keys_of_dead_processes();
        let path = key_path(std::process::id());
        let _ = std::fs::remove_file(&path);
        let out = Command::new(bin())
            .args(["keygen", "--out"])
            .arg(&path)
            .output()
            .expect("run peerbatch keygen");
        ok(&out, "keygen");
        // SAFETY: atexit only records a function pointer; the function
        // takes no arguments and touches no state that exit tears down.
        unsafe { libc::atexit(remove_own_key) };
        path
    })
}

const KEY_PREFIX: &str = "peerbatch-tests-";

/// The shared key file of the test process `pid`.
fn key_path(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("{KEY_PREFIX}{pid}.key"))
}

extern "C" fn remove_own_key() {
    let _ = std::fs::remove_file(key_path(std::process::id()));
}

/// Removes the shared key files of test processes that no longer run.
fn remove_keys_of_dead_processes() {
    let Ok(items) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(KEY_PREFIX))
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }
}

/// Asserts a CLI command succeeded (showing its stderr if not) and returns
/// its trimmed stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `peerbatch fn deploy NAME DIR --command COMMAND EXTRA…` on `node`,
/// which must succeed.
pub fn deploy_fn(node: &Node, name: &str, dir: &Path, command: &str, extra: &[&str]) {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["fn", "deploy", name, dir, "--command", command];
    args.extend(extra);
    ok(&node.cli(&args), "fn deploy");
}

/// An HTTP call of `/fn/NAME` on `node`'s API with its token and `body`:
/// the status and the answer's body.
pub fn invoke_fn(node: &Node, name: &str, body: &str) -> (u16, String) {
    let api = std::fs::read_to_string(node.dir.join("api")).unwrap();
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    let answer = ureq::post(&format!("http://{}/fn/{name}", api.trim()))
        .set("authorization", &format!("Bearer {}", token.trim()))
        .send_string(body);
    let resp = match answer {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("cannot reach {api}: {e}"),
    };
    (resp.status(), resp.into_string().unwrap())
}

/// The base URL of `node`'s portal (its API address).
pub fn portal_url(node: &Node) -> String {
    let api = std::fs::read_to_string(node.dir.join("api")).unwrap();
    format!("http://{}", api.trim())
}

/// Where the browser tests save screenshots: `target/portal-screenshots/`
/// (a test artifact).
pub fn screenshots() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("portal-screenshots")
}

/// A browser logged in to `node`'s portal with a fresh one-time link,
/// saving downloads into `downloads`.
pub fn portal_login(node: &Node, downloads: &Path) -> webdriver::Browser {
    let link = ok(&node.cli(&["portal", "--no-open"]), "portal");
    assert!(link.contains("/login?code="), "not a login link: {link}");
    let browser = webdriver::Browser::start(downloads);
    browser.open(&link);
    browser.wait("nav");
    browser
}

/// The `peerbatch` binary, built (once per process) by cargo with the
/// harness's own profile: debug for tests, release for benchmarks.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Cargo sets the variable when it runs a test; the compile-time
        // value is only a fallback, since a target directory copied from
        // another checkout keeps that checkout's path baked in.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let root = Path::new(&manifest_dir).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "peerbatch", "--bin", "peerbatch"]);
        if release {
            build.arg("--release");
        }
        let status = build.current_dir(&root).status().expect("cargo can be run");
        assert!(status.success(), "building peerbatch failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let profile = if release { "release" } else { "debug" };
        target.join(profile).join("peerbatch")
    })
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Node {
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// Network namespace the node and its CLI commands run in.
    pub netns: Option<String>,
    /// Where its standard error (its log) goes: `DIR/test-node.log` unless a
    /// test chooses another file.
    pub log: PathBuf,
    child: Option<Child>,
}

/// `args` with the test process's shared cluster key ([`shared_key`]) added,
/// unless they choose a key, a token or `--insecure-open`.
fn with_key<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if !args.iter().any(|a| KEY_FLAGS.contains(a)) {
        all.extend([
            "--cluster-key",
            shared_key().to_str().expect("UTF-8 temp path"),
        ]);
    }
    all
}

/// A command for the binary, inside `netns` when given.
fn command(netns: &Option<String>) -> Command {
    match netns {
        None => Command::new(bin()),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin());
            c
        }
    }
}

impl Node {
    /// Starts `peerbatch node` on `dir` with loopback listen, no mDNS and `args`.
    pub fn start(dir: &Path, args: &[&str]) -> Node {
        Node::start_logging_to(dir, args, &dir.join("test-node.log"))
    }

    /// [`Node::start`] with its standard error going to `log`.
    pub fn start_logging_to(dir: &Path, args: &[&str], log: &Path) -> Node {
        let mut all = vec!["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
        all.extend_from_slice(args);
        let mut node = Node::unstarted(dir, None, &with_key(&all));
        node.log = log.to_path_buf();
        node.restart();
        node
    }

    /// Starts `peerbatch node --data-dir dir ARGS` in `netns`, with the test process's shared
    /// cluster key ([`shared_key`]) unless `args` choose a key, a token or `--insecure-open`.
    pub fn start_with(dir: &Path, netns: Option<&str>, args: &[&str]) -> Node {
        Node::spawn(dir, netns, &with_key(args))
    }

    /// Starts `peerbatch node --data-dir dir ARGS` with nothing added, in `netns`.
    pub fn spawn(dir: &Path, netns: Option<&str>, args: &[&str]) -> Node {
        let mut node = Node::unstarted(dir, netns, args);
        node.restart();
        node
    }

    fn unstarted(dir: &Path, netns: Option<&str>, args: &[&str]) -> Node {
        Node {
            dir: dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            netns: netns.map(str::to_string),
            log: dir.join("test-node.log"),
            child: None,
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node is already running");
        std::fs::create_dir_all(&self.dir).unwrap();
        let _ = std::fs::remove_file(self.dir.join("api"));
        let _ = std::fs::remove_file(self.dir.join("listen"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = command(&self.netns)
            .arg("node")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(&self.args)
            // CI runs as root; tests that need another account pass --run-as.
            .arg("--allow-root-tasks")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start peerbatch node");
        self.child = Some(child);
        wait_for(
            "the node's API and listen files",
            Duration::from_secs(30),
            || {
                let up = self.dir.join("api").exists() && self.dir.join("listen").exists();
                up.then_some(())
            },
        );
    }

    /// Starts `peerbatch node` on `dir` with loopback listen, no mDNS, [`FAST`] and `args`,
    /// choosing no key for it: it makes its own, or the flags in `args` choose.
    pub fn start_keyless(dir: &Path, args: &[&str]) -> Node {
        let loopback = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
        Node::spawn(dir, None, &[&loopback[..], FAST, args].concat())
    }

    /// Two keyless-started nodes in `dir`'s `a` and `b`: `a` makes the cluster key and is its
    /// admin, `b` joins with `a`'s invite token; returned once they see each other as live.
    pub fn admin_and_member(dir: &Path) -> (Node, Node) {
        let admin = Node::start_keyless(&dir.join("a"), &[]);
        let token = admin.invite();
        let member = Node::start_keyless(&dir.join("b"), &["--join-token", &token]);
        wait_for(
            "the admin and the member to mesh",
            Duration::from_secs(30),
            || (admin.live_nodes() == 2 && member.live_nodes() == 2).then_some(()),
        );
        (admin, member)
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("node log")
    }

    /// The last 40 warnings and errors of its log, to show when a test times
    /// out waiting for it.
    pub fn log_problems(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .collect();
        problems[problems.len().saturating_sub(40)..].join("\n")
    }

    /// The peer id in the node's listen address (its `/p2p/` suffix).
    pub fn listen_peer_id(&self) -> String {
        let addr = self.addr();
        addr.rsplit("/p2p/")
            .next()
            .expect("a /p2p/ suffix")
            .to_string()
    }

    /// A token to join this node's cluster with (`peerbatch invite`).
    pub fn invite(&self) -> String {
        ok(&self.cli(&["invite"]), "invite")
    }

    /// The node's first listen address, with its /p2p/ suffix.
    pub fn addr(&self) -> String {
        std::fs::read_to_string(self.dir.join("listen"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A CLI command against this node, to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = command(&self.netns);
        c.arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs a CLI command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run peerbatch")
    }

    /// Runs a CLI command that prints JSON and parses it.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "peerbatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// `peerbatch status --json` of this node.
    pub fn status(&self) -> Value {
        self.json(&["status", "--json"])
    }

    pub fn peer_id(&self) -> String {
        let nodes = self.json(&["nodes", "--json"]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["self"] == true)
            .map(|n| n["id"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// How many nodes this node sees as live (itself included).
    pub fn live_nodes(&self) -> usize {
        let out = self.cli(&["nodes", "--json"]);
        if !out.status.success() {
            return 0;
        }
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        nodes
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["live"] == true).count())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Several nodes on loopback, each joining the first, with the shared key ([`shared_key`]):
/// a cluster without admins, so no node may cancel or drain on another's behalf.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = Vec::new();
        for i in 0..n {
            let dir = tmp.path().join(format!("node{}", i + 1));
            let mut all: Vec<&str> = args.to_vec();
            let join;
            if let Some(first) = nodes.first() {
                join = first.addr();
                all.extend(["--join", join.as_str()]);
            }
            nodes.push(Node::start(&dir, &all));
        }
        let cluster = Cluster { tmp, nodes };
        cluster.wait_meshed();
        cluster
    }

    /// Starts one more node with `args`, joining the first, and waits
    /// until every node sees it.
    pub fn add(&mut self, args: &[&str]) -> &Node {
        let dir = self
            .tmp
            .path()
            .join(format!("node{}", self.nodes.len() + 1));
        let join = self.nodes[0].addr();
        let mut all = args.to_vec();
        all.extend(["--join", join.as_str()]);
        self.nodes.push(Node::start(&dir, &all));
        self.wait_meshed();
        self.nodes.last().expect("just pushed")
    }

    pub fn wait_meshed(&self) {
        let n = self.nodes.len();
        wait_for(
            "every node to see every other as live",
            Duration::from_secs(30),
            || {
                self.nodes
                    .iter()
                    .all(|node| node.live_nodes() == n)
                    .then_some(())
            },
        );
    }

    /// Writes a file under the cluster's temporary directory.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// Runs `peerbatch node --data-dir DIR` on loopback without mDNS with `args`, expecting it
/// to refuse to start: panics if its API comes up; else its exit code and stderr.
pub fn refused_start(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut node = Command::new(bin())
        .args(["node", "--data-dir"])
        .arg(dir)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peerbatch node");
    let exited = wait_for("the node to exit", Duration::from_secs(30), || {
        let status = node.try_wait().unwrap();
        if status.is_none() && dir.join("api").exists() {
            node.kill().unwrap();
            panic!("the node started with {args:?}");
        }
        status
    });
    let out = node.wait_with_output().unwrap();
    (
        exited.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tasks of `job` as `tasks --json` prints them on `node`.
pub fn tasks(node: &Node, job: &str) -> Value {
    node.json(&["tasks", job, "--json"])
}

/// The tasks of `job` on `node`, or the CLI's error as a JSON string while
/// the node cannot list them (e.g. the job has not reached it yet).
fn tasks_if_known(node: &Node, job: &str) -> Value {
    let out = node.cli(&["tasks", job, "--json"]);
    if !out.status.success() {
        return Value::String(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Waits until every node reports identical task lists in which every task
/// is in `state`; returns that list. On timeout the panic says, for each
/// node, how many tasks it shows in each state and its status, as last seen.
pub fn wait_converged(nodes: &[&Node], job: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        // A node the job has not reached yet answers 404: not converged yet.
        let lists: Vec<Value> = nodes.iter().map(|n| tasks_if_known(n, job)).collect();
        let all_in_state = lists[0]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|t| t["state"] == state));
        if all_in_state && lists.iter().all(|l| *l == lists[0]) {
            return lists[0].clone();
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = nodes
                .iter()
                .zip(&lists)
                .map(|(n, l)| format!("{} {}\n{}", states_count(l), n.status(), n.log_problems()))
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for every node to agree on every task \
                 (all {state}); last seen, node by node:\n{}\n{}",
                seen.join("\n"),
                first_difference(&lists)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first task on which two nodes' `tasks --json` lists differ, as each
/// shows it.
fn first_difference(lists: &[Value]) -> String {
    let rows = |l: &Value| l.as_array().cloned().unwrap_or_default();
    let first = rows(&lists[0]);
    for (n, list) in lists.iter().enumerate().skip(1) {
        let other = rows(list);
        if let Some(i) = (0..first.len().max(other.len())).find(|&i| first.get(i) != other.get(i)) {
            return format!(
                "first difference, task {i}: node 1 shows {:?}, node {} shows {:?}",
                first.get(i),
                n + 1,
                other.get(i)
            );
        }
    }
    "every node shows the same list".into()
}

/// How many tasks of a `tasks --json` list are in each state, e.g. `{"running": 2, "succeeded": 598}`,
/// or the error the node gave instead of a list.
fn states_count(list: &Value) -> String {
    if let Value::String(error) = list {
        return error.clone();
    }
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    for t in list.as_array().into_iter().flatten() {
        *count.entry(t["state"].to_string()).or_default() += 1;
    }
    format!("{count:?}")
}

/// Hosts on one virtual LAN: network namespaces joined by a bridge, made and
/// removed by the test itself. Addresses exist only inside them.
pub struct Lan {
    pub hosts: Vec<String>,
    bridge_ns: String,
    prefix: String,
}

/// Runs an iproute2 command (`ip` or `tc`), panicking with its stderr if it fails.
fn iproute2(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (iproute2) cannot be run: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    iproute2("ip", args);
}

impl Lan {
    /// `n` hosts 10.77.0.1 … 10.77.0.n on a bridge in a namespace of its own.
    pub fn new(tag: &str, n: usize) -> Lan {
        let prefix = format!("pb{}{tag}", std::process::id() % 100_000);
        let bridge_ns = format!("{prefix}br");
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        // A second bridge: hosts moved onto it are cut off from br0's.
        ip(&["-n", &bridge_ns, "link", "add", "br1", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br1", "up"]);
        let mut hosts = Vec::new();
        for i in 1..=n {
            let host = format!("{prefix}h{i}");
            ip(&["netns", "add", &host]);
            let (a, b) = (format!("{prefix}a{i}"), format!("{prefix}b{i}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &host]);
            ip(&["link", "set", &b, "netns", &bridge_ns]);
            ip(&["-n", &bridge_ns, "link", "set", &b, "master", "br0", "up"]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("10.77.0.{i}/24"),
                "dev",
                &a,
            ]);
            ip(&["-n", &host, "link", "set", &a, "up"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            hosts.push(host);
        }
        Lan {
            hosts,
            bridge_ns,
            prefix,
        }
    }

    /// Splits the LAN: hosts `side` (0-based) keep reaching each other but
    /// no longer the rest, and the rest keep reaching each other.
    pub fn partition(&self, side: &[usize]) {
        for i in side {
            let port = format!("{}b{}", self.prefix, i + 1);
            ip(&["-n", &self.bridge_ns, "link", "set", &port, "master", "br1"]);
        }
    }

    /// Limits every host's link to `rate` (tc's syntax, e.g. `1gbit`) in
    /// each direction, as if each host had a network card of that speed: a
    /// token bucket on both ends of its veth.
    pub fn limit_links(&self, rate: &str) {
        for i in 1..=self.hosts.len() {
            let upload = ["-n", &self.hosts[i - 1], "qdisc", "add", "dev"];
            let download = ["-n", &self.bridge_ns, "qdisc", "add", "dev"];
            for (side, dev) in [
                (upload, format!("{}a{i}", self.prefix)),
                (download, format!("{}b{i}", self.prefix)),
            ] {
                let mut args = side.to_vec();
                args.extend([
                    dev.as_str(),
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "1mb",
                    "latency",
                    "50ms",
                ]);
                iproute2("tc", &args);
            }
        }
    }

    /// Puts every host back on one bridge.
    pub fn heal(&self) {
        for i in 0..self.hosts.len() {
            let port = format!("{}b{}", self.prefix, i + 1);
            ip(&["-n", &self.bridge_ns, "link", "set", &port, "master", "br0"]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.bridge_ns]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Waits until every task of `job` on `node` has ended; returns them as
/// `tasks --json` prints them.
pub fn wait_tasks_ended(node: &Node, job: &str) -> Value {
    wait_for("the job's tasks to end", Duration::from_secs(120), || {
        let list = tasks(node, job);
        let ended = list.as_array()?.iter().all(|t| {
            let state = t["state"].as_str().unwrap_or("");
            !matches!(state, "pending" | "running" | "blocked")
        });
        ended.then_some(list)
    })
}

/// Writes `size` bytes of a fast deterministic pattern (every MiB distinct)
/// and returns their blake3 hash.
pub fn write_pattern(path: &Path, size: u64, seed: u64) -> blake3::Hash {
    use std::io::Write;
    const MIB: u64 = 1 << 20;
    let mut block = vec![0u8; MIB as usize];
    let mut x = seed | 1;
    for word in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = blake3::Hasher::new();
    let mut left = size;
    let mut index = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = left.min(MIB) as usize;
        file.write_all(&block[..n]).unwrap();
        hasher.update(&block[..n]);
        left -= n as u64;
        index += 1;
    }
    file.flush().unwrap();
    hasher.finalize()
}

/// The blake3 hash of the file at `path`.
pub fn hash_file(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).unwrap())
        .unwrap();
    hasher.finalize()
}
