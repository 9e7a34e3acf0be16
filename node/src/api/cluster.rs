//! The API's cluster-membership routes: `GET /v1/invite` (a join token for this node's
//! cluster), `GET /v1/waiting` (peers waiting for approval that this node met) and
//! `POST /v1/waiting/{peer}/approve` (hand one of them the cluster key; admins only).
//!
//! Owns these routes (their JSON shapes are `api::types`');
//! `api::guard` checks the token before they run (the cluster key goes only to callers that
//! already hold this node's API token). Must not change the key; the waiting list and the
//! approval exchange are `net`'s (its lobby).

use crate::api::types::{Approved, Invite, Waiting};
use crate::api::{ApiError, ApiResult};
use crate::net::{ApproveError, JoinToken, Lobby, Net, Standing, WaitingPeer};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct ClusterState {
    /// What this node is to the cluster: its key and lobby, or open.
    pub standing: Standing,
    /// The node's `listen` file, where the driver writes its dialable addresses.
    pub listen_file: PathBuf,
    /// To dial a peer being approved.
    pub net: Net,
}

fn lobby(standing: &Standing) -> ApiResult<&Lobby> {
    let without = match standing {
        Standing::Member(lobby) => return Ok(lobby),
        Standing::Open => "runs open (--insecure-open)",
        Standing::Waiting(_) => "waits for approval",
    };
    Err(ApiError(
        StatusCode::CONFLICT,
        format!("this node {without}: it has no cluster key"),
    ))
}

/// A join token for this node's cluster.
#[utoipa::path(get, path = "/v1/invite", tag = "cluster",
    responses((status = 200, body = Invite)))]
pub async fn invite(State(s): State<ClusterState>) -> ApiResult<Json<Invite>> {
    let key = lobby(&s.standing)?.key().clone();
    let addrs = dialable(&s.listen_file);
    if addrs.is_empty() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is not listening on any address yet".into(),
        ));
    }
    let admins = key.admins.iter().map(ToString::to_string).collect();
    let token = JoinToken {
        key,
        addrs: addrs.clone(),
    };
    Ok(Json(Invite {
        token: token.to_string(),
        addrs: addrs.iter().map(ToString::to_string).collect(),
        admins,
    }))
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl From<WaitingPeer> for Waiting {
    fn from(w: WaitingPeer) -> Waiting {
        Waiting {
            peer: w.peer.to_string(),
            host: w.host,
            addr: w.addr.to_string(),
            dialled: w.dialled,
            first_seen_ms: unix_ms(w.first_seen),
            last_seen_ms: unix_ms(w.last_seen),
        }
    }
}

/// Peers waiting for approval that this node met.
#[utoipa::path(get, path = "/v1/waiting", tag = "cluster",
    responses((status = 200, body = Vec<Waiting>)))]
pub async fn waiting(State(s): State<ClusterState>) -> ApiResult<Json<Vec<Waiting>>> {
    let list = lobby(&s.standing)?.waiting();
    Ok(Json(list.into_iter().map(Waiting::from).collect()))
}

/// Arms the approval, dials the peer if its listen address is known, and waits for the
/// exchange at its next connection with this node.
#[utoipa::path(post, path = "/v1/waiting/{peer}/approve", tag = "cluster",
    params(("peer" = String, Path, description = "the waiting peer's id")),
    responses((status = 200, body = Approved)))]
pub async fn approve(
    State(s): State<ClusterState>,
    Path(peer): Path<String>,
) -> ApiResult<Json<Approved>> {
    let lobby = lobby(&s.standing)?;
    let peer: PeerId = peer.parse().map_err(|e| {
        let shown: String = peer.chars().take(80).collect();
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{shown:?} is not a peer id: {e}"),
        )
    })?;
    let arming = lobby.arm(peer).map_err(refusal)?;
    if let Some(addr) = arming.dial {
        s.net.dial(peer, vec![addr]).await;
    }
    let lasts = crate::net::APPROVAL_LASTS;
    let outcome = match tokio::time::timeout(lasts, arming.outcome).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) | Err(_) => Err(ApproveError::Unreached(peer)),
    };
    outcome.map_err(refusal)?;
    Ok(Json(Approved {
        peer: peer.to_string(),
        by: s.net.local_peer_id().to_string(),
    }))
}

fn refusal(e: ApproveError) -> ApiError {
    let code = match e {
        ApproveError::NotAdmin { .. } => StatusCode::FORBIDDEN,
        ApproveError::NotWaiting(_) => StatusCode::NOT_FOUND,
        ApproveError::Unreached(_) => StatusCode::GATEWAY_TIMEOUT,
        ApproveError::Failed { .. } => StatusCode::BAD_GATEWAY,
    };
    ApiError(code, e.to_string())
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
