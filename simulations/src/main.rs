//! `peerbatch-simulations`: the swarm tester's command line.
//!
//! Owns argument parsing and printing only; the world, its checks and the
//! shrinker live in the library. `--seed S` draws a whole run from S;
//! `--seeds K` runs S..S+K; any other flag overrides that part of every
//! drawn config. Exits 1 on the first violation, after shrinking it and
//! printing the smallest failing config's replay command and trace.
//! After each run it prints a `scale:` line (messages per node per
//! simulated second, CPU per simulated second, peak RSS) for the scaling
//! table in docs/BENCHMARKS.md.

#![forbid(unsafe_code)]

use peerbatch_simulations::{run, shrink, Report, SimConfig, Spread};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: peerbatch-simulations --seed S [--seeds K] [--calm] [--no-shrink] \
[--shrink-secs N] [--nodes N] [--tasks T] [--jobs J] [--max-retries R] [--fail P] \
[--task-ms MIN-MAX] [--cancels C] [--loss P] [--dup P] [--reorder P] [--reorder-ms MS] \
[--delay-ms MIN-MAX] [--partitions P] [--crashes C] [--wipes W] [--clock-jumps J] \
[--skew-ppm PPM] [--flush-ms MS] [--fault-window-ms MS] [--slots S] [--gang N] [--faulty 0|1] [--retention-ms MS (0: keep jobs)] [--check-every-step]";

/// Lines of a failing run's trace printed: its faults, submits, runs and
/// exits (at most this many, the last ones), then its last deliveries.
const TRACE_LINES: usize = 300;
const TRACE_TAIL: usize = 60;

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

fn parse_range(flag: &str, value: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = value
        .split_once('-')
        .ok_or_else(|| format!("{flag}: expected MIN-MAX, got {value:?}"))?;
    Ok((parse(flag, lo)?, parse(flag, hi)?))
}

/// Sets the part of `cfg` that `flag` names.
fn apply(cfg: &mut SimConfig, flag: &str, v: &str) -> Result<(), String> {
    match flag {
        "--nodes" => cfg.nodes = parse(flag, v)?,
        "--tasks" => cfg.tasks = parse(flag, v)?,
        "--jobs" => cfg.jobs = parse(flag, v)?,
        "--max-retries" => cfg.max_retries = parse(flag, v)?,
        "--fail" => cfg.faults.fail_rate = parse(flag, v)?,
        "--task-ms" => cfg.task_ms = parse_range(flag, v)?,
        "--cancels" => cfg.faults.cancels = parse(flag, v)?,
        "--loss" => cfg.faults.loss = parse(flag, v)?,
        "--dup" => cfg.faults.dup = parse(flag, v)?,
        "--reorder" => cfg.faults.reorder = parse(flag, v)?,
        "--reorder-ms" => cfg.faults.reorder_ms = parse(flag, v)?,
        "--delay-ms" => cfg.delay_ms = parse_range(flag, v)?,
        "--partitions" => cfg.faults.partitions = parse(flag, v)?,
        "--crashes" => cfg.faults.crashes = parse(flag, v)?,
        "--wipes" => cfg.faults.wipes = parse(flag, v)?,
        "--clock-jumps" => cfg.faults.clock_jumps = parse(flag, v)?,
        "--skew-ppm" => cfg.faults.skew_ppm = parse(flag, v)?,
        "--flush-ms" => cfg.faults.flush_ms = parse(flag, v)?,
        "--fault-window-ms" => cfg.fault_window_ms = parse(flag, v)?,
        "--slots" => cfg.core.slots = parse(flag, v)?,
        "--gang" => cfg.gang = parse(flag, v)?,
        "--faulty" => cfg.faulty = parse::<u8>(flag, v)? != 0,
        "--retention-ms" => {
            let ms: u64 = parse(flag, v)?;
            cfg.retention_ms = (ms > 0).then_some(ms);
        }
        other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
    }
    Ok(())
}

struct Args {
    seed: u64,
    seeds: u64,
    calm: bool,
    shrink: Option<Duration>,
    check_every_step: bool,
    overrides: Vec<(String, String)>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut a = Args {
            seed: 0,
            seeds: 1,
            calm: false,
            shrink: Some(Duration::from_secs(300)),
            check_every_step: false,
            overrides: Vec::new(),
        };
        let mut seed = None;
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--seed" => seed = Some(parse(&flag, &value()?)?),
                "--seeds" => a.seeds = parse(&flag, &value()?)?,
                "--calm" => a.calm = true,
                "--no-shrink" => a.shrink = None,
                "--shrink-secs" => {
                    a.shrink = Some(Duration::from_secs(parse(&flag, &value()?)?));
                }
                "--check-every-step" => a.check_every_step = true,
                "-h" | "--help" => return Err(USAGE.into()),
                _ => {
                    let v = value()?;
                    // Refuse unknown flags and bad values now, not per seed.
                    apply(&mut SimConfig::default(), &flag, &v)?;
                    a.overrides.push((flag, v));
                }
            }
        }
        a.seed = seed.ok_or_else(|| format!("--seed is required\n{USAGE}"))?;
        Ok(a)
    }

    /// The config of one seed: drawn, then overridden.
    fn config(&self, seed: u64) -> Result<SimConfig, String> {
        let mut cfg = SimConfig::draw(seed);
        if self.calm {
            cfg = cfg.calm();
        }
        for (flag, v) in &self.overrides {
            apply(&mut cfg, flag, v)?;
        }
        cfg = cfg.with_forgetting().checked_per_step_if_small();
        cfg.check_every_step |= self.check_every_step;
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut reports: Vec<Report> = Vec::new();
    for seed in args.seed..args.seed + args.seeds {
        let cfg = match args.config(seed) {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        println!("run: {cfg}");
        let cpu_before = cpu_seconds();
        match run(&cfg) {
            Ok(report) => {
                println!("{report}");
                print_scale(&report, cpu_seconds().zip(cpu_before).map(|(a, b)| a - b));
                reports.push(report);
            }
            Err(violation) => {
                eprintln!("FAILED {violation}");
                eprintln!("replay: cargo run --release -p peerbatch-simulations -- {cfg}");
                if let Some(budget) = args.shrink {
                    let small = shrink(&cfg, violation, budget);
                    eprintln!(
                        "shrunk in {} runs to: {}\nreplay: cargo run --release -p peerbatch-simulations -- {}",
                        small.runs, small.violation, small.cfg
                    );
                    print_trace(&small.violation.trace);
                }
                return ExitCode::FAILURE;
            }
        }
    }
    if reports.len() > 1 {
        summarise(&reports);
    }
    ExitCode::SUCCESS
}

/// The scaling figures of one run: messages each node sent per simulated
/// second (of them liveness), this run's CPU per simulated second, and the
/// process's peak RSS so far.
fn print_scale(report: &Report, cpu: Option<f64>) {
    let (all, liveness) = report.sent_per_node_second();
    let simulated = report.end_ms as f64 / 1000.0;
    let cpu = cpu.map_or("unknown".into(), |c| {
        format!("{c:.1} s ({:.2} per simulated s)", c / simulated.max(0.001))
    });
    let rss = peak_rss_mib().map_or("unknown".into(), |m| format!("{m} MiB"));
    println!(
        "scale: {} nodes × {} tasks, {simulated:.1} simulated s: {all:.1} messages per node per \
         simulated s ({liveness:.1} liveness); CPU {cpu}; peak RSS {rss}",
        report.nodes, report.tasks
    );
}

/// User + system CPU seconds of this process (Linux `/proc`; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends at the last ')'): utime
    // and stime are the 12th and 13th, in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set of this process in MiB (Linux `/proc`).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn print_trace(trace: &[String]) {
    let tail = trace.len().saturating_sub(TRACE_TAIL);
    let notable: Vec<&String> = trace[..tail]
        .iter()
        .filter(|l| !l.contains(" deliver ") && !l.contains(" flush node "))
        .collect();
    eprintln!(
        "trace: {} steps; {} before the last {TRACE_TAIL} are faults, submits, runs and exits \
         (the last {} of them shown), then every step:",
        trace.len(),
        notable.len(),
        notable.len().min(TRACE_LINES)
    );
    for line in &notable[notable.len().saturating_sub(TRACE_LINES)..] {
        eprintln!("  {line}");
    }
    eprintln!("  ...");
    for line in &trace[tail..] {
        eprintln!("  {line}");
    }
}

fn summarise(reports: &[Report]) {
    let n = reports.len() as f64;
    let faults: u64 = reports.iter().map(|r| r.injected.total()).sum();
    let structural: u64 = reports
        .iter()
        .map(|r| {
            let i = &r.injected;
            u64::from(i.partitions + i.flaps + i.crashes + i.wipes + i.clock_jumps + i.cancels)
        })
        .sum();
    let tasks: u64 = reports.iter().map(|r| u64::from(r.tasks)).sum();
    let dups: u64 = reports.iter().map(Report::duplicates).sum();
    println!(
        "{} seeds passed: {faults} faults injected ({structural} partitions, flaps, crashes, \
         wipes, clock jumps and cancels; the rest message faults and lost writes), \
         mean wall {:.3} s, {:.1} duplicates per 1000 tasks",
        reports.len(),
        reports
            .iter()
            .map(|r| r.wall_ms as f64 / 1000.0)
            .sum::<f64>()
            / n,
        dups as f64 * 1000.0 / tasks.max(1) as f64
    );
    let merge = |pick: fn(&Report) -> Spread| {
        let spreads: Vec<Spread> = reports.iter().map(pick).filter(|s| s.count > 0).collect();
        let count: usize = spreads.iter().map(|s| s.count).sum();
        Spread {
            count,
            min: spreads.iter().map(|s| s.min).min().unwrap_or(0),
            mean: spreads.iter().map(|s| s.mean * s.count as f64).sum::<f64>()
                / count.max(1) as f64,
            max: spreads.iter().map(|s| s.max).max().unwrap_or(0),
        }
    };
    println!(
        "death→rerun {}; heal→converge {}",
        merge(|r| r.death_to_rerun),
        merge(|r| r.heal_to_converge)
    );
}
