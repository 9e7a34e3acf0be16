//! Functions on real nodes: deployed once through the ledger, invoked over
//! HTTP on any node, run in the task sandbox, routed away from nodes that
//! are drained or outside their hours and to the node with the most room;
//! warm handlers kept running between calls behind the AWS
//! Lambda runtime API.

use peerbatch_tests::{deploy_fn, ok, tasks, wait_for, Cluster, Node, FAST};
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

/// A stdlib-only Python warm handler: the AWS Lambda runtime API loop
/// with urllib. Notes its pid in `MARKS/started` when it starts (and
/// reports an init error and exits if `MARKS/broken` exists); answers a
/// proxy response saying what it was given, its pid and how many calls it
/// served; on paths `/hang` and `/slow` it notes its node in `MARKS/slow`,
/// then never answers (`/hang`) or answers after 5 s (`/slow`).
const WARM_HANDLER: &str = r#"import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
marks = open("marks").read().strip()
greeting = open("greeting").read().strip()
node = os.environ["PEERBATCH_NODE"]
with open(os.path.join(marks, "started"), "a") as f:
    f.write(f"{os.getpid()}\n")
if os.path.exists(os.path.join(marks, "broken")):
    report = {"errorMessage": "no config", "errorType": "Init.Config"}
    urllib.request.urlopen(urllib.request.Request(
        api + "/init/error", data=json.dumps(report).encode(), method="POST")).read()
    raise SystemExit(1)
served = 0
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    served += 1
    path = event["rawPath"]
    if path in ("/hang", "/slow"):
        with open(os.path.join(marks, "slow"), "a") as f:
            f.write(node + "\n")
    if path == "/hang":
        time.sleep(617)
    if path == "/slow":
        time.sleep(5)
    method = event["requestContext"]["http"]["method"]
    query = event["queryStringParameters"].get("x", "")
    body = (f"{greeting} {event['body']} {method} {path} q={query} "
            f"pid={os.getpid()} n={served} on={node}")
    answer = {"statusCode": 200, "headers": {"x-pid": str(os.getpid())}, "body": body}
    post = urllib.request.Request(api + f"/invocation/{request_id}/response",
                                  data=json.dumps(answer).encode(), method="POST")
    urllib.request.urlopen(post).read()
"#;

/// A bundle directory whose handler greets with `greeting`.
fn bundle(cluster: &Cluster, name: &str, greeting: &str) -> PathBuf {
    let dir = cluster.tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handler.py"), HANDLER).unwrap();
    std::fs::write(dir.join("warm.py"), WARM_HANDLER).unwrap();
    std::fs::write(dir.join("greeting"), greeting).unwrap();
    std::fs::write(dir.join("marks"), cluster.tmp.path().to_str().unwrap()).unwrap();
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
fn what_a_call_changes_in_its_working_directory_never_reaches_the_next_call() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let dir = bundle(&cluster, "b", "hello");
    // Tasks run as the node's user here, so the handler can write the
    // bundle's files it was given; a body `spoil` makes it do so, and
    // open its directory to everyone.
    let command = "stat -c %a .; ls -A; cat greeting; echo; read -r what; \
                   if [ \"$what\" = spoil ]; then \
                   chmod 777 .; echo spoiled > greeting; chmod 777 greeting; fi";
    deploy_fn(node, "spoil", &dir, command, &[]);
    for (n, body) in ["spoil", "spoil", "look"].into_iter().enumerate() {
        let (status, _, answer) = call(node, "spoil", body);
        let want = "700\ngreeting\nhandler.py\nmarks\nwarm.py\nhello\n";
        assert_eq!((status, answer.as_str()), (200, want), "call {}", n + 1);
    }
}

/// A POST of `/fn/PATH` with body `world` on a functions listener at
/// `url`, with `key` in `x-functions-key` if given: status and body.
fn call_lan(url: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let mut request = ureq::post(&format!("{url}/fn/{path}"));
    if let Some(key) = key {
        request = request.set("x-functions-key", key);
    }
    let resp = match request.send_string("world") {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("cannot reach {url}: {e}"),
    };
    (resp.status(), resp.into_string().unwrap())
}

/// Waits until the functions listener at `url` answers a call of `path`
/// with `key` with `status` (a change of the key reached its node), and
/// returns the body.
fn wait_lan(url: &str, path: &str, key: &str, status: u16) -> String {
    let what = format!("{url}/fn/{path} to answer {status}");
    wait_for(&what, Duration::from_secs(90), || {
        let (got, body) = call_lan(url, path, Some(key));
        (got == status).then_some(body)
    })
}

/// The `error` of a refusal's JSON body.
fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
    v["error"].as_str().expect("an error text").to_string()
}

#[test]
fn a_key_made_on_node_1_opens_the_function_on_node_3s_lan_listener_until_revoked() {
    let args = [FAST, &["--functions-listen", "127.0.0.1:0"]].concat();
    let cluster = Cluster::start(3, &args);
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    deploy(n1, "hello", &bundle(&cluster, "b1", "hello"), &[]);
    let create = ["fn", "keys", "create", "hello", "--key-name", "ci"];
    let key = ok(&n1.cli(&create), "fn keys create");
    let url = n3.status()["functions_url"].as_str().unwrap().to_string();

    let body = wait_lan(&url, "hello/a?x=1", &key, 200);
    assert!(body.starts_with("hello world POST /a q=x=1 v1 "), "{body}");
    let with_code = call_lan(&url, &format!("hello/a?x=1&code={key}"), None);
    assert_eq!(with_code.0, 200, "{}", with_code.1);
    assert!(
        with_code.1.starts_with("hello world POST /a q=x=1 v1 "),
        "the code was passed on: {}",
        with_code.1
    );

    let (status, body) = call_lan(&url, "hello", None);
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("no function key"), "{body}");
    let (status, body) = call_lan(&url, "hello", Some("not-a-key"));
    assert_eq!(status, 401, "{body}");
    assert!(
        error_of(&body).contains("not one of this function's keys"),
        "{body}"
    );
    // An unknown function refuses the key the same way: nothing tells which exist.
    assert_eq!(
        call_lan(&url, "nope", Some(&key)),
        (status, body.replace("hello", "nope"))
    );
    let status_route = ureq::get(&format!("{url}/v1/status")).call();
    assert!(
        matches!(status_route, Err(ureq::Error::Status(404, _))),
        "the listener serves the API"
    );

    let listed = n3.json(&["fn", "keys", "list", "hello", "--json"]);
    assert_eq!(listed[0]["label"], "ci");
    assert_eq!(listed[0]["created_by"], n1.peer_id());
    assert!(listed[0]["revoked_ms"].is_null() && !listed.to_string().contains(&key));

    let list = ["fn", "keys", "list", "hello", "--json"];
    wait_for("the key to reach node 2", Duration::from_secs(90), || {
        let out = n2.cli(&list);
        let text = String::from_utf8_lossy(&out.stdout);
        (out.status.success() && text.contains("\"ci\"")).then_some(())
    });
    let refused = n2.cli(&["fn", "keys", "revoke", "hello", "ci"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("belongs to node"), "{why}");
    ok(
        &n1.cli(&["fn", "keys", "revoke", "hello", "ci"]),
        "fn keys revoke",
    );
    let body = wait_lan(&url, "hello", &key, 401);
    assert!(error_of(&body).contains("revoked"), "{body}");
}

#[test]
fn beyond_loopback_the_functions_listener_serves_https_only_with_the_nodes_certificate() {
    peerbatch_tests::tools::ensure_debian_packages("curl", &["curl"]);
    let cluster = Cluster::start(1, &[FAST, &["--functions-listen", "127.0.0.2:0"]].concat());
    let node = &cluster.nodes[0];
    deploy(node, "hello", &bundle(&cluster, "b1", "hello"), &[]);
    let key = ok(
        &node.cli(&["fn", "keys", "create", "hello"]),
        "fn keys create",
    );
    let url = node.status()["functions_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.2:"), "{url}");

    let cert = node.dir.join("api-tls/cert.pem");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", cert.to_str().unwrap(), "--data", "world"])
        .args([
            "-H",
            &format!("x-functions-key: {key}"),
            &format!("{url}/fn/hello"),
        ])
        .output()
        .unwrap();
    let body = ok(&out, "curl over https");
    assert!(body.starts_with("hello world POST / "), "{body}");

    let plain = url.replacen("https://", "http://", 1);
    let answer = ureq::post(&format!("{plain}/fn/hello"))
        .set("x-functions-key", &key)
        .call();
    assert!(
        matches!(answer, Err(ureq::Error::Transport(_))),
        "plain HTTP answered: {answer:?}"
    );
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

/// An `--available` window that opens two hours from now (by the local
/// clock, as the node reads it) and closes an hour later: a node given it
/// is outside its hours for the whole test.
fn window_not_now() -> String {
    let now = std::process::Command::new("date")
        .arg("+%H %M")
        .output()
        .unwrap();
    let now = String::from_utf8(now.stdout).unwrap();
    let (h, m) = now.trim().split_once(' ').unwrap();
    let minute = h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap();
    let hm = |m: u32| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
    format!("{}-{}", hm(minute + 120), hm(minute + 180))
}

#[test]
fn a_node_outside_its_availability_window_serves_nothing_and_calls_go_to_the_others() {
    let mut cluster = Cluster::start(2, FAST);
    let window = window_not_now();
    let mut args = FAST.to_vec();
    args.extend(["--available", window.as_str()]);
    let n3 = cluster.add(&args);
    let why = wait_for("node 3 to be unavailable", Duration::from_secs(30), || {
        n3.status()["unavailable"].as_str().map(str::to_string)
    });
    assert_eq!(why, format!("outside its hours {window}"));
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let outside = n3.peer_id();
    deploy(n1, "spare", &bundle(&cluster, "b", "hi"), &[]);

    // A call arriving at node 3 runs on another node.
    wait_answer(n3, "spare", "hi world");
    for _ in 0..6 {
        let (status, _, body) = call(n3, "spare", "world");
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(&outside), "node 3 ran a call: {body}");
    }

    // Node 1 drained: its calls go to node 2, never to node 3.
    drain(&cluster.nodes, 0);
    for _ in 0..6 {
        let (status, _, body) = call(n1, "spare", "world");
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with(&format!("on={}\n", n2.peer_id())), "{body}");
    }

    // Node 2 drained too: node 3 still runs nothing, and says so with 503.
    drain(&cluster.nodes, 1);
    let (status, retry_after, body) = call(n3, "spare", "world");
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{body}");
}

#[test]
fn forwarded_calls_go_to_the_idle_node_not_to_the_one_whose_slots_are_full() {
    let mut cluster = Cluster::start(1, FAST);
    let busy = cluster
        .add(&[FAST, &["--label", "busy=yes"]].concat())
        .peer_id();
    let idle = cluster.add(FAST).peer_id();
    let n1 = &cluster.nodes[0];
    deploy(n1, "route", &bundle(&cluster, "b", "hi"), &[]);
    drain(&cluster.nodes, 0);
    let work = "[[tasks]]\nid = \"fill\"\ncommand = \"sleep 600\"\nslots = 2\n\
                constraints = [\"busy=yes\"]\n";
    let job = ok(
        &n1.cli(&["submit", cluster.file("fill.toml", work).to_str().unwrap()]),
        "submit",
    );
    wait_for(
        "node 1 to see node 2's slots taken",
        Duration::from_secs(90),
        || {
            let task = &tasks(n1, &job)[0];
            (task["state"] == "running" && task["node"] == busy.as_str()).then_some(())
        },
    );

    for _ in 0..10 {
        let (status, _, body) = call(n1, "route", "world");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.ends_with(&format!("on={idle}\n")),
            "not run by the idle node: {body}"
        );
    }
}

/// Deploys `name` on node 1 with `command` (which notes where it runs in
/// `mark`, then takes 5 s to answer) and `extra` flags, and drains node
/// 1, so its calls go elsewhere; calls `call_path` on node 1 and kills -9
/// the node that runs it. Answers the call's status and body, and the
/// killed node's peer id.
fn kill_the_runner(
    cluster: &mut Cluster,
    name: &str,
    command: &str,
    mark: &Path,
    call_path: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let dir = bundle(cluster, name, "unused");
    let n1 = &cluster.nodes[0];
    deploy_fn(n1, name, &dir, command, extra);
    drain(&cluster.nodes, 0);
    let (dir, path) = (n1.dir.clone(), call_path.to_string());
    let caller = std::thread::spawn(move || call_dir(&dir, &path, ""));
    let runner = wait_for("the handler to start", Duration::from_secs(90), || {
        let text = std::fs::read_to_string(mark).ok()?;
        text.lines().next().map(str::to_string)
    });
    let victim = (cluster.nodes.iter_mut())
        .find(|n| n.peer_id() == runner)
        .expect("the handler runs on a node of the cluster");
    victim.kill9();
    let (status, _, body) = caller.join().unwrap();
    (status, body, runner)
}

/// [`kill_the_runner`] with a per-call shell handler.
fn kill_the_shell_runner(
    cluster: &mut Cluster,
    name: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let mark = cluster.tmp.path().join(format!("{name}.ran"));
    let command = format!(
        "echo $PEERBATCH_NODE >> {}; sleep 5; echo answered by $PEERBATCH_NODE",
        mark.display()
    );
    kill_the_runner(cluster, name, &command, &mark, name, extra)
}

#[test]
fn a_call_whose_node_is_killed_is_answered_by_another_node_or_with_no_retry_gets_502() {
    let mut cluster = Cluster::start(3, FAST);
    let (status, body, killed) = kill_the_shell_runner(&mut cluster, "again", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("answered by "), "{body}");
    assert!(!body.contains(&killed), "{body}");

    let mut cluster = Cluster::start(3, FAST);
    let (status, body, killed) = kill_the_shell_runner(&mut cluster, "once", &["--no-retry"]);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("node {killed} did not answer")),
        "{body}"
    );
}

/// Deploys `name` as a warm function with the Python warm handler.
fn deploy_warm(node: &Node, cluster: &Cluster, name: &str, extra: &[&str]) {
    let dir = bundle(cluster, name, "hello");
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "fn",
        "deploy",
        name,
        dir,
        "--command",
        "python3 warm.py",
        "--warm",
    ];
    args.extend(extra);
    ok(&node.cli(&args), "fn deploy --warm");
}

/// The `pid=` a warm handler's answer names.
fn pid_of(body: &str) -> u32 {
    let pid = body.split(" pid=").nth(1).and_then(|r| r.split(' ').next());
    pid.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

/// Whether process `pid` still runs (a zombie waiting to be reaped by
/// whoever it was handed to does not).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Waits until the process `pid` has ended.
fn wait_gone(pid: u32, what: &str) {
    wait_for(what, Duration::from_secs(90), || {
        (!alive(pid)).then_some(())
    });
}

/// The pids warm workers noted when they started, in order.
fn started(cluster: &Cluster) -> Vec<u32> {
    let text = std::fs::read_to_string(cluster.tmp.path().join("started")).unwrap_or_default();
    text.lines().filter_map(|l| l.parse().ok()).collect()
}

#[test]
fn a_warm_python_function_answers_calls_on_another_node_from_one_kept_process() {
    let cluster = Cluster::start(3, FAST);
    let [n1, _, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    deploy_warm(n1, &cluster, "warm", &[]);

    let first = wait_answer(n3, "warm/a/b?x=1", "hello world");
    assert!(
        first.starts_with("hello world POST /a/b q=1 pid="),
        "{first}"
    );
    let pid = pid_of(&first);
    let n = |body: &str| {
        body.split(" n=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    let (status, _, second) = call(n3, "warm/a/b?x=2", "again");
    assert_eq!(status, 200, "{second}");
    assert!(
        second.starts_with("hello again POST /a/b q=2 pid="),
        "{second}"
    );
    assert_eq!(
        pid_of(&second),
        pid,
        "a second process served the second call"
    );
    let (first_n, second_n) = (n(&first).unwrap(), n(&second).unwrap());
    assert_eq!(
        second_n.parse::<u32>().unwrap(),
        first_n.parse::<u32>().unwrap() + 1
    );
    let versions = n3.json(&["fn", "versions", "warm", "--json"]);
    assert_eq!(versions["versions"][0]["warm"]["max_per_node"], 4);
}

#[test]
fn a_warm_handler_that_hangs_is_killed_at_its_timeout_and_the_next_call_gets_a_new_worker() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    deploy_warm(node, &cluster, "hang", &["--timeout", "2s"]);
    let pid = pid_of(&wait_answer(node, "hang", "hello"));

    let (status, _, body) = call(node, "hang/hang", "");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("killed at its time-out of 2s"), "{body}");
    wait_gone(pid, "the hung worker to be killed");

    let (status, _, body) = call(node, "hang", "back");
    assert_eq!(status, 200, "{body}");
    assert_ne!(pid_of(&body), pid);
}

#[test]
fn a_warm_call_whose_node_is_killed_is_answered_by_another_node_or_with_no_retry_gets_502() {
    for (extra, retried) in [(&[][..], true), (&["--no-retry"][..], false)] {
        let mut cluster = Cluster::start(3, FAST);
        let mark = cluster.tmp.path().join("slow");
        let command = "python3 warm.py";
        let mut flags = vec!["--warm"];
        flags.extend(extra);
        let (status, body, killed) = kill_the_runner(
            &mut cluster,
            "warmkill",
            command,
            &mark,
            "warmkill/slow",
            &flags,
        );
        if retried {
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(" on="), "{body}");
            assert!(!body.contains(&killed), "{body}");
        } else {
            assert_eq!(status, 502, "{body}");
            assert!(
                body.contains(&format!("node {killed} did not answer")),
                "{body}"
            );
        }
    }
}

#[test]
fn an_idle_warm_worker_stops_after_its_idle_timeout() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    deploy_warm(node, &cluster, "idle", &["--idle-timeout", "2s"]);
    let pid = pid_of(&wait_answer(node, "idle", "hello"));
    wait_gone(pid, "the idle worker to stop");
    let (status, _, body) = call(node, "idle", "again");
    assert_eq!(status, 200, "{body}");
    assert_ne!(
        pid_of(&body),
        pid,
        "a new worker serves after scale to zero"
    );
}

#[test]
fn min_warm_keeps_a_worker_up_without_calls_and_a_drain_stops_it() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    deploy_warm(
        node,
        &cluster,
        "kept",
        &["--min-warm", "1", "--idle-timeout", "1s"],
    );
    let pid = wait_for("a worker kept warm", Duration::from_secs(90), || {
        started(&cluster).first().copied()
    });
    // Started with no call to serve, it stays up past its idle time-out.
    // (A call that comes while it is still starting may get a worker of
    // its own, which the idle time-out then stops: on a loaded machine
    // the first call is not always the kept worker's.)
    let (status, _, body) = call(node, "kept", "there");
    assert_eq!(status, 200, "{body}");
    let kept = wait_for("one worker left warm", Duration::from_secs(90), || {
        let live: Vec<u32> = started(&cluster)
            .into_iter()
            .filter(|p| alive(*p))
            .collect();
        (live.len() == 1).then(|| live[0])
    });
    assert!(started(&cluster).contains(&pid));

    let before_drain = started(&cluster);
    drain(&cluster.nodes, 0);
    wait_gone(kept, "the drained node's worker to stop");
    assert_eq!(
        started(&cluster),
        before_drain,
        "a drained node started a worker"
    );
}

#[test]
fn a_call_finding_every_warm_worker_busy_waits_then_gets_503_with_retry_after() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    deploy_warm(
        node,
        &cluster,
        "busy",
        &["--max-per-node", "1", "--timeout", "20s"],
    );
    wait_answer(node, "busy", "hello");
    let dir = node.dir.clone();
    let hung = std::thread::spawn(move || call_dir(&dir, "busy/hang", ""));
    wait_for("the hanging call to start", Duration::from_secs(90), || {
        std::fs::read_to_string(cluster.tmp.path().join("slow")).ok()
    });
    let (status, retry_after, body) = call(node, "busy", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body.contains("busy"), "{body}");
    assert_eq!(hung.join().unwrap().0, 504);
}

#[test]
fn a_warm_handler_that_fails_its_init_answers_500_and_the_next_call_starts_a_new_worker() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let broken = cluster.tmp.path().join("broken");
    std::fs::write(&broken, "").unwrap();
    deploy_warm(node, &cluster, "init", &[]);
    let (status, _, body) = call(node, "init", "");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("its init failed: Init.Config: no config"),
        "{body}"
    );

    std::fs::remove_file(&broken).unwrap();
    let (status, _, body) = call(node, "init", "again");
    assert_eq!(status, 200, "{body}");
    assert_eq!(started(&cluster).len(), 2, "{body}");
}
