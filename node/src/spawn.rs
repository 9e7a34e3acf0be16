//! Starting one sandboxed process the way `posix_spawn` does, with the
//! steps `posix_spawn` lacks.
//!
//! Owns the raw `clone(CLONE_VM | CLONE_VFORK)` and what the child does
//! before `execve`: its standard streams, a process group of its own,
//! joining a cgroup, resource limits, dropping to another user, its working
//! directory and default signal handling; and waiting for its exit and
//! reaping it. `fork` would copy the node's page tables for every task,
//! several times the cost of the whole spawn on a large node, and the
//! standard library falls back to it as soon as any of these steps is asked
//! for. Must not decide any of the values; `sandbox` does.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything the child needs, prepared by the parent: the child runs in
/// the parent's memory and must not allocate.
pub struct Spawn {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    /// Standard input, output and error.
    pub stdio: [RawFd; 3],
    /// An open `cgroup.procs` to write `0` into, joining that cgroup.
    pub cgroup_procs: Option<RawFd>,
    /// `(resource, limit)` pairs for `setrlimit`, soft and hard alike.
    pub limits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// `(uid, gid)` to run as, with no supplementary groups.
    pub user: Option<(u32, u32)>,
}

/// Which step of the child failed, as it reports in [`Child::failed`].
const STEPS: [&str; 7] = [
    "redirect its output",
    "make a process group",
    "join its cgroup",
    "set its resource limits",
    "switch user",
    "enter its working directory",
    "execute it",
];

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::other("contains a NUL byte"))
}

impl Spawn {
    pub fn new(
        program: &OsStr,
        argv: &[&OsStr],
        env: &[(String, String)],
        cwd: &std::path::Path,
    ) -> io::Result<Spawn> {
        let env = env
            .iter()
            .map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}"))))
            .collect::<io::Result<_>>()?;
        Ok(Spawn {
            program: cstring(program)?,
            argv: argv.iter().map(|a| cstring(a)).collect::<io::Result<_>>()?,
            env,
            cwd: cstring(cwd.as_os_str())?,
            stdio: [-1; 3],
            cgroup_procs: None,
            limits: Vec::new(),
            user: None,
        })
    }

    /// Starts the process; returns its pid once it runs the program.
    pub fn start(&self) -> io::Result<libc::pid_t> {
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let child = Child {
            spawn: self,
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            failed: AtomicU64::new(NOT_FAILED),
        };
        let pid = CHILD_STACK.with_borrow_mut(|stack| clone_child(&child, stack))?;
        // The child has called execve or exited: what it wrote is final.
        let failed = child.failed.load(Ordering::Acquire);
        if failed != NOT_FAILED {
            reap(pid)?;
            let what = STEPS
                .get((failed >> 32) as usize)
                .copied()
                .unwrap_or("start it");
            let e = io::Error::from_raw_os_error(failed as u32 as i32);
            return Err(io::Error::new(e.kind(), format!("cannot {what}: {e}")));
        }
        Ok(pid)
    }
}

/// Bytes of the stack the child runs on until `execve`.
const STACK_SIZE: usize = 64 * 1024;

thread_local! {
    /// Each spawning thread's stack for its children, allocated once: a
    /// fresh allocation of this size per spawn made the allocator grow and
    /// trim its heap (`mprotect`, page faults) every time.
    static CHILD_STACK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; STACK_SIZE]);
}

/// Clones the child that runs `child_main` on `stack`; returns its pid once
/// it called execve or exited.
fn clone_child(child: &Child, stack: &mut [u8]) -> io::Result<libc::pid_t> {
    // SAFETY: the stack is borrowed for the whole clone and only the child
    // uses it, while CLONE_VFORK suspends this thread (until the child has
    // called execve or exited); `child_main` only makes system calls on
    // data prepared by the parent; all signals are blocked around the clone
    // so that no handler of the node runs on the child's stack.
    unsafe {
        let top = stack.as_mut_ptr().add(stack.len()) as *mut libc::c_void;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            child as *const Child as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        Ok(pid)
    }
}

struct Child<'a> {
    spawn: &'a Spawn,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Set by a child that failed (it shares the parent's memory): the
    /// step in the upper half, errno in the lower.
    failed: AtomicU64,
}

/// [`Child::failed`] of a child that reached execve.
const NOT_FAILED: u64 = u64::MAX;

/// The child, between clone and execve: system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` the parent keeps alive while suspended.
    let c = unsafe { &*(arg as *const Child) };
    let s = c.spawn;
    let fail = |step: u32| -> libc::c_int {
        // SAFETY: reads this thread's errno, then exits without running
        // anything of the parent's.
        unsafe {
            let errno = *libc::__errno_location() as u32;
            c.failed.store(
                (u64::from(step) << 32) | u64::from(errno),
                Ordering::Release,
            );
            libc::_exit(127)
        }
    };
    // SAFETY: each call is a plain system call on values prepared by the
    // parent; none allocates or takes a lock.
    unsafe {
        for (target, fd) in s.stdio.iter().enumerate() {
            if libc::dup2(*fd, target as RawFd) < 0 {
                return fail(0);
            }
        }
        if libc::setpgid(0, 0) < 0 {
            return fail(1);
        }
        if let Some(fd) = s.cgroup_procs {
            if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                return fail(2);
            }
        }
        for (resource, limit) in &s.limits {
            let l = libc::rlimit {
                rlim_cur: *limit,
                rlim_max: *limit,
            };
            if libc::setrlimit(*resource, &l) < 0 {
                return fail(3);
            }
        }
        // Raw system calls, not libc's wrappers: glibc's setgroups, setgid
        // and setuid change every thread of the process (`__nptl_setxid`,
        // which takes its thread-list lock and signals each thread), and
        // this child shares the node's memory and so its thread list. The
        // kernel keeps credentials per thread, so the raw calls change only
        // this child's.
        if let Some((uid, gid)) = s.user {
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0
                || libc::syscall(libc::SYS_setgid, gid) < 0
                || libc::syscall(libc::SYS_setuid, uid) < 0
            {
                return fail(4);
            }
        }
        if libc::chdir(s.cwd.as_ptr()) < 0 {
            return fail(5);
        }
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(s.program.as_ptr(), c.argv, c.envp);
    }
    fail(6)
}

/// A pipe whose ends close on exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for `pid` (our child) to exit and reaps it. Blocking.
pub fn reap(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `pid` (our child) has exited, leaving it unreaped so that
/// its process group id stays reserved while the group is killed: on a
/// pidfd in the runtime's poller, without a thread of its own; on a kernel
/// without pidfds (before 5.3), on a blocking thread.
pub async fn exited(pid: libc::pid_t) -> io::Result<()> {
    match pidfd(pid) {
        Ok(fd) => {
            let interest = tokio::io::Interest::READABLE;
            // SAFETY: the `OwnedFd` stays open, the same pidfd, as long as
            // the `AsyncFd` that owns it.
            let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }?;
            fd.readable().await?.retain_ready();
            Ok(())
        }
        Err(_) => tokio::task::spawn_blocking(move || wait_exit(pid))
            .await
            .map_err(io::Error::other)?,
    }
}

/// A pidfd of `pid`, readable once it has exited.
fn pidfd(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open only makes a new descriptor, which we then own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until `pid` (our child) has exited, leaving it unreaped. Blocking.
fn wait_exit(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: waits for our own child; `info` is a local.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
