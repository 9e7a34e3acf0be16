//! `peerbatch-simulations`: runs seeded simulations and prints their figures.
//!
//! Owns the command line only; the world and its checks live in the library.
//! Exits non-zero, naming the seed, on the first invariant violation.

use peerbatch_simulations::{run, SimConfig};
use std::process::ExitCode;

const USAGE: &str = "usage: peerbatch-simulations --seed S [--seeds K] [--nodes N] [--tasks T] \
[--jobs J] [--loss P] [--fail P] [--crashes C] [--partitions P] [--cancel] [--max-retries R] \
[--task-ms MIN-MAX] [--delay-ms MIN-MAX] [--slots S]";

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

fn parse_range(flag: &str, value: Option<String>) -> Result<(u64, u64), String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let (lo, hi) = value
        .split_once('-')
        .ok_or_else(|| format!("{flag}: expected MIN-MAX, got {value:?}"))?;
    let lo: u64 = parse(flag, Some(lo.to_string()))?;
    let hi: u64 = parse(flag, Some(hi.to_string()))?;
    if lo > hi || lo == 0 {
        return Err(format!("{flag}: need 0 < MIN <= MAX, got {value:?}"));
    }
    Ok((lo, hi))
}

fn args() -> Result<(SimConfig, u64), String> {
    let mut cfg = SimConfig::default();
    let mut seeds = 1;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--seed" => seed = Some(parse(&flag, args.next())?),
            "--seeds" => seeds = parse(&flag, args.next())?,
            "--nodes" => cfg.nodes = parse(&flag, args.next())?,
            "--tasks" => cfg.tasks = parse(&flag, args.next())?,
            "--jobs" => cfg.jobs = parse(&flag, args.next())?,
            "--loss" => cfg.loss = parse(&flag, args.next())?,
            "--fail" => cfg.fail_rate = parse(&flag, args.next())?,
            "--crashes" => cfg.crashes = parse(&flag, args.next())?,
            "--partitions" => cfg.partitions = parse(&flag, args.next())?,
            "--cancel" => cfg.cancel = true,
            "--max-retries" => cfg.max_retries = parse(&flag, args.next())?,
            "--slots" => cfg.core.slots = parse(&flag, args.next())?,
            "--task-ms" => cfg.task_ms = parse_range(&flag, args.next())?,
            "--delay-ms" => cfg.delay_ms = parse_range(&flag, args.next())?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    cfg.seed = seed.ok_or_else(|| format!("--seed is required\n{USAGE}"))?;
    if !(0.0..1.0).contains(&cfg.loss) || !(0.0..=1.0).contains(&cfg.fail_rate) {
        return Err("--loss must be in [0, 1) and --fail in [0, 1]".into());
    }
    if cfg.nodes < 2 || cfg.tasks == 0 || cfg.jobs == 0 || cfg.jobs > cfg.tasks {
        return Err("need --nodes >= 2 and 1 <= --jobs <= --tasks".into());
    }
    Ok((cfg, seeds))
}

/// The command-line flags that reproduce `cfg` (all but the seed).
fn flags(cfg: &SimConfig) -> String {
    format!(
        "--nodes {} --tasks {} --jobs {} --loss {} --fail {} --crashes {} --partitions {}{} \
         --max-retries {} \
         --task-ms {}-{} --delay-ms {}-{} --slots {}",
        cfg.nodes,
        cfg.tasks,
        cfg.jobs,
        cfg.loss,
        cfg.fail_rate,
        cfg.crashes,
        cfg.partitions,
        if cfg.cancel { " --cancel" } else { "" },
        cfg.max_retries,
        cfg.task_ms.0,
        cfg.task_ms.1,
        cfg.delay_ms.0,
        cfg.delay_ms.1,
        cfg.core.slots
    )
}

fn main() -> ExitCode {
    let (cfg, seeds) = match args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut totals = (0.0, 0.0, 0u64, 0u64, 0u64);
    for seed in cfg.seed..cfg.seed + seeds {
        let cfg = SimConfig {
            seed,
            ..cfg.clone()
        };
        println!("seed {seed}: {}", flags(&cfg));
        match run(&cfg) {
            Ok(report) => {
                println!("{report}");
                totals.0 += report.finished_ms as f64 / 1000.0;
                totals.1 += report.wall_ms as f64 / 1000.0;
                totals.2 += report.messages;
                totals.3 += report.duplicates();
                totals.4 += u64::from(report.tasks);
            }
            Err(violation) => {
                eprintln!("FAILED {violation}");
                eprintln!(
                    "replay: cargo run --release -p peerbatch-simulations -- --seed {seed} {}",
                    flags(&cfg)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if seeds > 1 {
        let n = seeds as f64;
        println!(
            "{seeds} seeds: mean finish {:.3} s simulated, mean wall {:.3} s, mean {:.0} messages, {:.1} duplicates per 1000 tasks",
            totals.0 / n,
            totals.1 / n,
            totals.2 as f64 / n,
            totals.3 as f64 * 1000.0 / totals.4 as f64
        );
    }
    ExitCode::SUCCESS
}
