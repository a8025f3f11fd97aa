//! Serving peers' agreement requests (status, block ranges) from a read
//! handle on the store, beside the driver: a peer catching up reads
//! committed snapshots on a blocking thread and never takes the agreement
//! task's time. Who may read blocks is the driver's to say: it publishes a
//! [`SyncAccess`] whenever membership (or a pending `AddMember`) changes.
//!
//! Limits: the network admits a bounded number of requests in flight per
//! peer (and a trickle from non-members), its queue to this server is
//! bounded ([`SYNC_EVENTS_MAX`](crate::net::SYNC_EVENTS_MAX)), at most
//! [`SYNC_READS_MAX`] reads run at once, and one answer holds at most
//! [`SYNC_BLOCKS_MAX`](crate::net::protocol::SYNC_BLOCKS_MAX) blocks and
//! `BLOCKS_BYTES_MAX` bytes.

use std::collections::HashSet;
use std::sync::Arc;

use quorate_did::Did;
use quorate_ledger::hash::Hash;
use quorate_ledger::ledger::LedgerReader;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, warn};

use crate::net::protocol::{self, Request, Response};
use crate::net::{self, PeerRequest};

/// What a non-member asking for blocks is told.
pub const SYNC_MEMBERS_ONLY: &str =
    "blocks are served to members, and to a node a pending AddMember names";

/// Most block reads running at once (each on a blocking thread): a node
/// serving several joiners keeps threads for its own work.
pub const SYNC_READS_MAX: usize = 2;

/// Who may read this node's blocks, as the driver last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAccess {
    /// The chain's genesis hash (in every status answer).
    pub genesis: Hash,
    /// The epoch whose member set `readers` holds (`None` until the driver
    /// first publishes): the member set changes only with the epoch.
    pub epoch: Option<u64>,
    /// The members' DIDs, and those a pending `AddMember` names (a node
    /// must sync before it can take part).
    pub readers: HashSet<Did>,
}

impl SyncAccess {
    /// Whether `peer` may read blocks.
    pub fn may_read(&self, peer: &Did) -> bool {
        self.readers.contains(peer)
    }
}

/// Answers agreement requests from [`net::Inbound::sync`].
#[derive(Debug)]
pub struct SyncServer {
    reader: LedgerReader,
    access: watch::Receiver<Arc<SyncAccess>>,
    net: net::Client,
    reads: Arc<Semaphore>,
}

impl SyncServer {
    /// A server reading `reader`, letting in whom `access` names.
    pub fn new(
        reader: LedgerReader,
        access: watch::Receiver<Arc<SyncAccess>>,
        net: net::Client,
    ) -> Self {
        Self {
            reader,
            access,
            net,
            reads: Arc::new(Semaphore::new(SYNC_READS_MAX)),
        }
    }

    /// Serves requests from `inbox` until it closes; returns once every
    /// read under way has answered (so the store is let go of).
    pub async fn serve(self, mut inbox: mpsc::Receiver<PeerRequest>) {
        let mut running = tokio::task::JoinSet::new();
        while let Some(PeerRequest { from, data, reply }) = inbox.recv().await {
            while running.try_join_next().is_some() {}
            let Ok(permit) = self.reads.clone().acquire_owned().await else {
                break;
            };
            let access = self.access.borrow().clone();
            let (reader, net) = (self.reader.clone(), self.net.clone());
            running.spawn(async move {
                let response =
                    tokio::task::spawn_blocking(move || answer(&reader, &access, &from, &data))
                        .await
                        .unwrap_or_else(|_| Response::Refused("internal error".to_owned()));
                drop(permit);
                match protocol::encode(&response) {
                    Ok(bytes) => net.respond(reply, bytes).await,
                    Err(e) => warn!(target: "sync", error = %e, "cannot encode an answer"),
                }
            });
        }
        while running.join_next().await.is_some() {}
    }
}

/// The answer to one request of `from` (blocking: it reads the store).
fn answer(reader: &LedgerReader, access: &SyncAccess, from: &Did, data: &[u8]) -> Response {
    let Ok(request) = protocol::decode::<Request>(data) else {
        return Response::Refused("malformed request".to_owned());
    };
    match request {
        Request::Status => match reader.tip() {
            Ok(tip) => Response::Status {
                genesis: access.genesis,
                height: tip.height,
                hash: Hash(tip.hash),
            },
            Err(e) => {
                warn!(target: "sync", error = %e, "cannot read the tip");
                Response::Refused("cannot read the tip".to_owned())
            }
        },
        Request::Blocks { from: first, to } => {
            // The ledger is the consortium's: blocks go to members, and to
            // a node that a pending AddMember names.
            if !access.may_read(from) {
                debug!(target: "sync", peer = %from, "blocks refused to a non-member");
                return Response::Refused(SYNC_MEMBERS_ONLY.to_owned());
            }
            let blocks = reader.tip_height().and_then(|tip| {
                let last = protocol::sync_batch_end(first, to).min(tip);
                reader.blocks(first, last)
            });
            match blocks {
                Ok(blocks) => Response::Blocks(blocks),
                Err(e) => {
                    warn!(target: "sync", peer = %from, error = %e, "cannot serve blocks");
                    Response::Refused("cannot read blocks".to_owned())
                }
            }
        }
        Request::Object { .. }
        | Request::Chunk { .. }
        | Request::Put { .. }
        | Request::PutChunk { .. }
        | Request::Delete { .. }
        | Request::List { .. }
        | Request::Catalog
        | Request::AccessRequest(_)
        | Request::AccessStatus { .. }
        | Request::AccessWithdraw { .. } => {
            Response::Refused("data requests go to the data protocol".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use quorate_contracts::{Policy, Timestamp};
    use quorate_did::Keypair;
    use quorate_ledger::ledger::Ledger;

    use super::*;

    /// A one-member ledger at genesis, and its reader.
    fn ledger(dir: &tempfile::TempDir) -> (Ledger, Keypair) {
        let key = Keypair::from_seed(&[5; 32]);
        let genesis = quorate_ledger::genesis::build(
            "sync-test",
            &[("org-a", &key)],
            Policy::default(),
            Timestamp(1_700_000_000_000),
        )
        .expect("a genesis");
        let mut ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("a ledger");
        ledger.init_genesis(&genesis).expect("genesis accepted");
        (ledger, key)
    }

    fn ask(reader: &LedgerReader, access: &SyncAccess, from: &Did, request: &Request) -> Response {
        let bytes = protocol::encode(request).expect("encodes");
        answer(reader, access, from, &bytes)
    }

    #[test]
    fn status_to_anyone_blocks_to_readers_only() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (ledger, member) = ledger(&dir);
        let chain = ledger.chain().expect("genesis");
        let (genesis, tip) = (chain.genesis_hash(), chain.tip().hash);
        let reader = ledger.reader();
        let access = SyncAccess {
            genesis,
            epoch: Some(0),
            readers: [member.did()].into_iter().collect(),
        };
        let outsider = Keypair::from_seed(&[6; 32]).did();

        match ask(&reader, &access, &outsider, &Request::Status) {
            Response::Status {
                genesis: g,
                height: 0,
                hash,
            } => assert_eq!((g, hash), (genesis, tip)),
            other => panic!("not a status: {other:?}"),
        }
        let blocks = Request::Blocks { from: 0, to: 100 };
        match ask(&reader, &access, &member.did(), &blocks) {
            Response::Blocks(blocks) => {
                assert_eq!(blocks.len(), 1, "genesis only: the range ends at the tip");
                assert_eq!(blocks[0].block.header.height, 0);
            }
            other => panic!("no blocks for a member: {other:?}"),
        }
        match ask(&reader, &access, &outsider, &blocks) {
            Response::Refused(reason) => assert_eq!(reason, SYNC_MEMBERS_ONLY),
            other => panic!("blocks for an outsider: {other:?}"),
        }
        match answer(&reader, &access, &member.did(), b"\xff\x00 not cbor") {
            Response::Refused(reason) => assert_eq!(reason, "malformed request"),
            other => panic!("a malformed request answered: {other:?}"),
        }
    }
}
