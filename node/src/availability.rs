//! When this node offers its slots: an operator's drain or resume (asked
//! from any node through the ledger) and the node's availability policy —
//! only between given local hours, only while the machine's other load is
//! below a threshold — so office machines give only spare capacity.
//!
//! Owns the policy flags, reading the load, and the reason the node is not
//! available. Must not claim or kill anything itself: the driver turns a
//! change into draining (announced, so peers stop counting on this node)
//! and, with `--on-leave requeue`, into giving running attempts back.

use clap::{Args, ValueEnum};

#[derive(Args, Clone, Debug, Default)]
pub struct PolicyOpts {
    /// Offer slots only between these local times, e.g. 18:00-08:00.
    #[arg(long, value_parser = parse_window)]
    pub available: Option<(u32, u32)>,
    /// Offer slots only while the 1-minute load average per CPU, not
    /// counting this node's own tasks, is below this (e.g. 0.5).
    #[arg(long)]
    pub max_load: Option<f64>,
    /// What running tasks do when the node leaves its window or is drained
    /// by its policy: finish here, or go back to the mesh at once.
    #[arg(long, value_enum, default_value_t = OnLeave::Finish)]
    pub on_leave: OnLeave,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnLeave {
    #[default]
    Finish,
    Requeue,
}

/// `HH:MM-HH:MM` → minutes since midnight (the window may wrap midnight).
fn parse_window(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not a window such as 18:00-08:00");
    let minute = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    Ok((minute(a)?, minute(b)?))
}

impl PolicyOpts {
    /// Why the node is outside its policy at local minute-of-day `minute`
    /// with `load` (per CPU, own tasks excluded); `None` if it is inside.
    pub fn outside(&self, minute: u32, load: Option<f64>) -> Option<String> {
        if let Some((from, to)) = self.available {
            let inside = if from <= to {
                (from..to).contains(&minute)
            } else {
                minute >= from || minute < to
            };
            if !inside {
                let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
                return Some(format!("outside its hours {}-{}", hm(from), hm(to)));
            }
        }
        if let (Some(max), Some(load)) = (self.max_load, load) {
            if load >= max {
                return Some(format!(
                    "the machine is busy (load {load:.2} per CPU, limit {max})"
                ));
            }
        }
        None
    }
}

/// The 1-minute load average per CPU, minus `own` running tasks.
pub fn other_load_per_cpu(own: u32) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let one: f64 = text.split_whitespace().next()?.parse().ok()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Some(((one - f64::from(own)).max(0.0)) / cpus)
}

/// Minutes since local midnight.
pub fn local_minute() -> u32 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    now.hour() * 60 + now.minute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_midnight_and_load_counts() {
        let policy = PolicyOpts {
            available: Some(parse_window("18:00-08:00").unwrap()),
            max_load: Some(0.5),
            on_leave: OnLeave::Finish,
        };
        assert_eq!(policy.outside(20 * 60, Some(0.1)), None);
        assert_eq!(policy.outside(7 * 60 + 59, None), None);
        assert!(policy
            .outside(12 * 60, Some(0.0))
            .unwrap()
            .contains("18:00-08:00"));
        assert!(policy.outside(23 * 60, Some(0.9)).unwrap().contains("busy"));
        assert!(parse_window("25:00-01:00").is_err());
        assert!(parse_window("noon").is_err());
    }
}
