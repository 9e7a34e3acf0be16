//! Functions on this node: running invocations of deployed handlers
//! (`runtime`), sending each call to a node with room (`route`), keeping
//! the calls this node ran (`calls`), and firing the triggers that go
//! through the ledger (`triggers`).
//!
//! Owns what one call is ([`Call`]) and what it answers ([`Reply`]) on
//! every node alike, the node's flags for functions, and the bounds of a
//! call. What a function is and which version serves is the ledger's
//! (`peerbatch_protocol::function`); the HTTP routes are `api::functions`'.
//! Must not touch the ledger (save `triggers`, which submits fired jobs
//! through the core) or the HTTP API itself; it gets what it needs from
//! the driver through its typed commands (`driver::command`).

pub mod bundles;
pub mod calls;
pub mod route;
pub mod runtime;
pub mod runtime_api;
pub mod triggers;
pub mod warm;

use clap::Args;
use serde::{Deserialize, Serialize};

pub use route::Router;
pub use runtime::Runtime;

/// Largest request body a call carries, and largest response body a
/// handler may write (as AWS Lambda's synchronous calls).
pub const MAX_BODY_BYTES: usize = 6 << 20;
/// Most request headers handed to a handler, and the longest value.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

#[derive(Args, Debug, Clone, Default)]
pub struct FunctionOpts {
    /// Function invocations this node runs at once (default: its slots);
    /// more are sent to other nodes, or answered 503 with nowhere to go.
    #[arg(long, value_name = "N")]
    pub max_invocations: Option<u32>,
    /// Also serve ANY /fn/NAME/... (and nothing else) on this address,
    /// e.g. 0.0.0.0:7071, to callers on the LAN: each call with one of
    /// the function's keys (`fn keys create`) in the x-functions-key
    /// header or ?code=, instead of the node's token. Anywhere but
    /// 127.0.0.1 or ::1 it serves HTTPS only, with the API's certificate.
    #[arg(long, value_name = "ADDR")]
    pub functions_listen: Option<std::net::SocketAddr>,
}

/// One call of a function as HTTP brought it to some node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Call {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path after `/fn/NAME`, starting with `/` (`/` if none).
    pub path: String,
    /// The query string without its `?` (empty if none).
    pub query: String,
    /// Header names (lower case) and values, without credentials.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a call answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    /// 200 (exit 0), 500 (failed), 502, 503 (nowhere to run), 504 (timed
    /// out), or what a warm handler's proxy response says.
    pub status: u16,
    /// Response headers a warm handler's proxy response sets.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The node that ran the handler (its peer id), if one did.
    pub node: Option<String>,
}

impl Reply {
    /// An answer with a text body from the node, not the handler.
    pub fn text(status: u16, text: impl Into<String>) -> Reply {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Reply {
            status,
            headers: Vec::new(),
            body,
            node: None,
        }
    }
}
