//! The network event loop: the only code that touches the libp2p `Swarm`.
//!
//! It executes [`Command`]s sent by `Net` handles, turns swarm events into `NetEvent`s for the
//! node, acknowledges one-way messages, and redials peers on a timer. It must not interpret the
//! bytes it moves or touch any other node state.

use std::{
    collections::HashMap,
    ops::ControlFlow,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    gossipsub, identify, mdns,
    request_response::{self, OutboundRequestId},
    swarm::{dial_opts::DialOpts, DialError, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::MissedTickBehavior,
};
use tracing::{debug, info, trace, warn};

use super::{
    behaviour::{Behaviour, BehaviourEvent, IDENTIFY_PROTOCOL},
    graylist::Graylist,
    redial::PeerBook,
    refusals::{error_chain, Refusals},
    slots::Slot,
    slow_peers::SlowPeers,
    FetchReply, GossipTicket, GossipVerdict, Lane, NetError, NetEvent,
};

/// How often the redial schedule is checked (the schedule itself backs off from ~2 s).
const REDIAL_TICK: Duration = Duration::from_secs(1);

/// What a `Net` handle asks the event loop to do.
#[derive(Debug)]
pub(super) enum Command {
    Publish {
        data: Vec<u8>,
    },
    Send {
        peer: PeerId,
        data: Vec<u8>,
        /// Held until the message is acknowledged or fails.
        slot: Slot,
        /// `Some` for `send_acked`: resolved when the peer acknowledges (or the send fails).
        ack: Option<oneshot::Sender<Result<(), NetError>>>,
    },
    /// A request on `lane` (a fetch or a function call).
    Fetch {
        lane: Lane,
        peer: PeerId,
        data: Vec<u8>,
        /// Held until the answer arrives or the fetch fails.
        slot: Slot,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Respond {
        reply: FetchReply,
        data: Vec<u8>,
    },
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    /// The Swarm's connected peers (fetches widen their search with these).
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// The node's verdict on a gossip message: forward it, or not, and
    /// whether its sender is penalised.
    JudgeGossip {
        ticket: GossipTicket,
        verdict: GossipVerdict,
    },
}

/// A request in flight: its slot (freed when this is dropped) and whom to tell how it ended.
struct Pending<T> {
    _slot: Slot,
    reply: Option<oneshot::Sender<Result<T, NetError>>>,
}

impl<T> Pending<T> {
    fn end(self, result: Result<T, NetError>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(result);
        }
    }
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    topic: gossipsub::TopicHash,
    /// One-way messages sent and not yet acknowledged or failed.
    pending_sends: HashMap<OutboundRequestId, Pending<()>>,
    /// Requests (fetches and function calls) not yet answered or failed.
    pending_fetches: HashMap<(Lane, OutboundRequestId), Pending<Vec<u8>>>,
    book: PeerBook,
    refusals: Refusals,
    /// Peers whose gossip was rejected: what they pass on is dropped unread a while.
    graylist: Graylist,
    slow_peers: SlowPeers,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        topic: gossipsub::TopicHash,
        join: &[Multiaddr],
    ) -> Self {
        let book = PeerBook::new(*swarm.local_peer_id(), join, Instant::now());
        Self {
            swarm,
            commands,
            events,
            topic,
            pending_sends: HashMap::new(),
            pending_fetches: HashMap::new(),
            book,
            refusals: Refusals::default(),
            graylist: Graylist::default(),
            slow_peers: SlowPeers::default(),
        }
    }

    /// Run until every `Net` handle or the event receiver is dropped.
    pub(super) async fn run(mut self) {
        info!(peer_id = %self.swarm.local_peer_id(), "network started");
        // The first tick fires at once, which dials the `join` addresses.
        let mut redial = tokio::time::interval(REDIAL_TICK);
        redial.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let flow = tokio::select! {
                event = self.swarm.select_next_some() => self.handle_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.handle_command(command);
                        ControlFlow::Continue(())
                    }
                    None => {
                        debug!("all network handles dropped");
                        ControlFlow::Break(())
                    }
                },
                _ = redial.tick() => {
                    self.redial();
                    ControlFlow::Continue(())
                }
            };
            if flow.is_break() {
                break;
            }
        }
        info!("network stopped");
    }

    /// Hand an event to the node, waiting for room in the channel (events are never dropped).
    /// Commands keep being served meanwhile, so a node that sends a command (waiting for room in
    /// the bounded command channel, or for an answer such as `connected_peers`) while the event
    /// channel is full does not deadlock (see the module doc of `net`). Breaks if the receiver
    /// is gone.
    async fn emit(&mut self, event: NetEvent) -> ControlFlow<()> {
        let events = self.events.clone();
        let permit = events.reserve();
        tokio::pin!(permit);
        loop {
            tokio::select! {
                biased;
                permit = &mut permit => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(event);
                            ControlFlow::Continue(())
                        }
                        Err(_) => {
                            debug!("network event receiver dropped");
                            ControlFlow::Break(())
                        }
                    };
                }
                Some(command) = self.commands.recv() => self.handle_command(command),
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { data } => {
                let len = data.len();
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data)
                {
                    Ok(id) => trace!(%id, len, "gossip published"),
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        debug!(len, "gossip not published: no subscribed peers yet")
                    }
                    Err(gossipsub::PublishError::Duplicate) => {
                        debug!(len, "gossip not published: identical payload seen recently")
                    }
                    Err(e) => warn!(error = %e, len, "gossip publish failed"),
                }
            }
            Command::Send {
                peer,
                data,
                slot,
                ack,
            } => {
                let id = self.swarm.behaviour_mut().msg.send_request(&peer, data);
                let pending = Pending {
                    _slot: slot,
                    reply: ack,
                };
                self.pending_sends.insert(id, pending);
            }
            Command::Fetch {
                lane,
                peer,
                data,
                slot,
                reply,
            } => {
                let id = self.lane(lane).send_request(&peer, data);
                let pending = Pending {
                    _slot: slot,
                    reply: Some(reply),
                };
                self.pending_fetches.insert((lane, id), pending);
            }
            Command::Respond { reply, data } => {
                if self
                    .lane(reply.lane)
                    .send_response(reply.channel, data)
                    .is_err()
                {
                    debug!(
                        "fetch response dropped: the request timed out or its connection closed"
                    );
                }
            }
            Command::Dial { peer, addrs } => {
                if peer == *self.swarm.local_peer_id() {
                    return;
                }
                self.remember(peer, addrs);
                if !self.swarm.is_connected(&peer) {
                    if let Some(opts) = self.book.dial_now(peer, Instant::now()) {
                        self.dial(opts);
                    }
                }
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::JudgeGossip { ticket, verdict } => {
                if verdict == GossipVerdict::Reject {
                    self.graylist.rejected(ticket.via, Instant::now());
                }
                let acceptance = match verdict {
                    GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
                    GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
                    GossipVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&ticket.id, &ticket.via, acceptance);
            }
        }
    }

    async fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> ControlFlow<()> {
        match event {
            SwarmEvent::Behaviour(event) => return self.handle_behaviour_event(event).await,
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                return self.emit(NetEvent::Listening(address)).await;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let dialed = endpoint
                    .is_dialer()
                    .then(|| endpoint.get_remote_address().clone());
                debug!(peer = %peer_id, ?endpoint, "connection established");
                self.book
                    .connected(peer_id, connection_id, dialed.as_ref(), Instant::now());
                if let Some(addr) = dialed {
                    self.swarm.add_peer_address(peer_id, addr);
                }
                if num_established.get() == 1 {
                    info!(peer = %peer_id, "peer connected");
                    return self.emit(NetEvent::PeerConnected(peer_id)).await;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    info!(peer = %peer_id, "peer disconnected");
                    self.book.disconnected(peer_id, Instant::now());
                    return self.emit(NetEvent::PeerDisconnected(peer_id)).await;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let reached_self = matches!(error, DialError::LocalPeerId { .. });
                self.book.dial_failed(connection_id, reached_self);
                if reached_self {
                    info!("a join address is our own; not dialling it again");
                } else {
                    debug!(peer = ?peer_id, error = %error, "dial failed");
                    if let DialError::Transport(failed) = &error {
                        for (addr, e) in failed {
                            self.refused(addr, true, &error_chain(e));
                        }
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                let error = error_chain(&error);
                debug!(from = %send_back_addr, %error, "incoming connection failed");
                self.refused(&send_back_addr, false, &error);
            }
            SwarmEvent::ListenerError { error, .. } => warn!(error = %error, "listener error"),
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => warn!(?addresses, ?reason, "listener closed"),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                info!(%address, "no longer listening")
            }
            other => trace!(event = ?other, "swarm event"),
        }
        ControlFlow::Continue(())
    }

    async fn handle_behaviour_event(&mut self, event: BehaviourEvent) -> ControlFlow<()> {
        match event {
            BehaviourEvent::Gossipsub(event) => self.handle_gossip(event).await,
            BehaviourEvent::Msg(event) => self.handle_msg(event).await,
            BehaviourEvent::Fetch(event) => self.handle_fetch(Lane::Fetch, event).await,
            BehaviourEvent::Invoke(event) => self.handle_fetch(Lane::Invoke, event).await,
            BehaviourEvent::Identify(event) => {
                self.handle_identify(event);
                ControlFlow::Continue(())
            }
            BehaviourEvent::Mdns(event) => {
                self.handle_mdns(event);
                ControlFlow::Continue(())
            }
        }
    }

    async fn handle_gossip(&mut self, event: gossipsub::Event) -> ControlFlow<()> {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let ticket = GossipTicket {
                    id: message_id,
                    via: propagation_source,
                };
                if self
                    .graylist
                    .is_graylisted(&propagation_source, Instant::now())
                {
                    trace!(via = %propagation_source, "gossip from a graylisted peer dropped unread");
                    self.handle_command(Command::JudgeGossip {
                        ticket,
                        verdict: GossipVerdict::Ignore,
                    });
                    return ControlFlow::Continue(());
                }
                let source = match message.source {
                    Some(source) if message.topic == self.topic => source,
                    // Strict validation rejects unsigned messages; nothing
                    // else is published on other topics.
                    _ => {
                        debug!(via = %propagation_source, topic = %message.topic, "unsigned or off-topic gossip rejected");
                        self.handle_command(Command::JudgeGossip {
                            ticket,
                            verdict: GossipVerdict::Reject,
                        });
                        return ControlFlow::Continue(());
                    }
                };
                return self
                    .emit(NetEvent::Gossip {
                        source,
                        data: message.data,
                        ticket,
                    })
                    .await;
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                let messages = (failed_messages.priority + failed_messages.non_priority) as u64;
                if let Some(d) = self.slow_peers.note(peer_id, messages, Instant::now()) {
                    warn!(
                        "{} peers could not take {} gossip messages since the last such warning (their send queues were full); anti-entropy brings them what they missed",
                        d.peers, d.messages
                    );
                }
            }
            other => trace!(event = ?other, "gossipsub event"),
        }
        ControlFlow::Continue(())
    }

    async fn handle_msg(
        &mut self,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) -> ControlFlow<()> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let flow = self
                        .emit(NetEvent::Message {
                            from: peer,
                            data: request,
                        })
                        .await;
                    if flow.is_continue()
                        && self
                            .swarm
                            .behaviour_mut()
                            .msg
                            .send_response(channel, Vec::new())
                            .is_err()
                    {
                        debug!(%peer, "message acknowledgement dropped: stream already closed");
                    }
                    return flow;
                }
                request_response::Message::Response { request_id, .. } => {
                    if let Some(pending) = self.pending_sends.remove(&request_id) {
                        pending.end(Ok(()));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, error = %error, "one-way message failed");
                if let Some(pending) = self.pending_sends.remove(&request_id) {
                    pending.end(Err(NetError::Request {
                        peer,
                        source: error,
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, error = %error, "inbound message failed")
            }
            request_response::Event::ResponseSent { .. } => {}
        }
        ControlFlow::Continue(())
    }

    /// The request/response behaviour of `lane`.
    fn lane(
        &mut self,
        lane: Lane,
    ) -> &mut request_response::Behaviour<super::behaviour::FetchCodec> {
        match lane {
            Lane::Fetch => &mut self.swarm.behaviour_mut().fetch,
            Lane::Invoke => &mut self.swarm.behaviour_mut().invoke,
        }
    }

    async fn handle_fetch(
        &mut self,
        lane: Lane,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) -> ControlFlow<()> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let (from, data, reply) = (peer, request, FetchReply { channel, lane });
                    return self
                        .emit(match lane {
                            Lane::Fetch => NetEvent::Fetch { from, data, reply },
                            Lane::Invoke => NetEvent::Invoke { from, data, reply },
                        })
                        .await;
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(pending) = self.pending_fetches.remove(&(lane, request_id)) {
                        pending.end(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, error = %error, ?lane, "request failed");
                if let Some(pending) = self.pending_fetches.remove(&(lane, request_id)) {
                    pending.end(Err(NetError::Request {
                        peer,
                        source: error,
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, error = %error, "inbound fetch failed")
            }
            request_response::Event::ResponseSent { .. } => {}
        }
        ControlFlow::Continue(())
    }

    fn handle_identify(&mut self, event: identify::Event) {
        match event {
            identify::Event::Received { peer_id, info, .. } => {
                if info.protocol_version != IDENTIFY_PROTOCOL {
                    debug!(
                        peer = %peer_id,
                        protocol = %info.protocol_version,
                        "not a peerbatch node; its addresses are not remembered"
                    );
                    return;
                }
                trace!(peer = %peer_id, addrs = ?info.listen_addrs, "identified");
                self.remember(peer_id, info.listen_addrs);
            }
            other => trace!(event = ?other, "identify event"),
        }
    }

    fn handle_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    debug!(%peer, ?addrs, "discovered via mDNS");
                    self.remember(peer, addrs);
                    if !self.swarm.is_connected(&peer) {
                        if let Some(opts) = self.book.dial_now(peer, Instant::now()) {
                            self.dial(opts);
                        }
                    }
                }
            }
            mdns::Event::Expired(gone) => trace!(?gone, "mDNS records expired"),
        }
    }

    /// Warns about a failed connection with `remote` if an operator must fix its cause.
    fn refused(&mut self, remote: &Multiaddr, dialled: bool, error: &str) {
        if let Some(warning) = self.refusals.note(remote, dialled, error, Instant::now()) {
            warn!("{warning}");
        }
    }

    /// Remember addresses for redials and make them available to request-response dials.
    fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        for addr in self.book.add_addrs(peer, addrs, Instant::now()) {
            self.swarm.add_peer_address(peer, addr);
        }
    }

    fn redial(&mut self) {
        let swarm = &self.swarm;
        let dials = self
            .book
            .due(Instant::now(), |peer| swarm.is_connected(peer));
        for opts in dials {
            self.dial(opts);
        }
    }

    fn dial(&mut self, opts: DialOpts) {
        let connection = opts.connection_id();
        let peer = opts.get_peer_id();
        if let Err(error) = self.swarm.dial(opts) {
            // The swarm refuses to dial our own listen addresses, reporting `NoAddresses`.
            let reached_self = matches!(error, DialError::NoAddresses);
            self.book.dial_failed(connection, reached_self);
            // Otherwise usually "already connected / dialling", which is fine.
            trace!(peer = ?peer, error = %error, "dial not started");
        }
    }
}
