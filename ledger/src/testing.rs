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

/// Appends `count` grants to `ledger` in full blocks, as a consortium whose
/// members hold `keys` would commit them: member `i` grants member `i + 1`
/// read on `scale/<k>/*`, endorsed by a quorum starting at the grantor,
/// every block certified by all. Each block is checked once (built with
/// its check, then adopted on its certificate) and handed to `on_block`
/// after it is durable, so the same blocks can go to other ledgers of the
/// chain. For building large ledgers quickly in benches and tests.
pub fn append_grants(
    ledger: &mut crate::ledger::Ledger,
    keys: &[Keypair],
    count: usize,
    now: Timestamp,
    on_block: impl FnMut(&CommittedBlock),
) {
    append_grants_over(ledger, keys, count, now, 0, on_block)
}

/// [`append_grants`], with block `b` (from 0) made at `start + b × step_ms`
/// and its entries created then: a ledger that grew over time, whose
/// replay window holds only the last proposal TTL's entries, as a real
/// one does (with `step_ms` 0 every entry is within one TTL).
pub fn append_grants_over(
    ledger: &mut crate::ledger::Ledger,
    keys: &[Keypair],
    count: usize,
    start: Timestamp,
    step_ms: u64,
    mut on_block: impl FnMut(&CommittedBlock),
) {
    use crate::block::ENTRIES_PER_BLOCK_MAX;
    let chain = ledger.chain().expect("a ledger with genesis");
    let state = chain.state();
    let members: Vec<MemberId> = keys
        .iter()
        .map(|k| {
            state
                .member_by_did(&k.did())
                .expect("every key a member")
                .id
        })
        .collect();
    let quorum = quorate_contracts::quorum(members.len()) as usize;
    let mut made = 0usize;
    let mut block_index = 0u64;
    while made < count {
        let now = Timestamp(start.0 + block_index * step_ms);
        block_index += 1;
        let chain = ledger.chain().expect("genesis");
        let (epoch, chain_id) = (chain.state().epoch, chain.chain_id().to_owned());
        let in_block = (count - made).min(ENTRIES_PER_BLOCK_MAX);
        let entries: Vec<Entry> = (made..made + in_block)
            .map(|k| {
                let from = k % keys.len();
                let to = (from + 1) % keys.len();
                let terms = GrantTerms {
                    grantor: members[from],
                    grantee: members[to],
                    resources: vec![ResourcePattern::parse(&format!("scale/{k}/*")).unwrap()],
                    actions: vec![Action::Read],
                    not_before: now,
                    not_after: Timestamp(now.0 + 30 * 24 * 3_600_000),
                    purpose: None,
                    rate_limit: None,
                };
                let proposal = Proposal {
                    chain_id: chain_id.clone(),
                    epoch,
                    proposer: members[from],
                    nonce: 1_000_000_000 + k as u64,
                    created_at: now,
                    body: Body::Grant(terms),
                };
                let mut entry = Entry::propose(proposal, &keys[from]).unwrap();
                for j in 1..quorum {
                    let by = (from + j) % keys.len();
                    entry.endorse(members[by], &keys[by]).unwrap();
                }
                entry
            })
            .collect();
        let time = chain.next_block_time(now);
        let (block, checked, skipped) = ledger
            .build_block_checked(members[0], time, entries)
            .unwrap();
        assert!(skipped.is_empty(), "entries refused: {:?}", skipped.first());
        let validators = ledger.chain().expect("genesis").validators();
        let signers: Vec<&Keypair> = keys.iter().collect();
        let certificate = certify(
            &chain_id,
            &validators,
            block.header.height,
            0,
            block.hash().unwrap().0,
            &signers,
        );
        let committed = CommittedBlock { block, certificate };
        ledger.append_checked(&committed, checked).unwrap();
        on_block(&committed);
        made += in_block;
    }
}
