//! One data dir, one node: a second `peerbatch node` started on a data dir
//! in use refuses to start and leaves the running node as it was.

use peerbatch_tests::{bin, ok, wait_converged, wait_for, Node, FAST};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_second_node_on_a_data_dir_in_use_exits_2_and_the_first_keeps_its_database_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let a = Node::start(&dir, FAST);
    let job = ok(&a.cli(&["run", "--", "true"]), "run");
    wait_converged(&[&a], &job, "succeeded", Duration::from_secs(60));
    let (api, token) = (read(&dir.join("api")), read(&dir.join("token")));

    let mut second = Killed(
        Command::new(bin())
            .arg("node")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let exited = wait_for("the second node to exit", Duration::from_secs(30), || {
        second.0.try_wait().unwrap()
    });
    let stderr = std::io::read_to_string(second.0.stderr.take().unwrap()).unwrap();
    assert_eq!(exited.code(), Some(2), "stderr: {stderr}");
    let expected = format!("a node already runs on {} (pid {})", dir.display(), a.pid());
    assert!(stderr.contains(&expected), "stderr: {stderr}");

    assert_eq!(read(&dir.join("api")), api, "the api file was changed");
    assert_eq!(read(&dir.join("token")), token, "the token was changed");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("db.broken")),
        "the live database was set aside: {names:?}"
    );
    let first = a.json(&["job", &job, "--json"]);
    assert_eq!(first["state"], "succeeded", "{first}");
    let next = ok(&a.cli(&["run", "--", "true"]), "run after the second start");
    wait_converged(&[&a], &next, "succeeded", Duration::from_secs(60));
}
