//! The simulator's own checks, run as tests: convergence and one canonical
//! result per task at scale under message loss; failures, crashes and
//! cancellation at a smaller scale; reproducibility of a seed.
//!
//! `run` checks every invariant itself and returns the first violation; the
//! assertions here only pin what each scenario must show.

use peerbatch_simulations::{run, Report, SimConfig};

fn must_pass(cfg: &SimConfig) -> Report {
    let report = run(cfg).unwrap_or_else(|v| panic!("{v}"));
    println!("{report}");
    report
}

/// 50 nodes, 2,000 tasks, 10% loss: every task ends with one canonical
/// result, the same on every node, and all replicas hold the same events.
fn fifty_nodes_two_thousand_tasks(seed: u64) {
    let report = must_pass(&SimConfig {
        seed,
        nodes: 50,
        tasks: 2_000,
        loss: 0.1,
        ..SimConfig::default()
    });
    assert_eq!(report.tasks_failed, 0);
    assert_eq!(report.tasks_started, 2_000);
    assert!(report.dropped > 0);
}

// One test per seed, so that the test harness can run them side by side.
#[test]
fn fifty_nodes_two_thousand_tasks_ten_percent_loss_seed_1() {
    fifty_nodes_two_thousand_tasks(1);
}

#[test]
fn fifty_nodes_two_thousand_tasks_ten_percent_loss_seed_2() {
    fifty_nodes_two_thousand_tasks(2);
}

#[test]
fn fifty_nodes_two_thousand_tasks_ten_percent_loss_seed_3() {
    fifty_nodes_two_thousand_tasks(3);
}

fn faulty(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        nodes: 12,
        tasks: 300,
        jobs: 3,
        loss: 0.2,
        task_ms: (20, 400),
        fail_rate: 0.3,
        max_retries: 2,
        crashes: 3,
        cancel: true,
        ..SimConfig::default()
    }
}

#[test]
fn failures_crashes_and_a_cancel_under_loss_keep_every_invariant() {
    let mut failed = 0;
    let mut cancelled = 0;
    for seed in 1..=4 {
        let report = must_pass(&faulty(seed));
        failed += report.tasks_failed;
        cancelled += report.tasks_cancelled;
    }
    // The scenario does exercise the failure and cancel paths.
    assert!(
        failed > 0 && cancelled > 0,
        "{failed} failed, {cancelled} cancelled"
    );
}

#[test]
fn a_seed_replays_identically() {
    let cfg = faulty(7);
    let (a, b) = (must_pass(&cfg), must_pass(&cfg));
    assert_eq!(a.run_digest, b.run_digest);
    assert_eq!(
        Report {
            wall_ms: 0,
            ..a.clone()
        },
        Report { wall_ms: 0, ..b }
    );
    let other = must_pass(&SimConfig { seed: 8, ..cfg });
    assert_ne!(a.run_digest, other.run_digest);
}
