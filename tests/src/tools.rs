//! Tools the tests need from the machine, installed when missing, so that
//! `cargo test --workspace` sets everything up on a fresh Debian machine.
//!
//! Owns finding a command and installing the Debian packages that bring it
//! (as root, one installer at a time across test processes), and Python
//! virtual environments under the target directory. One function per tool.
//! Must not know what the tests do with the tools.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Where test processes take turns installing packages.
const LOCK: &str = "/tmp/peerbatch-tests-apt.lock";

/// Whether `command` runs on this machine.
fn found(command: &str) -> bool {
    Command::new(command)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure `command` exists, installing the Debian `packages` that bring
/// it with apt-get if it does not; panics naming what to install where that
/// fails (not root, no network).
pub fn ensure_debian_packages(command: &str, packages: &[&str]) {
    if found(command) {
        return;
    }
    let lock = File::create(LOCK).unwrap_or_else(|e| panic!("cannot create {LOCK}: {e}"));
    // SAFETY: flock on a descriptor this function owns for its whole call;
    // released when `lock` is closed.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "cannot lock {LOCK}");
    if found(command) {
        return; // another test process installed it meanwhile
    }
    let apt = |args: &[&str]| {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap_or_else(|e| panic!("`{command}` is missing and apt-get cannot be run: {e}"));
        assert!(
            out.status.success(),
            "`{command}` is missing and `apt-get {}` failed (install {} as root): {}",
            args.join(" "),
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apt(&["update", "-qq"]);
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install);
    assert!(
        found(command),
        "installed {packages:?} but `{command}` still does not run"
    );
}

/// Headless Chromium and its WebDriver server (`chromedriver`).
pub fn ensure_chromium() {
    ensure_debian_packages("chromedriver", &["chromium", "chromium-driver"]);
}

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({cmd:?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python virtual environment `target/NAME` (made with `python3 -m venv`
/// if missing, which needs Debian's `python3-venv`) with `packages`
/// installed by pip from PyPI or local paths; returns its `python`.
/// `reinstall` packages (local ones under development) are installed
/// again at every call, the others once; they are built without build
/// isolation, so `packages` must include their build backend
/// (`setuptools` and `wheel`), and a rerun needs no network.
pub fn python_venv(name: &str, packages: &[&str], reinstall: &[&Path]) -> PathBuf {
    // Tests of one process share the venv: one sets it up at a time.
    static SETUP: Mutex<()> = Mutex::new(());
    let _one = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let venv = target_dir().join(name);
    let python = venv.join("bin/python");
    let marker = venv.join(format!("installed-{}", packages.join("+")));
    if !marker.exists() {
        if !python.exists() {
            run(
                "making a Python venv (apt-get install python3-venv if it is missing)",
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
            );
        }
        run(
            "pip install",
            Command::new(&python)
                .args(["-m", "pip", "install", "-q"])
                .args(packages),
        );
        std::fs::write(&marker, "").unwrap();
    }
    for path in reinstall {
        run(
            "pip install of a local package",
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--force-reinstall",
                ])
                .arg("--no-build-isolation")
                .arg(path),
        );
    }
    python
}
