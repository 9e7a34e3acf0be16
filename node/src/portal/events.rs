//! Live updates: `GET /events`, a server-sent event stream that says
//! `change` whenever this node's ledger or its own claiming state changed,
//! so that open pages refresh their live parts without reloading.
//!
//! Owns noticing a change (looking at the ledger's event count and this
//! node's load every [`LOOK_EVERY`]); must not say what changed: pages
//! fetch themselves again.

use super::PortalState;
use crate::driver::command::Mesh;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream looks for a change.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What, when it differs from the last look, is a change worth showing.
type Mark = (usize, usize, u32, bool);

async fn mark(s: &PortalState) -> Option<Mark> {
    let node = s
        .api
        .driver
        .call(|reply| Mesh::State { reply })
        .await
        .ok()?;
    Some((node.events, node.claimed, node.running, node.draining))
}

/// Ends when the node shuts down.
pub async fn stream(
    State(s): State<PortalState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // No starting mark: the first look says `change`, since the page may
    // have been rendered before a change this stream would otherwise take
    // as its start (a drain the core judged between the two, say).
    let changes = futures::stream::unfold((s, None), |(s, mut last)| async move {
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let now = mark(&s).await?;
            if Some(now) != last {
                last = Some(now);
                return Some((
                    Ok(Event::default().event("change").data("ledger")),
                    (s, last),
                ));
            }
        }
    });
    Sse::new(changes).keep_alive(KeepAlive::default())
}
