//! blake3 Merkle trees over block entries, and inclusion proofs.
