//! The portal as a user meets it: a real headless Chromium, driven over
//! WebDriver, against a real 3-node cluster. Logs in with the link
//! `peerbatch portal` prints, submits a job file and watches it finish
//! without reloading, downloads an output, watches a running task's log
//! grow and its attempts, cancels a job, drains and resumes a node, adds
//! and removes a schedule, and reaches a node serving HTTPS beyond
//! loopback. Each page it visits is saved as a screenshot under
//! `target/portal-screenshots/` (a test artifact).

use peerbatch_tests::webdriver::Browser;
use peerbatch_tests::{ok, wait_for, Cluster, Node, FAST};
use peerbatch_tests::{portal_login as logged_in, portal_url as portal, screenshots};
use std::time::Duration;

fn cluster() -> Cluster {
    Cluster::start(3, FAST)
}

#[test]
fn a_browser_logs_in_with_the_one_time_link_and_sees_every_node_of_the_mesh() {
    let c = cluster();
    let node = &c.nodes[0];
    let link = ok(&node.cli(&["portal", "--no-open"]), "portal");
    let browser = Browser::start(c.tmp.path());
    browser.open(&link);
    browser.wait("#nodes");
    assert_eq!(browser.url(), format!("{}/", portal(node)));
    for peer in c.nodes.iter().map(Node::peer_id) {
        let row = format!("tr[data-node=\"{peer}\"] td:nth-child(2)");
        browser.wait_text(&row, Duration::from_secs(30), |t| t == "live");
    }
    browser.screenshot(&screenshots().join("mesh.png"));
    for page in [
        "jobs",
        "submit",
        "pools",
        "schedules",
        "packages",
        "functions",
    ] {
        browser.open(&format!("{}/{page}", portal(node)));
        browser.wait("main h1");
        browser.screenshot(&screenshots().join(format!("{page}.png")));
    }

    // The link was spent: a second browser opening it is not let in.
    let other = Browser::start(c.tmp.path());
    other.open(&link);
    let refused = other.wait_text("main", Duration::from_secs(10), |_| true);
    assert!(refused.contains("used up"), "{refused}");
    other.open(&format!("{}/jobs", portal(node)));
    let refused = other.wait_text("main", Duration::from_secs(10), |_| true);
    assert!(refused.contains("Not logged in"), "{refused}");
}

#[test]
fn a_job_file_submitted_in_the_browser_runs_to_done_without_a_reload_and_its_output_downloads() {
    let c = cluster();
    let node = &c.nodes[1];
    let downloads = c.tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = logged_in(node, &downloads);
    browser.open(&format!("{}/submit", portal(node)));
    browser.wait("textarea[name=toml]").type_text(
        "name = \"from-the-browser\"\n\n[[tasks]]\nid = \"frame-\"\nrange = \"1..=6\"\n\
         command = \"sleep 1; echo frame {index} > out-{index}.txt\"\noutputs = [\"out-*.txt\"]\n",
    );
    browser.click("#submit button");
    browser.wait(".job-state");
    assert!(
        browser.url().contains("/jobs/"),
        "not on the job page: {}",
        browser.url()
    );
    // A reload would forget this mark.
    browser.run("window.notReloaded = true;");
    browser.wait_text(".job-state", Duration::from_secs(120), |s| s == "succeeded");
    browser.wait_text(".progress", Duration::from_secs(10), |s| {
        s.contains("6/6 succeeded")
    });
    assert_eq!(
        browser.run("return window.notReloaded === true;"),
        true,
        "the page reloaded"
    );
    browser.screenshot(&screenshots().join("job.png"));

    browser.click("tr[data-task=\"frame-3\"] a");
    browser.wait_text(".task-state", Duration::from_secs(10), |s| s == "succeeded");
    browser.screenshot(&screenshots().join("task.png"));
    browser.click("ul.outputs a");
    let saved = downloads.join("out-3.txt");
    let body = wait_for("the output to download", Duration::from_secs(30), || {
        std::fs::read_to_string(&saved)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(body, "frame 3\n");
}

#[test]
fn a_running_tasks_log_grows_on_its_page_without_a_reload_and_every_attempt_is_listed() {
    let c = Cluster::start(2, FAST);
    let node = &c.nodes[0];
    let go = c.tmp.path().join("go");
    let file = c.file(
        "talk.toml",
        &format!(
            "name = \"talk\"\n[[tasks]]\nid = \"talk\"\nmax_retries = 1\ncommand = \"\"\"\
             echo first line; while [ ! -e {go} ]; do sleep 0.05; done; echo second line; \
             [ -e {go}.again ] || {{ touch {go}.again; exit 3; }}; echo third line\"\"\"\n",
            go = go.display()
        ),
    );
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let downloads = c.tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = logged_in(node, &downloads);
    browser.open(&format!("{}/jobs/{job}/tasks/talk", portal(node)));
    browser.run("window.notReloaded = true;");
    let shown = browser.wait_text("#stdout", Duration::from_secs(60), |t| {
        t.contains("first line")
    });
    assert!(!shown.contains("second line"), "{shown}");
    assert_eq!(
        browser.text_of(".task-state").as_deref(),
        Some("running"),
        "the first line showed while the task runs"
    );
    browser.screenshot(&screenshots().join("task-live.png"));
    std::fs::write(&go, "").unwrap();
    // Attempt 0 prints its second line and fails; attempt 1 runs it all.
    browser.wait_text(".task-state", Duration::from_secs(60), |s| s == "succeeded");
    let log = browser.wait_text("#stdout", Duration::from_secs(30), |t| {
        t.contains("third line")
    });
    assert_eq!(log, "first line\nsecond line\nthird line\n");
    assert_eq!(
        browser.run("return window.notReloaded === true;"),
        true,
        "the page reloaded"
    );
    browser.wait_text(
        "tr[data-attempt=\"0\"] .ended",
        Duration::from_secs(10),
        |s| s == "exit code 3",
    );
    browser.wait_text(
        "tr[data-attempt=\"1\"] .ended",
        Duration::from_secs(10),
        |s| s == "exit code 0",
    );
    browser.screenshot(&screenshots().join("task-attempts.png"));

    browser.click("tr[data-attempt=\"0\"] a");
    let first = downloads.join("stdout-attempt-0.txt");
    let body = wait_for(
        "attempt 0's log to download",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&first)
                .ok()
                .filter(|s| !s.is_empty())
        },
    );
    assert_eq!(body, "first line\nsecond line\n");
    browser.click("h2 a.download");
    let whole = downloads.join("stdout.txt");
    let body = wait_for("the whole log to download", Duration::from_secs(30), || {
        std::fs::read_to_string(&whole)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(body, "first line\nsecond line\nthird line\n");
}

#[test]
fn a_job_file_with_a_mistake_is_refused_in_the_browser_with_its_line_and_column() {
    let c = cluster();
    let node = &c.nodes[0];
    let browser = logged_in(node, c.tmp.path());
    browser.open(&format!("{}/submit", portal(node)));
    browser
        .wait("textarea[name=toml]")
        .type_text("name = \"broken\"\n[[tasks]]\nid = \"a\"\ncommand = 5\n");
    browser.click("#submit button");
    let error = browser.wait_text("#submit-error", Duration::from_secs(10), |_| true);
    assert!(error.starts_with("job.toml:4:11: "), "{error}");
    browser.screenshot(&screenshots().join("submit-error.png"));
    assert_eq!(node.json(&["jobs", "--json"]), serde_json::json!([]));
}

#[test]
fn cancelling_a_job_in_the_browser_cancels_it_on_every_node() {
    let c = cluster();
    let node = &c.nodes[0];
    let file = c.file(
        "long.toml",
        "name = \"long\"\n[[tasks]]\nid = \"t\"\nrange = \"1..=10\"\ncommand = \"sleep 600\"\n",
    );
    let job = ok(&node.cli(&["submit", file.to_str().unwrap()]), "submit");
    let browser = logged_in(node, c.tmp.path());
    browser.open(&format!("{}/jobs/{job}", portal(node)));
    browser.click("form[action$=\"/cancel\"] button");
    browser.wait_text(".job-state", Duration::from_secs(30), |s| s == "cancelled");
    let other = &c.nodes[2];
    wait_for(
        "another node to see the job cancelled",
        Duration::from_secs(30),
        || {
            let seen = other.json(&["job", &job, "--json"]);
            (seen["state"] == "cancelled").then_some(())
        },
    );
}

#[test]
fn draining_and_resuming_a_node_in_the_browser_reaches_every_node() {
    let c = cluster();
    let node = &c.nodes[2];
    let peer = node.peer_id();
    let browser = logged_in(node, c.tmp.path());
    let row = format!("tr[data-node=\"{peer}\"]");
    let draining_elsewhere = |want: bool| {
        wait_for(
            "another node to see the drain state",
            Duration::from_secs(30),
            || {
                let nodes = c.nodes[0].json(&["nodes", "--json"]);
                let seen = nodes
                    .as_array()?
                    .iter()
                    .find(|n| n["id"] == peer.as_str())?["draining"]
                    == want;
                seen.then_some(())
            },
        )
    };
    browser.click(&format!("{row} button"));
    browser.wait_text(&format!("{row} .state"), Duration::from_secs(30), |s| {
        s == "draining"
    });
    browser.screenshot(&screenshots().join("mesh-draining.png"));
    draining_elsewhere(true);
    browser.click(&format!("{row} button"));
    browser.wait_text(&format!("{row} .state"), Duration::from_secs(30), |s| {
        s == "active"
    });
    draining_elsewhere(false);
}

#[test]
fn a_schedule_added_in_the_browser_reaches_every_node_and_its_remove_button_removes_it_everywhere()
{
    let c = Cluster::start(2, FAST);
    let (node, other) = (&c.nodes[0], &c.nodes[1]);
    let browser = logged_in(node, c.tmp.path());
    browser.open(&format!("{}/schedules", portal(node)));
    browser.wait("input[name=name]").type_text("hourly");
    browser.wait("input[name=every]").type_text("1h");
    browser
        .wait("textarea[name=toml]")
        .type_text("[[tasks]]\nid = \"t\"\ncommand = \"true\"\n");
    browser.click("form[action=\"/schedules\"] button");
    let row = "tr[data-schedule=\"hourly\"]";
    let next = browser.wait_text(
        &format!("{row} td:nth-child(6)"),
        Duration::from_secs(30),
        |t| !t.is_empty(),
    );
    assert!(next.ends_with(" UTC"), "no next firing shown: {next:?}");
    browser.screenshot(&screenshots().join("schedules-added.png"));
    let known_to_other = |want: bool| {
        wait_for(
            "the other node to see the schedule list change",
            Duration::from_secs(30),
            || {
                let list = other.json(&["schedule", "list", "--json"]);
                let known = list.as_array()?.iter().any(|s| s["name"] == "hourly");
                (known == want).then_some(())
            },
        )
    };
    known_to_other(true);

    browser.click(&format!("{row} button"));
    wait_for("the row to go", Duration::from_secs(30), || {
        let shown = browser.find("input[name=name]").is_some();
        (shown && browser.find(row).is_none()).then_some(())
    });
    known_to_other(false);
}

/// An HTTP client that shows redirects instead of following them.
fn http() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// The status of a request, whether it succeeded or not.
fn status(answer: Result<ureq::Response, ureq::Error>) -> (u16, Option<ureq::Response>) {
    match answer {
        Ok(r) => (r.status(), Some(r)),
        Err(ureq::Error::Status(code, r)) => (code, Some(r)),
        Err(e) => panic!("no answer: {e}"),
    }
}

#[test]
fn the_portal_lets_in_only_a_logged_in_browser_and_takes_only_its_own_forms() {
    let c = Cluster::start(1, FAST);
    let node = &c.nodes[0];
    let base = portal(node);
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    let agent = http();
    let (code, _) = status(agent.get(&format!("{base}/")).call());
    assert_eq!(code, 401, "a page without a session");
    let bearer = format!("Bearer {}", token.trim());
    let (code, _) = status(
        agent
            .get(&format!("{base}/jobs"))
            .set("Authorization", &bearer)
            .call(),
    );
    assert_eq!(code, 401, "the node's token is no session");

    let link = ok(&node.cli(&["portal", "--no-open"]), "portal");
    let (_, login) = status(agent.get(&link).call());
    let cookie = login.unwrap().header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let (code, page) = status(
        agent
            .get(&format!("{base}/"))
            .set("Cookie", &session)
            .call(),
    );
    assert_eq!(code, 200);
    let page = page.unwrap().into_string().unwrap();
    let csrf = page
        .split("data-csrf=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();

    let drain = |csrf: &str| {
        let (code, _) = status(
            agent
                .post(&format!("{base}/nodes/self/drain"))
                .set("Cookie", &session)
                .send_form(&[("csrf", csrf), ("drain", "true")]),
        );
        code
    };
    assert_eq!(drain("forged"), 403, "a form without the session's token");
    assert_eq!(node.status()["draining"], false);
    assert_eq!(drain(csrf), 303);
    wait_for("the node to drain", Duration::from_secs(30), || {
        (node.status()["draining"] == true).then_some(())
    });
}

/// The SHA-256 fingerprint of the certificate a TLS server at `addr`
/// presents, as `openssl` reads it off the wire.
fn served_fingerprint(addr: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, hex) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("no fingerprint from openssl: {text}"));
    hex.to_string()
}

#[test]
fn a_node_whose_api_listens_beyond_loopback_serves_only_https_and_its_portal_there() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--api", "127.0.0.2:0"];
    args.extend_from_slice(FAST);
    let node = Node::start(tmp.path(), &args);
    let api = std::fs::read_to_string(node.dir.join("api")).unwrap();
    let addr = api
        .strip_prefix("https://127.0.0.2:")
        .map(|port| format!("127.0.0.2:{port}"))
        .unwrap_or_else(|| panic!("the api file names no HTTPS address: {api}"));

    // The fingerprint printed at start, shown by `status`, is the served one.
    let served = served_fingerprint(&addr);
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(
        log.contains(&format!("fingerprint: {served}")),
        "not printed at start: {log}"
    );
    assert_eq!(node.status()["tls_fingerprint"], served.as_str());
    let text = ok(&node.cli(&["status"]), "status");
    assert!(text.contains(&served), "{text}");

    // Plain HTTP gets no answer, not even with the token.
    let token = std::fs::read_to_string(node.dir.join("token")).unwrap();
    let plain = http()
        .get(&format!("http://{addr}/v1/status"))
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .call();
    assert!(
        matches!(plain, Err(ureq::Error::Transport(_))),
        "plain HTTP answered: {:?}",
        plain.map(|r| r.status())
    );

    // Another machine's CLI: the address and token given, the fingerprint
    // pinned; a wrong fingerprint is refused before the token is sent.
    let elsewhere = tmp.path().join("elsewhere");
    let remote = |fingerprint: &str| {
        std::process::Command::new(peerbatch_tests::bin())
            .args(["--data-dir", elsewhere.to_str().unwrap()])
            .args(["status", "--json", "--api", &api])
            .env("PEERBATCH_TOKEN", token.trim())
            .env("PEERBATCH_API_FINGERPRINT", fingerprint)
            .output()
            .unwrap()
    };
    let pinned = ok(&remote(&served), "status with the fingerprint pinned");
    assert!(pinned.contains(&node.peer_id()), "{pinned}");
    let wrong = remote(&format!("{}AB", "AB:".repeat(31)));
    assert!(!wrong.status.success(), "a wrong fingerprint was trusted");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("not the one trusted"), "{said}");

    // The portal is served there, to a browser that takes the node's
    // self-signed certificate.
    let link = ok(&node.cli(&["portal", "--no-open"]), "portal");
    assert!(
        link.starts_with(&format!("https://{addr}/login?code=")),
        "{link}"
    );
    let browser = Browser::start(tmp.path());
    browser.open(&link);
    let row = format!("tr[data-node=\"{}\"] td:nth-child(2)", node.peer_id());
    browser.wait_text(&row, Duration::from_secs(30), |t| t == "live");
    assert!(browser.url().starts_with("https://"), "{}", browser.url());
}
