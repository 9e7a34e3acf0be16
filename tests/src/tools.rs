//! Tools the tests need from the machine, installed when missing, so that
//! `cargo test --workspace` sets everything up on a fresh Debian machine.
//!
//! Owns finding a command and installing the Debian packages that bring it
//! (as root, one installer at a time across test processes). Must not know
//! what the tests do with the tools.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

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
