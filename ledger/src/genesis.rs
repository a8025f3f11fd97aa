//! Building a genesis block: the founding members sign it together.
//!
//! Every founding member endorses the genesis entry and precommits the
//! genesis block. In a real consortium each organization signs on its own
//! machine; [`build`] takes all keys at once, which is what a local testnet
//! (one operator holding every key) and tests need.

use quorate_contracts::{Body, Genesis, MemberId, NewMember, Policy, State, Timestamp};
use quorate_did::Keypair;

use crate::block::{Block, BlockHeader, CommittedBlock, tx_root};
use crate::chain::{GENESIS_PROPOSER, genesis_member_ids, state_root, validators_of};
use crate::codec::EncodeError;
use crate::consensus::certify;
use crate::entry::{Endorsement, Entry, Proposal, endorsement_message};
use crate::hash::Hash;

/// Why a genesis could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The genesis breaks a rule (names, keys, policy, chain id).
    #[error("invalid genesis: {0}")]
    Rule(#[from] quorate_contracts::Violation),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The state root could not be computed.
    #[error("genesis state: {0}")]
    State(#[from] crate::chain::BlockError),
}

/// The genesis block of a consortium of `members` (name, key), signed by
/// all of them.
pub fn build(
    chain_id: &str,
    members: &[(&str, &Keypair)],
    policy: Policy,
    time: Timestamp,
) -> Result<CommittedBlock, GenesisError> {
    let genesis = Genesis {
        chain_id: chain_id.to_owned(),
        members: members
            .iter()
            .map(|(name, key)| NewMember {
                name: (*name).to_owned(),
                did: key.did(),
            })
            .collect(),
        policy,
        time,
    };
    let proposal = Proposal {
        chain_id: chain_id.to_owned(),
        epoch: 0,
        proposer: GENESIS_PROPOSER,
        nonce: 0,
        created_at: time,
        body: Body::Genesis(genesis.clone()),
    };
    let id = proposal.id()?;
    let ids: Vec<MemberId> = genesis_member_ids(&id, members.len());
    let state = State::genesis(&genesis, &ids)?;
    let mut entry = Entry {
        proposal,
        endorsements: Vec::new(),
    };
    for (member, (_, key)) in ids.iter().zip(members) {
        entry.add_endorsement(Endorsement {
            member: *member,
            signature: key.sign(&endorsement_message(&id)),
        });
    }
    let header = BlockHeader {
        chain_id: chain_id.to_owned(),
        height: 0,
        prev_hash: Hash::default(),
        epoch: 0,
        time,
        proposer: ids.first().copied().unwrap_or(GENESIS_PROPOSER),
        tx_root: tx_root(&[entry.leaf_hash()?]),
        state_root: state_root(&state)?,
    };
    let block = Block {
        header,
        entries: vec![entry],
    };
    let keys: Vec<&Keypair> = members.iter().map(|(_, k)| *k).collect();
    let certificate = certify(
        chain_id,
        &validators_of(&state),
        0,
        0,
        block.hash()?.0,
        &keys,
    );
    Ok(CommittedBlock { block, certificate })
}
