//! A small consortium for tests (feature `test-support`): keys, genesis,
//! and helpers to propose, endorse, build and certify blocks the way live
//! agreement would. Panics on misuse: it is for tests only.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::block::CommittedBlock;
use crate::chain::MemoryChain;
use crate::consensus::certify;
use crate::entry::{Entry, Proposal};
use crate::genesis;
use quorate_contracts::{
    Action, Body, GrantTerms, MemberId, Policy, RateLimit, ResourcePattern, Timestamp,
};
use quorate_did::Keypair;

pub const CHAIN: &str = "test-consortium";
pub const T0: u64 = 1_800_000_000_000;

pub struct Consortium {
    pub keys: Vec<Keypair>,
    pub names: Vec<String>,
    pub chain: MemoryChain,
    pub blocks: Vec<CommittedBlock>,
    pub nonce: u64,
}

impl Consortium {
    pub fn new(n: u8) -> Self {
        let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let names: Vec<String> = (0..n)
            .map(|i| format!("org-{}", (b'a' + i) as char))
            .collect();
        let members: Vec<(&str, &Keypair)> =
            names.iter().map(|s| s.as_str()).zip(keys.iter()).collect();
        let g = genesis::build(CHAIN, &members, Policy::default(), Timestamp(T0)).unwrap();
        let chain = MemoryChain::from_genesis(&g).unwrap();
        Self {
            keys,
            names,
            chain,
            blocks: vec![g],
            nonce: 0,
        }
    }

    pub fn id(&self, i: usize) -> MemberId {
        let did = self.keys[i].did();
        self.chain.state().member_by_did(&did).expect("member").id
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.chain.tip().time.0 + 1_000)
    }

    /// An entry proposed by member `i`, endorsed by the members in `by`.
    pub fn entry(&mut self, i: usize, body: Body, by: &[usize]) -> Entry {
        self.nonce += 1;
        let proposal = Proposal {
            chain_id: CHAIN.to_owned(),
            epoch: self.chain.state().epoch,
            proposer: self.id(i),
            nonce: self.nonce,
            created_at: self.now(),
            body,
        };
        let mut entry = Entry::propose(proposal, &self.keys[i]).unwrap();
        for &j in by {
            let member = self.id(j);
            entry.endorse(member, &self.keys[j]).unwrap();
        }
        entry
    }

    /// A committed block of `entries` proposed by member 0 and certified
    /// by everyone; entries the rules refuse make this panic.
    pub fn block(&self, entries: Vec<Entry>) -> CommittedBlock {
        let (block, skipped) = self
            .chain
            .build_block(self.id(0), self.now(), entries)
            .unwrap();
        assert!(skipped.is_empty(), "entries refused: {skipped:?}");
        self.certify(block)
    }

    pub fn certify(&self, block: crate::block::Block) -> CommittedBlock {
        let signers: Vec<&Keypair> = self.keys.iter().collect();
        let validators = self.chain.validators();
        let certificate = certify(
            CHAIN,
            &validators,
            block.header.height,
            0,
            block.hash().unwrap().0,
            &signers,
        );
        CommittedBlock { block, certificate }
    }

    pub fn commit(&mut self, entries: Vec<Entry>) -> CommittedBlock {
        let committed = self.block(entries);
        self.chain.apply(&committed).unwrap();
        self.blocks.push(committed.clone());
        committed
    }

    pub fn grant_terms(&self, grantor: usize, grantee: usize) -> GrantTerms {
        GrantTerms {
            grantor: self.id(grantor),
            grantee: self.id(grantee),
            resources: vec![ResourcePattern::parse("datasets/shipments/*").unwrap()],
            actions: vec![Action::Read, Action::List],
            not_before: Timestamp(T0),
            not_after: Timestamp(T0 + 30 * 24 * 3_600_000),
            purpose: Some("customs".to_owned()),
            rate_limit: Some(RateLimit {
                requests: 100,
                per_seconds: 60,
            }),
        }
    }

    /// Everyone endorses.
    pub fn all(&self) -> Vec<usize> {
        (0..self.keys.len()).collect()
    }
}
