//! `peerbatch node --wait-for-approval` until an admin approves the node.
//!
//! Owns that phase: a network that admits nobody (`net::Standing::Waiting`) but lets keyed
//! nodes list this one and an admin hand it the cluster key; the data dir's `listen`, `api` and
//! `token` files meanwhile (the API answers every request with 503, saying the node waits); and
//! telling the user, with progress, until the approval comes. It then stops that network and
//! API and returns the key and the addresses it listened on, so that the node starts as a
//! member on the same ones. Must not start anything of a member (ledger, executor, driver).

use crate::api::guard;
use crate::api::ApiError;
use crate::net::{self, Candidate, ClusterKey, NetConfig, NetEvent, Standing};
use crate::paths::{self, DataDir};
use anyhow::{bail, Context, Result};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the node says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// The network settings the waiting node runs with.
pub struct Reach {
    pub listen: Vec<Multiaddr>,
    pub join: Vec<Multiaddr>,
    pub mdns: bool,
}

/// What the approval gave: the cluster key (already stored) and where to listen as a member.
pub struct Approved {
    pub key: ClusterKey,
    pub listen: Vec<Multiaddr>,
}

/// Waits for an admin's approval (see the module comment); `None` if the node was asked to
/// stop (Ctrl-C, SIGTERM) first.
pub async fn wait(
    dir: &DataDir,
    keypair: Keypair,
    reach: Reach,
    api: SocketAddr,
    tls: Option<crate::api::tls::ApiTls>,
) -> Result<Option<Approved>> {
    let me = keypair.public().to_peer_id();
    let candidate = Candidate::new(&host_name(), dir.cluster_key_file());
    let (net, mut events) = net::start(NetConfig {
        keypair,
        listen: reach.listen.clone(),
        join: reach.join,
        standing: Standing::Waiting(candidate.clone()),
        mdns: reach.mdns,
    })
    .await?;
    let api_task = serve_api(dir, api, tls, me, candidate.host()).await?;
    tracing::info!(
        "waiting for approval: this node is {me} on host {:?}; it has no cluster key and gets \
         nothing from the mesh until an admin approves it. On an admin node, \
         `peerbatch nodes --waiting` lists it and `peerbatch approve {me}` approves it",
        candidate.host()
    );
    let started = Instant::now();
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let mut bound = Vec::new();
    let stop = crate::stop_signal::requested();
    tokio::pin!(stop);
    let approval = loop {
        tokio::select! {
            approval = candidate.approved() => break approval,
            () = &mut stop => {
                api_task.abort();
                let _ = std::fs::remove_file(dir.api_file());
                return Ok(None);
            }
            event = events.recv() => match event {
                Some(NetEvent::Listening(addr)) => {
                    bound.push(addr);
                    let lines: Vec<String> = bound.iter().map(|a| format!("{a}/p2p/{me}")).collect();
                    paths::write_private(&dir.listen_file(), lines.join("\n").as_bytes())?;
                }
                Some(_) => {}
                None => bail!("the network stopped while waiting for approval"),
            },
            _ = progress.tick() => tracing::info!("{}", still_waiting(me, &candidate, started)),
        }
    };
    api_task.abort();
    let _ = api_task.await;
    // The event loop ends once its last handle is gone; its listeners close with it.
    drop(net);
    while events.recv().await.is_some() {}
    let admins: Vec<String> = approval
        .key
        .admins
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(
        "approved by admin {}: stored the cluster key in {} (mode 0600); joining its cluster \
         (admins: {}). This node accepts no other approval",
        approval.by,
        dir.cluster_key_file().display(),
        admins.join(", ")
    );
    Ok(Some(Approved {
        key: approval.key,
        listen: same_port(&reach.listen, &bound),
    }))
}

/// The configured listen addresses, a single one with port 0 given the port it was bound to
/// (its bound addresses, one per interface of a wildcard, share that port), so that the member
/// is found where the waiting node was and still listens on every interface.
fn same_port(configured: &[Multiaddr], bound: &[Multiaddr]) -> Vec<Multiaddr> {
    let port = |addr: &Multiaddr| {
        addr.iter().find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
    };
    let ports: BTreeSet<u16> = bound.iter().filter_map(port).collect();
    match (configured, ports.len()) {
        ([only], 1) if port(only) == Some(0) => {
            let bound_port = ports.into_iter().next().unwrap_or(0);
            let with = only
                .iter()
                .map(|p| match p {
                    Protocol::Tcp(_) => Protocol::Tcp(bound_port),
                    other => other,
                })
                .collect();
            vec![with]
        }
        _ => configured.to_vec(),
    }
}

/// One progress line.
fn still_waiting(me: PeerId, candidate: &Candidate, started: Instant) -> String {
    let secs = started.elapsed().as_secs();
    let reached = candidate.progress().reached;
    let last = match reached.first() {
        Some((peer, addr, at)) => format!(
            "{} keyed node(s) reached, last {peer} at {addr} {} s ago, which has not approved it",
            reached.len(),
            at.elapsed().as_secs()
        ),
        None => {
            "no keyed node reached yet (give --join the address of a member, or let mDNS find one)"
                .to_string()
        }
    };
    format!(
        "still waiting for approval after {secs} s as {me} (host {:?}): {last}; approve it on an \
         admin node with `peerbatch approve {me}`",
        candidate.host()
    )
}

/// Serves the waiting API: the token check, then 503 for every request.
async fn serve_api(
    dir: &DataDir,
    api: SocketAddr,
    tls: Option<crate::api::tls::ApiTls>,
    me: PeerId,
    host: &str,
) -> Result<JoinHandle<()>> {
    let token = peerbatch_protocol::ids::to_hex(&rand::random::<[u8; 32]>());
    paths::write_private(&dir.token_file(), token.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(api)
        .await
        .with_context(|| format!("cannot listen on --api {api}"))?;
    let url = crate::api::tls::api_url(listener.local_addr()?, tls.as_ref());
    paths::write_private(&dir.api_file(), url.as_bytes())?;
    let says = format!(
        "this node ({me}, host {host:?}) waits for approval: it has no cluster key yet and knows \
         nothing of the mesh; approve it on an admin node with `peerbatch approve {me}`"
    );
    let routes = Router::new().fallback(move || {
        let says = says.clone();
        async move { ApiError(StatusCode::SERVICE_UNAVAILABLE, says).into_response() }
    });
    // No task runs while the node waits: no task token exists.
    let tasks = crate::task_tokens::TaskTokens::default();
    let app = guard::guard(routes, guard::Access::new(&token, tasks));
    Ok(tokio::spawn(guard::serve(
        listener,
        app,
        tls.map(|t| t.acceptor),
    )))
}

/// This machine's host name, as the kernel has it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| a.parse().expect("multiaddr")).collect()
    }

    #[test]
    fn the_member_listens_where_the_waiting_node_did_on_the_configured_interfaces() {
        let wildcard = addrs(&["/ip4/0.0.0.0/tcp/0"]);
        let bound = addrs(&["/ip4/127.0.0.1/tcp/4100", "/ip4/10.0.0.5/tcp/4100"]);
        assert_eq!(
            same_port(&wildcard, &bound),
            addrs(&["/ip4/0.0.0.0/tcp/4100"])
        );
        let fixed = addrs(&["/ip4/0.0.0.0/tcp/4001"]);
        assert_eq!(
            same_port(&fixed, &addrs(&["/ip4/127.0.0.1/tcp/4001"])),
            fixed
        );
        let two = addrs(&["/ip4/127.0.0.1/tcp/0", "/ip4/10.0.0.5/tcp/0"]);
        let bound = addrs(&["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.5/tcp/2"]);
        assert_eq!(
            same_port(&two, &bound),
            two,
            "which port was whose is not known"
        );
    }
}
