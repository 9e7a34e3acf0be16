//! Who the browser is: one-time login codes, sessions and their CSRF
//! tokens.
//!
//! Owns turning a one-time login code (handed out by the API route
//! `POST /v1/portal/login`, `api::login`, on the node's own token only) into
//! a browser session: `GET /login?code=` spends it for a session cookie
//! (`HttpOnly`, `SameSite=Strict`, and `Secure` over HTTPS). Every page route passes
//! [`require`], which lets in only a live session. Sessions live in memory:
//! a restart of the node (which changes its token) logs every browser out.
//! Must not know what the pages show.

use super::{html, PortalState};
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Sessions at once; logging in more forgets the oldest.
const MAX_SESSIONS: usize = 64;
/// The cookie's name.
const COOKIE: &str = "peerbatch_session";

/// A logged-in browser: its cookie value and the token its forms carry.
#[derive(Clone)]
pub struct Session {
    id: String,
    pub csrf: String,
}

impl Session {
    /// Whether a form's CSRF token is this session's.
    pub fn vouches(&self, csrf: &str) -> bool {
        bool::from(csrf.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: VecDeque<Session>,
}

fn random_hex() -> String {
    peerbatch_protocol::ids::to_hex(&rand::random::<[u8; 32]>())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session.
    fn open(&self) -> Session {
        let mut inner = self.lock();
        let session = Session {
            id: random_hex(),
            csrf: random_hex(),
        };
        if inner.sessions.len() >= MAX_SESSIONS {
            inner.sessions.pop_front();
        }
        inner.sessions.push_back(session.clone());
        session
    }

    fn find(&self, id: &str) -> Option<Session> {
        let inner = self.lock();
        let found = inner
            .sessions
            .iter()
            .find(|s| bool::from(s.id.as_bytes().ct_eq(id.as_bytes())));
        found.cloned()
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    code: String,
}

/// `GET /login?code=`: sets the session cookie and goes on to the mesh
/// page (by a page of its own, not a redirect, so that the strict cookie
/// is sent with the next request however the link was opened).
pub async fn login(State(s): State<PortalState>, Query(q): Query<LoginQuery>) -> Response {
    if !s.api.login.spend(&q.code) {
        return refused(
            "This login link is used up, expired or wrong. Run `peerbatch portal` for a new one.",
        );
    }
    let session = s.sessions.open();
    // Over HTTPS the browser must never send it in the clear.
    let secure = if s.api.tls_fingerprint.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
        session.id
    );
    let body = "<meta http-equiv=refresh content=\"0; url=/\"><p>Logged in. <a href=\"/\">Go to the mesh</a>.</p>";
    (
        [(header::SET_COOKIE, cookie)],
        html::bare("Logged in", body),
    )
        .into_response()
}

fn refused(why: &str) -> Response {
    let body = format!("<p class=error>{}</p>", html::esc(why));
    (StatusCode::UNAUTHORIZED, html::bare("Not logged in", &body)).into_response()
}

/// The session a request's cookie names, if it is live.
fn session_of(sessions: &Sessions, request: &Request) -> Option<Session> {
    let cookies = request.headers().get_all(header::COOKIE);
    cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(|id| sessions.find(id))
}

/// Lets in requests from a logged-in browser, handing the route its
/// [`Session`]; refuses the rest.
pub async fn require(
    State(sessions): State<Arc<Sessions>>,
    mut request: Request,
    next: Next,
) -> Response {
    match session_of(&sessions, &request) {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => refused(
            "Not logged in. Run `peerbatch portal` on the node's machine: it prints a one-time login link.",
        ),
    }
}

/// A form's CSRF token, checked against the session's.
pub fn check_csrf(session: &Session, csrf: &str) -> Result<(), super::PortalError> {
    if session.vouches(csrf) {
        Ok(())
    } else {
        Err(super::PortalError(
            StatusCode::FORBIDDEN,
            "this form is not from this session's page (reload the page and try again)".into(),
        ))
    }
}
