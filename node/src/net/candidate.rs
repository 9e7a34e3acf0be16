//! A waiting node's side of approval (`peerbatch node --wait-for-approval`): the host name it
//! shows, the keyed nodes it has reached, and its one approval.
//!
//! Owns accepting the first approval only (trust on first approval: later ones are refused)
//! and storing its key as the data dir's key file (mode 0600, never over an existing file)
//! before the admin is told it was taken. The admission exchange (`cluster`) checks an approval
//! before handing it here; the node waits on [`Candidate::approved`]. Must not touch the network.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;

use super::{lobby::host_name, ClusterKey, NetError};

/// Most keyed nodes remembered as reached (for progress only).
const MAX_REACHED: usize = 64;

/// The approval a waiting node took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub key: ClusterKey,
    /// The admin that handed it over (proved by TLS).
    pub by: PeerId,
}

/// What a waiting node has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Keyed nodes that answered "not approved yet", each with where and when last.
    pub reached: Vec<(PeerId, Multiaddr, Instant)>,
}

/// Why an approval was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    #[error("this node already took an approval (from {0}); it accepts only one")]
    AlreadyApproved(PeerId),
    #[error("cannot store the approved cluster key")]
    Store(#[source] NetError),
}

struct State {
    approval: Option<Approval>,
    reached: HashMap<PeerId, (Multiaddr, Instant)>,
}

/// A waiting node's approval slot; cheap to clone.
#[derive(Clone)]
pub struct Candidate {
    host: Arc<str>,
    key_file: Arc<PathBuf>,
    state: Arc<Mutex<State>>,
    approved: watch::Sender<Option<Approval>>,
}

impl Candidate {
    /// A node on host `host` that will store its key at `key_file`.
    pub fn new(host: &str, key_file: PathBuf) -> Candidate {
        Candidate {
            host: host_name(host).into(),
            key_file: Arc::new(key_file),
            state: Arc::new(Mutex::new(State {
                approval: None,
                reached: HashMap::new(),
            })),
            approved: watch::Sender::new(None),
        }
    }

    /// The host name this node shows to keyed nodes.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the approval (at once if one was taken already).
    pub async fn approved(&self) -> Approval {
        let mut rx = self.approved.subscribe();
        loop {
            if let Some(approval) = rx.borrow_and_update().clone() {
                return approval;
            }
            // The sender lives in `self`, so this only returns when it changed.
            let _ = rx.changed().await;
        }
    }

    /// The keyed nodes reached so far.
    pub fn progress(&self) -> Progress {
        let mut reached: Vec<_> = self
            .state()
            .reached
            .iter()
            .map(|(p, (a, t))| (*p, a.clone(), *t))
            .collect();
        reached.sort_by_key(|(_, _, t)| std::cmp::Reverse(*t));
        Progress { reached }
    }

    /// A keyed node answered that this one is not approved yet.
    pub(super) fn reached(&self, peer: PeerId, addr: &Multiaddr) {
        let mut state = self.state();
        if state.reached.len() < MAX_REACHED || state.reached.contains_key(&peer) {
            state.reached.insert(peer, (addr.clone(), Instant::now()));
        }
    }

    /// Takes `key` from admin `by` if no approval was taken before: stores it, then says so.
    pub(super) fn accept(&self, key: ClusterKey, by: PeerId) -> Result<(), CandidateError> {
        let mut state = self.state();
        if let Some(first) = &state.approval {
            return Err(CandidateError::AlreadyApproved(first.by));
        }
        key.write_new(&self.key_file)
            .map_err(CandidateError::Store)?;
        let approval = Approval { key, by };
        state.approval = Some(approval.clone());
        self.approved.send_replace(Some(approval));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_first_approval_is_taken_and_its_key_is_stored() {
        let path = super::super::tests::temp_path("candidate.key");
        let candidate = Candidate::new("lab 1", path.clone());
        assert_eq!(candidate.host(), "lab?1");
        let (first, second) = (PeerId::random(), PeerId::random());
        let key = ClusterKey::generate(vec![first]);
        candidate
            .accept(key.clone(), first)
            .expect("first approval");
        let err = candidate
            .accept(ClusterKey::generate(vec![second]), second)
            .expect_err("a second approval");
        assert!(matches!(err, CandidateError::AlreadyApproved(p) if p == first));
        assert_eq!(ClusterKey::read(&path).expect("stored"), key);
        assert_eq!(candidate.approved().await, Approval { key, by: first });
        let _ = std::fs::remove_file(&path);
    }
}
