//! The HTTP client the CLI uses to talk to a node's API.
//!
//! Owns finding the node (`--api`/`PEERBATCH_API` + `PEERBATCH_TOKEN`, or the
//! `api` and `token` files of a data dir; over HTTPS with `client_tls`), sending and reading the typed
//! bodies of `api::types`, and turning HTTP failures into messages a user
//! can act on. Must not know what the endpoints mean.

use crate::api::types::ErrorBody;
use crate::client_tls::Trust;
use crate::paths::DataDir;
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::time::Duration;

pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// The token came from the node's own `token` file: this client runs as
    /// the node's account (or root), so the node may read and write its
    /// files by path.
    shares_files: bool,
}

/// No overall time limit: for requests that take as long as the data they
/// move.
const UNBOUNDED: Duration = Duration::from_secs(365 * 24 * 3600);

impl Client {
    /// The node of `dir`, or at `api`; over HTTPS, its certificate is
    /// checked against `trust` (`client_tls`).
    pub fn connect(dir: &DataDir, api: Option<String>, trust: &Trust) -> Result<Client> {
        let token_env = std::env::var("PEERBATCH_TOKEN").ok();
        let shares_files = token_env.is_none();
        let (addr, token) = match api {
            Some(addr) => {
                let token = match token_env {
                    Some(t) => t,
                    None => std::fs::read_to_string(dir.token_file()).with_context(|| {
                        format!("--api {addr} needs PEERBATCH_TOKEN (the node's DATA_DIR/token)")
                    })?,
                };
                (addr, token)
            }
            None => {
                let api_file = dir.api_file();
                let addr = std::fs::read_to_string(&api_file).map_err(|_| {
                    anyhow!(
                        "no node is running on data dir {} (no {} file); start one with `peerbatch node --data-dir {}`, or point --api/PEERBATCH_API at one",
                        dir.root.display(),
                        api_file.display(),
                        dir.root.display()
                    )
                })?;
                let token = match token_env {
                    Some(t) => t,
                    None => std::fs::read_to_string(dir.token_file())
                        .with_context(|| format!("cannot read {}", dir.token_file().display()))?,
                };
                (addr, token)
            }
        };
        let addr = addr.trim();
        let base = if addr.starts_with("http") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120));
        if base.starts_with("https://") {
            agent = agent.tls_connector(crate::client_tls::connector(dir, trust)?);
        }
        let agent = agent.build();
        Ok(Client {
            base,
            token: token.trim().to_string(),
            agent,
            shares_files,
        })
    }

    /// Whether the node may be handed paths to read and write for this
    /// client: true when the token came from the node's own `token` file
    /// rather than `PEERBATCH_TOKEN` (a task's token, or a user elsewhere).
    pub fn shares_files(&self) -> bool {
        self.shares_files
    }

    fn call<B: Serialize>(&self, req: ureq::Request, body: Option<&B>) -> Result<ureq::Response> {
        let req = self.authorized(req);
        self.answer(match body {
            Some(b) => req.send_json(serde_json::to_value(b)?),
            None => req.call(),
        })
    }

    fn authorized(&self, req: ureq::Request) -> ureq::Request {
        req.set("authorization", &format!("Bearer {}", self.token))
    }

    /// The response, or the node's refusal or the transport failure as a
    /// message.
    fn answer(&self, result: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response> {
        match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<ErrorBody>(&text).map_or(text, |e| e.error);
                bail!("{msg} (HTTP {code})")
            }
            Err(e) => Err(anyhow!("cannot reach the node at {}: {e}", self.base)),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.call::<()>(self.agent.get(&format!("{}{path}", self.base)), None)?;
        typed(resp)
    }

    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.call::<()>(self.agent.get(&format!("{}{path}", self.base)), None)?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut out)?;
        Ok(out)
    }

    /// Like [`Client::post`], for requests that take as long as the work
    /// they do (storing a large file): no overall time limit.
    pub fn post_unbounded<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .timeout(UNBOUNDED);
        typed(self.call(req, Some(body))?)
    }

    /// PUTs `len` bytes read from `body` as the request body, with no
    /// overall time limit; the answer is JSON.
    pub fn put_reader<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Read,
        len: u64,
    ) -> Result<T> {
        let req = self
            .agent
            .put(&format!("{}{path}", self.base))
            .timeout(UNBOUNDED)
            .set("content-length", &len.to_string())
            .set("content-type", "application/octet-stream");
        typed(self.answer(self.authorized(req).send(body))?)
    }

    /// GETs a body to read as it arrives, with no overall time limit, and
    /// its length as the node announced it.
    pub fn get_reader(&self, path: &str) -> Result<(Option<u64>, impl Read + Send)> {
        let req = self
            .agent
            .get(&format!("{}{path}", self.base))
            .timeout(UNBOUNDED);
        let resp = self.call::<()>(req, None)?;
        let len = resp.header("content-length").and_then(|l| l.parse().ok());
        Ok((len, resp.into_reader()))
    }

    /// Sends `body` with `method` to `path` with no overall time limit
    /// and answers the status and body as they are, whatever the status
    /// (a function's own answer); only a transport failure is an error.
    pub fn send_bytes(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .timeout(UNBOUNDED);
        let resp = match self.authorized(req).send_bytes(body) {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => bail!("cannot reach the node at {}: {e}", self.base),
        };
        let status = resp.status();
        let mut out = Vec::new();
        resp.into_reader().read_to_end(&mut out)?;
        Ok((status, out))
    }

    /// The node's API address as a URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let req = self.agent.post(&format!("{}{path}", self.base));
        typed(self.call(req, Some(body))?)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.agent.delete(&format!("{}{path}", self.base));
        typed(self.call::<()>(req, None)?)
    }
}

/// An answer's JSON body read as the type the route answers with.
fn typed<T: DeserializeOwned>(resp: ureq::Response) -> Result<T> {
    let url = resp.get_url().to_string();
    resp.into_json()
        .with_context(|| format!("the node's answer to {url} is not of the expected shape"))
}
