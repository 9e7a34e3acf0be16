//! The node's Prometheus metrics (`GET /metrics`).
//!
//! Owns every metric's name, help text and type, and encoding them in the
//! text format ([`Metrics::encode`]). Other modules report through typed
//! methods: the API counts each request ([`Metrics::api_request`]), the
//! driver each local attempt's run time ([`Metrics::task_ran`]), the
//! functions' record each call this node ran ([`Metrics::function_call`];
//! one series per function name deployed, as the ledger bounds them), and the
//! `/metrics` route hands the state read from the driver at scrape time as
//! a [`NodeSnapshot`]. Must not read node state itself or decide anything.
//! `docs/grafana-peerbatch.json` uses these names; a test checks that each
//! of its names is in a scrape.

use peerbatch_protocol::core::Progress;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, which
/// Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The node's state read at scrape time, each field one metric.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeSnapshot {
    /// Tasks of every job in this node's ledger, by state.
    pub tasks: Progress,
    pub claims: u64,
    pub events_duplicate: u64,
    pub events_rejected: u64,
    pub attempts_started: u64,
    pub attempts_fenced: u64,
    pub ledger_events: u64,
    pub ledger_event_bytes: u64,
    pub ledger_disk_bytes: u64,
    pub sync_rounds: u64,
    pub peers_connected: u64,
    pub nodes_known: u64,
    pub chunks_served: u64,
    pub chunk_bytes_served: u64,
    pub chunks_fetched: u64,
    pub chunk_bytes_fetched: u64,
    /// Bytes in the chunk store, as last measured.
    pub store_bytes: u64,
    pub slots: u64,
    pub slots_running: u64,
    pub log_followers: u64,
    /// The allocator's counters, if it gave them.
    pub heap: Option<crate::heap::HeapStats>,
}

/// The labels of an API request: the route pattern it matched (not its
/// raw path, so that ids do not each make a series), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The labels of a function call this node ran: the function and its
/// status class (`2xx`, `4xx`, `5xx`, `503`, `504`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: String,
    status: String,
}

/// The label of a function's call durations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

type CallTimes = Family<FunctionLabel, Histogram, fn() -> Histogram>;

/// 1 ms to about 4.4 min, each bucket four times the last.
fn call_time() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// Cheap to clone; every clone reports into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    run_time: Histogram,
    calls: Family<CallLabels, Counter>,
    call_time: CallTimes,
    snapshot: Arc<Snapshot>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("peerbatch");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "HTTP API requests answered, by route pattern, method and status",
            requests.clone(),
        );
        // 50 ms to about 3.6 h, each bucket four times the last.
        let run_time = Histogram::new(exponential_buckets(0.05, 4.0, 10));
        registry.register(
            "task_run_seconds",
            "Run time of task attempts that ended on this node",
            run_time.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "function_calls",
            "Function calls this node ran or answered without any node running them (502, 503), by function and status class",
            calls.clone(),
        );
        let call_time = CallTimes::new_with_constructor(call_time);
        registry.register(
            "function_call_seconds",
            "How long the function calls this node ran took, by function",
            call_time.clone(),
        );
        let snapshot = Arc::new(Snapshot::default());
        registry.register_collector(Box::new(snapshot.clone()));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                run_time,
                calls,
                call_time,
                snapshot,
            }),
        }
    }

    /// Counts one answered API request; `route` is the pattern it matched
    /// (`None`: it matched none).
    pub fn api_request(&self, method: &str, route: Option<&str>, status: u16) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.unwrap_or("unmatched").to_string(),
            status,
        };
        self.inner.requests.get_or_create(&labels).inc();
    }

    /// Records the run time of an attempt that ended on this node.
    pub fn task_ran(&self, run_time: Duration) {
        self.inner.run_time.observe(run_time.as_secs_f64());
    }

    /// Counts a call of `function` this node ran, answered with a status
    /// of class `status`, and its duration.
    pub fn function_call(&self, function: &str, status: &str, took: Duration) {
        let labels = CallLabels {
            function: function.to_string(),
            status: status.to_string(),
        };
        self.inner.calls.get_or_create(&labels).inc();
        let label = FunctionLabel {
            function: function.to_string(),
        };
        let times = self.inner.call_time.get_or_create(&label);
        times.observe(took.as_secs_f64());
    }

    /// Every metric in the text format, with `node`'s state.
    pub fn encode(&self, node: NodeSnapshot) -> String {
        *self
            .inner
            .snapshot
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = node;
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// The latest [`NodeSnapshot`], encoded at each scrape.
#[derive(Debug, Default)]
struct Snapshot(Mutex<NodeSnapshot>);

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        tasks(&mut e, &s.tasks)?;
        let counters: [(&str, &str, u64); 10] = [
            ("claims", "Claims this node made on tasks", s.claims),
            ("events_duplicate", "Ledger events received that this node already held", s.events_duplicate),
            ("events_rejected", "Ledger events received and refused", s.events_rejected),
            ("attempts_started", "Task attempts started on this node", s.attempts_started),
            ("attempts_fenced", "Running attempts stopped because the ledger gave the task to another attempt or node", s.attempts_fenced),
            ("sync_rounds", "Anti-entropy rounds this node started with a peer", s.sync_rounds),
            ("chunks_served", "Chunks sent to peers", s.chunks_served),
            ("chunk_bytes_served", "Bytes of chunks sent to peers", s.chunk_bytes_served),
            ("chunks_fetched", "Chunks fetched from peers", s.chunks_fetched),
            ("chunk_bytes_fetched", "Bytes of chunks fetched from peers", s.chunk_bytes_fetched),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let gauges: [(&str, &str, u64); 9] = [
            (
                "ledger_events",
                "Events in this node's ledger",
                s.ledger_events,
            ),
            (
                "ledger_event_bytes",
                "Bytes of the events in this node's ledger",
                s.ledger_event_bytes,
            ),
            (
                "ledger_disk_bytes",
                "Bytes the ledger's database takes on disk",
                s.ledger_disk_bytes,
            ),
            (
                "peers_connected",
                "Peers with a live connection to this node",
                s.peers_connected,
            ),
            ("nodes", "Nodes in this node's ledger", s.nodes_known),
            (
                "store_bytes",
                "Bytes in this node's chunk store (measured at most every 30 s)",
                s.store_bytes,
            ),
            ("slots", "Task slots this node offers", s.slots),
            (
                "slots_running",
                "Slots taken by attempts running on this node",
                s.slots_running,
            ),
            (
                "log_followers",
                "Live logs this node's API streams now",
                s.log_followers,
            ),
        ];
        for (name, help, value) in gauges {
            gauge(&mut e, name, help, value)?;
        }
        if let Some(heap) = s.heap {
            let help = "Bytes this node's allocator holds allocated";
            gauge(&mut e, "heap_allocated_bytes", help, heap.allocated)?;
            let help = "Bytes of memory in the allocator's touched pages (its part of RSS)";
            gauge(&mut e, "heap_resident_bytes", help, heap.resident)?;
        }
        Ok(())
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// `peerbatch_tasks{state=...}`: one series per task state.
fn tasks(e: &mut DescriptorEncoder, p: &Progress) -> Result<(), std::fmt::Error> {
    let by_state = [
        ("pending", p.pending),
        ("blocked", p.blocked),
        ("running", p.running),
        ("succeeded", p.succeeded),
        ("failed", p.failed),
        ("cancelled", p.cancelled),
        ("skipped", p.skipped),
    ];
    let help = "Tasks of every job in this node's ledger, by state";
    let mut family = e.encode_descriptor(
        "tasks",
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (state, count) in by_state {
        let labels = [("state", state)];
        ConstGauge::new(i64::from(count)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_each_task_state_and_counts_requests_by_route() {
        let m = Metrics::new();
        m.api_request("GET", Some("/v1/jobs/{job}"), 200);
        m.api_request("GET", Some("/v1/jobs/{job}"), 200);
        m.task_ran(Duration::from_millis(300));
        m.function_call("hello", "5xx", Duration::from_millis(2));
        let mut node = NodeSnapshot::default();
        node.tasks.succeeded = 3;
        let text = m.encode(node);
        assert!(
            text.contains("peerbatch_tasks{state=\"succeeded\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("peerbatch_tasks{state=\"pending\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "peerbatch_api_requests_total{method=\"GET\",route=\"/v1/jobs/{job}\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("peerbatch_task_run_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("peerbatch_claims_total 0"), "{text}");
        assert!(
            text.contains("peerbatch_function_calls_total{function=\"hello\",status=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("peerbatch_function_call_seconds_count{function=\"hello\"} 1"),
            "{text}"
        );
    }
}
