//! blake3 hashes with domain separation.
