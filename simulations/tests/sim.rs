//! The swarm tester's own checks, run as tests: a fixed set of drawn seeds
//! (the CI swarm), a calm run at scale under loss, scenarios that must
//! exercise each fault, and reproducibility of a seed.
//!
//! `run` checks every invariant itself and returns the first violation; the
//! assertions here pin what each scenario must show.

use peerbatch_simulations::{run, Faults, Report, SimConfig};

fn must_pass(cfg: &SimConfig) -> Report {
    let report = run(cfg).unwrap_or_else(|v| panic!("{v}\nreplay: {cfg}"));
    println!("{report}");
    report
}

/// Seeds whose drawn runs CI replays: small draws, about 10 s of CPU in
/// all in release (the release swarm in docs/BENCHMARKS.md runs hundreds),
/// picked to cover every drawn feature. Seeds 65, 74, 75, 79 and 195 draw
/// two storage wipes (a wipe found the wiped-node claim bug); 31, 59, 63,
/// 71, 74, 75, 103, 121, 146 and 193 multi-instance tasks (gangs found a
/// busy timer, a release that reopened a closed attempt, and primaries
/// waiting for each other's nodes); 7, 31, 59, 63, 74, 103, 142 and 193 a
/// faulty member forging events (invariant 7); 11, 31, 59, 71, 83, 121,
/// 142, 146, 172, 193 and 195 forgetting (invariant 8); 7, 11, 65, 74, 75,
/// 79, 83, 103, 121, 146, 172 and 195 jobs with a `max_wall_clock`; 11, 31,
/// 59, 63, 65, 71, 74, 75, 83, 103, 121, 193 and 195 a task waiting for
/// every other; 11, 31, 63, 74, 75, 83, 103, 121, 146, 193 and 195 a job
/// `after` another; 7, 11, 59, 63, 65, 71, 74, 75, 83, 103, 121, 193 and
/// 195 exit-code rules; 31, 63, 65, 71, 79, 103, 121, 146, 172 and 193 a
/// node drained and resumed by request; 210 (a faulty member, forgetting,
/// `after` and exit rules) and 400 (26 nodes that forget, an asymmetric
/// partition) failed before their fixes with the retentions drawn then
/// (see the shrunk 210 below; 400 is pinned in `protocol/tests/core.rs`).
/// (The
/// seeds were picked again when the simulator's RNG became ChaCha8: a seed
/// number names another run than before.)
const CI_SEEDS: [u64; 20] = [
    7, 11, 31, 59, 63, 65, 71, 74, 75, 79, 83, 103, 121, 142, 146, 172, 193, 195, 210, 400,
];

fn swarm(seeds: &[u64]) {
    let mut faults = 0;
    for &seed in seeds {
        let report = must_pass(&SimConfig::draw(seed));
        faults += report.injected.total();
    }
    assert!(faults > 0);
}

// Split so that the test harness runs them side by side.
#[test]
fn ci_swarm_first_half_keeps_every_invariant() {
    swarm(&CI_SEEDS[..10]);
}

#[test]
fn ci_swarm_second_half_keeps_every_invariant() {
    swarm(&CI_SEEDS[10..]);
}

/// 50 nodes, 2,000 tasks, 10 % loss: every task ends with one canonical
/// result, the same on every node, and all replicas hold the same events.
#[test]
fn fifty_nodes_two_thousand_tasks_under_loss_all_succeed() {
    let report = must_pass(&SimConfig::default());
    assert_eq!(report.tasks_failed, 0);
    assert_eq!(report.tasks_started, 2_000);
    assert!(report.injected.net.dropped > 0);
}

/// 150 nodes, 100 of them busy, eight of which crash: their peers find a
/// dead one by probing and run its tasks elsewhere while it is still down,
/// though each node sends only a few liveness messages per second (not
/// one to every other node).
#[test]
fn crashed_nodes_among_150_are_found_dead_by_a_few_probes_per_node_and_their_tasks_run_elsewhere() {
    let report = must_pass(&SimConfig {
        seed: 5,
        nodes: 150,
        tasks: 100,
        jobs: 2,
        max_retries: 10,
        task_ms: (20_000, 30_000),
        faults: Faults {
            crashes: 8,
            ..Faults::default()
        },
        fault_window_ms: 20_000,
        ..SimConfig::default()
    });
    assert_eq!(report.injected.crashes, 8);
    let (_, liveness) = report.sent_per_node_second();
    assert!(
        liveness < 10.0,
        "{liveness:.1} liveness messages per node per second"
    );
    assert!(
        report.reruns_while_down > 0,
        "no task of a dead node ran elsewhere while it was down: {}",
        report.death_to_rerun
    );
}

/// A small cluster under every kind of fault at once.
fn stormy(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        nodes: 12,
        tasks: 300,
        jobs: 3,
        max_retries: 3,
        task_ms: (20, 800),
        faults: Faults {
            fail_rate: 0.3,
            cancels: 1,
            loss: 0.2,
            dup: 0.1,
            reorder: 0.1,
            reorder_ms: 500,
            partitions: 2,
            crashes: 3,
            wipes: 1,
            clock_jumps: 2,
            skew_ppm: 20_000,
            flush_ms: 20,
        },
        fault_window_ms: 20_000,
        check_every_step: true,
        ..SimConfig::default()
    }
}

#[test]
fn every_fault_at_once_keeps_every_invariant() {
    let mut failed = 0;
    let mut cancelled = 0;
    let mut reruns = 0;
    for seed in 1..=3 {
        let report = must_pass(&stormy(seed));
        let i = report.injected;
        assert_eq!(
            (i.crashes, i.wipes, i.clock_jumps, i.partitions),
            (3, 1, 2, 2)
        );
        assert!(i.net.dropped > 0 && i.net.duplicated > 0 && i.net.reordered > 0);
        failed += report.tasks_failed;
        cancelled += report.tasks_cancelled;
        reruns += report.death_to_rerun.count;
    }
    // The scenario does exercise the failure, cancel and rerun paths.
    assert!(
        failed > 0 && cancelled > 0 && reruns > 0,
        "{failed} failed, {cancelled} cancelled, {reruns} reruns"
    );
}

/// A faulty member forging all through a stormy run: every honest node's
/// state is what it would be without the forgeries (invariant 7), and the
/// other invariants hold.
#[test]
fn a_faulty_member_under_every_fault_changes_nothing_it_may_not_write() {
    let report = must_pass(&SimConfig {
        faulty: true,
        ..stormy(4)
    });
    assert!(report.injected.forged > 20, "{}", report.injected.forged);
    assert!(report.events_rejected > 0);
}

#[test]
fn a_seed_replays_identically() {
    let cfg = stormy(7);
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

#[test]
fn a_seed_draws_the_same_config_and_seeds_differ() {
    assert_eq!(
        SimConfig::draw(5).to_string(),
        SimConfig::draw(5).to_string()
    );
    let sizes: std::collections::BTreeSet<usize> =
        (0..200).map(|s| SimConfig::draw(s).nodes).collect();
    assert!(sizes.first() >= Some(&3) && sizes.last() <= Some(&1_000));
    assert!(sizes.len() > 30 && sizes.iter().any(|n| *n > 100));
}

/// Seed 210 shrunk: three nodes, one a faulty member, six one-task jobs,
/// one of them `after` a job whose exit rules failed it, and a retention
/// that runs out before the end. Once a node forgot the awaited job, the
/// authority check's replay of its events (without the tombstone) showed
/// the waiting job blocked and blamed the forgeries.
#[test]
fn a_job_after_one_its_node_forgot_folds_alike_without_the_forgeries() {
    let drawn = SimConfig::draw(210);
    let report = must_pass(
        &SimConfig {
            nodes: 3,
            tasks: 6,
            jobs: 6,
            max_retries: 4,
            faults: Faults {
                fail_rate: drawn.faults.fail_rate,
                reorder_ms: drawn.faults.reorder_ms,
                ..Faults::default()
            },
            fault_window_ms: 7_914,
            faulty: true,
            retention_ms: Some(23_408),
            check_every_step: true,
            ..drawn
        }
        .with_forgetting(),
    );
    assert!(report.injected.forged > 0);
}
