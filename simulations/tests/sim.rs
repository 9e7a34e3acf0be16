//! The simulator's own checks, run as tests: convergence and one canonical
//! result per task at scale under message loss, failures, crashes, and
//! reproducibility of a seed.

use peerbatch_simulations::{run, SimConfig};

#[test]
fn fifty_nodes_two_thousand_tasks_ten_percent_loss_converge() {
    for seed in 1..=3 {
        let cfg = SimConfig {
            seed,
            nodes: 50,
            tasks: 2_000,
            loss: 0.1,
            ..SimConfig::default()
        };
        let report = run(&cfg).unwrap_or_else(|v| panic!("{v}"));
        println!("{report}");
        assert_eq!(report.tasks_failed, 0);
        assert!(report.attempts_started >= 2_000);
    }
}
