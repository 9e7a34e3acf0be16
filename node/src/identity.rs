//! One key, two names: a node's protocol id (ed25519 public key) and its
//! libp2p PeerId. Owns the conversions between them (and the names of the
//! peers connected now, converted once) and nothing else.

use libp2p::identity::{ed25519, Keypair, PublicKey};
use libp2p::PeerId;
use peerbatch_protocol::{Identity, NodeId};
use std::collections::BTreeMap;

/// The libp2p keypair and protocol identity made from one 32-byte seed.
pub fn from_seed(seed: [u8; 32]) -> anyhow::Result<(Keypair, Identity)> {
    let mut bytes = seed;
    let secret = ed25519::SecretKey::try_from_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("identity key is not a valid ed25519 seed: {e}"))?;
    let keypair = Keypair::from(ed25519::Keypair::from(secret));
    Ok((keypair, Identity::from_seed(seed)))
}

pub fn peer_of(node: &NodeId) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(&node.0).ok()?;
    Some(PeerId::from_public_key(&PublicKey::from(key)))
}

/// How a node is named to users: its peer id (its raw id if it names no
/// ed25519 key).
pub fn node_name(node: &NodeId) -> String {
    peer_of(node).map_or_else(|| node.to_string(), |p| p.to_string())
}

/// The node id inside a PeerId (ed25519 peer ids embed their public key).
pub fn node_of(peer: &PeerId) -> Option<NodeId> {
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(hash.digest()).ok()?;
    Some(NodeId(key.try_into_ed25519().ok()?.to_bytes()))
}

/// Both names of each peer connected now, converted once when it connects.
/// Each conversion parses the key and decompresses a curve point (tens of
/// microseconds): too slow to repeat for every message heard and every task
/// started.
#[derive(Default)]
pub struct Connected {
    nodes: BTreeMap<PeerId, NodeId>,
    peers: BTreeMap<NodeId, PeerId>,
}

impl Connected {
    /// Notes `peer` as connected; its node id, if it names one.
    pub fn connect(&mut self, peer: PeerId) -> Option<NodeId> {
        let node = node_of(&peer)?;
        self.nodes.insert(peer, node);
        self.peers.insert(node, peer);
        Some(node)
    }

    /// Forgets `peer`; its node id, if it was connected.
    pub fn disconnect(&mut self, peer: &PeerId) -> Option<NodeId> {
        let node = self.nodes.remove(peer).or_else(|| node_of(peer))?;
        self.peers.remove(&node);
        Some(node)
    }

    /// The node id of `peer`, connected or not (a gossip's publisher may
    /// reach this node through others).
    pub fn node_of(&self, peer: &PeerId) -> Option<NodeId> {
        self.nodes.get(peer).copied().or_else(|| node_of(peer))
    }

    /// The PeerIds of the connected peers among `nodes`.
    pub fn peers_of<'a>(&self, nodes: impl Iterator<Item = &'a NodeId>) -> Vec<PeerId> {
        nodes.filter_map(|n| self.peers.get(n).copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_both_ways() {
        let (keypair, identity) = from_seed([9; 32]).unwrap();
        let peer = keypair.public().to_peer_id();
        assert_eq!(node_of(&peer), Some(identity.node_id()));
        assert_eq!(peer_of(&identity.node_id()), Some(peer));
    }

    #[test]
    fn a_peer_is_named_among_the_connected_until_it_disconnects() {
        let (a, b) = (from_seed([1; 32]).unwrap(), from_seed([2; 32]).unwrap());
        let (peer_a, node_a) = (a.0.public().to_peer_id(), a.1.node_id());
        let (peer_b, node_b) = (b.0.public().to_peer_id(), b.1.node_id());
        let mut connected = Connected::default();
        assert_eq!(connected.connect(peer_a), Some(node_a));
        assert_eq!(connected.peers_of([node_a, node_b].iter()), [peer_a]);
        assert_eq!(
            connected.node_of(&peer_b),
            Some(node_b),
            "named unconnected too"
        );
        assert_eq!(connected.disconnect(&peer_a), Some(node_a));
        assert!(connected.peers_of([node_a].iter()).is_empty());
    }
}
