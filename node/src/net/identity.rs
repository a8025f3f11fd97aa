//! The member key as a libp2p identity, and `PeerId` ↔ `did:key`.

use libp2p::PeerId;
use libp2p::identity::{self, PublicKey};
use quorate_did::{Did, Keypair};

/// The libp2p keypair of a member key (the same Ed25519 key).
pub fn libp2p_keypair(key: &Keypair) -> identity::Keypair {
    let mut seed = key.secret_seed();
    // A 32-byte Ed25519 seed is always a valid secret key.
    #[allow(clippy::expect_used)]
    identity::Keypair::ed25519_from_bytes(seed.as_mut()).expect("32-byte Ed25519 seed")
}

/// The `PeerId` of a DID's key.
pub fn peer_id(did: &Did) -> PeerId {
    // Our DIDs hold valid Ed25519 points, which libp2p accepts.
    #[allow(clippy::expect_used)]
    let key = identity::ed25519::PublicKey::try_from_bytes(&did.public_key_bytes())
        .expect("a Did holds a valid Ed25519 key");
    PublicKey::from(key).to_peer_id()
}

/// The DID of a peer, if its id embeds an Ed25519 key (libp2p inlines keys
/// of that size with the identity multihash). `None` for any other peer.
pub fn did_of(peer: &PeerId) -> Option<Did> {
    let multihash = peer.as_ref();
    // 0x00 = identity multihash: the digest *is* the protobuf-encoded key.
    if multihash.code() != 0x00 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let key = key.try_into_ed25519().ok()?;
    Did::from_public_key_bytes(&key.to_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_did_map_both_ways() {
        let key = Keypair::from_seed(&[5; 32]);
        let did = key.did();
        let peer = peer_id(&did);
        assert_eq!(peer, libp2p_keypair(&key).public().to_peer_id());
        assert_eq!(did_of(&peer), Some(did));
        assert_eq!(did_of(&PeerId::random()), None);
    }
}
