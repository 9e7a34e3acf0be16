//! The record of the function calls this node ran — and of those it
//! received that no node ran (502, 503) —: HTTP invocations are not
//! ledger events, so each node keeps its own, and `route` gathers every
//! live node's into one answer for `fn logs` and the portal.
//!
//! Owns, per function, the calls counted by [`StatusClass`], their
//! latency ([`Latency`]: count, sum, maximum and power-of-two buckets, so
//! nodes' summaries add up), the calls of the last minute, and a ring of
//! the most recent calls ([`CallRecord`]: when, version, status, duration,
//! the node that forwarded it, the tail of the handler's stderr). It is
//! bounded: [`RECENT_CALLS`] calls per function, each with at most
//! [`STDERR_TAIL`] bytes of stderr and [`ANSWER_HEAD`] bytes of a failed
//! call's answer, for at most [`MAX_FUNCTIONS`] functions (the one called
//! longest ago is forgotten first) — under 5 MiB in all. It also reports
//! each call to the node's Prometheus metrics. Owns too what one node asks
//! another of its record ([`CallsAsk`]) and answers ([`NodeCalls`]). Must
//! not run, route or time calls (`route` measures them and records them
//! here), nor touch the network or the ledger.

use crate::metrics::Metrics;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Recent calls kept per function on this node, newest replacing oldest.
pub const RECENT_CALLS: usize = 32;
/// Bytes of the end of a call's stderr kept with it.
pub const STDERR_TAIL: usize = 1024;
/// Bytes of the beginning of a failed call's answer (status 400 or more)
/// kept with it: the node's reason, or the handler's own error body.
pub const ANSWER_HEAD: usize = 256;
/// Functions whose calls this node keeps; a call of one more forgets the
/// function called longest ago.
pub const MAX_FUNCTIONS: usize = 128;
/// Latency buckets: bucket `i` counts calls that took under `2^i` ms
/// (bucket 0: under 1 ms), the last one every longer call.
pub const LATENCY_BUCKETS: usize = 22;

/// How a call's status is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusClass {
    /// 1xx and 2xx: the handler answered.
    Ok,
    Redirect,
    /// 4xx: the handler refused the request.
    ClientError,
    /// 5xx but 503 and 504: the handler failed (500) or its node did.
    ServerError,
    /// 503: no node had room for the call, or no warm worker took it in time.
    Busy,
    /// 504: the handler ran past its time-out and was killed.
    TimedOut,
}

impl StatusClass {
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Ok,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Busy,
        StatusClass::TimedOut,
    ];

    pub fn of(status: u16) -> StatusClass {
        match status {
            ..300 => StatusClass::Ok,
            300..400 => StatusClass::Redirect,
            400..500 => StatusClass::ClientError,
            503 => StatusClass::Busy,
            504 => StatusClass::TimedOut,
            _ => StatusClass::ServerError,
        }
    }

    /// Its name in metrics and answers: `2xx`, `3xx`, `4xx`, `5xx`, `503`, `504`.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Ok => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Busy => "503",
            StatusClass::TimedOut => "504",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How long calls took: enough to add up nodes' summaries and estimate
/// quantiles (to within a factor of two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub sum_ms: u64,
    pub max_ms: u64,
    pub buckets: [u64; LATENCY_BUCKETS],
}

impl Latency {
    fn observe(&mut self, ms: u64) {
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
        let bucket = (u64::BITS - ms.leading_zeros()) as usize;
        self.buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
    }

    /// Adds `other`'s calls to these.
    pub fn add(&mut self, other: &Latency) {
        self.count += other.count;
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
    }

    /// An upper bound of the `q` quantile (0 < q ≤ 1) in ms: the top of
    /// its bucket, at most the longest call; `None` before any call.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank && self.count > 0 {
                return Some(((1u64 << i) - 1).min(self.max_ms));
            }
        }
        None
    }

    pub fn mean_ms(&self) -> Option<u64> {
        (self.count > 0).then(|| self.sum_ms / self.count)
    }
}

/// One function's figures on one node (or added over nodes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls by [`StatusClass`], in the order of [`StatusClass::ALL`].
    pub counts: [u64; StatusClass::ALL.len()],
    pub latency: Latency,
    /// Calls that started in the 60 s before the answer (by its node's clock).
    pub last_minute: u64,
}

impl Stats {
    pub fn count(&self, class: StatusClass) -> u64 {
        self.counts[class.index()]
    }

    pub fn add(&mut self, other: &Stats) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.latency.add(&other.latency);
        self.last_minute += other.last_minute;
    }
}

/// One call this node ran, as it keeps it (and as the API shows it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    /// 1 for the first call of the function this node ran since it
    /// started, then 2, 3, …: a follower sees which calls are new, and how
    /// many it missed.
    pub seq: u64,
    /// When it started, wall-clock ms of the node that ran it.
    pub at_ms: u64,
    pub version: u32,
    pub status: u16,
    pub duration_ms: u64,
    /// The node that received the call over HTTP and forwarded it here;
    /// none when it arrived here.
    pub via: Option<String>,
    /// The end of what the handler wrote on stderr, at most
    /// [`STDERR_TAIL`] bytes (a warm worker's stderr is the worker's, not
    /// a call's: none).
    pub stderr: String,
    /// For a failed call (status 400 or more), the beginning of its
    /// answer (at most [`ANSWER_HEAD`] bytes): why it failed.
    pub answer: String,
}

/// A call that ended here, for [`CallLog::record`].
pub struct Ended<'a> {
    pub name: &'a str,
    pub at_ms: u64,
    pub version: u32,
    pub took: Duration,
    pub via: Option<PeerId>,
    pub status: u16,
    pub stderr: &'a [u8],
    pub body: &'a [u8],
}

/// What one node asks another of its record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallsAsk {
    /// The function whose recent calls to answer; none: only every
    /// function's figures.
    pub name: Option<String>,
    /// Recent calls to answer at most (at most [`RECENT_CALLS`] are kept).
    pub limit: u32,
}

/// What a node answers a [`CallsAsk`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeCalls {
    /// The figures of the function asked for, or of every function this
    /// node ran, by name.
    pub functions: Vec<(String, Stats)>,
    /// The function's newest calls, oldest first.
    pub calls: Vec<CallRecord>,
}

/// The calls of one function on this node.
struct Kept {
    stats: Stats,
    /// Calls in each wall second of the last minute: `second % 60`.
    seconds: [u64; 60],
    /// The wall second of the newest call.
    newest_second: u64,
    recent: VecDeque<CallRecord>,
    next_seq: u64,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            stats: Stats::default(),
            seconds: [0; 60],
            newest_second: 0,
            recent: VecDeque::new(),
            next_seq: 0,
        }
    }
}

impl Kept {
    fn count_second(&mut self, second: u64) {
        if second > self.newest_second {
            let gap = (second - self.newest_second).min(60);
            for s in second + 1 - gap..=second {
                self.seconds[(s % 60) as usize] = 0;
            }
            self.newest_second = second;
        }
        self.seconds[(self.newest_second % 60) as usize] += 1;
    }

    /// Calls that started within 60 s before `now_second`.
    fn last_minute(&self, now_second: u64) -> u64 {
        let from = now_second.saturating_sub(59);
        let to = self.newest_second.min(now_second);
        (from..=to).map(|s| self.seconds[(s % 60) as usize]).sum()
    }

    fn stats(&self, now_ms: u64) -> Stats {
        Stats {
            last_minute: self.last_minute(now_ms / 1000),
            ..self.stats
        }
    }
}

/// This node's record; cheap to clone.
#[derive(Clone)]
pub struct CallLog {
    kept: Arc<Mutex<BTreeMap<String, Kept>>>,
    metrics: Metrics,
}

impl CallLog {
    pub fn new(metrics: Metrics) -> CallLog {
        CallLog {
            kept: Arc::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a call that ended here, and counts it in the metrics.
    pub fn record(&self, call: Ended) {
        let class = StatusClass::of(call.status);
        self.metrics
            .function_call(call.name, class.label(), call.took);
        let mut kept = self.lock();
        if !kept.contains_key(call.name) && kept.len() >= MAX_FUNCTIONS {
            let oldest = kept.iter().min_by_key(|(_, k)| k.newest_second);
            if let Some(name) = oldest.map(|(name, _)| name.clone()) {
                kept.remove(&name);
            }
        }
        let k = kept.entry(call.name.to_string()).or_default();
        let duration_ms = call.took.as_millis() as u64;
        k.stats.counts[class.index()] += 1;
        k.stats.latency.observe(duration_ms);
        k.count_second(call.at_ms / 1000);
        k.next_seq += 1;
        if k.recent.len() == RECENT_CALLS {
            k.recent.pop_front();
        }
        k.recent.push_back(CallRecord {
            seq: k.next_seq,
            at_ms: call.at_ms,
            version: call.version,
            status: call.status,
            duration_ms,
            via: call.via.map(|p| p.to_string()),
            stderr: tail_text(call.stderr, STDERR_TAIL),
            answer: match call.status {
                400.. => head_text(call.body, ANSWER_HEAD),
                _ => String::new(),
            },
        });
    }

    /// What this node answers `ask`, its clock reading `now_ms`.
    pub fn answer(&self, ask: &CallsAsk, now_ms: u64) -> NodeCalls {
        let kept = self.lock();
        let Some(name) = &ask.name else {
            let functions = kept.iter().map(|(n, k)| (n.clone(), k.stats(now_ms)));
            return NodeCalls {
                functions: functions.collect(),
                calls: Vec::new(),
            };
        };
        let Some(k) = kept.get(name) else {
            return NodeCalls::default();
        };
        let limit = (ask.limit as usize).min(RECENT_CALLS);
        NodeCalls {
            functions: vec![(name.clone(), k.stats(now_ms))],
            calls: k
                .recent
                .iter()
                .skip(k.recent.len().saturating_sub(limit))
                .cloned()
                .collect(),
        }
    }
}

/// At most the last `limit` bytes of `bytes` as text, cut at a character.
fn tail_text(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(limit)..]);
    let mut from = text.len().saturating_sub(limit);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].to_string()
}

/// At most the first `limit` bytes of `bytes` as text, cut at a character.
fn head_text(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]);
    let mut to = text.len().min(limit);
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    text[..to].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended<'a>(name: &'a str, at_ms: u64, status: u16, stderr: &'a [u8]) -> Ended<'a> {
        Ended {
            name,
            at_ms,
            version: 1,
            took: Duration::from_millis(3),
            via: None,
            status,
            stderr,
            body: b"function f version 1: exited with code 1\n",
        }
    }

    fn ask(name: &str, limit: u32) -> CallsAsk {
        CallsAsk {
            name: Some(name.into()),
            limit,
        }
    }

    #[test]
    fn a_function_keeps_its_newest_calls_with_the_end_of_their_stderr_and_counts_all() {
        let log = CallLog::new(Metrics::new());
        let long = "x".repeat(STDERR_TAIL * 3) + "the last line\n";
        for i in 0..RECENT_CALLS as u64 + 5 {
            let status = if i % 2 == 0 { 200 } else { 500 };
            log.record(ended("f", 1_000_000 + i, status, long.as_bytes()));
        }
        let answer = log.answer(&ask("f", 1000), 1_000_100);
        assert_eq!(answer.calls.len(), RECENT_CALLS);
        let newest = answer.calls.last().unwrap();
        assert_eq!(newest.seq, RECENT_CALLS as u64 + 5);
        assert!(newest.stderr.ends_with("the last line\n"));
        assert_eq!(newest.stderr.len(), STDERR_TAIL);
        assert_eq!(newest.answer, "");
        assert!(answer.calls[RECENT_CALLS - 2]
            .answer
            .contains("exited with code 1"));
        let (_, stats) = &answer.functions[0];
        assert_eq!(stats.count(StatusClass::Ok), 19);
        assert_eq!(stats.count(StatusClass::ServerError), 18);
        assert_eq!(stats.latency.count, 37);
        assert_eq!(stats.last_minute, 37);
        assert_eq!(log.answer(&ask("f", 2), 1_000_100).calls.len(), 2);
    }

    #[test]
    fn the_last_minute_counts_only_calls_of_the_60_seconds_before_the_answer() {
        let log = CallLog::new(Metrics::new());
        log.record(ended("f", 10_000, 200, b""));
        log.record(ended("f", 50_000, 200, b""));
        log.record(ended("f", 69_000, 504, b""));
        let minute = |now| log.answer(&ask("f", 0), now).functions[0].1.last_minute;
        assert_eq!(minute(69_500), 3);
        assert_eq!(minute(70_500), 2);
        assert_eq!(minute(128_999), 1);
        assert_eq!(minute(129_000), 0);
        log.record(ended("f", 200_000, 200, b""));
        assert_eq!(minute(200_000), 1);
    }

    #[test]
    fn the_function_called_longest_ago_is_forgotten_past_the_bound() {
        let log = CallLog::new(Metrics::new());
        for i in 0..=MAX_FUNCTIONS as u64 {
            log.record(ended(&format!("f{i}"), 1000 * (i + 1), 200, b""));
        }
        let all = CallsAsk {
            name: None,
            limit: 0,
        };
        let names: Vec<String> = (log.answer(&all, 0).functions)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names.len(), MAX_FUNCTIONS);
        assert!(!names.contains(&"f0".to_string()));
        assert!(names.contains(&format!("f{MAX_FUNCTIONS}")));
    }

    #[test]
    fn quantiles_are_the_top_of_their_power_of_two_bucket_capped_by_the_longest_call() {
        let mut l = Latency::default();
        assert_eq!(l.quantile_ms(0.5), None);
        for ms in [0, 3, 3, 3, 100] {
            l.observe(ms);
        }
        assert_eq!(l.quantile_ms(0.5), Some(3));
        assert_eq!(l.quantile_ms(0.99), Some(100));
        assert_eq!(l.mean_ms(), Some(21));
        let mut sum = l;
        sum.add(&l);
        assert_eq!(sum.count, 10);
        assert_eq!(sum.quantile_ms(0.5), Some(3));
    }
}
