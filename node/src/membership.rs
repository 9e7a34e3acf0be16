//! Which cluster a starting node belongs to: the key flags of `peerbatch node`.
//!
//! Owns choosing the node's cluster key at start — a given key file, a join token (stored in
//! the data dir), the data dir's own key, or a new key made there with this node as the
//! cluster's admin — and running open or waiting for an admin's approval only when asked. Must not touch the network or any other
//! node state; the key file format is `net`'s.

use crate::net::{ClusterKey, JoinToken};
use crate::paths::DataDir;
use anyhow::{bail, Result};
use clap::Args;
use libp2p::{Multiaddr, PeerId};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct KeyOpts {
    /// Cluster key file (a node's DATA/cluster.key, or one from `peerbatch keygen`); nodes with
    /// other keys never talk. Default: DATA/cluster.key, made on first start if missing.
    #[arg(long, conflicts_with = "join_token")]
    pub cluster_key: Option<PathBuf>,
    /// Join the cluster of a token that `peerbatch invite` printed on one of its nodes: stores
    /// its key as DATA/cluster.key and dials the addresses it carries.
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<JoinToken>,
    /// Run without a cluster key: any host that can reach this node and also runs open may
    /// join, run jobs as this node's user and read every blob. Warned about at start.
    #[arg(long, conflicts_with_all = ["cluster_key", "join_token"])]
    pub insecure_open: bool,
    /// Without DATA/cluster.key, make no key and do not run open: wait until an admin of a
    /// cluster this node reaches (found by mDNS or given with --join) approves it with
    /// `peerbatch approve PEER`, which hands it the key; until then it gets nothing from the
    /// mesh. With a key file, start with it as usual.
    #[arg(long, conflicts_with_all = ["cluster_key", "join_token", "insecure_open"])]
    pub wait_for_approval: bool,
}

/// The key a node runs with (`None`: open, or waiting for approval) and the addresses its
/// token asks it to dial.
pub struct Membership {
    pub key: Option<ClusterKey>,
    pub join: Vec<Multiaddr>,
    /// No key yet: wait for an admin's approval (`--wait-for-approval`).
    pub waiting: bool,
}

/// Picks the node's key from its flags and data dir; `me` becomes the admin of a new cluster.
pub fn choose(dir: &DataDir, opts: &KeyOpts, me: PeerId) -> Result<Membership> {
    if opts.insecure_open {
        tracing::warn!(
            "running open (--insecure-open): any host that can reach this node and also runs \
             open may join, run jobs as this node's user and read every blob"
        );
        return Ok(Membership {
            key: None,
            join: Vec::new(),
            waiting: false,
        });
    }
    if let Some(path) = &opts.cluster_key {
        return Ok(Membership {
            key: Some(ClusterKey::read(path)?),
            join: Vec::new(),
            waiting: false,
        });
    }
    let path = dir.cluster_key_file();
    let stored = path.exists().then(|| ClusterKey::read(&path)).transpose()?;
    let Some(token) = &opts.join_token else {
        let key = match stored {
            Some(key) => Some(key),
            None if opts.wait_for_approval => None,
            None => Some(new_cluster(&path, me)?),
        };
        return Ok(Membership {
            waiting: key.is_none(),
            key,
            join: Vec::new(),
        });
    };
    match stored {
        Some(key) if key.secret != token.key.secret => bail!(
            "{} holds the key of another cluster than the token's; move it away to join the \
             token's cluster (this node then leaves its current one)",
            path.display()
        ),
        Some(_) => {}
        None => {
            token.key.write_new(&path)?;
            tracing::info!(
                "joined with a token: stored its cluster key in {} (mode 0600)",
                path.display()
            );
        }
    }
    Ok(Membership {
        key: Some(ClusterKey::read(&path)?),
        join: token.addrs.clone(),
        waiting: false,
    })
}

/// Makes the key of a new cluster at `path`, with `me` as its admin, and says so.
fn new_cluster(path: &std::path::Path, me: PeerId) -> Result<ClusterKey> {
    let key = ClusterKey::generate(vec![me]);
    key.write_new(path)?;
    tracing::info!(
        "no cluster key given: made {} (mode 0600), the key of a new cluster with this node as \
         its admin; run `peerbatch invite` here for a token other nodes join with \
         (`peerbatch node --join-token TOKEN`)",
        path.display()
    );
    Ok(key)
}
