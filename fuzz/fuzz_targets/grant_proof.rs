//! Grant proofs from outside (`quorate grant verify FILE`, and the proof a
//! node serves): canonical decoding of `GrantProof`, then verification.
//!
//! Properties: accepted bytes are canonical; what a verified proof reports
//! is what the proof holds (the grant's id, terms and height, the genesis
//! block's hash); verifying against a trusted genesis succeeds exactly when
//! the proof verifies on its own and its genesis is that one; and a proof
//! rooted in the fixture's genesis that verifies names a grant the
//! fixture's chain really committed, with the same terms and height (no
//! forgery without the members' keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_contracts::{Body, GrantId};
use quorate_fuzz::{fixture, round_trip};
use quorate_ledger::proof::{GrantProof, ProofError};

fuzz_target!(|data: &[u8]| {
    let Some(proof) = round_trip::<GrantProof>(data) else {
        return;
    };
    let f = fixture();
    let trusted = f.consortium.chain.genesis_hash();
    let alone = proof.verify(None);
    let against = proof.verify(Some(&trusted));
    match &alone {
        Ok(verified) => {
            let id = proof.grant.entry.id().expect("id");
            assert_eq!(verified.id, GrantId(id.0));
            let Body::Grant(terms) = &proof.grant.entry.proposal.body else {
                panic!("verified a proof of something other than a grant");
            };
            assert_eq!(&verified.terms, terms);
            assert_eq!(verified.height, proof.grant.header.height);
            assert_eq!(
                verified.genesis_hash,
                proof.genesis.block.hash().expect("hash")
            );
            if verified.genesis_hash == trusted {
                assert_eq!(against.as_ref().ok(), Some(verified));
                let record = f
                    .consortium
                    .chain
                    .state()
                    .grant(&verified.id)
                    .expect("grants in memory are readable")
                    .expect("a verified proof from our genesis names a committed grant");
                assert_eq!(record.terms, verified.terms);
                assert_eq!(record.committed_height, verified.height);
            } else {
                assert!(matches!(against, Err(ProofError::GenesisMismatch { .. })));
            }
        }
        Err(_) => assert!(
            against.is_err(),
            "a trusted genesis made a bad proof verify"
        ),
    }
});
