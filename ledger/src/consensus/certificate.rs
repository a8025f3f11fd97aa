//! Validator sets, votes and quorum certificates.

use quorate_did::{Did, Keypair, Signature};
use serde::{Deserialize, Serialize};

/// Domain tag of vote signatures.
pub const VOTE_SIGNING_TAG: &[u8] = b"QUORATE_VOTE_V1";

/// The members that vote at a height, in a fixed order (by member id), with
/// equal voting power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    keys: Vec<Did>,
}

impl Validators {
    /// A validator set in the given order.
    pub fn new(keys: Vec<Did>) -> Self {
        Self { keys }
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `⌊2n/3⌋ + 1`.
    pub fn quorum(&self) -> usize {
        2 * self.keys.len() / 3 + 1
    }

    /// `⌊(n−1)/3⌋`: faults tolerated.
    pub fn max_faulty(&self) -> usize {
        self.keys.len().saturating_sub(1) / 3
    }

    /// The validator at `index`.
    pub fn get(&self, index: u16) -> Option<&Did> {
        self.keys.get(usize::from(index))
    }

    /// The index of `did`.
    pub fn index_of(&self, did: &Did) -> Option<u16> {
        self.keys
            .iter()
            .position(|k| k == did)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The proposer of `(height, round)`: rotates through the set.
    pub fn proposer(&self, height: u64, round: u32) -> Option<&Did> {
        if self.keys.is_empty() {
            return None;
        }
        let n = self.keys.len() as u64;
        let at = (height % n + u64::from(round) % n) % n;
        self.keys.get(at as usize)
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[Did] {
        &self.keys
    }
}

/// A vote's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// First round of voting on a proposal.
    Prevote,
    /// Second round; a quorum of precommits decides.
    Precommit,
}

impl VoteKind {
    fn byte(self) -> u8 {
        match self {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        }
    }
}

/// The bytes a vote signs (layout in the module documentation).
pub fn vote_sign_bytes(
    chain_id: &str,
    height: u64,
    round: u32,
    kind: VoteKind,
    value_id: Option<&[u8; 32]>,
) -> Vec<u8> {
    let chain = chain_id.as_bytes();
    let chain_len = u16::try_from(chain.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(VOTE_SIGNING_TAG.len() + 2 + chain.len() + 8 + 4 + 1 + 33);
    out.extend_from_slice(VOTE_SIGNING_TAG);
    out.extend_from_slice(&chain_len.to_be_bytes());
    out.extend_from_slice(&chain[..usize::from(chain_len)]);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.push(kind.byte());
    match value_id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(id);
        }
        None => out.push(0),
    }
    out
}

/// A validator's signed vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The height.
    pub height: u64,
    /// The round.
    pub round: u32,
    /// The value voted for, or nil: a CBOR byte string (or null), like
    /// the certificate's.
    #[serde(with = "serde_bytes")]
    pub value_id: Option<[u8; 32]>,
    /// The voter's index in the height's validator set.
    pub voter: u16,
    /// Signature of [`vote_sign_bytes`].
    pub signature: Signature,
}

impl SignedVote {
    /// Signs a vote.
    pub fn sign(
        chain_id: &str,
        kind: VoteKind,
        height: u64,
        round: u32,
        value_id: Option<[u8; 32]>,
        voter: u16,
        key: &Keypair,
    ) -> Self {
        let signature = crate::verified::sign_own(
            key,
            &vote_sign_bytes(chain_id, height, round, kind, value_id.as_ref()),
        );
        Self {
            kind,
            height,
            round,
            value_id,
            voter,
            signature,
        }
    }

    /// Whether the signature is the voter's, per `validators`.
    pub fn verify(&self, chain_id: &str, validators: &Validators) -> bool {
        validators.get(self.voter).is_some_and(|key| {
            crate::verified::verify(
                key,
                &vote_sign_bytes(
                    chain_id,
                    self.height,
                    self.round,
                    self.kind,
                    self.value_id.as_ref(),
                ),
                &self.signature,
            )
        })
    }
}

/// Precommit signatures of one value at one height and round by at least a
/// quorum of the height's validators: the proof that a block is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCertificate {
    /// The height.
    pub height: u64,
    /// The round that decided.
    pub round: u32,
    /// The decided value's id (the block hash). A CBOR byte string, as
    /// every fixed-size byte value on the ledger is: serde alone would
    /// write `[u8; 32]` as an array of 32 integers.
    #[serde(with = "serde_bytes")]
    pub value_id: [u8; 32],
    /// `(validator index, precommit signature)`, sorted by index, unique.
    pub signatures: Vec<(u16, Signature)>,
}

/// Why a certificate does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Signers not sorted, or one twice.
    #[error("signers are not sorted by index or repeat a validator")]
    Order,
    /// An index outside the validator set.
    #[error("validator index {0} is not in the set of {1}")]
    NotAValidator(u16, usize),
    /// A signature that does not verify.
    #[error("the precommit of validator {0} does not verify")]
    BadSignature(u16),
    /// Fewer than a quorum.
    #[error("{have} precommits; a quorum is {need}")]
    NoQuorum {
        /// Valid signers.
        have: usize,
        /// Quorum.
        need: usize,
    },
}

/// Checks a certificate against the validators of its height.
pub fn verify_certificate(
    chain_id: &str,
    validators: &Validators,
    certificate: &QuorumCertificate,
) -> Result<(), CertificateError> {
    let sigs = &certificate.signatures;
    if !sigs.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err(CertificateError::Order);
    }
    // Count before the expensive checks: a short certificate costs nothing.
    if sigs.len() < validators.quorum() {
        return Err(CertificateError::NoQuorum {
            have: sigs.len(),
            need: validators.quorum(),
        });
    }
    let message = vote_sign_bytes(
        chain_id,
        certificate.height,
        certificate.round,
        VoteKind::Precommit,
        Some(&certificate.value_id),
    );
    for (index, signature) in sigs {
        let key = validators
            .get(*index)
            .ok_or(CertificateError::NotAValidator(*index, validators.len()))?;
        if !crate::verified::verify(key, &message, signature) {
            return Err(CertificateError::BadSignature(*index));
        }
    }
    Ok(())
}

/// Builds a certificate by having each of `signers` (validators' keys)
/// precommit the value. Used for genesis (signed by the founding members
/// together) and in tests; live blocks get theirs from agreement.
pub fn certify(
    chain_id: &str,
    validators: &Validators,
    height: u64,
    round: u32,
    value_id: [u8; 32],
    signers: &[&Keypair],
) -> QuorumCertificate {
    let message = vote_sign_bytes(
        chain_id,
        height,
        round,
        VoteKind::Precommit,
        Some(&value_id),
    );
    let mut signatures: Vec<(u16, Signature)> = signers
        .iter()
        .filter_map(|key| {
            validators
                .index_of(&key.did())
                .map(|i| (i, key.sign(&message)))
        })
        .collect();
    signatures.sort_by_key(|(i, _)| *i);
    signatures.dedup_by_key(|(i, _)| *i);
    QuorumCertificate {
        height,
        round,
        value_id,
        signatures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<Keypair> {
        (0..n).map(|i| Keypair::from_seed(&[i + 1; 32])).collect()
    }

    #[test]
    fn quorum_and_faults() {
        for (n, q, f) in [
            (1, 1, 0),
            (3, 3, 0),
            (4, 3, 1),
            (7, 5, 2),
            (10, 7, 3),
            (16, 11, 5),
        ] {
            let v = Validators::new(keys(n).iter().map(|k| k.did()).collect());
            assert_eq!((v.quorum(), v.max_faulty()), (q, f), "n={n}");
        }
    }

    #[test]
    fn proposer_rotates_by_height_and_round() {
        let ks = keys(4);
        let v = Validators::new(ks.iter().map(|k| k.did()).collect());
        assert_eq!(v.proposer(1, 0), Some(&ks[1].did()));
        assert_eq!(v.proposer(1, 1), Some(&ks[2].did()));
        assert_eq!(v.proposer(4, 3), Some(&ks[3].did()));
    }

    #[test]
    fn sign_bytes_layout_is_fixed() {
        let bytes = vote_sign_bytes("c", 1, 2, VoteKind::Precommit, Some(&[0xab; 32]));
        let mut expected = b"QUORATE_VOTE_V1".to_vec();
        expected.extend_from_slice(&[0, 1, b'c']);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(&[2, 1]);
        expected.extend_from_slice(&[0xab; 32]);
        assert_eq!(bytes, expected);
        assert_eq!(
            vote_sign_bytes("c", 1, 2, VoteKind::Prevote, None).last(),
            Some(&0)
        );
    }

    #[test]
    fn certificates_verify_only_with_a_quorum_of_valid_distinct_signers() {
        let ks = keys(4);
        let v = Validators::new(ks.iter().map(|k| k.did()).collect());
        let refs: Vec<&Keypair> = ks.iter().collect();
        let good = certify("c", &v, 5, 0, [7; 32], &refs[..3]);
        verify_certificate("c", &v, &good).unwrap();

        let short = certify("c", &v, 5, 0, [7; 32], &refs[..2]);
        assert_eq!(
            verify_certificate("c", &v, &short),
            Err(CertificateError::NoQuorum { have: 2, need: 3 })
        );

        let mut dup = good.clone();
        dup.signatures[2] = dup.signatures[1];
        assert_eq!(
            verify_certificate("c", &v, &dup),
            Err(CertificateError::Order)
        );

        let mut outsider = good.clone();
        outsider.signatures[2].0 = 9;
        assert_eq!(
            verify_certificate("c", &v, &outsider),
            Err(CertificateError::NotAValidator(9, 4))
        );

        let mut forged = good.clone();
        forged.value_id = [8; 32];
        assert!(matches!(
            verify_certificate("c", &v, &forged),
            Err(CertificateError::BadSignature(_))
        ));
        assert!(verify_certificate("other-chain", &v, &good).is_err());
    }

    #[test]
    fn a_votes_value_id_is_a_cbor_byte_string_or_null() {
        let ks = keys(1);
        let vote = SignedVote::sign("c", VoteKind::Prevote, 5, 0, Some([7; 32]), 0, &ks[0]);
        let bytes = crate::codec::encode(&vote).unwrap();
        let mut expected = vec![0x68];
        expected.extend_from_slice(b"value_id");
        expected.extend_from_slice(&[0x58, 0x20]);
        expected.extend_from_slice(&[7; 32]);
        assert!(
            bytes.windows(expected.len()).any(|w| w == expected),
            "value_id is not bstr .size 32 in {bytes:02x?}"
        );
        assert_eq!(crate::codec::decode::<SignedVote>(&bytes).unwrap(), vote);

        let nil = SignedVote::sign("c", VoteKind::Prevote, 5, 0, None, 0, &ks[0]);
        let bytes = crate::codec::encode(&nil).unwrap();
        let mut expected = vec![0x68];
        expected.extend_from_slice(b"value_id");
        expected.push(0xf6);
        assert!(bytes.windows(expected.len()).any(|w| w == expected));
        assert_eq!(crate::codec::decode::<SignedVote>(&bytes).unwrap(), nil);
    }

    #[test]
    fn value_id_is_a_cbor_byte_string() {
        let ks = keys(1);
        let v = Validators::new(vec![ks[0].did()]);
        let cert = certify("c", &v, 5, 0, [7; 32], &[&ks[0]]);
        let bytes = crate::codec::encode(&cert).unwrap();
        // The text key "value_id", then major type 2 with a one-byte
        // length (0x58) of 32, then the 32 bytes themselves.
        let mut expected = vec![0x68];
        expected.extend_from_slice(b"value_id");
        expected.extend_from_slice(&[0x58, 0x20]);
        expected.extend_from_slice(&[7; 32]);
        assert!(
            bytes.windows(expected.len()).any(|w| w == expected),
            "value_id is not bstr .size 32 in {bytes:02x?}"
        );
        let back: QuorumCertificate = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, cert);

        // The format-v1 encoding, an array of 32 integers, is refused.
        let mut array = vec![0x98, 0x20];
        array.extend_from_slice(&[7; 32]);
        let mut old = bytes.clone();
        let at = old
            .windows(expected.len())
            .position(|w| w == expected)
            .unwrap()
            + 9;
        old.splice(at..at + 34, array);
        assert!(crate::codec::decode::<QuorumCertificate>(&old).is_err());
    }

    #[test]
    fn a_vote_verifies_only_under_its_voters_key() {
        let ks = keys(4);
        let v = Validators::new(ks.iter().map(|k| k.did()).collect());
        let vote = SignedVote::sign("c", VoteKind::Prevote, 3, 1, None, 2, &ks[2]);
        assert!(vote.verify("c", &v));
        let mut wrong = vote.clone();
        wrong.voter = 1;
        assert!(!wrong.verify("c", &v));
    }
}
