//! The API's cluster-membership routes: `GET /v1/invite` (a join token for this node's cluster).
//!
//! Owns these routes and their JSON; `api_guard` checks the token before they run (the cluster
//! key goes only to callers that already hold this node's API token). Must not change the key
//! or the network.

use crate::api::{ApiError, ApiResult};
use crate::net::{ClusterKey, JoinToken};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Clone)]
pub struct ClusterState {
    /// The key this node runs with (`None`: open).
    pub key: Option<ClusterKey>,
    /// The node's `listen` file, where the driver writes its dialable addresses.
    pub listen_file: PathBuf,
}

pub fn router(state: ClusterState) -> Router {
    Router::new()
        .route("/v1/invite", get(invite))
        .with_state(state)
}

async fn invite(State(s): State<ClusterState>) -> ApiResult<Json<Value>> {
    let Some(key) = s.key else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "this node runs open (--insecure-open): it has no cluster key to invite with".into(),
        ));
    };
    let addrs = dialable(&s.listen_file);
    if addrs.is_empty() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is not listening on any address yet".into(),
        ));
    }
    let admins: Vec<String> = key.admins.iter().map(ToString::to_string).collect();
    let token = JoinToken {
        key,
        addrs: addrs.clone(),
    };
    Ok(Json(json!({
        "token": token.to_string(),
        "addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "admins": admins,
    })))
}

/// The node's listen addresses, those other machines can reach first (loopback last).
fn dialable(listen_file: &std::path::Path) -> Vec<Multiaddr> {
    let text = std::fs::read_to_string(listen_file).unwrap_or_default();
    let mut addrs: Vec<Multiaddr> = text.lines().filter_map(|l| l.parse().ok()).collect();
    addrs.sort_by_key(|a| {
        a.iter().any(|p| match p {
            Protocol::Ip4(ip) => ip.is_loopback(),
            Protocol::Ip6(ip) => ip.is_loopback(),
            _ => false,
        })
    });
    addrs
}
