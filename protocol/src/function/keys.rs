//! Function keys: the secrets a caller on the LAN presents to invoke a
//! function through a node's functions listener (`x-functions-key` or
//! `?code=`, as Azure Functions).
//!
//! Owns what the ledger keeps of a key (a label and the blake3 hash of
//! its secret, never the secret), the bounds of a label and of a
//! presented key, a function's keys as its events leave them ([`Keys`]),
//! and judging a presented key against them. Must not draw secrets (the
//! node takes them from the OS) nor know the function events that carry
//! keys (`function` folds them into [`Keys`]).

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// Most keys one function has that are not revoked; a create beyond
/// them counts for nothing.
pub const MAX_KEYS: usize = 64;
/// Longest key a caller may present (a key the node makes is 43 bytes).
pub const MAX_PRESENTED_BYTES: usize = 256;
/// What a key's secret is hashed under, so its hash is no other hash.
const CONTEXT: &str = "peerbatch 2026-12 function key";

/// The blake3 hash of a key's secret: all the ledger and the nodes keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `secret` as a caller presents it.
    pub fn of(secret: &[u8]) -> KeyHash {
        KeyHash(blake3::derive_key(CONTEXT, secret))
    }

    /// The hash of a key a caller presented, refused if it is empty or
    /// longer than any key (before it is hashed).
    pub fn presented(secret: &[u8]) -> Result<KeyHash, KeyRefused> {
        match secret.len() {
            0 => Err(KeyRefused::Missing),
            len if len > MAX_PRESENTED_BYTES => Err(KeyRefused::TooLong { len }),
            _ => Ok(KeyHash::of(secret)),
        }
    }
}

/// Why a presented key does not open a function. Says what was wrong,
/// never which keys exist.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    #[error("no function key: give one in the x-functions-key header or the code query parameter")]
    Missing,
    #[error("the function key is {len} bytes; a key is at most {MAX_PRESENTED_BYTES}")]
    TooLong { len: usize },
    #[error("the function key is not one of this function's keys")]
    Wrong,
    #[error("the function key was revoked")]
    Revoked,
}

/// Checks a key's label: 1 to 64 letters, digits, `-`, `_` or `.` (as a
/// function's name).
pub fn label_ok(label: &str) -> bool {
    crate::schedule::check_name(label).is_ok()
}

/// One key of a function, as its events leave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub label: String,
    pub hash: KeyHash,
    pub created_by: NodeId,
    pub created_ms: u64,
    /// When it was revoked; it opens nothing since.
    pub revoked_ms: Option<u64>,
}

/// A function's keys, oldest first: at most one live (not revoked) key
/// per label, at most [`MAX_KEYS`] live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys(Vec<Key>);

impl Keys {
    /// Every key, revoked ones too, oldest first.
    pub fn all(&self) -> &[Key] {
        &self.0
    }

    /// The key under `label` that is not revoked, if any.
    pub fn live(&self, label: &str) -> Option<&Key> {
        self.0
            .iter()
            .find(|k| k.label == label && k.revoked_ms.is_none())
    }

    /// How many keys are not revoked.
    pub fn live_count(&self) -> usize {
        self.0.iter().filter(|k| k.revoked_ms.is_none()).count()
    }

    /// Adds `key` unless its label is live already or the function has
    /// [`MAX_KEYS`] live keys (so the earlier create wins everywhere).
    pub(crate) fn create(&mut self, key: Key) {
        if self.live(&key.label).is_none() && self.live_count() < MAX_KEYS {
            self.0.push(key);
        }
    }

    /// Revokes the live key under `label`, if any.
    pub(crate) fn revoke(&mut self, label: &str, at_ms: u64) {
        let live = (self.0.iter_mut()).find(|k| k.label == label && k.revoked_ms.is_none());
        if let Some(key) = live {
            key.revoked_ms = Some(at_ms);
        }
    }

    /// Whether the key hashed `presented` opens the function. Only hashes
    /// are compared, so the time a comparison takes tells nothing of a
    /// secret.
    pub fn admit(&self, presented: KeyHash) -> Result<(), KeyRefused> {
        let matching = || self.0.iter().filter(|k| k.hash == presented);
        if matching().any(|k| k.revoked_ms.is_none()) {
            Ok(())
        } else if matching().next().is_some() {
            Err(KeyRefused::Revoked)
        } else {
            Err(KeyRefused::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(label: &str, secret: &str) -> Key {
        Key {
            label: label.into(),
            hash: KeyHash::of(secret.as_bytes()),
            created_by: NodeId([1; 32]),
            created_ms: 1,
            revoked_ms: None,
        }
    }

    #[test]
    fn a_live_key_opens_a_revoked_or_unknown_one_does_not_and_says_which() {
        let mut keys = Keys::default();
        keys.create(key("ci", "s1"));
        keys.create(key("ci", "s2"));
        assert_eq!(keys.all().len(), 1, "a label is live once");
        assert_eq!(keys.admit(KeyHash::of(b"s1")), Ok(()));
        assert_eq!(keys.admit(KeyHash::of(b"s2")), Err(KeyRefused::Wrong));
        keys.revoke("ci", 5);
        assert_eq!(keys.admit(KeyHash::of(b"s1")), Err(KeyRefused::Revoked));
        keys.create(key("ci", "s3"));
        assert_eq!(keys.admit(KeyHash::of(b"s3")), Ok(()));
    }

    #[test]
    fn a_function_keeps_at_most_its_bound_of_live_keys() {
        let mut keys = Keys::default();
        for i in 0..=MAX_KEYS {
            keys.create(key(&format!("k{i}"), &format!("s{i}")));
        }
        assert_eq!(keys.live_count(), MAX_KEYS);
        let last = format!("s{MAX_KEYS}");
        assert_eq!(
            keys.admit(KeyHash::of(last.as_bytes())),
            Err(KeyRefused::Wrong)
        );
    }

    #[test]
    fn an_empty_or_overlong_presented_key_is_refused_before_it_is_hashed() {
        assert_eq!(KeyHash::presented(b""), Err(KeyRefused::Missing));
        let long = vec![b'k'; MAX_PRESENTED_BYTES + 1];
        let len = long.len();
        assert_eq!(KeyHash::presented(&long), Err(KeyRefused::TooLong { len }));
        assert!(label_ok("ci-1.a_b") && !label_ok("") && !label_ok("a b"));
    }
}
