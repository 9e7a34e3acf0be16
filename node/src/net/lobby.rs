//! A keyed node's waiting room: peers without the cluster key that asked to join
//! (`peerbatch node --wait-for-approval`), and the approvals an admin of this node armed for
//! some of them.
//!
//! Owns that bounded list (at most [`MAX_WAITING`] peers, each forgotten [`FORGET_AFTER`] after
//! it was last seen; newcomers are turned away while it is full, so a flood of made-up peers
//! can hide a newcomer but never grow it) and the armed approvals (only for listed peers, each
//! for [`APPROVAL_LASTS`]). The admission exchange (`cluster`) takes armed approvals and the
//! failed-connection observer (`doorbell`) lists peers; the node reads the list and arms
//! approvals. Must not touch the network or any file.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::ClusterKey;

/// Most peers listed at once.
pub const MAX_WAITING: usize = 64;
/// A listed peer not seen for this long is forgotten (a waiting node redials every 10 s).
pub const FORGET_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long an armed approval waits for its peer's next connection.
pub const APPROVAL_LASTS: Duration = Duration::from_secs(60);
/// Longest host name kept, in characters.
pub const MAX_HOST: usize = 64;

/// One peer waiting for approval, as this node met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingPeer {
    /// Proved by the peer's TLS certificate.
    pub peer: PeerId,
    /// The host name it gave ([`host_name`]'s form), not proved by anything.
    pub host: String,
    /// Where it was last met: its listen address when this node dialled it (`dialled`), else
    /// the address its connection came from.
    pub addr: Multiaddr,
    pub dialled: bool,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

/// Why an approval could not be armed or did not complete.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApproveError {
    #[error(
        "this node ({me}) is not an admin of its cluster (the admins are the `admin` lines of \
         its cluster key file): run `peerbatch approve` on an admin node"
    )]
    NotAdmin { me: PeerId },
    #[error(
        "peer {0} is not waiting here: `peerbatch nodes --waiting` lists the peers this node \
         met that wait for approval"
    )]
    NotWaiting(PeerId),
    #[error("peer {0} did not connect within {secs} s of the approval", secs = APPROVAL_LASTS.as_secs())]
    Unreached(PeerId),
    #[error("approving peer {peer} failed: {reason}")]
    Failed { peer: PeerId, reason: String },
}

/// An approval just armed: where to dial the peer now, if this node knows its listen address,
/// and the outcome to wait for.
pub struct Arming {
    pub dial: Option<Multiaddr>,
    pub outcome: oneshot::Receiver<Result<(), ApproveError>>,
}

/// An approval waiting for its peer's next connection.
pub(super) struct Armed {
    until: Instant,
    done: oneshot::Sender<Result<(), ApproveError>>,
}

impl Armed {
    /// Reports how the exchange with the peer ended to whoever armed it.
    pub(super) fn finish(self, result: Result<(), ApproveError>) {
        let _ = self.done.send(result);
    }
}

struct Listed {
    info: WaitingPeer,
    seen: Instant,
}

#[derive(Default)]
struct Room {
    waiting: HashMap<PeerId, Listed>,
    armed: HashMap<PeerId, Armed>,
}

impl Room {
    fn expire(&mut self, now: Instant) {
        self.waiting
            .retain(|_, l| now.duration_since(l.seen) < FORGET_AFTER);
        self.armed.retain(|_, a| now < a.until);
    }
}

/// The cluster key this node approves with, and its waiting room; cheap to clone.
#[derive(Clone)]
pub struct Lobby {
    key: Arc<ClusterKey>,
    local: PeerId,
    room: Arc<Mutex<Room>>,
}

impl Lobby {
    /// The lobby of a node `local` holding `key`.
    pub fn new(key: ClusterKey, local: PeerId) -> Lobby {
        Lobby {
            key: Arc::new(key),
            local,
            room: Arc::default(),
        }
    }

    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    fn room(&self) -> MutexGuard<'_, Room> {
        // A panic while holding it leaves a consistent map.
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists (or refreshes) a waiting peer. Returns whether it is newly listed; a newcomer
    /// while the list is full is not listed.
    pub(super) fn met(&self, peer: PeerId, host: &str, addr: &Multiaddr, dialled: bool) -> bool {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut room = self.room();
        room.expire(now);
        if let Some(listed) = room.waiting.get_mut(&peer) {
            listed.seen = now;
            listed.info.last_seen = wall;
            listed.info.host = host_name(host);
            // A listen address we dialled stays more useful than a connection's source port.
            if dialled || !listed.info.dialled {
                listed.info.addr = addr.clone();
                listed.info.dialled = dialled;
            }
            return false;
        }
        if room.waiting.len() >= MAX_WAITING {
            return false;
        }
        let info = WaitingPeer {
            peer,
            host: host_name(host),
            addr: addr.clone(),
            dialled,
            first_seen: wall,
            last_seen: wall,
        };
        room.waiting.insert(peer, Listed { info, seen: now });
        true
    }

    /// The peers waiting now, first met first.
    pub fn waiting(&self) -> Vec<WaitingPeer> {
        let mut room = self.room();
        room.expire(Instant::now());
        let mut list: Vec<WaitingPeer> = room.waiting.values().map(|l| l.info.clone()).collect();
        list.sort_by_key(|w| (w.first_seen, w.peer));
        list
    }

    /// Arms an approval of `peer`, handed over at its next connection with this node (within
    /// [`APPROVAL_LASTS`]).
    pub fn arm(&self, peer: PeerId) -> Result<Arming, ApproveError> {
        if !self.key.admins.contains(&self.local) {
            return Err(ApproveError::NotAdmin { me: self.local });
        }
        let now = Instant::now();
        let mut room = self.room();
        room.expire(now);
        let listed = room
            .waiting
            .get(&peer)
            .ok_or(ApproveError::NotWaiting(peer))?;
        let dial = listed.info.dialled.then(|| listed.info.addr.clone());
        let (done, outcome) = oneshot::channel();
        let until = now + APPROVAL_LASTS;
        room.armed.insert(peer, Armed { until, done });
        Ok(Arming { dial, outcome })
    }

    /// The approval armed for `peer`, if any and still valid: it is used up.
    pub(super) fn take_armed(&self, peer: &PeerId) -> Option<Armed> {
        let mut room = self.room();
        room.expire(Instant::now());
        room.armed.remove(peer)
    }

    /// `peer` holds the key now: it no longer waits.
    pub(super) fn approved(&self, peer: &PeerId) {
        self.room().waiting.remove(peer);
    }
}

/// A host name as shown: at most [`MAX_HOST`] characters, each an ASCII letter, digit, `-`,
/// `.` or `_`; anything else becomes `?`. Empty: `?`.
pub fn host_name(given: &str) -> String {
    let name: String = given
        .chars()
        .take(MAX_HOST)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if name.is_empty() {
        "?".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lobby(admin: bool) -> Lobby {
        let me = PeerId::random();
        let admins = if admin { vec![me] } else { Vec::new() };
        Lobby::new(ClusterKey::generate(admins), me)
    }

    fn addr() -> Multiaddr {
        "/ip4/127.0.0.9/tcp/4001".parse().expect("addr")
    }

    #[test]
    fn the_waiting_list_never_grows_past_its_cap_and_keeps_those_already_listed() {
        let lobby = lobby(true);
        let first = PeerId::random();
        assert!(lobby.met(first, "first", &addr(), false));
        for n in 1..MAX_WAITING {
            assert!(lobby.met(PeerId::random(), &format!("h{n}"), &addr(), false));
        }
        for _ in 0..1_000 {
            assert!(!lobby.met(PeerId::random(), "flood", &addr(), false));
        }
        let listed = lobby.waiting();
        assert_eq!(listed.len(), MAX_WAITING);
        assert!(listed.iter().any(|w| w.peer == first));
        assert!(listed.iter().all(|w| w.host != "flood"));
        // A listed peer is still refreshed while the list is full.
        assert!(!lobby.met(first, "renamed", &addr(), true));
        let again = lobby.waiting();
        let entry = again.iter().find(|w| w.peer == first).expect("listed");
        assert_eq!((entry.host.as_str(), entry.dialled), ("renamed", true));
    }

    #[test]
    fn host_names_are_bounded_and_printable() {
        assert_eq!(host_name("lab-07.example"), "lab-07.example");
        assert_eq!(host_name("a b\n\u{1b}[31m"), "a?b???31m");
        assert_eq!(host_name(""), "?");
        assert_eq!(host_name(&"x".repeat(1000)).len(), MAX_HOST);
    }

    #[test]
    fn only_an_admin_arms_an_approval_and_only_for_a_listed_peer() {
        let peer = PeerId::random();
        let member = lobby(false);
        member.met(peer, "h", &addr(), true);
        assert!(matches!(
            member.arm(peer),
            Err(ApproveError::NotAdmin { .. })
        ));

        let admin = lobby(true);
        assert_eq!(
            admin.arm(peer).map(|_| ()),
            Err(ApproveError::NotWaiting(peer))
        );
        admin.met(peer, "h", &addr(), true);
        let arming = admin.arm(peer).expect("armed");
        assert_eq!(arming.dial, Some(addr()));
        assert!(admin.take_armed(&peer).is_some());
        assert!(
            admin.take_armed(&peer).is_none(),
            "an approval is used once"
        );
    }
}
