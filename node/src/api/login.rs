//! One-time login codes for the portal: `POST /v1/portal/login` hands one
//! out to the holder of the node's own token (never to a task's: the route
//! is not in `guard::TASK_ROUTES`); the portal's login page spends it for a
//! browser session (`portal::session`).
//!
//! Beyond loopback the API, and so the portal and its cookie, is served
//! over HTTPS only (`api::tls`).
//!
//! Owns the codes (at most [`MAX_CODES`] waiting, each for at most
//! [`CODE_LIFETIME`], each spent once); must not know about sessions or
//! cookies.

use crate::api::types::PortalLogin;
use crate::api::{ApiResult, ApiState};
use axum::extract::State;
use axum::Json;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a login code may wait to be used.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// Codes waiting at once; issuing more forgets the oldest.
pub const MAX_CODES: usize = 16;

#[derive(Default)]
pub struct LoginCodes {
    waiting: Mutex<VecDeque<(String, Instant)>>,
}

impl LoginCodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Instant)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new one-time code.
    pub fn issue(&self) -> String {
        let code = peerbatch_protocol::ids::to_hex(&rand::random::<[u8; 32]>());
        let mut waiting = self.lock();
        if waiting.len() >= MAX_CODES {
            waiting.pop_front();
        }
        waiting.push_back((code.clone(), Instant::now()));
        code
    }

    /// Whether `code` was issued, is live and unspent; spends it.
    pub fn spend(&self, code: &str) -> bool {
        let mut waiting = self.lock();
        waiting.retain(|(_, made)| made.elapsed() < CODE_LIFETIME);
        let found = waiting
            .iter()
            .position(|(c, _)| bool::from(c.as_bytes().ct_eq(code.as_bytes())));
        found.map(|at| waiting.remove(at)).is_some()
    }
}

/// A one-time link that logs a browser into this node's portal.
#[utoipa::path(post, path = "/v1/portal/login", tag = "portal",
    responses((status = 200, body = PortalLogin)))]
pub async fn issue(State(s): State<ApiState>) -> ApiResult<Json<PortalLogin>> {
    let code = s.login.issue();
    Ok(Json(PortalLogin {
        path: format!("/login?code={code}"),
        expires_in_s: CODE_LIFETIME.as_secs(),
    }))
}
