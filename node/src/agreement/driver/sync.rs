//! Sync: catching up with peers (a task beside the driver), and what the
//! [`SyncServer`](crate::agreement::sync_server::SyncServer) that serves
//! them blocks may let in.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use quorate_contracts::Body;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::hash::Hash;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::agreement::sync_server::{SyncAccess, SyncServer};
use crate::net::protocol::{self, Request, Response};
use crate::net::{self};

use super::*;

/// Capacity of the channel of blocks fetched by the sync task.
pub const SYNCED_MAX: usize = 4;

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
    /// The server of peers' status and block requests: it reads this
    /// driver's store and lets in whom [`publish_sync_access`] names. Run
    /// it beside the driver, on [`net::Inbound::sync`].
    ///
    /// [`publish_sync_access`]: Self::publish_sync_access
    pub fn sync_server(&self) -> SyncServer {
        SyncServer::new(
            self.ledger.reader(),
            self.sync_access.subscribe(),
            self.net.clone(),
        )
    }

    /// Tells the sync server who may read blocks now: the members, and the
    /// nodes that pending `AddMember`s name. Wakes it only on a change.
    pub(super) fn publish_sync_access(&self) {
        let Some(chain) = self.ledger.chain() else {
            return;
        };
        let mut readers: HashSet<quorate_did::Did> =
            chain.state().members.values().map(|m| m.did).collect();
        // Open proposals only: a join that was committed, failed or
        // withdrawn names nobody who may still read (a member removed since,
        // or a key rotated away, would otherwise keep reading for as long
        // as the closed proposal is listed).
        readers.extend(
            self.mempool
                .iter()
                .filter(|(_, p)| p.state.is_open())
                .filter_map(|(_, pending)| match &pending.entry.proposal.body {
                    Body::AddMember(new) => Some(new.did),
                    _ => None,
                }),
        );
        let epoch = Some(chain.state().epoch);
        self.sync_access.send_if_modified(|access| {
            if access.readers == readers && access.epoch == epoch {
                return false;
            }
            *access = Arc::new(SyncAccess {
                genesis: access.genesis,
                epoch,
                readers,
            });
            true
        });
    }

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
                let mut committed = Vec::new();
                for b in &fresh {
                    let height = b.block.header.height;
                    committed.extend(b.block.entry_ids()?.into_iter().map(|id| (height, id)));
                }
                self.after_commit(&committed)
            }
            Err(e) => {
                warn!(target: "sync", error = %e, "blocks from a peer refused");
                Ok(())
            }
        }
    }
}
