//! Key pairs and signatures.

use std::fmt;

use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding,
};
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::Did;

/// An Ed25519 key pair: an organization's (or a node's) secret signing key.
///
/// The secret zeroizes on drop and never prints: `Debug` shows only the DID.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A new key from the operating system's random source.
    ///
    /// Fails only if the OS cannot provide randomness.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair whose secret key is `seed` (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// This key's DID.
    pub fn did(&self) -> Did {
        Did::from_public_key(self.signing.verifying_key())
    }

    /// Signs `message`. Callers prefix messages with a domain-separation tag.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The 32-byte secret seed, for handing to another library (libp2p's
    /// identity) that needs the same key. Zeroized when dropped.
    pub fn secret_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 8410),
    /// the form `openssl genpkey -algorithm ed25519` writes.
    ///
    /// v1 on purpose: ed25519-dalek's own encoder writes v2 (with the public
    /// key), which OpenSSL 3.0 refuses to read.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let bytes = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        // Encoding 32 bytes into a Vec-backed PEM cannot fail.
        #[allow(clippy::expect_used)]
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of an Ed25519 key is infallible")
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Pkcs8Error> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing| Self { signing })
            .map_err(|e| Pkcs8Error(e.to_string()))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keypair {{ did: {}, secret: SecretKey(..) }}",
            self.did()
        )
    }
}

/// A PEM document that is not a PKCS#8 Ed25519 private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PKCS#8 PEM Ed25519 private key: {0}")]
pub struct Pkcs8Error(String);

impl Pkcs8Error {
    pub(crate) fn not_text() -> Self {
        Self("file is not UTF-8 text".to_owned())
    }
}

/// An Ed25519 signature (64 bytes). Encoded in serde as a byte string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

/// A signature did not verify under the key it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct SignatureError;

/// Bytes that are not 64 long cannot be a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a signature is 64 bytes, found {found}")]
pub struct SignatureLengthError {
    /// Number of bytes found.
    pub found: usize,
}

impl Signature {
    /// The signature's 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Wraps 64 raw bytes (not yet verified against anything).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
}

impl TryFrom<&[u8]> for Signature {
    type Error = SignatureLengthError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 64]>::try_from(bytes)
            .map(Self)
            .map_err(|_| SignatureLengthError { found: bytes.len() })
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-byte Ed25519 signature as a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                Signature::try_from(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = Keypair::from_seed(&[0xab; 32]);
        let text = format!("{key:?}");
        assert!(text.contains("SecretKey(..)"));
        assert!(!text.to_lowercase().contains("abab"));
    }

    #[test]
    fn pem_round_trips_and_is_pkcs8() {
        let key = Keypair::generate().unwrap();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Keypair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.did(), key.did());
    }

    #[test]
    fn pem_is_the_pkcs8_v1_form_openssl_writes() {
        // RFC 8410 section 10.3: the PKCS#8 v1 prefix, then the 32-byte seed.
        let key = Keypair::from_seed(&[0x11; 32]);
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(body.starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{body}");
    }

    #[test]
    fn reads_the_rfc9421_test_key_written_by_another_implementation() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/rfc9421-ed25519.json"
        );
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let key =
            Keypair::from_pkcs8_pem(vectors["private_key_pkcs8_pem"].as_str().unwrap()).unwrap();
        // The public half is given separately as SPKI PEM; its last 32 bytes are the key.
        let spki = vectors["public_key_spki_pem"].as_str().unwrap();
        assert!(spki.contains("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="));
        assert_eq!(
            key.did().public_key_bytes()[..4],
            [0x26, 0xb4, 0x0b, 0x8f],
            "public key of the RFC 9421 test key starts 26b40b8f"
        );
    }

    #[test]
    fn strict_verification_rejects_a_tampered_message_and_a_wrong_key() {
        let key = Keypair::from_seed(&[1; 32]);
        let other = Keypair::from_seed(&[2; 32]);
        let sig = key.sign(b"QUORATE_TEST_V1 hello");
        assert!(key.did().verify(b"QUORATE_TEST_V1 hello", &sig).is_ok());
        assert!(key.did().verify(b"QUORATE_TEST_V1 hellp", &sig).is_err());
        assert!(other.did().verify(b"QUORATE_TEST_V1 hello", &sig).is_err());
    }

    #[test]
    fn signature_rejects_wrong_lengths() {
        assert_eq!(
            Signature::try_from(&[0u8; 63][..]),
            Err(SignatureLengthError { found: 63 })
        );
    }

    proptest! {
        #[test]
        fn any_flipped_bit_breaks_the_signature(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..512) {
            let key = Keypair::from_seed(&seed);
            let mut sig = *key.sign(&msg).as_bytes();
            sig[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(key.did().verify(&msg, &Signature::from_bytes(sig)).is_err());
        }
    }
}
