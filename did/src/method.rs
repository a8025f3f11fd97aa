//! The `did:key` method for Ed25519: `did:key:z` + base58btc(0xed 0x01 ‖ key).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;

use crate::key::{Signature, SignatureError};

const PREFIX: &str = "did:key:";
/// The multicodec varint for an Ed25519 public key (0xed, as unsigned LEB128).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// Longest string we even try to decode. A valid Ed25519 did:key is 56
/// characters; anything far beyond that is rejected before base58 work.
const DID_LEN_MAX: usize = 128;

/// A `did:key` identifier for an Ed25519 public key.
///
/// Parsing is strict: only the `did:key` method, the `z` (base58btc)
/// multibase, the Ed25519 multicodec and a 32-byte key that is a valid
/// curve point are accepted. Formatting and parsing round-trip exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Did {
    key: VerifyingKey,
}

/// Why a string is not an Ed25519 `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is empty.
    #[error("empty DID")]
    Empty,
    /// The input is longer than any Ed25519 did:key.
    #[error("DID is {len} characters long; an Ed25519 did:key has 56")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The input does not start with `did:key:`.
    #[error("not a did:key (expected the prefix `did:key:`)")]
    NotDidKey,
    /// The multibase prefix is not `z` (base58btc).
    #[error("multibase prefix {found:?} is not `z` (base58btc)")]
    Multibase {
        /// The prefix character found, if any.
        found: Option<char>,
    },
    /// The method-specific identifier is not valid base58btc.
    #[error("method-specific identifier is not valid base58btc")]
    Base58,
    /// The multicodec prefix is not Ed25519's `0xed01`.
    #[error("multicodec prefix is not Ed25519 (0xed01)")]
    NotEd25519,
    /// The decoded key is not 32 bytes.
    #[error("Ed25519 key must be 32 bytes, found {found}")]
    KeyLength {
        /// Number of key bytes found after the multicodec prefix.
        found: usize,
    },
    /// The 32 bytes are not a valid Ed25519 public key.
    #[error("bytes are not a valid Ed25519 public key")]
    InvalidKey,
}

impl Did {
    /// The DID of an Ed25519 public key.
    pub fn from_public_key(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The DID of raw public key bytes, checking they are a curve point.
    pub fn from_public_key_bytes(bytes: &[u8; 32]) -> Result<Self, ParseError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self::from_public_key)
            .map_err(|_| ParseError::InvalidKey)
    }

    /// The Ed25519 public key this DID names.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The raw 32 public key bytes.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The multibase-encoded key (`z6Mk…`), used as the verification
    /// method fragment in the DID document.
    pub fn multibase_key(&self) -> String {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_MULTICODEC);
        bytes.extend_from_slice(self.key.as_bytes());
        format!("z{}", bs58::encode(bytes).into_string())
    }

    /// Checks `signature` over `message` with `verify_strict`, which rejects
    /// small-order keys and non-canonical signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
        self.key
            .verify_strict(message, &signature)
            .map_err(|_| SignatureError)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.multibase_key())
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({self})")
    }
}

impl FromStr for Did {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ParseError::Empty);
        }
        if input.len() > DID_LEN_MAX {
            return Err(ParseError::TooLong { len: input.len() });
        }
        let identifier = input.strip_prefix(PREFIX).ok_or(ParseError::NotDidKey)?;
        let mut chars = identifier.chars();
        match chars.next() {
            Some('z') => {}
            found => return Err(ParseError::Multibase { found }),
        }
        let bytes = bs58::decode(chars.as_str())
            .into_vec()
            .map_err(|_| ParseError::Base58)?;
        let key = bytes
            .strip_prefix(&ED25519_MULTICODEC)
            .ok_or(ParseError::NotEd25519)?;
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| ParseError::KeyLength { found: key.len() })?;
        Self::from_public_key_bytes(key)
    }
}

impl serde::Serialize for Did {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Did {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Did;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an Ed25519 did:key string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Did, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use proptest::prelude::*;

    #[test]
    fn rejects_each_kind_of_bad_input_with_its_own_error() {
        assert_eq!("".parse::<Did>(), Err(ParseError::Empty));
        assert_eq!("did:web:x".parse::<Did>(), Err(ParseError::NotDidKey));
        assert_eq!(
            "did:key:f00".parse::<Did>(),
            Err(ParseError::Multibase { found: Some('f') })
        );
        assert_eq!(
            "did:key:".parse::<Did>(),
            Err(ParseError::Multibase { found: None })
        );
        assert_eq!("did:key:z0OIl".parse::<Did>(), Err(ParseError::Base58));
        let long = format!("did:key:z{}", "1".repeat(200));
        assert!(matches!(
            long.parse::<Did>(),
            Err(ParseError::TooLong { .. })
        ));
        // Right codec, 31 key bytes.
        let mut short = vec![0xed, 0x01];
        short.extend_from_slice(&[7u8; 31]);
        let short = format!("did:key:z{}", bs58::encode(short).into_string());
        assert_eq!(
            short.parse::<Did>(),
            Err(ParseError::KeyLength { found: 31 })
        );
    }

    #[test]
    fn serde_uses_the_did_string_and_validates_it() {
        let did = Keypair::from_seed(&[9; 32]).did();
        let json = serde_json::to_string(&did).unwrap();
        assert_eq!(json, format!("\"{did}\""));
        let back: Did = serde_json::from_str(&json).unwrap();
        assert_eq!(back, did);
        assert!(serde_json::from_str::<Did>("\"did:key:zzz\"").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(seed in any::<[u8; 32]>()) {
            let did = Keypair::from_seed(&seed).did();
            let text = did.to_string();
            prop_assert!(text.starts_with("did:key:z6Mk"));
            prop_assert_eq!(text.parse::<Did>().unwrap(), did);
        }

        #[test]
        fn parse_never_panics(input in ".{0,200}") {
            let _ = input.parse::<Did>();
        }

        #[test]
        fn parse_never_panics_on_did_key_shaped_input(tail in "[1-9A-HJ-NP-Za-km-z]{0,80}") {
            let _ = format!("did:key:z{tail}").parse::<Did>();
        }
    }
}
