//! Functions on real nodes: deployed once through the ledger, invoked over
//! HTTP on any node, run in the task sandbox, routed away from nodes that
//! are drained.

use peerbatch_tests::{deploy_fn, ok, wait_for, Cluster, Node, FAST};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stdlib-only Python handler that says what it was given and where it ran.
const HANDLER: &str = r#"import os, sys
body = sys.stdin.read()
env = os.environ
print(f"{env['GREETING']} {body} {env['PEERBATCH_FN_METHOD']} {env['PEERBATCH_FN_PATH']} "
      f"q={env['PEERBATCH_FN_QUERY']} v{env['PEERBATCH_FN_VERSION']} "
      f"token-header={env.get('PEERBATCH_FN_HEADER_AUTHORIZATION', 'none')} "
      f"on={env['PEERBATCH_NODE']}")
"#;

/// A bundle directory whose handler greets with `greeting`.
fn bundle(cluster: &Cluster, name: &str, greeting: &str) -> PathBuf {
    let dir = cluster.tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handler.py"), HANDLER).unwrap();
    std::fs::write(dir.join("greeting"), greeting).unwrap();
    dir
}

fn deploy(node: &Node, name: &str, dir: &Path, extra: &[&str]) {
    let command = "GREETING=$(cat greeting) python3 handler.py";
    deploy_fn(node, name, dir, command, extra);
}

/// An HTTP call of `/fn/PATH` on `node`'s API with its token: status,
/// `Retry-After` and body.
fn call(node: &Node, path: &str, body: &str) -> (u16, Option<String>, String) {
    call_dir(&node.dir, path, body)
}

/// [`call`] on the node of data dir `dir`.
fn call_dir(dir: &Path, path: &str, body: &str) -> (u16, Option<String>, String) {
    let api = std::fs::read_to_string(dir.join("api")).unwrap();
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let answer = ureq::post(&format!("http://{}/fn/{path}", api.trim()))
        .set("authorization", &format!("Bearer {}", token.trim()))
        .send_string(body);
    let resp = match answer {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("cannot reach {api}: {e}"),
    };
    let retry_after = resp.header("retry-after").map(str::to_string);
    (resp.status(), retry_after, resp.into_string().unwrap())
}

/// Waits until `node` answers a call of `path` with 200 and a body
/// containing `want`, and returns that body.
fn wait_answer(node: &Node, path: &str, want: &str) -> String {
    wait_for(
        &format!("a call of {path} answering {want:?}"),
        Duration::from_secs(90),
        || {
            let (status, _, body) = call(node, path, "world");
            (status == 200 && body.contains(want)).then_some(body)
        },
    )
}

/// Drains `nodes[i]` from itself and waits until it is unavailable and
/// every other node sees its announce say so; answers its peer id.
fn drain(nodes: &[Node], i: usize) -> String {
    let id = nodes[i].peer_id();
    ok(&nodes[i].cli(&["node", "drain", &id]), "node drain");
    for (_, node) in nodes.iter().enumerate().filter(|(k, _)| *k != i) {
        wait_for("the drain to be announced", Duration::from_secs(90), || {
            let list = node.json(&["nodes", "--json"]);
            let it = list.as_array()?.iter().find(|n| n["id"] == id.as_str())?;
            (it["draining"] == true).then_some(())
        });
    }
    wait_for(
        "the node to be unavailable",
        Duration::from_secs(90),
        || nodes[i].status()["unavailable"].as_str().map(drop),
    );
    id
}

#[test]
fn a_python_function_deployed_on_node_1_answers_an_http_call_on_node_3() {
    let cluster = Cluster::start(3, FAST);
    let [n1, _, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    deploy(n1, "hello", &bundle(&cluster, "b1", "hello"), &[]);

    let body = wait_answer(n3, "hello/a/b?x=1", "hello");
    assert!(
        body.starts_with("hello world POST /a/b q=x=1 v1 token-header=none on="),
        "{body}"
    );
    let listed = n3.json(&["fn", "list", "--json"]);
    assert_eq!(listed[0]["name"], "hello");
    assert_eq!(listed[0]["serving"], 1);
    assert_eq!(listed[0]["owner"], n1.peer_id());
}

#[test]
fn a_new_version_rolls_out_and_a_rollback_restores_the_old_one() {
    let cluster = Cluster::start(3, FAST);
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    deploy(n1, "greet", &bundle(&cluster, "b1", "first"), &[]);
    wait_answer(n2, "greet", "first world");
    deploy(n1, "greet", &bundle(&cluster, "b2", "second"), &[]);
    wait_answer(n2, "greet", "second world");
    wait_answer(n3, "greet", "second world");

    ok(&n1.cli(&["fn", "rollback", "greet", "1"]), "fn rollback");
    wait_answer(n3, "greet", "first world");
    let versions = n3.json(&["fn", "versions", "greet", "--json"]);
    assert_eq!(versions["serving"], 1);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    // Only the node that deployed it (or an admin) may change it.
    let refused = n2.cli(&["fn", "remove", "greet"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("belongs to node"), "{why}");
    ok(&n1.cli(&["fn", "remove", "greet"]), "fn remove");
    wait_for(
        "the removal to reach node 3",
        Duration::from_secs(90),
        || (call(n3, "greet", "").0 == 404).then_some(()),
    );
}

#[test]
fn a_handler_that_hangs_is_killed_at_its_timeout_and_the_caller_gets_504() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let dir = bundle(&cluster, "b", "unused");
    let args = ["fn", "deploy", "hang", dir.to_str().unwrap()];
    let mut args = args.to_vec();
    args.extend(["--command", "echo started; sleep 617", "--timeout", "2s"]);
    ok(&node.cli(&args), "fn deploy");

    let (status, _, body) = call(node, "hang", "");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("killed at its time-out of 2s"), "{body}");
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 617"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the handler's sleep still runs");
}

#[test]
fn a_drained_node_runs_no_call_and_its_calls_go_to_the_others() {
    let cluster = Cluster::start(3, FAST);
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    deploy(n1, "where", &bundle(&cluster, "b", "hi"), &[]);
    wait_answer(n3, "where", "hi world");

    let drained = drain(&cluster.nodes, 2);
    for _ in 0..6 {
        let (status, _, body) = call(n3, "where", "world");
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains(&drained),
            "the drained node ran a call: {body}"
        );
    }

    // With every node drained there is nowhere to run: 503, not a hang.
    for node in [n1, n2] {
        let id = node.peer_id();
        ok(&node.cli(&["node", "drain", &id]), "node drain");
    }
    let (status, retry_after, body) = wait_for("503", Duration::from_secs(90), || {
        let answer = call(n3, "where", "world");
        (answer.0 == 503).then_some(answer)
    });
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
}

/// Deploys `name` on node 1 with a handler that notes where it runs, then
/// takes 5 s to answer, and drains node 1, so its calls go elsewhere;
/// starts a call on node 1 and kills -9 the node that runs it. Answers the
/// call's status and body, and the killed node's peer id.
fn kill_the_runner(cluster: &mut Cluster, name: &str, extra: &[&str]) -> (u16, String, String) {
    let mark = cluster.tmp.path().join(format!("{name}.ran"));
    let command = format!(
        "echo $PEERBATCH_NODE >> {}; sleep 5; echo answered by $PEERBATCH_NODE",
        mark.display()
    );
    let dir = bundle(cluster, name, "unused");
    let n1 = &cluster.nodes[0];
    deploy_fn(n1, name, &dir, &command, extra);
    drain(&cluster.nodes, 0);
    let (dir, path) = (n1.dir.clone(), name.to_string());
    let caller = std::thread::spawn(move || call_dir(&dir, &path, ""));
    let runner = wait_for("the handler to start", Duration::from_secs(90), || {
        let text = std::fs::read_to_string(&mark).ok()?;
        text.lines().next().map(str::to_string)
    });
    let victim = (cluster.nodes.iter_mut())
        .find(|n| n.peer_id() == runner)
        .expect("the handler runs on a node of the cluster");
    victim.kill9();
    let (status, _, body) = caller.join().unwrap();
    (status, body, runner)
}

#[test]
fn a_call_whose_node_is_killed_is_answered_by_another_node_or_with_no_retry_gets_502() {
    let mut cluster = Cluster::start(3, FAST);
    let (status, body, killed) = kill_the_runner(&mut cluster, "again", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("answered by "), "{body}");
    assert!(!body.contains(&killed), "{body}");

    let mut cluster = Cluster::start(3, FAST);
    let (status, body, killed) = kill_the_runner(&mut cluster, "once", &["--no-retry"]);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("node {killed} did not answer")),
        "{body}"
    );
}
