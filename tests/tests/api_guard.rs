//! The HTTP API as an attacker on the same machine meets it, in raw HTTP:
//! no token, a wrong token, a token from a previous start, a task's own
//! token, a large body nobody vouched for, and clients that send their
//! requests slowly.

use peerbatch_tests::{ok, tasks, wait_for, Node, FAST};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Every route of the API with a body it accepts, plus a path that is none.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/v1/status", ""),
    ("GET", "/v1/jobs", ""),
    ("POST", "/v1/jobs", "{}"),
    ("POST", "/v1/jobs/file", r#"{"toml": "", "dir": "/tmp"}"#),
    ("GET", "/v1/jobs/0000000000000000", ""),
    ("GET", "/v1/jobs/0000000000000000/tasks", ""),
    ("POST", "/v1/jobs/0000000000000000/cancel", ""),
    ("GET", "/v1/jobs/0000000000000000/tasks/1/log", ""),
    ("GET", "/v1/nodes", ""),
    ("POST", "/v1/nodes/self/drain", r#"{"drain": true}"#),
    ("POST", "/v1/blobs", r#"{"path": "/etc/hostname"}"#),
    ("POST", "/v1/blobs/entries", r#"{"entries": []}"#),
    ("PUT", "/v1/blobs/stream", "some bytes"),
    ("GET", "/v1/blobs/00/bytes", ""),
    (
        "POST",
        "/v1/jobs/0000000000000000/outputs/export",
        r#"{"out": "/tmp/x"}"#,
    ),
    ("GET", "/v1/schedules", ""),
    ("POST", "/v1/schedules", "{}"),
    ("DELETE", "/v1/schedules/nightly", ""),
    ("GET", "/v1/pools", ""),
    ("POST", "/v1/pools", "{}"),
    ("GET", "/v1/pools/gpu/logs/self", ""),
    ("GET", "/v1/packages", ""),
    ("POST", "/v1/packages", "{}"),
    ("GET", "/v1/functions", ""),
    ("POST", "/v1/functions", "{}"),
    ("GET", "/v1/functions/hello", ""),
    ("DELETE", "/v1/functions/hello", ""),
    ("POST", "/v1/functions/hello/rollback", r#"{"version": 1}"#),
    ("GET", "/v1/functions/hello/keys", ""),
    ("GET", "/v1/functions/hello/calls", ""),
    ("GET", "/v1/function-calls", ""),
    ("POST", "/v1/functions/hello/keys", "{}"),
    ("DELETE", "/v1/functions/hello/keys/ci", ""),
    ("POST", "/fn/hello", "a body"),
    ("GET", "/fn/hello/some/path", ""),
    ("POST", "/v1/blobs/00/export", r#"{"out": "/tmp/x"}"#),
    ("GET", "/v1/exports/1", ""),
    ("GET", "/v1/invite", ""),
    ("GET", "/v1/waiting", ""),
    ("POST", "/v1/waiting/some-peer/approve", ""),
    ("GET", "/v1/openapi.json", ""),
    ("GET", "/metrics", ""),
    ("POST", "/v1/portal/login", ""),
    ("GET", "/v1/no-such-route", ""),
    ("PUT", "/v1/status", ""),
];

/// The routes of [`ROUTES`] a task's own token may use: reading jobs,
/// tasks, logs, nodes, packages, status and the API's description,
/// submitting jobs, and storing and reading blobs as bytes in the body.
const TASK_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/0000000000000000"),
    ("GET", "/v1/jobs/0000000000000000/tasks"),
    ("GET", "/v1/jobs/0000000000000000/tasks/1/log"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/packages"),
    ("PUT", "/v1/blobs/stream"),
    ("GET", "/v1/blobs/00/bytes"),
    ("GET", "/v1/openapi.json"),
];

fn api(node: &Node) -> String {
    std::fs::read_to_string(node.dir.join("api")).unwrap()
}

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("token")).unwrap()
}

fn connect(node: &Node) -> TcpStream {
    let stream = TcpStream::connect(api(node).trim()).unwrap();
    // Generous: an answer that takes this long is no answer.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// A request's head; `auth` is the whole `Authorization` value, if any.
fn head(method: &str, path: &str, auth: Option<&str>, length: usize) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Reads one response: its status code and body.
fn response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !bytes.is_empty() => break,
            Err(e) => panic!("no answer ({e}); got so far: {bytes:?}"),
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

fn request(node: &Node, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = connect(node);
    stream
        .write_all(head(method, path, auth, body.len()).as_bytes())
        .unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    response(&mut stream)
}

#[test]
fn every_route_answers_401_without_a_token_or_with_a_wrong_one() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    let wrong = format!("Bearer {}", "0".repeat(64));
    let almost = format!("Bearer {}x", token(&node.dir).trim());
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(almost.as_str()),
        Some("Basic abc"),
    ] {
        for (method, path, body) in ROUTES {
            let (code, text) = request(&node, method, path, auth, body);
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {text}");
        }
    }
    let right = format!("Bearer {}", token(&node.dir).trim());
    let (code, text) = request(&node, "GET", "/v1/status", Some(&right), "");
    assert_eq!(code, 200, "{text}");
}

#[test]
fn an_unauthenticated_post_of_a_60_mib_body_is_refused_before_its_body_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    for auth in [None, Some("Bearer wrong")] {
        let mut stream = connect(&node);
        stream
            .write_all(head("POST", "/v1/jobs", auth, 60 << 20).as_bytes())
            .unwrap();
        stream.write_all(br#"{"name": "#).unwrap();
        // The server answers although 60 MiB minus 9 bytes never come.
        let (code, text) = response(&mut stream);
        assert_eq!(code, 401, "{text}");
    }
}

#[test]
fn a_streamed_blob_declared_beyond_the_nodes_store_limit_is_refused_before_its_body_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(
        &tmp.path().join("a"),
        &[FAST, &["--store-limit", "1MiB"]].concat(),
    );
    let auth = format!("Bearer {}", token(&node.dir).trim());
    let mut stream = connect(&node);
    stream
        .write_all(head("PUT", "/v1/blobs/stream", Some(&auth), 2 << 20).as_bytes())
        .unwrap();
    let (code, text) = response(&mut stream);
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("--store-limit of 1048576 bytes"), "{text}");
}

#[test]
fn an_unauthenticated_caller_cannot_tell_whether_a_path_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    let blob = "ab".repeat(32);
    let export = format!("/v1/blobs/{blob}/export");
    for path in ["/v1/blobs", export.as_str(), "/v1/jobs/00/outputs/export"] {
        let answers: Vec<(u16, String)> = ["/etc/hostname", "/etc", "/no/such/path"]
            .iter()
            .map(|p| {
                let body = format!(r#"{{"path": "{p}", "out": "{p}"}}"#);
                request(&node, "POST", path, Some("Bearer wrong"), &body)
            })
            .collect();
        assert_eq!(answers[0].0, 401, "{path}: {answers:?}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{path}: {answers:?}"
        );
    }
}

#[test]
fn a_token_from_a_previous_start_is_refused_and_the_new_one_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut node = Node::start(&dir, FAST);
    let old = format!("Bearer {}", token(&dir).trim());
    let (code, _) = request(&node, "GET", "/v1/status", Some(&old), "");
    assert_eq!(code, 200);

    node.kill9();
    node.restart();
    let new = format!("Bearer {}", token(&dir).trim());
    assert_ne!(new, old, "the token file was not rewritten at start");
    let (code, text) = request(&node, "GET", "/v1/status", Some(&old), "");
    assert_eq!(code, 401, "{text}");
    let (code, text) = request(&node, "GET", "/v1/status", Some(&new), "");
    assert_eq!(code, 200, "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ok(&node.cli(&["status"]), "status with the new token file");
}

#[test]
fn an_authenticated_body_that_stops_arriving_is_answered_408() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    let auth = format!("Bearer {}", token(&node.dir).trim());
    let mut stream = connect(&node);
    stream
        .write_all(head("POST", "/v1/jobs", Some(&auth), 1000).as_bytes())
        .unwrap();
    stream.write_all(br#"{"name": "#).unwrap();
    let (code, text) = response(&mut stream);
    assert_eq!(code, 408, "{text}");
}

#[test]
fn slow_clients_holding_many_connections_are_cut_off_and_the_cli_still_gets_through() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    // More connections than the node serves at once, each stuck mid-head
    // or silent.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = connect(&node);
            if i % 2 == 0 {
                s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: node\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    let status = ok(
        &node.cli(&["status", "--json"]),
        "status while slow clients wait",
    );
    assert!(status.contains("\"node\""), "{status}");
    for (i, s) in slow.iter_mut().enumerate() {
        // Closed (perhaps after an error response) within the generous
        // read timeout of `connect`.
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slow connection {i} is still open: {e}"),
        }
    }
}

#[test]
fn a_tasks_own_token_opens_only_the_task_routes_and_stops_working_when_its_attempt_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), FAST);
    // The task hands its token out through this directory and runs until
    // `done` appears there.
    let drop_box = tmp.path().join("box");
    std::fs::create_dir(&drop_box).unwrap();
    let b = drop_box.display();
    let job_file = tmp.path().join("hold.toml");
    std::fs::write(
        &job_file,
        format!(
            "[[tasks]]\nid = \"hold\"\ncommand = '''\n\
             echo \"$PEERBATCH_TOKEN\" > {b}/token.part && mv {b}/token.part {b}/token\n\
             while [ ! -e {b}/done ]; do sleep 0.1; done\n'''\n"
        ),
    )
    .unwrap();
    let job = ok(&node.cli(&["submit", job_file.to_str().unwrap()]), "submit");
    let task_token = wait_for("the task's token", Duration::from_secs(60), || {
        std::fs::read_to_string(drop_box.join("token")).ok()
    });
    let task_token = task_token.trim();
    assert!(!task_token.is_empty(), "the task got no PEERBATCH_TOKEN");
    let auth = format!("Bearer {task_token}");

    for (method, path, body) in ROUTES {
        let (code, text) = request(&node, method, path, Some(&auth), body);
        if TASK_ROUTES.contains(&(method, path)) {
            assert!(
                code != 401 && code != 403,
                "{method} {path} refused a running task's token: {code} {text}"
            );
        } else {
            assert_eq!(code, 403, "{method} {path} with a task's token: {text}");
            assert!(
                text.contains("task") && text.contains(method),
                "{method} {path}: the refusal does not say why: {text}"
            );
        }
    }
    // The refusal names the route by its pattern.
    let drain = r#"{"drain": true}"#;
    let (_, text) = request(&node, "POST", "/v1/nodes/self/drain", Some(&auth), drain);
    assert!(text.contains("POST /v1/nodes/{node}/drain"), "{text}");
    assert_eq!(node.status()["draining"], false, "a task drained its node");

    std::fs::write(drop_box.join("done"), "").unwrap();
    wait_for("the task to end", Duration::from_secs(60), || {
        let list = tasks(&node, &job);
        (list[0]["state"] == "succeeded").then_some(())
    });
    let (code, text) = request(&node, "GET", "/v1/jobs", Some(&auth), "");
    assert_eq!(code, 401, "a finished attempt's token still works: {text}");
}
