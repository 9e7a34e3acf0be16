//! Connections that fail for a reason an operator has to fix: the other side holds another
//! cluster key, or speaks another version of the node's protocols.
//!
//! Owns recognising those two among failed connections and saying so at most once per remote
//! host per [`REPEAT_AFTER`] (redials would otherwise repeat it every few seconds). Everything
//! else that fails (a peer that is down, a reset) is ordinary and stays at debug level. Must not
//! touch the Swarm or decide what to dial.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use libp2p::{multiaddr::Protocol, Multiaddr};

/// How long a host's refusal is not repeated.
pub(super) const REPEAT_AFTER: Duration = Duration::from_secs(600);

/// Why a connection failed, when it is the operator's to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The cluster admission exchange failed: the keys differ (or one side has none).
    ClusterKey,
    /// Admission passed (or was not asked for) but multistream-select found no protocol both
    /// sides speak (libp2p's texts for it on the listening and the dialling side).
    Version,
}

impl Refusal {
    /// Recognises a refusal in a failed connection's error text (its whole source chain).
    pub(super) fn of(error: &str) -> Option<Refusal> {
        if error.contains(super::cluster::REFUSED) {
            Some(Refusal::ClusterKey)
        } else if error.contains("Multistream select failed")
            || error.contains("Protocol negotiation failed")
        {
            Some(Refusal::Version)
        } else {
            None
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Refusal::ClusterKey => {
                "it does not hold this node's cluster key (or runs open); start it with a token \
                 from `peerbatch invite` here (--join-token), or give both one --cluster-key file"
            }
            Refusal::Version => {
                "it speaks none of this node's connection protocols, so it is another peerbatch \
                 version (or not a peerbatch node); run the same version on every node"
            }
        }
    }
}

/// When each remote host was last reported.
#[derive(Default)]
pub(super) struct Refusals {
    reported: HashMap<String, Instant>,
}

impl Refusals {
    /// The warning to log for a failed connection with `remote` (`dialled`: we dialled it), or
    /// `None` when the failure is ordinary or this host was reported within [`REPEAT_AFTER`].
    pub(super) fn note(
        &mut self,
        remote: &Multiaddr,
        dialled: bool,
        error: &str,
        now: Instant,
    ) -> Option<String> {
        let refusal = Refusal::of(error)?;
        let host = host(remote);
        self.reported
            .retain(|_, at| now.duration_since(*at) < REPEAT_AFTER);
        if self.reported.contains_key(&host) {
            return None;
        }
        self.reported.insert(host.clone(), now);
        let way = if dialled { "to" } else { "from" };
        Some(format!(
            "connection {way} {host} refused: {} (said once per host every {} minutes)",
            refusal.advice(),
            REPEAT_AFTER.as_secs() / 60
        ))
    }
}

/// An error and all its sources, as one line (libp2p's transport errors say what failed only
/// in their sources).
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let parts: Vec<String> = anyhow::Chain::new(error).map(ToString::to_string).collect();
    parts.join(": ")
}

/// The IP address in `addr`, or the whole address when it has none (a DNS name).
fn host(addr: &Multiaddr) -> String {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip).to_string()),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip).to_string()),
            _ => None,
        })
        .unwrap_or_else(|| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn only_key_and_version_failures_are_refusals() {
        let key = format!("Failed to negotiate transport protocol(s): [(/ip4/10.0.0.2/tcp/4001: : {}: the peer does not hold our cluster key)]", super::super::cluster::REFUSED);
        assert_eq!(Refusal::of(&key), Some(Refusal::ClusterKey));
        // As the listener and the dialer see a peer that offers no protocol the other knows.
        let listener = "Listen error: Failed to negotiate transport protocol(s): : Multistream select failed: Protocol error: I/O error: not enough input bytes";
        assert_eq!(Refusal::of(listener), Some(Refusal::Version));
        let dialer = "Failed to negotiate transport protocol(s): [(/ip4/10.0.0.2/tcp/4001: : Handshake failed: Protocol negotiation failed.)]";
        assert_eq!(Refusal::of(dialer), Some(Refusal::Version));
        let down = "Failed to negotiate transport protocol(s): [(/ip4/10.0.0.2/tcp/4001: : Connection refused (os error 111))]";
        assert_eq!(Refusal::of(down), None);
    }

    /// A multistream-select message: its length, then the text.
    fn frame(text: &str) -> Vec<u8> {
        let mut out = vec![u8::try_from(text.len()).expect("short")];
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn port(addr: &Multiaddr) -> u16 {
        addr.iter()
            .find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .expect("tcp port")
    }

    /// Our real transport meets a peer that speaks only another security protocol (as a node
    /// of an older version does): libp2p's own error texts must read as a version refusal,
    /// whichever side dialled.
    #[tokio::test]
    async fn a_peer_speaking_another_security_protocol_is_a_version_refusal() {
        use futures::StreamExt;
        use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
        use libp2p::core::Endpoint;
        use libp2p::identity::Keypair;
        use libp2p::Transport;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let keypair = Keypair::generate_ed25519();
        let mut transport =
            super::super::behaviour::build_transport(&keypair, &super::super::Standing::Open)
                .expect("transport");
        let listen = addr("/ip4/127.0.0.1/tcp/0");
        transport
            .listen_on(ListenerId::next(), listen)
            .expect("listen");
        let ours = loop {
            if let TransportEvent::NewAddress { listen_addr, .. } =
                transport.select_next_some().await
            {
                break listen_addr;
            }
        };

        // They dial us and propose only `/noise`.
        let theirs = tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port(&ours)))
                .await
                .expect("connect");
            socket
                .write_all(&frame("/multistream/1.0.0\n"))
                .await
                .expect("write");
            socket.write_all(&frame("/noise\n")).await.expect("write");
            let mut answer = [0u8; 64];
            let _ = socket.read(&mut answer).await;
        });
        let upgrade = loop {
            if let TransportEvent::Incoming { upgrade, .. } = transport.select_next_some().await {
                break upgrade;
            }
        };
        let Err(error) = upgrade.await else {
            panic!("a connection with no protocol in common was accepted");
        };
        let text = error_chain(&error);
        assert_eq!(Refusal::of(&text), Some(Refusal::Version), "{text}");
        theirs.await.expect("their side");

        // We dial them and they answer every proposal with `na`.
        let server = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let at = server.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = server.accept().await.expect("accept");
            socket
                .write_all(&frame("/multistream/1.0.0\n"))
                .await
                .expect("write");
            let mut proposals = [0u8; 256];
            let _ = socket.read(&mut proposals).await;
            socket.write_all(&frame("na\n")).await.expect("write");
            let _ = socket.read(&mut proposals).await;
        });
        let dial = transport
            .dial(
                addr(&format!("/ip4/127.0.0.1/tcp/{at}")),
                DialOpts {
                    role: Endpoint::Dialer,
                    port_use: PortUse::New,
                },
            )
            .expect("dial starts");
        let Err(error) = dial.await else {
            panic!("a connection with no protocol in common was made");
        };
        let text = error_chain(&error);
        assert_eq!(Refusal::of(&text), Some(Refusal::Version), "{text}");
    }

    #[test]
    fn a_host_is_reported_once_per_window_whatever_its_port() {
        let mut refusals = Refusals::default();
        let error = "Multistream select failed";
        let t0 = Instant::now();
        let first = refusals.note(&addr("/ip4/10.0.0.2/tcp/4001"), true, error, t0);
        let first = first.expect("first refusal is reported");
        assert!(
            first.starts_with("connection to 10.0.0.2 refused: "),
            "{first}"
        );
        let again = refusals.note(&addr("/ip4/10.0.0.2/tcp/51234"), false, error, t0);
        assert_eq!(again, None, "same host, another port");
        let other = refusals.note(&addr("/ip4/10.0.0.3/tcp/4001"), false, error, t0);
        assert!(other
            .expect("another host")
            .starts_with("connection from 10.0.0.3"));
        let later = t0 + REPEAT_AFTER;
        let repeated = refusals.note(&addr("/ip4/10.0.0.2/tcp/4001"), true, error, later);
        assert!(repeated.is_some(), "reported again after the window");
        let ordinary = refusals.note(&addr("/ip4/10.0.0.9/tcp/1"), true, "timed out", later);
        assert_eq!(ordinary, None);
    }
}
