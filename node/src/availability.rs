//! When this node offers its slots: an operator's drain or resume (asked
//! from any node through the ledger) and the node's availability policy —
//! only between given local hours, only while the machine's other load is
//! below a threshold, only once nobody has typed or moved the mouse for N
//! minutes — so office machines give only spare capacity.
//!
//! Owns the policy flags, reading the load and the last input time, and
//! the reason the node is not available. Must not claim or kill anything itself: the driver turns a
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
    /// Offer slots only once the machine has had no keyboard or mouse
    /// input (nor terminal activity) for this many minutes.
    #[arg(long)]
    pub idle_minutes: Option<u64>,
    /// Where input shows (repeatable; `*` and `?` in the last part): by
    /// default /dev/input/event*, /dev/tty[0-9]* and /dev/pts/[0-9]*, whose
    /// access and change times are the last input.
    #[arg(long = "idle-devices", value_name = "GLOB")]
    pub idle_devices: Vec<String>,
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
    /// with `load` (per CPU, own tasks excluded) and the last input
    /// `idle_secs` ago (`None`: no input device, as on a server, counts as
    /// idle); `None` if it is inside.
    pub fn outside(
        &self,
        minute: u32,
        load: Option<f64>,
        idle_secs: Option<u64>,
    ) -> Option<String> {
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
        if let (Some(minutes), Some(secs)) = (self.idle_minutes, idle_secs) {
            if secs < minutes * 60 {
                return Some(format!(
                    "not idle: input {secs} s ago (offers slots after {minutes} min without input)"
                ));
            }
        }
        None
    }

    /// Seconds since the newest input on the policy's devices, if the
    /// policy asks for idleness and any device exists.
    pub fn idle_secs(&self) -> Option<u64> {
        self.idle_minutes?;
        let patterns: Vec<&str> = if self.idle_devices.is_empty() {
            DEFAULT_INPUT_DEVICES.to_vec()
        } else {
            self.idle_devices.iter().map(String::as_str).collect()
        };
        let newest = patterns
            .iter()
            .flat_map(|p| matching(p))
            .filter_map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                let times = [meta.accessed().ok(), meta.modified().ok()];
                times.into_iter().flatten().max()
            });
        let newest = newest.max()?;
        Some(newest.elapsed().map_or(0, |d| d.as_secs()))
    }
}

/// Where a Linux machine shows keyboard, mouse and terminal input.
const DEFAULT_INPUT_DEVICES: [&str; 3] = ["/dev/input/event*", "/dev/tty[0-9]*", "/dev/pts/[0-9]*"];

/// The files a pattern names: wildcards only in its last part.
fn matching(pattern: &str) -> Vec<std::path::PathBuf> {
    let path = std::path::Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(glob) = globset::Glob::new(name).map(|g| g.compile_matcher()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| glob.is_match(e.file_name()))
        .map(|e| e.path())
        .collect()
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
            idle_minutes: Some(10),
            ..PolicyOpts::default()
        };
        assert_eq!(policy.outside(20 * 60, Some(0.1), Some(600)), None);
        assert_eq!(policy.outside(7 * 60 + 59, None, None), None);
        assert!(policy
            .outside(12 * 60, Some(0.0), None)
            .unwrap()
            .contains("18:00-08:00"));
        assert!(policy
            .outside(23 * 60, Some(0.9), None)
            .unwrap()
            .contains("busy"));
        assert!(policy
            .outside(23 * 60, None, Some(42))
            .unwrap()
            .contains("input 42 s ago"));
        assert!(parse_window("25:00-01:00").is_err());
        assert!(parse_window("noon").is_err());
    }
}
