//! Seeing function calls: HTTP calls are no ledger events, so each node
//! keeps the calls it ran, and `fn logs` on any node gathers every node's
//! — the calls' statuses, where they ran and what their handlers wrote on
//! stderr — without waiting on a node that does not answer (it is named),
//! and `--follow` prints new ones as they end; the portal's
//! Functions page (real headless Chromium) lists the function and its
//! page shows a recent call with its log, without a reload. Screenshots
//! go to `target/portal-screenshots/` as the portal tests' do.

use peerbatch_tests::{deploy_fn, invoke_fn, ok, portal_login, portal_url, wait_for};
use peerbatch_tests::{screenshots, Cluster, Node, FAST};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// A stdlib-only Python handler: notes on stderr what it handles, fails
/// (exit 1) on the body `fail`, else answers `ok BODY`.
const HANDLER: &str = r#"import sys
body = sys.stdin.read()
print(f"handled {body}", file=sys.stderr)
if body == "fail":
    sys.exit(1)
print(f"ok {body}")
"#;

/// `n` nodes, with function `hello` (the [`HANDLER`]) deployed on the first.
fn with_hello(n: usize) -> Cluster {
    let cluster = Cluster::start(n, FAST);
    let dir = cluster.tmp.path().join("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handler.py"), HANDLER).unwrap();
    deploy_fn(&cluster.nodes[0], "hello", &dir, "python3 handler.py", &[]);
    cluster
}

/// Calls until `node` knows the function and answers `status`.
fn call_until(node: &Node, name: &str, body: &str, status: u16) -> String {
    wait_for(
        &format!("a call of {name} with {body:?} answering {status}"),
        Duration::from_secs(90),
        || {
            let (got, answer) = invoke_fn(node, name, body);
            (got == status).then_some(answer)
        },
    )
}

/// `node`'s deployed function `name` is known to `other`'s ledger.
fn wait_known(other: &Node, name: &str) {
    wait_for(
        "the deploy to reach the node",
        Duration::from_secs(90),
        || {
            let list = other.json(&["fn", "list", "--json"]);
            list.as_array()?
                .iter()
                .any(|f| f["name"] == name)
                .then_some(())
        },
    );
}

/// The call of `calls` whose stderr says it handled `body`.
fn handled<'a>(calls: &'a [Value], body: &str) -> Option<&'a Value> {
    let line = format!("handled {body}\n");
    calls
        .iter()
        .find(|c| c["stderr"].as_str() == Some(line.as_str()))
}

#[test]
fn fn_logs_on_node_2_shows_the_calls_nodes_1_and_3_ran_with_their_status_and_stderr() {
    let cluster = with_hello(3);
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    assert_eq!(call_until(n1, "hello", "one", 200), "ok one\n");
    assert_eq!(call_until(n3, "hello", "three", 200), "ok three\n");
    let failed = call_until(n3, "hello", "fail", 500);
    assert!(failed.contains("exited with code 1"), "{failed}");
    wait_known(n2, "hello");

    let logs = n2.json(&["fn", "logs", "hello", "--json"]);
    let calls = logs["calls"].as_array().expect("a list of calls");
    assert_eq!(logs["unanswered"], serde_json::json!([]), "{logs:#}");
    let one = handled(calls, "one").unwrap_or_else(|| panic!("no call 'one': {logs:#}"));
    assert_eq!(one["status"], 200);
    assert_eq!(one["node"], n1.peer_id());
    assert_eq!(one["version"], 1);
    let three = handled(calls, "three").unwrap_or_else(|| panic!("no call 'three': {logs:#}"));
    assert_eq!(three["status"], 200);
    assert_eq!(three["node"], n3.peer_id());
    let fail = handled(calls, "fail").unwrap_or_else(|| panic!("no call 'fail': {logs:#}"));
    assert_eq!(fail["status"], 500);
    assert_eq!(fail["node"], n3.peer_id());
    let why = fail["answer"].as_str().unwrap();
    assert!(why.contains("exited with code 1"), "{why}");
    // Newest last, by the time each started.
    let times: Vec<u64> = calls.iter().map(|c| c["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        logs["total"]["by_status"]["5xx"].as_u64() >= Some(1),
        "{logs:#}"
    );
    assert!(
        logs["total"]["by_status"]["2xx"].as_u64() >= Some(2),
        "{logs:#}"
    );

    // The same as text: one line per call, its stderr indented under it.
    let text = ok(&n2.cli(&["fn", "logs", "hello"]), "fn logs");
    assert!(text.contains("  | handled fail"), "{text}");
    assert!(text.contains(" v1 500 "), "{text}");
    assert!(
        text.contains("  = function hello version 1: exited with code 1"),
        "{text}"
    );
}

#[test]
fn fn_logs_answers_without_a_node_that_does_not_answer_and_names_it() {
    let cluster = with_hello(2);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    call_until(n1, "hello", "here", 200);
    wait_known(n2, "hello");
    call_until(n2, "hello", "there", 200);
    let stopped = n2.peer_id();

    // Still connected, but it answers nothing while stopped.
    // SAFETY: kill(2) on the pid of a child this test started.
    unsafe { libc::kill(n2.pid() as i32, libc::SIGSTOP) };
    let logs = n1.cli(&["fn", "logs", "hello", "--json"]);
    unsafe { libc::kill(n2.pid() as i32, libc::SIGCONT) };
    let logs: Value = serde_json::from_str(&ok(&logs, "fn logs")).unwrap();

    let calls = logs["calls"].as_array().unwrap();
    assert!(handled(calls, "here").is_some(), "{logs:#}");
    assert!(handled(calls, "there").is_none(), "{logs:#}");
    let missing = logs["unanswered"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{logs:#}");
    assert_eq!(missing[0]["node"], stopped);
    let why = missing[0]["why"].as_str().unwrap();
    assert!(why.contains("no answer within 3s"), "{why}");
}

#[test]
fn a_call_no_node_had_room_for_shows_as_503_on_the_node_that_answered_it() {
    let cluster = with_hello(1);
    let node = &cluster.nodes[0];
    call_until(node, "hello", "first", 200);
    let id = node.peer_id();
    ok(&node.cli(&["node", "drain", &id]), "node drain");
    let refused = call_until(node, "hello", "refused", 503);
    assert!(refused.contains("no node has room"), "{refused}");

    let logs = node.json(&["fn", "logs", "hello", "--json"]);
    let last = logs["calls"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], 503, "{logs:#}");
    assert_eq!(last["node"], id);
    assert!(
        last["answer"]
            .as_str()
            .unwrap()
            .contains("no node has room"),
        "{last}"
    );
    assert_eq!(logs["total"]["by_status"]["503"], 1, "{logs:#}");
}

#[test]
fn fn_logs_follow_prints_a_call_made_on_another_node_as_it_ends() {
    let cluster = with_hello(2);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    call_until(n1, "hello", "before", 200);
    wait_known(n2, "hello");

    let mut follow = n2
        .command(&["fn", "logs", "hello", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_line = |want: &str| {
        while !seen.iter().any(|l: &String| l.contains(want)) {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("fn logs --follow never printed {want:?}: {seen:#?}"),
            }
        }
    };
    wait_line("| handled before");
    call_until(n1, "hello", "later", 200);
    wait_line("| handled later");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn the_portal_lists_a_function_and_its_page_shows_a_call_made_on_another_node_with_its_log() {
    let cluster = with_hello(2);
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let downloads = cluster.tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = portal_login(n2, &downloads);
    browser.open(&format!("{}/functions", portal_url(n2)));
    let row = "tr[data-function=\"hello\"]";
    browser.wait_text(
        &format!("{row} td:nth-child(2)"),
        Duration::from_secs(90),
        |t| t == "v1",
    );
    browser.run("window.notReloaded = true;");
    call_until(n1, "hello", "from the browser test", 200);
    browser.wait_text(&format!("{row} td.calls"), Duration::from_secs(30), |t| {
        t == "1"
    });
    let rate = browser.text_of(&format!("{row} td.rate")).unwrap();
    assert_eq!(rate, "1", "calls in the last minute");
    let still = browser.run("return window.notReloaded === true;");
    assert_eq!(still, true, "the page reloaded");
    browser.screenshot(&screenshots().join("functions.png"));

    browser.click(&format!("{row} a"));
    let recent = browser.wait_text("table.recent tr.call", Duration::from_secs(30), |t| {
        t.contains("handled from the browser test")
    });
    assert!(recent.contains("200"), "{recent}");
    browser.wait_text("#versions", Duration::from_secs(10), |t| {
        t.contains("python3 handler.py")
    });
    browser.screenshot(&screenshots().join("function.png"));
}
