//! One key, two names: a node's protocol id (ed25519 public key) and its
//! libp2p PeerId. Owns the conversions between them and nothing else.

use libp2p::identity::{ed25519, Keypair, PublicKey};
use libp2p::PeerId;
use peerbatch_protocol::{Identity, NodeId};

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

/// The node id inside a PeerId (ed25519 peer ids embed their public key).
pub fn node_of(peer: &PeerId) -> Option<NodeId> {
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(hash.digest()).ok()?;
    Some(NodeId(key.try_into_ed25519().ok()?.to_bytes()))
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
}
