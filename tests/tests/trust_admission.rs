//! Cluster admission on real processes: a host without the cluster key must not get in, even
//! by relaying a member's own admission bytes between two connections (issue 11, finding 1).

use peerbatch_tests::{wait_for, Node, FAST};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The `127.0.0.1:PORT` of a node's `/ip4/127.0.0.1/tcp/PORT/p2p/…` address.
fn socket_addr(node: &Node) -> SocketAddr {
    let addr = node.addr();
    let port = addr
        .split('/')
        .skip_while(|p| *p != "tcp")
        .nth(1)
        .expect("a /tcp/ port");
    format!("127.0.0.1:{port}").parse().expect("socket address")
}

/// A man in the middle without the key. Each connection a member dials to it is met with a
/// connection of its own back to that member; the first two 32-byte messages each end sends
/// (admission's nonce, then its tag) are passed to the other connection, so the member answers
/// its own challenge. The dialled connection is then spliced to `outsider`, a node without
/// the key, which speaks to the member through it from then on.
struct Relay {
    listener: Option<TcpListener>,
    /// Relay attempts that have ended, whatever the outcome.
    ended: Arc<AtomicUsize>,
}

impl Relay {
    /// Binds the relay's port (connections wait in the backlog until [`Relay::run`]).
    fn bind() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        Relay {
            listener: Some(listener),
            ended: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn port(&self) -> u16 {
        let listener = self.listener.as_ref().expect("not running yet");
        listener.local_addr().expect("relay address").port()
    }

    fn run(&mut self, member: SocketAddr, outsider: SocketAddr) {
        let listener = self.listener.take().expect("runs once");
        let counter = self.ended.clone();
        thread::spawn(move || {
            for dialled in listener.incoming().flatten() {
                let counter = counter.clone();
                thread::spawn(move || {
                    let _ = relay(dialled, member, outsider);
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

fn read32(from: &mut TcpStream) -> io::Result<[u8; 32]> {
    let mut buf = [0u8; 32];
    from.read_exact(&mut buf)?;
    Ok(buf)
}

/// One attempt: cross-relays admission between `dialled` and a connection back to `member`,
/// then splices `dialled` to `outsider` until either side closes.
fn relay(mut dialled: TcpStream, member: SocketAddr, outsider: SocketAddr) -> io::Result<()> {
    let patience = Some(Duration::from_secs(5));
    dialled.set_read_timeout(patience)?;
    let mut back = TcpStream::connect(member)?;
    back.set_read_timeout(patience)?;
    for _ in ["nonce", "tag"] {
        let from_dialler = read32(&mut dialled)?;
        back.write_all(&from_dialler)?;
        let from_listener = read32(&mut back)?;
        dialled.write_all(&from_listener)?;
    }
    drop(back);
    dialled.set_read_timeout(None)?;
    let outsider = TcpStream::connect(outsider)?;
    splice(dialled, outsider)
}

/// Copies bytes both ways until one side closes.
fn splice(a: TcpStream, b: TcpStream) -> io::Result<()> {
    let (mut a_read, mut b_write) = (a.try_clone()?, b.try_clone()?);
    let forward = thread::spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(Shutdown::Both);
    });
    let (mut b_read, mut a_write) = (b, a);
    let _ = io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}

fn keygen(path: &std::path::Path) {
    let out = std::process::Command::new(peerbatch_tests::bin())
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .expect("run keygen");
    assert!(out.status.success(), "keygen failed");
}

fn ids_of(nodes: &serde_json::Value) -> Vec<String> {
    nodes
        .as_array()
        .expect("a node list")
        .iter()
        .map(|n| n["id"].as_str().expect("an id").to_string())
        .collect()
}

fn run_array(node: &Node) -> String {
    let out = node.cli(&["run", "--array", "1-4", "--wait", "--", "echo", "{index}"]);
    peerbatch_tests::ok(&out, "run --wait")
}

#[test]
fn a_host_without_the_key_relaying_a_members_own_admission_never_joins() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = tmp.path().join("cluster.key");
    keygen(&key);
    let outsider = Node::start(
        &tmp.path().join("m"),
        &[FAST, &["--insecure-open"]].concat(),
    );

    // The member dials the relay, as it would a host that answered its mDNS query.
    let mut relay = Relay::bind();
    let join = format!("/ip4/127.0.0.1/tcp/{}", relay.port());
    let mut args = FAST.to_vec();
    args.extend([
        "--cluster-key",
        key.to_str().expect("utf-8 path"),
        "--join",
        &join,
    ]);
    let member = Node::start(&tmp.path().join("a"), &args);
    relay.run(socket_addr(&member), socket_addr(&outsider));

    let member_id = member.peer_id();
    wait_for(
        "a relay attempt to end, or the outsider to see the member",
        Duration::from_secs(90),
        || (relay.ended() >= 1 || outsider.live_nodes() > 1).then_some(()),
    );

    let seen = ids_of(&outsider.json(&["nodes", "--json"]));
    assert!(
        !seen.contains(&member_id),
        "the outsider without the key sees the member: {seen:?}"
    );
    assert_eq!(member.live_nodes(), 1, "the member counts only itself");

    let members_job = run_array(&member);
    let outsiders_jobs = outsider.json(&["jobs", "--json"]).to_string();
    assert!(
        !outsiders_jobs.contains(&members_job),
        "the member's job reached the outsider: {outsiders_jobs}"
    );
    let outsiders_job = run_array(&outsider);
    let outsider_id = outsider.peer_id();
    for task in outsider
        .json(&["tasks", &outsiders_job, "--json"])
        .as_array()
        .expect("tasks")
    {
        assert_eq!(task["node"], outsider_id.as_str(), "ran elsewhere: {task}");
    }
    let members_jobs = member.json(&["jobs", "--json"]).to_string();
    assert!(
        !members_jobs.contains(&outsiders_job),
        "the outsider's job reached the member: {members_jobs}"
    );
}
