//! Sync: catching up with peers (a task beside the driver) and serving
//! them blocks (members only, and a node a pending AddMember names).

use std::time::Duration;

use quorate_contracts::Body;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::hash::Hash;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::net::protocol::{self, Request, Response};
use crate::net::{self};

use super::*;

/// Capacity of the channel of blocks fetched by the sync task.
pub const SYNCED_MAX: usize = 4;

/// What a non-member asking for blocks is told.
pub const SYNC_MEMBERS_ONLY: &str =
    "blocks are served to members, and to a node a pending AddMember names";

/// Compares tips with peers and fetches the blocks we lack. Runs beside the
/// driver so a slow peer never stalls agreement; the driver verifies
/// everything it sends.
pub(super) async fn sync_loop(
    net: net::Client,
    status: watch::Receiver<Status>,
    genesis: Hash,
    interval: Duration,
    synced: mpsc::Sender<Vec<CommittedBlock>>,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let ours = status.borrow().height;
        for peer in net.peers().await {
            let Ok(bytes) = protocol::encode(&Request::Status) else {
                return;
            };
            let Ok(answer) = net.request(peer, bytes).await else {
                continue;
            };
            let Ok(Response::Status {
                genesis: theirs,
                height,
                ..
            }) = protocol::decode(&answer)
            else {
                continue;
            };
            if theirs != genesis || height <= ours {
                continue;
            }
            let mut from = ours + 1;
            while from <= height {
                let Ok(bytes) = protocol::encode(&Request::Blocks { from, to: height }) else {
                    return;
                };
                let Ok(answer) = net.request(peer, bytes).await else {
                    break;
                };
                let Ok(Response::Blocks(blocks)) = protocol::decode(&answer) else {
                    break;
                };
                let Some(last) = blocks.last().map(|b| b.block.header.height) else {
                    break;
                };
                if synced.send(blocks).await.is_err() {
                    return;
                }
                from = last + 1;
            }
            break;
        }
    }
}

impl Driver {
    pub(super) fn on_synced(&mut self, blocks: Vec<CommittedBlock>) -> Result<(), DriverError> {
        let tip = self.chain()?.tip().height;
        let fresh: Vec<CommittedBlock> = blocks
            .into_iter()
            .filter(|b| b.block.header.height > tip)
            .collect();
        let Some(last) = fresh.last().map(|b| b.block.header.height) else {
            return Ok(());
        };
        if fresh[0].block.header.height != tip + 1 {
            return Ok(());
        }
        match self.ledger.append_batch(&fresh) {
            Ok(()) => {
                info!(target: "sync", from = tip + 1, to = last, "caught up");
                let mut ids = Vec::new();
                for b in &fresh {
                    ids.extend(b.block.entry_ids()?);
                }
                self.after_commit(last, &ids)
            }
            Err(e) => {
                warn!(target: "sync", error = %e, "blocks from a peer refused");
                Ok(())
            }
        }
    }

    /// Whether `peer` may read blocks: a member, or named by an AddMember
    /// this node holds pending (the scan only runs for a non-member, whose
    /// requests the network already limits to a few per second).
    pub(super) fn may_sync(
        &self,
        chain: &quorate_ledger::chain::ChainState,
        peer: &quorate_did::Did,
    ) -> bool {
        chain.state().member_by_did(peer).is_some()
            || self.mempool.iter().any(|(_, pending)| {
                matches!(&pending.entry.proposal.body, Body::AddMember(new) if new.did == *peer)
            })
    }

    pub(super) fn answer(&self, from: &quorate_did::Did, request: Request) -> Response {
        let Some(chain) = self.ledger.chain() else {
            return Response::Refused("no ledger yet".to_owned());
        };
        match request {
            Request::Status => Response::Status {
                genesis: chain.genesis_hash(),
                height: chain.tip().height,
                hash: chain.tip().hash,
            },
            Request::Blocks { from: first, to } => {
                // The ledger is the consortium's: blocks go to members, and
                // to a node that a pending AddMember names (it must sync
                // before it can take part).
                if !self.may_sync(chain, from) {
                    debug!(target: "sync", peer = %from, "blocks refused to a non-member");
                    return Response::Refused(SYNC_MEMBERS_ONLY.to_owned());
                }
                let last = protocol::sync_batch_end(first, to).min(chain.tip().height);
                match self.ledger.blocks(first, last) {
                    Ok(blocks) => Response::Blocks(blocks),
                    Err(e) => {
                        warn!(target: "sync", peer = %from, error = %e, "cannot serve blocks");
                        Response::Refused("cannot read blocks".to_owned())
                    }
                }
            }
            Request::Object { .. } | Request::Chunk { .. } | Request::List { .. } => {
                Response::Refused("data requests go to the data protocol".to_owned())
            }
        }
    }
}
