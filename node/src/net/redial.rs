//! Address book and redial schedule: which peers and `join` addresses we want to stay connected
//! to, the addresses we know for them, and when to dial them next (with backoff).
//!
//! Pure bookkeeping: it produces `DialOpts` for the event loop to dial and must not touch the
//! `Swarm` itself.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::{
    multiaddr::Protocol,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId,
    },
    Multiaddr, PeerId,
};

/// First retry delay after a failed or lost connection; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Peers (other than `join` targets) unreachable for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most addresses remembered per peer; the oldest is dropped first.
const MAX_ADDRS_PER_PEER: usize = 16;

#[derive(Debug)]
struct Backoff {
    delay: Duration,
    next: Instant,
}

impl Backoff {
    /// Due immediately.
    fn new(now: Instant) -> Self {
        Self {
            delay: INITIAL_BACKOFF,
            next: now,
        }
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A dial was just started: wait the current delay before the next one, then back off.
    fn attempted(&mut self, now: Instant) {
        self.next = now + self.delay;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}

/// A configured `join` address.
#[derive(Debug)]
struct JoinTarget {
    /// Dialable address (without any `/p2p` suffix).
    addr: Multiaddr,
    /// Identity required at this address, from a `/p2p/<id>` suffix in the configuration.
    pinned: Option<PeerId>,
    /// Identity last found at this address.
    found: Option<PeerId>,
    /// Our outstanding dial to this address, if any.
    pending: Option<ConnectionId>,
    backoff: Backoff,
}

impl JoinTarget {
    fn peer(&self) -> Option<PeerId> {
        self.pinned.or(self.found)
    }
}

#[derive(Debug)]
struct KnownPeer {
    addrs: Vec<Multiaddr>,
    backoff: Backoff,
    /// `None` while connected.
    disconnected_since: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct PeerBook {
    local: PeerId,
    joins: Vec<JoinTarget>,
    peers: HashMap<PeerId, KnownPeer>,
}

impl PeerBook {
    pub(super) fn new(local: PeerId, join: &[Multiaddr], now: Instant) -> Self {
        let joins = join
            .iter()
            .map(|addr| JoinTarget {
                addr: without_p2p(addr),
                pinned: addr.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                }),
                found: None,
                pending: None,
                backoff: Backoff::new(now),
            })
            .collect();
        Self {
            local,
            joins,
            peers: HashMap::new(),
        }
    }

    /// Remember dialable addresses for `peer`; returns the ones that were new.
    pub(super) fn add_addrs(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
        now: Instant,
    ) -> Vec<Multiaddr> {
        if peer == self.local {
            return Vec::new();
        }
        let entry = self.peers.entry(peer).or_insert_with(|| KnownPeer {
            addrs: Vec::new(),
            backoff: Backoff::new(now),
            disconnected_since: Some(now),
        });
        let mut added = Vec::new();
        for addr in addrs {
            let addr = without_p2p(&addr);
            if !is_dialable(&addr) || entry.addrs.contains(&addr) {
                continue;
            }
            if entry.addrs.len() >= MAX_ADDRS_PER_PEER {
                entry.addrs.remove(0);
            }
            entry.addrs.push(addr.clone());
            added.push(addr);
        }
        added
    }

    /// A connection to `peer` was established; `dialed` is the address if we dialled it.
    pub(super) fn connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        dialed: Option<&Multiaddr>,
        now: Instant,
    ) {
        for join in &mut self.joins {
            if join.pending == Some(connection) {
                join.pending = None;
                join.found = Some(peer);
                join.backoff = Backoff::new(now);
            }
        }
        self.add_addrs(peer, dialed.cloned(), now);
        if let Some(known) = self.peers.get_mut(&peer) {
            known.disconnected_since = None;
            known.backoff = Backoff::new(now);
        }
    }

    /// The last connection to `peer` closed: redial it (and any join address it was found at)
    /// at the next opportunity.
    pub(super) fn disconnected(&mut self, peer: PeerId, now: Instant) {
        if let Some(known) = self.peers.get_mut(&peer) {
            known.disconnected_since = Some(now);
            known.backoff = Backoff::new(now);
        }
        for join in self.joins.iter_mut().filter(|j| j.peer() == Some(peer)) {
            join.backoff = Backoff::new(now);
        }
    }

    /// A dial we started has failed (or could not be started). `reached_self` means the
    /// address turned out to be our own (e.g. every node got the same `join` list): such a join
    /// target is never dialled again.
    pub(super) fn dial_failed(&mut self, connection: ConnectionId, reached_self: bool) {
        for join in &mut self.joins {
            if join.pending == Some(connection) {
                join.pending = None;
                if reached_self {
                    join.found = Some(self.local);
                }
            }
        }
    }

    /// Dial `peer` now at its known addresses (subject to backoff bookkeeping), if we know any.
    pub(super) fn dial_now(&mut self, peer: PeerId, now: Instant) -> Option<DialOpts> {
        let known = self.peers.get_mut(&peer)?;
        if known.addrs.is_empty() {
            return None;
        }
        known.backoff.attempted(now);
        Some(dial_peer(peer, known.addrs.clone()))
    }

    /// Everything that is due for a (re)dial now. Also forgets long-unreachable peers.
    pub(super) fn due(
        &mut self,
        now: Instant,
        is_connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<DialOpts> {
        let mut dials = Vec::new();
        for join in &mut self.joins {
            if join
                .peer()
                .is_some_and(|p| p == self.local || is_connected(&p))
                || join.pending.is_some()
                || !join.backoff.due(now)
            {
                continue;
            }
            let opts = match join.pinned {
                Some(peer) => dial_peer(peer, vec![join.addr.clone()]),
                // Dial by address only: whoever answers there is who we want, even if the node
                // at that address came back with a new identity.
                None => DialOpts::unknown_peer_id()
                    .address(join.addr.clone())
                    .build(),
            };
            join.pending = Some(opts.connection_id());
            join.backoff.attempted(now);
            dials.push(opts);
        }

        let joins = &self.joins;
        self.peers.retain(|peer, known| {
            is_connected(peer)
                || joins.iter().any(|j| j.peer() == Some(*peer))
                || known
                    .disconnected_since
                    .is_none_or(|since| now.duration_since(since) < FORGET_AFTER)
        });
        for (peer, known) in &mut self.peers {
            if known.addrs.is_empty()
                || !known.backoff.due(now)
                || is_connected(peer)
                || joins.iter().any(|j| j.peer() == Some(*peer))
            {
                continue;
            }
            known.backoff.attempted(now);
            dials.push(dial_peer(*peer, known.addrs.clone()));
        }
        dials
    }
}

fn dial_peer(peer: PeerId, addrs: Vec<Multiaddr>) -> DialOpts {
    DialOpts::peer_id(peer)
        .addresses(addrs)
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .build()
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Only TCP addresses with a concrete host are worth remembering for our transport.
fn is_dialable(addr: &Multiaddr) -> bool {
    let mut has_tcp = false;
    for p in addr.iter() {
        match p {
            Protocol::Tcp(port) if port != 0 => has_tcp = true,
            Protocol::Ip4(ip) if ip.is_unspecified() => return false,
            Protocol::Ip6(ip) if ip.is_unspecified() => return false,
            _ => {}
        }
    }
    has_tcp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("valid multiaddr")
    }

    #[test]
    fn join_targets_are_dialled_then_backed_off_until_connected() {
        let t0 = Instant::now();
        let local = PeerId::random();
        let remote = PeerId::random();
        let mut book = PeerBook::new(local, &[addr("/ip4/127.0.0.1/tcp/4001")], t0);
        let nobody = |_: &PeerId| false;

        let dials = book.due(t0, nobody);
        assert_eq!(dials.len(), 1);
        let first = dials[0].connection_id();
        // Still pending: nothing new.
        assert!(book.due(t0 + Duration::from_secs(60), nobody).is_empty());
        book.dial_failed(first, false);
        assert!(book.due(t0 + Duration::from_secs(1), nobody).is_empty());
        let dials = book.due(t0 + INITIAL_BACKOFF, nobody);
        assert_eq!(dials.len(), 1);

        // Connected: no more dials while the peer stays connected.
        book.connected(remote, dials[0].connection_id(), None, t0 + INITIAL_BACKOFF);
        let connected = |p: &PeerId| *p == remote;
        assert!(book
            .due(t0 + Duration::from_secs(600), connected)
            .is_empty());

        // Lost: redialled straight away, and only once (by the join target, not also as a
        // known peer).
        let t1 = t0 + Duration::from_secs(700);
        book.disconnected(remote, t1);
        assert_eq!(book.due(t1, nobody).len(), 1);
    }

    #[test]
    fn known_peers_are_redialled_with_backoff_and_eventually_forgotten() {
        let t0 = Instant::now();
        let local = PeerId::random();
        let peer = PeerId::random();
        let mut book = PeerBook::new(local, &[], t0);
        let added = book.add_addrs(
            peer,
            [
                addr("/ip4/10.0.0.2/tcp/4001"),
                addr("/ip4/0.0.0.0/tcp/4001"),
                addr("/ip4/10.0.0.2/udp/4001/quic-v1"),
            ],
            t0,
        );
        assert_eq!(added, vec![addr("/ip4/10.0.0.2/tcp/4001")]);
        assert!(book
            .add_addrs(local, [addr("/ip4/10.0.0.3/tcp/1")], t0)
            .is_empty());

        let nobody = |_: &PeerId| false;
        assert_eq!(book.due(t0, nobody).len(), 1);
        assert!(book.due(t0 + Duration::from_secs(1), nobody).is_empty());
        assert_eq!(book.due(t0 + Duration::from_secs(2), nobody).len(), 1);
        // Backoff grows: 4 s after the second attempt.
        assert!(book.due(t0 + Duration::from_secs(5), nobody).is_empty());
        assert_eq!(book.due(t0 + Duration::from_secs(6), nobody).len(), 1);

        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert!(book.due(later, nobody).is_empty());
        assert!(book.dial_now(peer, later).is_none(), "forgotten");
    }

    #[test]
    fn our_own_join_address_is_dropped() {
        let t0 = Instant::now();
        let mut book = PeerBook::new(PeerId::random(), &[addr("/ip4/10.0.0.1/tcp/4001")], t0);
        let nobody = |_: &PeerId| false;
        let dials = book.due(t0, nobody);
        assert_eq!(dials.len(), 1);
        book.dial_failed(dials[0].connection_id(), true);
        assert!(book.due(t0 + Duration::from_secs(3600), nobody).is_empty());
    }
}
