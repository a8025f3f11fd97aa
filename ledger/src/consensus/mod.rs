//! Agreement on blocks: the Tendermint algorithm (Buchman, Kwon, Milosevic
//! 2018) as a pure state machine, and the quorum certificates it produces.
//!
//! This module holds what a verifier needs: validator sets, the exact bytes
//! a vote signs, signed votes, and [`QuorumCertificate`] with
//! [`verify_certificate`]. Nothing here reads the clock or does I/O.
//!
//! ## Vote sign bytes
//!
//! A vote signs, with the validator's Ed25519 key:
//!
//! ```text
//! "QUORATE_VOTE_V1"                      15 ASCII bytes (domain tag)
//! u16-BE length ‖ chain_id               UTF-8
//! height                                 u64 BE
//! round                                  u32 BE
//! kind                                   u8: 1 = prevote, 2 = precommit
//! presence ‖ value id                    u8 1 then 32 bytes, or u8 0 (nil)
//! ```

mod certificate;
mod machine;

pub use machine::{
    Config, ConsensusValue, Effect, Equivocation, Input, Machine, Message,
    NEXT_HEIGHT_MESSAGES_MAX, PROPOSAL_SIGNING_TAG, PersistedState, ROUNDS_AHEAD_MAX,
    ROUNDS_BEHIND_MAX, SignedProposal, Step, TimeoutKind, authenticate_proposal,
    proposal_sign_bytes,
};

pub use certificate::{
    CertificateError, QuorumCertificate, SignedVote, VOTE_SIGNING_TAG, Validators, VoteKind,
    certify, verify_certificate, vote_sign_bytes,
};
