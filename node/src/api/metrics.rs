//! `GET /metrics` and the count of API requests by route and status.
//!
//! Owns reading the node's state for a scrape (from the driver, the data
//! plane's counters and the chunk store's size, measured at most every
//! [`STORE_MEASURED_EVERY`]) and the layer that counts every request by the
//! route pattern it matched. Like every route, `/metrics` needs the node's
//! token (a task's token is refused). The names and encoding are
//! `crate::metrics`'s; must not name a metric itself.

use crate::api::{ApiError, ApiResult, ApiState};
use crate::driver::command::{Mesh, NodeState};
use crate::metrics::{Metrics, NodeSnapshot, CONTENT_TYPE};
use crate::store::blobs::BlobStore;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a measured chunk-store size is reported before it is measured
/// again (a measure lists every chunk file).
pub const STORE_MEASURED_EVERY: Duration = Duration::from_secs(30);

/// The registry scrapes encode, and the chunk store's last measured size.
#[derive(Clone)]
pub struct MetricsState {
    metrics: Metrics,
    store_size: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl MetricsState {
    pub fn new(metrics: Metrics) -> MetricsState {
        MetricsState {
            metrics,
            store_size: Arc::default(),
        }
    }
}

/// `app` with every request counted in `metrics` once answered (refusals
/// by the token check included: wrap the guarded router).
pub fn counted(app: Router, metrics: Metrics) -> Router {
    app.layer(middleware::from_fn_with_state(metrics, count))
}

async fn count(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    metrics.api_request(method.as_str(), route, response.status().as_u16());
    response
}

/// The node's metrics in the Prometheus text format (OpenMetrics); the
/// node's token only.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "every metric of this node (docs/OPERATIONS.md)",
        body = String, content_type = "application/openmetrics-text")))]
pub async fn scrape(State(api): State<ApiState>) -> ApiResult<Response> {
    let state = api.driver.call(|reply| Mesh::State { reply }).await?;
    let mut node = snapshot(&api, state);
    let s = &api.metrics;
    node.store_bytes = s.store_bytes(api.data.blobs.clone()).await?;
    node.log_followers = api.follow.active() as u64;
    let text = s.metrics.encode(node);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// What the driver (`node`) and the data plane's counters know now.
fn snapshot(api: &ApiState, node: NodeState) -> NodeSnapshot {
    let (stats, data) = (node.stats, &api.data.fetcher.stats);
    NodeSnapshot {
        tasks: node.tasks,
        claims: stats.claims,
        events_duplicate: stats.events_duplicate,
        events_rejected: stats.events_rejected,
        attempts_started: stats.attempts_started,
        attempts_fenced: stats.attempts_fenced,
        ledger_events: node.events as u64,
        ledger_event_bytes: api.data.ledger.event_bytes(),
        ledger_disk_bytes: api.data.ledger.size_on_disk(),
        sync_rounds: stats.sync_rounds,
        peers_connected: node.peers_connected as u64,
        nodes_known: node.nodes_known as u64,
        chunks_served: data.chunks_served.load(Relaxed),
        chunk_bytes_served: data.chunk_bytes_served.load(Relaxed),
        chunks_fetched: data.chunks_fetched.load(Relaxed),
        chunk_bytes_fetched: data.chunk_bytes_fetched.load(Relaxed),
        store_bytes: 0,
        slots: u64::from(node.slots),
        slots_running: u64::from(node.running),
        log_followers: 0,
        heap: crate::heap::stats(),
    }
}

impl MetricsState {
    /// The chunk store's size: measured again once the last measure is
    /// [`STORE_MEASURED_EVERY`] old.
    async fn store_bytes(&self, blobs: BlobStore) -> ApiResult<u64> {
        let last = *self.store_size.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, bytes)) = last.filter(|(at, _)| at.elapsed() < STORE_MEASURED_EVERY) {
            return Ok(bytes);
        }
        let measured = tokio::task::spawn_blocking(move || blobs.list_chunks())
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("measuring the chunk store: {e:#}"),
                )
            })?;
        let bytes = measured.iter().map(|c| c.bytes).sum();
        *self.store_size.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), bytes));
        Ok(bytes)
    }
}
