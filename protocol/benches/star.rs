//! A benchmark, not a test: a 100,000-task job whose reducer depends on
//! `*`, validated and run to the end on one real `Core`; prints the time
//! and the process's peak resident memory after each step (issue 11: it
//! must validate and fold in under 256 MiB).
//!
//! `cargo bench -p peerbatch-protocol --bench star [-- TASKS]`

use peerbatch_protocol::{
    Action, Command, Config, Core, Identity, JobSpec, MemStore, Millis, Outcome, TaskGroup,
    TaskResult, TaskSpec, TaskState,
};
use std::time::Instant;

/// Peak resident set size of this process, from /proc (Linux).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn report(step: &str, started: Instant) {
    println!(
        "{step:<28} {:>8.2} s   peak RSS {:>7.1} MiB",
        started.elapsed().as_secs_f64(),
        peak_mib()
    );
}

fn job(maps: i64) -> JobSpec {
    let map = TaskSpec::new("map", Command::Shell("true".into()), 0);
    let reduce = TaskSpec {
        depends_on: vec!["*".into()],
        ..TaskSpec::new("reduce", Command::Shell("true".into()), 0)
    };
    JobSpec::new(
        "star",
        vec![
            TaskGroup::Array {
                template: map,
                start: 0,
                end: maps - 1,
                step: 1,
            },
            TaskGroup::One(reduce),
        ],
    )
}

fn main() {
    let maps: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    println!("a job of {maps} tasks and a reducer on \"*\"");
    report("start", Instant::now());
    let spec = job(maps);
    let t = Instant::now();
    spec.validate().expect("a valid job");
    report("validate", t);

    let store = MemStore::default();
    let cfg = Config {
        slots: 4_096,
        ..Config::default()
    };
    let mut core = Core::new(
        Identity::from_seed([1; 32]),
        cfg,
        store.clone(),
        Vec::new(),
        1,
        Millis(0),
    );
    let t = Instant::now();
    let (job, _) = core.submit(Millis(0), spec, 0).expect("submitted");
    report("submit and fold", t);

    let t = Instant::now();
    let mut now = 0;
    loop {
        core.handle_timeout(Millis(now), now);
        loop {
            while let Some((id, bytes)) = core.poll_persist() {
                store.put(id, bytes);
            }
            while core.poll_transmit().is_some() {}
            let mut exits = Vec::new();
            while let Some(action) = core.poll_action() {
                if let Action::Run { task, attempt, .. } = action {
                    exits.push(TaskResult {
                        task,
                        attempt,
                        outcome: Outcome::Exited(0),
                        stdout: None,
                        stderr: None,
                        outputs: None,
                        duration_ms: 1,
                    });
                }
            }
            if exits.is_empty() {
                break;
            }
            for result in exits {
                core.task_exited(Millis(now), result);
            }
        }
        let done = core.progress(&job).done();
        if done as i64 == maps + 1 {
            break;
        }
        now = core.poll_timeout().map_or(now + 1, |d| d.0.max(now + 1));
    }
    report("every task run and folded", t);
    let reducer = core.views(job).last().map(|v| v.state);
    assert_eq!(reducer, Some(TaskState::Succeeded));
    let t = Instant::now();
    let views = core.ledger().job_views(&job);
    assert_eq!(views.len() as i64, maps + 1);
    report("pure fold of the job", t);
}
