//! The Python client (`clients/python`) installed with pip into a venv
//! under the target directory and run with its own pytest tests, which
//! start a real 3-node cluster of this build's binary.

use peerbatch_tests::{bin, tools};
use std::path::Path;
use std::process::Command;

#[test]
fn the_python_clients_own_tests_pass_against_a_real_three_node_cluster() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python");
    let python = tools::python_venv(
        "python-venv",
        &["pytest", "setuptools", "wheel"],
        &[&package],
    );
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(package.join("tests"))
        .env("PEERBATCH_BIN", bin())
        .env_remove("PEERBATCH_API")
        .env_remove("PEERBATCH_TOKEN")
        .env_remove("PEERBATCH_DATA_DIR")
        .output()
        .expect("run pytest");
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
