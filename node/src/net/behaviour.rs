//! Construction of the libp2p transport, the composed `NetworkBehaviour` and the `Swarm`.
//!
//! Owns protocol names, size limits and per-protocol settings. It only builds things: it must not
//! drive the swarm (that is the event loop's job) or know what the carried bytes mean.

use std::time::Duration;

use libp2p::{
    connection_limits::{self, ConnectionLimits},
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version},
    dns, gossipsub, identify,
    identity::Keypair,
    mdns,
    request_response::{self, ProtocolSupport},
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    tcp, yamux, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport,
};
use tracing::{info, warn};

use super::{
    cluster, codec::LengthPrefixed, doorbell::Doorbell, tls, NetConfig, NetError, Standing,
};

/// The single gossipsub topic.
const GOSSIP_TOPIC: &str = "peerbatch/ledger/1";
/// Largest gossipsub frame we send or accept.
const GOSSIP_MAX_BYTES: usize = 64 * 1024;
/// How long gossipsub remembers a message's id to drop its copies.
const SEEN_MESSAGES_KEPT: Duration = Duration::from_secs(10);
/// One-way direct messages.
const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerbatch/msg/1");
const MSG_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Request/response fetches (version 2: chunk batches and `Have`).
const FETCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerbatch/fetch/2");
const FETCH_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Function calls one node hands another to run, and requests for its
/// record of calls (version 2: the request became an enum; request and answer alike
/// bounded by the protocol codec's 16 MiB).
const INVOKE_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerbatch/invoke/2");
/// A call may run for the longest function time-out (15 min); a margin more.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(16 * 60);
/// Identify protocol version; peers announcing anything else are not peerbatch nodes.
pub(super) const IDENTIFY_PROTOCOL: &str = "/peerbatch/id/1";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent one-way messages per connection before new ones are refused.
const MSG_MAX_CONCURRENT_STREAMS: usize = 256;
/// Time allowed for the TLS + cluster admission + yamux handshake of a new connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections nobody is using are closed after this long (gossipsub's long-lived streams keep
/// links between subscribed peerbatch nodes open anyway; the default would close idle links
/// after seconds).
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Connections to one peer (two dialling each other at once may both stand).
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Incoming connections still in their handshake.
const MAX_PENDING_INCOMING: u32 = 64;
/// Established incoming connections, and established connections in all (a
/// node dials every node the ledger announces, so this bounds the mesh it joins
/// fully).
const MAX_ESTABLISHED_INCOMING: u32 = 1_024;
const MAX_ESTABLISHED: u32 = 2_048;
pub(super) type MsgCodec = LengthPrefixed<MSG_MAX_BYTES>;
pub(super) type FetchCodec = LengthPrefixed<FETCH_MAX_BYTES>;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) msg: request_response::Behaviour<MsgCodec>,
    pub(super) fetch: request_response::Behaviour<FetchCodec>,
    pub(super) invoke: request_response::Behaviour<FetchCodec>,
    pub(super) identify: identify::Behaviour,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(super) limits: connection_limits::Behaviour,
    pub(super) doorbell: Doorbell,
}

/// Build the swarm described by `cfg` (not yet listening or subscribed).
pub(super) fn build_swarm(cfg: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let transport = build_transport(&cfg.keypair, &cfg.standing)?;
    let behaviour = build_behaviour(&cfg.keypair, cfg.mdns, Doorbell::new(&cfg.standing))?;
    let Ok(builder) = SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_other_transport(|_| transport);
    let Ok(builder) = builder.with_behaviour(|_| behaviour);
    Ok(builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build())
}

/// Subscribe to the gossip topic and return its hash.
pub(super) fn subscribe(swarm: &mut Swarm<Behaviour>) -> Result<gossipsub::TopicHash, NetError> {
    let topic = gossipsub::IdentTopic::new(GOSSIP_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| NetError::Gossipsub(format!("cannot subscribe to {GOSSIP_TOPIC}: {e}")))?;
    Ok(topic.hash())
}

/// TCP (nodelay, with DNS resolution) → TLS with cluster admission inside it → yamux.
pub(super) fn build_transport(
    keypair: &Keypair,
    standing: &Standing,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError> {
    let tcp_config = tcp::Config::default().nodelay(true);
    let tcp: Boxed<tcp::tokio::TcpStream> =
        match dns::tokio::Transport::system(tcp::tokio::Transport::new(tcp_config.clone())) {
            Ok(with_dns) => with_dns.boxed(),
            Err(e) => {
                warn!(error = %e, "no system DNS configuration; /dns addresses will not resolve");
                tcp::tokio::Transport::new(tcp_config).boxed()
            }
        };
    match standing {
        Standing::Member(_) => info!("private network: cluster key in use"),
        Standing::Open => warn!(
            "no cluster key: running open, any node that can reach this one and runs open may join"
        ),
        Standing::Waiting(_) => info!("no cluster key yet: waiting for an admin's approval"),
    }
    let tls = tls::Config::new(keypair, cluster::Admission::new(standing))?;
    let transport = tcp
        .upgrade(Version::V1Lazy)
        .authenticate(tls)
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .boxed();
    Ok(transport)
}

fn build_behaviour(
    keypair: &Keypair,
    enable_mdns: bool,
    doorbell: Doorbell,
) -> Result<Behaviour, NetError> {
    let local_peer_id = keypair.public().to_peer_id();

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Default ids (author + sequence number): repeated identical payloads
        // such as heartbeats are distinct messages; events dedupe by their
        // own hash in the ledger.
        .max_transmit_size(GOSSIP_MAX_BYTES)
        .heartbeat_interval(Duration::from_millis(500))
        // Ids of messages seen, to drop a copy from a second peer: a copy
        // comes within the gossip window (3 heartbeats) or not at all, and a
        // later one costs the ledger a hash lookup. The default minute of
        // ids is a minute of traffic held after a burst (BENCHMARKS,
        // "After the burst").
        .duplicate_cache_time(SEEN_MESSAGES_KEPT)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .flood_publish(true)
        // Nothing is forwarded before the node's verdict (`Net::judge_gossip`).
        .validate_messages()
        .build()
        .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| NetError::Gossipsub(e.to_string()))?;

    let msg = request_response::Behaviour::new(
        [(MSG_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MSG_MAX_CONCURRENT_STREAMS),
    );
    let fetch = request_response::Behaviour::new(
        [(FETCH_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    );
    let invoke = request_response::Behaviour::new(
        [(INVOKE_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(INVOKE_TIMEOUT),
    );

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
            .with_agent_version(format!("peerbatch/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );

    let mdns = if enable_mdns {
        // The default re-queries every 5 minutes; a node started before
        // its neighbours should find them within seconds.
        let config = mdns::Config {
            query_interval: Duration::from_secs(5),
            ..mdns::Config::default()
        };
        Some(mdns::tokio::Behaviour::new(config, local_peer_id).map_err(NetError::Mdns)?)
    } else {
        None
    };

    Ok(Behaviour {
        gossipsub,
        msg,
        fetch,
        invoke,
        identify,
        mdns: Toggle::from(mdns),
        limits: connection_limits::Behaviour::new(connection_limits()),
        doorbell,
    })
}

fn connection_limits() -> ConnectionLimits {
    ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
        .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
        .with_max_established(Some(MAX_ESTABLISHED))
}
