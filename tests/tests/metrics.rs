//! `GET /metrics` on a real cluster, read with the Prometheus project's own
//! OpenMetrics parser (`prometheus_client.openmetrics.parser`, Debian's
//! python3-prometheus-client, installed by the test where missing), and the Grafana
//! dashboard of `docs/grafana-peerbatch.json` checked against what a node
//! serves.

use peerbatch_tests::{deploy_fn, invoke_fn, ok, tasks, wait_for, Cluster, Node, FAST};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One sample of a scrape, as the parser read it.
#[derive(Debug)]
struct Sample {
    /// Its family's name (`peerbatch_claims` for `peerbatch_claims_total`).
    family: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Debian's Python, with its `prometheus_client` package.
const PYTHON: &str = "/usr/bin/python3";

const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Finds the parser, or installs it (Debian's package, as root) where it is
/// missing, so that `cargo test --workspace` sets itself up.
fn ensure_parser() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let has = || {
            let found = Command::new(PYTHON)
                .args(["-c", "import prometheus_client"])
                .stderr(Stdio::null())
                .status();
            found.is_ok_and(|s| s.success())
        };
        if has() {
            return;
        }
        let install = "apt-get update -qq && apt-get install -y -qq python3-prometheus-client";
        let _ = Command::new("sh").args(["-c", install]).status();
        assert!(
            has(),
            "the test needs {PYTHON} with prometheus_client: run `{install}` as root"
        );
    });
}

/// `text` parsed by the Prometheus client's OpenMetrics parser (which
/// refuses anything the format does not allow).
fn parse(text: &str) -> Vec<Sample> {
    ensure_parser();
    let mut python = Command::new(PYTHON)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (apt-get install python3-prometheus-client)");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text_of = |v: &Value| v.as_str().unwrap().to_string();
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            family: text_of(&s["family"]),
            name: text_of(&s["name"]),
            labels: (s["labels"].as_object().unwrap().iter())
                .map(|(k, v)| (k.clone(), text_of(v)))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// A raw HTTP/1.1 GET of `path` on `node`'s API with `auth` (the whole
/// `Authorization` value): status and body.
fn get(node: &Node, path: &str, auth: Option<&str>) -> (u16, String) {
    let addr = std::fs::read_to_string(node.dir.join("api")).unwrap();
    let mut stream = TcpStream::connect(addr.trim()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n{auth}\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    (code.expect("a status code"), body.to_string())
}

fn token(node: &Node) -> String {
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    format!("Bearer {}", token.trim())
}

/// `node`'s `/metrics`, parsed.
fn scrape(node: &Node) -> Vec<Sample> {
    let (code, body) = get(node, "/metrics", Some(&token(node)));
    assert_eq!(code, 200, "{body}");
    parse(&body)
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(scrape: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let has = |s: &Sample| {
        let wanted = |(k, v): &(&str, &str)| s.labels.get(*k).map(String::as_str) == Some(*v);
        s.name == name && labels.iter().all(wanted)
    };
    (scrape.iter().find(|s| has(s)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in the scrape: {scrape:?}"))
        .value
}

#[test]
fn a_scrape_counts_the_tasks_that_ran_by_state_and_their_run_times() {
    let cluster = Cluster::start(2, FAST);
    let node = &cluster.nodes[0];
    let file = cluster.file(
        "job.toml",
        "[[tasks]]\nid = \"ok-\"\nrange = \"1..=5\"\ncommand = \"sleep 0.3\"\n\
         [[tasks]]\nid = \"bad\"\ncommand = \"exit 3\"\nmax_retries = 0\n",
    );
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let nodes: Vec<&Node> = cluster.nodes.iter().collect();
    wait_for("every task to end", Duration::from_secs(60), || {
        let list = tasks(node, &job);
        let ended = list
            .as_array()?
            .iter()
            .all(|t| t["state"] == "succeeded" || t["state"] == "failed");
        ended.then_some(())
    });
    // Both nodes agree on the list before their scrapes are compared.
    let list = tasks(node, &job);
    wait_for_agreement(&nodes, &job, &list);
    let mut runs = 0.0;
    let mut started = 0.0;
    let mut fenced = 0.0;
    let mut run_seconds = 0.0;
    for n in &nodes {
        let s = scrape(n);
        assert_eq!(value(&s, "peerbatch_tasks", &[("state", "succeeded")]), 5.0);
        assert_eq!(value(&s, "peerbatch_tasks", &[("state", "failed")]), 1.0);
        assert_eq!(value(&s, "peerbatch_tasks", &[("state", "running")]), 0.0);
        assert_eq!(value(&s, "peerbatch_nodes", &[]), 2.0);
        assert_eq!(value(&s, "peerbatch_peers_connected", &[]), 1.0);
        let count = value(&s, "peerbatch_task_run_seconds_count", &[]);
        let here = value(&s, "peerbatch_attempts_started_total", &[]);
        assert_eq!(count, here, "every attempt started here ended here");
        runs += count;
        started += here;
        fenced += value(&s, "peerbatch_attempts_fenced_total", &[]);
        run_seconds += value(&s, "peerbatch_task_run_seconds_sum", &[]);
        assert!(value(&s, "peerbatch_ledger_events", &[]) > 0.0);
        let allocated = value(&s, "peerbatch_heap_allocated_bytes", &[]);
        let resident = value(&s, "peerbatch_heap_resident_bytes", &[]);
        assert!(
            allocated > 1e6 && resident >= allocated,
            "the node's allocator says what it holds: {allocated} allocated, {resident} resident"
        );
    }
    assert_eq!(
        runs,
        6.0 + fenced,
        "six tasks ran once each (and fenced runs again)"
    );
    assert_eq!(started, runs);
    assert!(
        run_seconds >= 5.0 * 0.3,
        "five tasks slept 0.3 s each: {run_seconds} s in all"
    );
    let claims: f64 = nodes
        .iter()
        .map(|n| value(&scrape(n), "peerbatch_claims_total", &[]))
        .sum();
    assert!(claims >= 6.0, "each task was claimed: {claims} claims");
    for n in &nodes {
        wait_for("an anti-entropy round", Duration::from_secs(30), || {
            (value(&scrape(n), "peerbatch_sync_rounds_total", &[]) > 0.0).then_some(())
        });
    }
}

/// Waits until every node lists `job`'s tasks as `list`.
fn wait_for_agreement(nodes: &[&Node], job: &str, list: &Value) {
    wait_for("the nodes to agree", Duration::from_secs(30), || {
        nodes.iter().all(|n| tasks(n, job) == *list).then_some(())
    });
}

#[test]
fn api_requests_are_counted_by_route_pattern_and_status_and_metrics_need_the_node_token() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let (code, _) = get(node, "/metrics", None);
    assert_eq!(code, 401, "no token, no metrics");
    let (code, _) = get(node, "/v1/jobs/0123456789abcdef", Some(&token(node)));
    assert_eq!(code, 404);
    let s = scrape(node);
    let counted = |route: &str, status: &str| {
        let labels = [("method", "GET"), ("route", route), ("status", status)];
        value(&s, "peerbatch_api_requests_total", &labels)
    };
    assert_eq!(counted("/metrics", "401"), 1.0);
    assert_eq!(counted("/v1/jobs/{job}", "404"), 1.0);
    assert!(
        !s.iter().any(|x| x
            .labels
            .get("route")
            .is_some_and(|r| r.contains("0123456789abcdef"))),
        "a raw path makes no series of its own"
    );
    let families: BTreeSet<&str> = s.iter().map(|x| x.family.as_str()).collect();
    assert!(families.contains("peerbatch_api_requests"), "{families:?}");
}

#[test]
fn function_calls_are_counted_by_function_and_status_class_with_their_durations() {
    let cluster = Cluster::start(1, FAST);
    let node = &cluster.nodes[0];
    let bundle = cluster.tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("README"), "a function that fails on `fail`\n").unwrap();
    deploy_fn(node, "hello", &bundle, "test \"$(cat)\" != fail", &[]);
    assert_eq!(invoke_fn(node, "hello", "one").0, 200);
    assert_eq!(invoke_fn(node, "hello", "two").0, 200);
    assert_eq!(invoke_fn(node, "hello", "fail").0, 500);

    let scrape = scrape(node);
    let calls = "peerbatch_function_calls_total";
    assert_eq!(
        value(&scrape, calls, &[("function", "hello"), ("status", "2xx")]),
        2.0
    );
    assert_eq!(
        value(&scrape, calls, &[("function", "hello"), ("status", "5xx")]),
        1.0
    );
    let count = "peerbatch_function_call_seconds_count";
    assert_eq!(value(&scrape, count, &[("function", "hello")]), 3.0);
    let buckets = "peerbatch_function_call_seconds_bucket";
    assert_eq!(
        value(&scrape, buckets, &[("function", "hello"), ("le", "+Inf")]),
        3.0
    );
}

#[test]
fn every_metric_the_grafana_dashboard_uses_is_in_a_scrape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-peerbatch.json"
    );
    let text = std::fs::read_to_string(path).expect("docs/grafana-peerbatch.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 10, "the dashboard uses {used:?}");
    let cluster = Cluster::start(1, FAST);
    let served: BTreeSet<String> = scrape(&cluster.nodes[0])
        .into_iter()
        .map(|s| s.name)
        .collect();
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses {missing:?}, which no node serves; it serves {served:?}"
    );
}

/// Every `expr` string in a Grafana dashboard.
fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_string()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// The `peerbatch_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("peerbatch_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}
