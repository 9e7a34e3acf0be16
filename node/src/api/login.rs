//! One-time login codes for the portal: `POST /v1/portal/login` hands one
//! out to the holder of the node's own token (never to a task's: the route
//! is not in `guard::TASK_ROUTES`); the portal's login page spends it for a
//! browser session (`portal::session`).
//!
//! The portal is served on a loopback API address only (its session cookie
//! must not cross a network in the clear, and the API serves no TLS yet);
//! elsewhere the codes are [`LoginCodes::close`]d and the route answers 403.
//!
//! Owns the codes (at most [`MAX_CODES`] waiting, each for at most
//! [`CODE_LIFETIME`], each spent once); must not know about sessions or
//! cookies.

use crate::api::types::PortalLogin;
use crate::api::{ApiError, ApiResult, ApiState};
use axum::extract::State;
use axum::http::StatusCode;
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
    /// Why no code is handed out, when the portal is not served.
    closed: std::sync::OnceLock<String>,
}

impl LoginCodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Instant)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands out no more codes, saying `why`.
    pub fn close(&self, why: &str) {
        let _ = self.closed.set(why.to_string());
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
    if let Some(why) = s.login.closed.get() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "the portal is not served: {why} (start the node with a loopback --api address)"
            ),
        ));
    }
    let code = s.login.issue();
    Ok(Json(PortalLogin {
        path: format!("/login?code={code}"),
        expires_in_s: CODE_LIFETIME.as_secs(),
    }))
}
