//! Who rang: connections that the admission exchange ended because one side waits for
//! approval, seen where the swarm reports them with their addresses.
//!
//! Owns only reading those failures: a keyed node lists the waiting peer in its lobby (and says
//! so once per peer, with the command that approves it); a waiting node notes the keyed node
//! that answered "not yet". A `NetworkBehaviour` with no connections or events of its own; must
//! not dial, refuse or admit anything.

use std::{
    convert::Infallible,
    error::Error,
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        behaviour::{DialFailure, ListenFailure},
        dummy, ConnectionDenied, ConnectionId, DialError, FromSwarm, ListenError, NetworkBehaviour,
        THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};
use tracing::info;

use super::{candidate::Candidate, cluster::AdmissionError, lobby::Lobby, tls::TlsError, Standing};

/// Feeds a keyed node's lobby or a waiting node's candidate from failed connections.
pub(super) enum Doorbell {
    Lobby(Lobby),
    Candidate(Candidate),
    Deaf,
}

impl Doorbell {
    pub(super) fn new(standing: &Standing) -> Doorbell {
        match standing {
            Standing::Member(lobby) => Doorbell::Lobby(lobby.clone()),
            Standing::Waiting(candidate) => Doorbell::Candidate(candidate.clone()),
            Standing::Open => Doorbell::Deaf,
        }
    }

    fn failed(&self, addr: &Multiaddr, dialled: bool, error: &(dyn Error + 'static)) {
        let Some(admission) = admission_error(error) else {
            return;
        };
        match (self, admission) {
            (Doorbell::Lobby(lobby), AdmissionError::PeerWaiting { peer, host })
                if lobby.met(*peer, host, addr, dialled) =>
            {
                info!(
                    "peer {peer} on host {host:?} at {addr} waits for approval; an admin \
                     approves it with `peerbatch approve {peer}`"
                );
            }
            (Doorbell::Candidate(candidate), AdmissionError::NotApproved { peer }) => {
                candidate.reached(*peer, addr);
            }
            _ => {}
        }
    }
}

/// The admission error somewhere in a failed connection's error chain (libp2p wraps it in its
/// upgrade, timeout and boxing errors; `approval_tests` checks that it is found there).
fn admission_error<'a>(mut error: &'a (dyn Error + 'static)) -> Option<&'a AdmissionError> {
    loop {
        if let Some(TlsError::Admission(found)) = error.downcast_ref::<TlsError>() {
            return Some(found);
        }
        error = error.source()?;
    }
}

impl NetworkBehaviour for Doorbell {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure {
                send_back_addr,
                error: ListenError::Transport(error),
                ..
            }) => self.failed(send_back_addr, false, error),
            FromSwarm::DialFailure(DialFailure {
                error: DialError::Transport(failed),
                ..
            }) => {
                for (addr, error) in failed {
                    self.failed(addr, true, error);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
