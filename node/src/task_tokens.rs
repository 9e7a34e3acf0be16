//! Access tokens of running commands: each command the sandbox runs (a task
//! attempt, a start task, a job's preparation or release) gets its own
//! random API token, valid from its start until the command and everything
//! it started have ended.
//!
//! Owns issuing tokens, recognising one (in constant time) and revoking it
//! when its [`TaskToken`] is dropped. Must not decide what a task token may
//! do (`api::guard` does) nor start or stop processes (`sandbox` does).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use subtle::{Choice, ConstantTimeEq};

/// The tokens of the commands running now, shared by the sandbox (which
/// issues them) and the API's front door (which recognises them).
#[derive(Clone, Default)]
pub struct TaskTokens {
    live: Arc<Mutex<Live>>,
}

#[derive(Default)]
struct Live {
    next: u64,
    /// `Authorization` header values by issue number.
    headers: BTreeMap<u64, Vec<u8>>,
}

impl TaskTokens {
    /// A new token, valid until the returned value is dropped.
    pub fn issue(&self) -> TaskToken {
        let secret = peerbatch_protocol::ids::to_hex(&rand::random::<[u8; 32]>());
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let number = live.next;
        live.next += 1;
        live.headers
            .insert(number, format!("Bearer {secret}").into_bytes());
        TaskToken {
            secret,
            number,
            tokens: self.clone(),
        }
    }

    /// Whether `header` (a whole `Authorization` value) is a live task
    /// token; compares it with every live one in constant time.
    pub fn admits(&self, header: &[u8]) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let found = live.headers.values().fold(Choice::from(0), |found, h| {
            found | h.as_slice().ct_eq(header)
        });
        found.into()
    }

    fn revoke(&self, number: u64) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.headers.remove(&number);
    }
}

/// One running command's token; revoked when dropped.
pub struct TaskToken {
    secret: String,
    number: u64,
    tokens: TaskTokens,
}

impl TaskToken {
    /// The value the command gets as `PEERBATCH_TOKEN`.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        self.tokens.revoke(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(token: &TaskToken) -> Vec<u8> {
        format!("Bearer {}", token.secret()).into_bytes()
    }

    #[test]
    fn a_token_is_admitted_while_held_and_refused_once_dropped() {
        let tokens = TaskTokens::default();
        let first = tokens.issue();
        let second = tokens.issue();
        assert_ne!(first.secret(), second.secret());
        let (h1, h2) = (header(&first), header(&second));
        assert!(tokens.admits(&h1) && tokens.admits(&h2));
        drop(first);
        assert!(!tokens.admits(&h1), "a revoked token still works");
        assert!(tokens.admits(&h2), "revoking one token revoked another");
        assert!(
            !tokens.admits(second.secret().as_bytes()),
            "no Bearer prefix"
        );
        assert!(!tokens.admits(b""));
    }
}
