//! Persistence of the chain in the embedded store (redb).
