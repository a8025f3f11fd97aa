//! Canonical CBOR: one encoding per value, strictly decoded.
