//! Where a call runs: here when this node is inside its availability
//! window and has room, else on another node with room, over the mesh;
//! and answering the calls other nodes send here.
//!
//! Owns the invocation wire ([`InvokeRequest`], [`InvokeAnswer`], encoded
//! with the protocol's codec), choosing among the willing peers (the one
//! with the fewest calls this node sent it that have not ended, which
//! spreads load as calls end or pile up; a peer that answers "busy" is
//! passed over), one retry elsewhere when the chosen node dies before
//! answering (unless the version turned retries off: then 502), and 503
//! when no node has room. Must not read the ledger (the API and the driver
//! hand it a [`Plan`]) nor run handlers itself (`runtime` does).

use super::runtime::Runtime;
use super::warm::WarmPools;
use super::{Call, Reply};
use crate::net::{Net, NetError};
use libp2p::request_response::OutboundFailure;
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::function::Version;
use peerbatch_protocol::EventId;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the ledger and the node's state say about one call, read by the
/// driver.
pub struct Plan {
    pub name: String,
    /// The version to run.
    pub version: Version,
    /// Whether this node is inside its availability window (not drained).
    pub available_here: bool,
    /// Connected peers that announce no drain: where to fetch the bundle
    /// from, and where a call this node cannot take may go.
    pub peers: Vec<PeerId>,
}

/// A call one node sends another to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct InvokeRequest {
    pub name: String,
    /// The version's deploy event.
    pub version: EventId,
    pub call: Call,
}

/// What a node answers a forwarded call.
#[derive(Debug, Serialize, Deserialize)]
pub enum InvokeAnswer {
    /// It ran the handler (or tried to).
    Done(Reply),
    /// It did not run it (outside its window, full, or it does not know
    /// that version yet): try another node.
    Declined(String),
}

#[derive(Clone)]
pub struct Router {
    runtime: Runtime,
    warm: WarmPools,
    net: Net,
    /// Calls sent to each peer that have not ended yet.
    sent: Arc<Mutex<HashMap<PeerId, usize>>>,
}

impl Router {
    pub fn new(runtime: Runtime, net: Net) -> Router {
        Router {
            warm: WarmPools::new(runtime.clone()),
            runtime,
            net,
            sent: Arc::default(),
        }
    }

    /// Runs `call` here if this node has room for it now (a free
    /// invocation slot, or for a warm version an idle worker, room for
    /// one, or — its calls being short — fewer calls waiting than it has
    /// workers); else gives the call back.
    async fn here(
        &self,
        name: &str,
        version: &Version,
        call: Call,
        peers: &[PeerId],
    ) -> Result<Reply, Call> {
        if version.spec.warm.is_some() {
            return Ok(self.warm.try_call(name, version, call, peers)?.await);
        }
        let Some(slot) = self.runtime.admit() else {
            return Err(call);
        };
        let (name, version, peers) = (name.to_string(), version.clone(), peers.to_vec());
        Ok(self.runtime.invoke(slot, name, version, call, peers).await)
    }

    /// Keeps the warm workers of the warm versions `serving` now (see
    /// [`WarmPools::keep`]); stops them all while this node is not `available`.
    pub fn keep_warm(&self, serving: Vec<(String, Version)>, available: bool, peers: Vec<PeerId>) {
        self.warm.keep(serving, available, peers);
    }

    /// Stops every warm worker (the node is stopping).
    pub async fn stop_warm(&self) {
        self.warm.stop().await;
    }

    /// Runs `call` here or on another node; 503 with nowhere to run it.
    pub async fn call(&self, plan: Plan, call: Call) -> Reply {
        let call = match plan.available_here {
            true => match self
                .here(&plan.name, &plan.version, call, &plan.peers)
                .await
            {
                Ok(reply) => return reply,
                Err(call) => call,
            },
            false => call,
        };
        let name = plan.name.clone();
        // Kept to wait here for a busy warm worker if no other node takes it.
        let wait_here =
            (plan.available_here && plan.version.spec.warm.is_some()).then(|| call.clone());
        let request = codec::encode(&InvokeRequest {
            name: plan.name.clone(),
            version: plan.version.event,
            call,
        });
        let mut retried = false;
        for peer in self.order(plan.peers) {
            match self.send(peer, request.clone()).await {
                Ok(InvokeAnswer::Done(reply)) => return reply,
                Ok(InvokeAnswer::Declined(why)) => {
                    tracing::debug!("function {name}: node {peer} declined: {why}")
                }
                Err(e) if never_sent(&e) => {
                    tracing::debug!("function {name}: node {peer} not reached: {e}")
                }
                Err(e) if plan.version.spec.retry && !retried => {
                    tracing::warn!(
                        "function {name}: node {peer} did not answer ({e}); once more elsewhere"
                    );
                    retried = true;
                }
                Err(e) => {
                    let also = if retried { " either" } else { "" };
                    return Reply::text(
                        502,
                        format!("function {name}: node {peer} did not answer{also}: {e}"),
                    );
                }
            }
        }
        if let Some(call) = wait_here {
            return self.warm.wait(&name, &plan.version, call).await;
        }
        Reply::text(
            503,
            format!("function {name}: no node has room for it now (all full, drained or outside their hours)"),
        )
    }

    /// Answers a call another node sent here: `version` is what this
    /// node's ledger knows of the version asked for.
    pub async fn serve(
        &self,
        version: Result<Version, String>,
        available: bool,
        peers: Vec<PeerId>,
        request: InvokeRequest,
    ) -> InvokeAnswer {
        let version = match version {
            Ok(v) if available => v,
            Ok(_) => return InvokeAnswer::Declined("outside its availability".into()),
            Err(why) => return InvokeAnswer::Declined(why),
        };
        match self
            .here(&request.name, &version, request.call, &peers)
            .await
        {
            Ok(reply) => InvokeAnswer::Done(reply),
            Err(_) => InvokeAnswer::Declined("full".into()),
        }
    }

    /// Peers in the order to try them: fewest calls in flight first,
    /// ties in random order.
    fn order(&self, mut peers: Vec<PeerId>) -> Vec<PeerId> {
        peers.shuffle(&mut rand::thread_rng());
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        peers.sort_by_key(|p| sent.get(p).copied().unwrap_or(0));
        peers
    }

    async fn send(&self, peer: PeerId, request: Vec<u8>) -> Result<InvokeAnswer, NetError> {
        let _in_flight = InFlight::new(&self.sent, peer);
        let bytes = self.net.invoke(peer, request).await?;
        Ok(codec::decode(&bytes).unwrap_or_else(|e| {
            InvokeAnswer::Done(Reply::text(
                502,
                format!("node {peer} answered garbage: {e}"),
            ))
        }))
    }
}

/// Whether a request failed before the peer could have run anything.
fn never_sent(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Busy(_)
            | NetError::Request {
                source: OutboundFailure::DialFailure | OutboundFailure::UnsupportedProtocols,
                ..
            }
    )
}

/// One call counted against its peer while it lasts.
struct InFlight {
    sent: Arc<Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl InFlight {
    fn new(sent: &Arc<Mutex<HashMap<PeerId, usize>>>, peer: PeerId) -> InFlight {
        *sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(peer)
            .or_default() += 1;
        InFlight {
            sent: sent.clone(),
            peer,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = sent.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                sent.remove(&self.peer);
            }
        }
    }
}
