//! Where a call runs: here when this node is inside its availability
//! window and has room, else on another node with room, over the mesh;
//! and answering the calls other nodes send here.
//!
//! Owns the invocation wire ([`InvokeRequest`], [`InvokeAnswer`], encoded
//! with the protocol's codec), choosing among the willing peers (the one
//! with the most room: its slots free by the ledger — the tasks every node
//! sees running there — less the calls this node sent it that have not
//! ended; a peer that answers "busy" is passed over), one retry elsewhere
//! when the chosen node dies before answering (unless the version turned
//! retries off: then 502), and 503
//! when no node has room. Every call this node runs (arrived here or
//! forwarded in, per invocation or warm) is timed and kept in its
//! [`CallLog`]; [`Router::calls_everywhere`] gathers every connected
//! node's record over the same protocol ([`PeerAsk::Calls`]), waiting at
//! most [`PEER_WAIT`] and naming the nodes that did not answer. Must not
//! read the ledger (the API and the driver hand it a [`Plan`]) nor run
//! handlers itself (`runtime` does).

use super::calls::{CallLog, CallsAsk, Ended, NodeCalls};
use super::runtime::{Ran, Runtime};
use super::warm::WarmPools;
use super::{Call, Reply};
use crate::net::{Net, NetError};
use crate::wallclock::wall_ms;
use libp2p::request_response::OutboundFailure;
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::function::Version;
use peerbatch_protocol::EventId;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`Router::calls_everywhere`] waits for the other nodes'
/// records; it answers with those that arrived.
pub const PEER_WAIT: Duration = Duration::from_secs(3);

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
    /// Each of `peers`' slots that the tasks the ledger shows running there
    /// leave free (their gossiped load); a peer missing here has none.
    pub free_slots: HashMap<PeerId, u32>,
}

/// What one node asks another on the invocation protocol.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerAsk {
    /// Run this call (answered with an [`InvokeAnswer`]).
    Invoke(InvokeRequest),
    /// Answer from your record of calls (answered with a [`NodeCalls`]).
    Calls(CallsAsk),
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

/// Who answered a call this node could not run at once.
enum Forwarded {
    /// Another node ran it (and keeps it in its record).
    RanThere(Reply),
    /// This node: a warm worker here took it after a wait, or no node ran
    /// it (502, 503).
    Here(Reply),
}

/// Why a node's record is missing from [`Router::calls_everywhere`]'s answer.
#[derive(Debug, thiserror::Error)]
pub enum NotAnswered {
    #[error("no answer within {}", crate::sandbox::duration_text(.0.as_millis() as u64))]
    TimedOut(Duration),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("its answer is garbled: {0}")]
    Garbled(#[from] codec::CodecError),
}

/// Every asked node's record, or why it is missing.
pub struct MeshCalls {
    /// Each node that answered (this one first), by peer id.
    pub answered: Vec<(String, NodeCalls)>,
    pub unanswered: Vec<(String, NotAnswered)>,
}

#[derive(Clone)]
pub struct Router {
    runtime: Runtime,
    warm: WarmPools,
    net: Net,
    /// Calls sent to each peer that have not ended yet.
    sent: Arc<Mutex<HashMap<PeerId, usize>>>,
    /// The calls this node ran.
    calls: CallLog,
}

impl Router {
    pub fn new(runtime: Runtime, net: Net, calls: CallLog) -> Router {
        Router {
            warm: WarmPools::new(runtime.clone()),
            runtime,
            net,
            sent: Arc::default(),
            calls,
        }
    }

    /// The record of the calls this node ran.
    pub fn calls(&self) -> &CallLog {
        &self.calls
    }

    /// Runs `call` here if this node has room for it now (a free
    /// invocation slot, or for a warm version an idle worker, room for
    /// one, or — its calls being short — fewer calls waiting than it has
    /// workers); else gives the call back. Keeps the call in the record,
    /// with `via`, the node that forwarded it here.
    async fn here(
        &self,
        name: &str,
        version: &Version,
        call: Call,
        peers: &[PeerId],
        via: Option<PeerId>,
    ) -> Result<Reply, Call> {
        let (started, at_ms) = (Instant::now(), wall_ms());
        let ran: Ran = if version.spec.warm.is_some() {
            self.warm.try_call(name, version, call, peers)?.await.into()
        } else {
            let Some(slot) = self.runtime.admit() else {
                return Err(call);
            };
            let (name, version, peers) = (name.to_string(), version.clone(), peers.to_vec());
            self.runtime.invoke(slot, name, version, call, peers).await
        };
        self.record(name, version, (started, at_ms), via, &ran);
        Ok(ran.reply)
    }

    /// Keeps a call answered here, which began at `began`, in the record.
    fn record(
        &self,
        name: &str,
        version: &Version,
        began: (Instant, u64),
        via: Option<PeerId>,
        ran: &Ran,
    ) {
        self.calls.record(Ended {
            name,
            at_ms: began.1,
            version: version.number,
            took: began.0.elapsed(),
            via,
            status: ran.reply.status,
            stderr: &ran.stderr,
            body: &ran.reply.body,
        });
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
    /// A call no node ran (502, 503) is kept in this node's record too.
    pub async fn call(&self, plan: Plan, call: Call) -> Reply {
        let began = (Instant::now(), wall_ms());
        let call = match plan.available_here {
            true => match self
                .here(&plan.name, &plan.version, call, &plan.peers, None)
                .await
            {
                Ok(reply) => return reply,
                Err(call) => call,
            },
            false => call,
        };
        match self.elsewhere(&plan, call).await {
            Forwarded::RanThere(reply) => reply,
            Forwarded::Here(reply) => {
                let ran = Ran::from(reply);
                self.record(&plan.name, &plan.version, began, None, &ran);
                ran.reply
            }
        }
    }

    /// Sends `call` to the peers with room in turn (one retry after a
    /// peer that died, if the version allows); else, for a warm version,
    /// waits for a worker here.
    async fn elsewhere(&self, plan: &Plan, call: Call) -> Forwarded {
        let name = &plan.name;
        // Kept to wait here for a busy warm worker if no other node takes it.
        let wait_here =
            (plan.available_here && plan.version.spec.warm.is_some()).then(|| call.clone());
        let request = codec::encode(&PeerAsk::Invoke(InvokeRequest {
            name: plan.name.clone(),
            version: plan.version.event,
            call,
        }));
        let mut retried = false;
        for peer in self.order(plan) {
            match self.send(peer, request.clone()).await {
                Ok(InvokeAnswer::Done(reply)) => return Forwarded::RanThere(reply),
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
                    let why = format!("function {name}: node {peer} did not answer{also}: {e}");
                    return Forwarded::Here(Reply::text(502, why));
                }
            }
        }
        if let Some(call) = wait_here {
            return Forwarded::Here(self.warm.wait(name, &plan.version, call).await);
        }
        Forwarded::Here(Reply::text(
            503,
            format!("function {name}: no node has room for it now (all full, drained or outside their hours)"),
        ))
    }

    /// Answers a call node `from` sent here: `version` is what this
    /// node's ledger knows of the version asked for.
    pub async fn serve(
        &self,
        from: PeerId,
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
            .here(&request.name, &version, request.call, &peers, Some(from))
            .await
        {
            Ok(reply) => InvokeAnswer::Done(reply),
            Err(_) => InvokeAnswer::Declined("full".into()),
        }
    }

    /// This node's record and each of `peers`' for `ask`: those that
    /// answer within [`PEER_WAIT`], all asked at once.
    pub async fn calls_everywhere(&self, ask: CallsAsk, peers: Vec<PeerId>) -> MeshCalls {
        let here = self.calls.answer(&ask, wall_ms());
        let request = codec::encode(&PeerAsk::Calls(ask));
        let asked = peers.into_iter().map(|peer| {
            let request = request.clone();
            async move {
                let answer = tokio::time::timeout(PEER_WAIT, self.net.invoke(peer, request));
                let answer = match answer.await {
                    Err(_) => Err(NotAnswered::TimedOut(PEER_WAIT)),
                    Ok(Err(e)) => Err(e.into()),
                    Ok(Ok(bytes)) => codec::decode::<NodeCalls>(&bytes).map_err(Into::into),
                };
                (peer.to_string(), answer)
            }
        });
        let mut mesh = MeshCalls {
            answered: vec![(self.runtime.node.clone(), here)],
            unanswered: Vec::new(),
        };
        for (node, answer) in futures::future::join_all(asked).await {
            match answer {
                Ok(calls) => mesh.answered.push((node, calls)),
                Err(why) => mesh.unanswered.push((node, why)),
            }
        }
        mesh
    }

    /// The plan's peers in the order to try them: most room first (free
    /// slots by the ledger less this node's calls in flight there), ties
    /// in random order.
    fn order(&self, plan: &Plan) -> Vec<PeerId> {
        let mut peers = plan.peers.clone();
        peers.shuffle(&mut rand::thread_rng());
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        peers.sort_by_key(|p| {
            let free = i64::from(plan.free_slots.get(p).copied().unwrap_or(0));
            let in_flight = sent.get(p).copied().unwrap_or(0) as i64;
            std::cmp::Reverse(free - in_flight)
        });
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
