//! The gateway on libp2p (`/quorate/data/2`): members' object and listing
//! requests, straight from the network loop. A refusal leaves as a
//! [`Denial`], its stable code and detail.
//!
//! A read longer than one chunk is one request all the same: the first
//! chunk goes through the whole pipeline (one authorization, one
//! rate-limit token) and opens a [`Download`]; each later chunk presents
//! its ticket and is checked only for the grant still holding and the
//! object unchanged; the one audit record is written when it ends.

use std::time::Instant;

use quorate_api::objects::{ByteRange, ListQuery};
use quorate_api::refusal::Refusal;
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;
use tokio::sync::mpsc;

use super::Gateway;
use super::accounting::Audited;
use super::downloads::{DOWNLOAD_IDLE_MAX, Download, Ticket};
use super::read::Chunk;
use crate::net;
use crate::net::protocol::{self, Denial, Request, Response};

/// The transport name of libp2p requests in audit records.
pub(super) const P2P: &str = "p2p";

impl Gateway {
    /// Serves peers' requests from `inbox` until it closes, each in its own
    /// task, at most `concurrency` at once.
    pub async fn serve_peers(self, mut inbox: mpsc::Receiver<net::PeerRequest>, net: net::Client) {
        let mut sweep = tokio::time::interval(DOWNLOAD_IDLE_MAX / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let net::PeerRequest { from, data, reply } = tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                _ = sweep.tick() => {
                    self.end_idle_downloads().await;
                    continue;
                }
            };
            let request = match protocol::decode::<Request>(&data) {
                Ok(request) => request,
                Err(_) => {
                    let refused = Response::Refused("malformed request".to_owned());
                    if let Ok(bytes) = protocol::encode(&refused) {
                        net.respond(reply, bytes).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                return;
            };
            let (gateway, net) = (self.clone(), net.clone());
            tokio::spawn(async move {
                let response = gateway.answer_peer(&from, request).await;
                match protocol::encode(&response) {
                    Ok(bytes) => net.respond(reply, bytes).await,
                    Err(e) => {
                        tracing::error!(target: "gateway", error = %e, "cannot encode a response")
                    }
                }
                drop(permit);
            });
        }
    }

    /// The answer to one request of the member `from`.
    pub(super) async fn answer_peer(&self, from: &Did, request: Request) -> Response {
        let answer = match request {
            Request::Object {
                path,
                range,
                if_match,
                purpose,
            } => self.first_chunk(from, path, range, if_match, purpose).await,
            Request::Chunk { ticket, at } => self.next_chunk(from, &ticket, at).await,
            Request::List {
                prefix,
                after,
                limit,
                purpose,
            } => {
                let query = ListQuery {
                    prefix,
                    after,
                    limit: Some(limit as usize),
                };
                self.list(from, P2P, &query, purpose.as_deref())
                    .await
                    .map(Response::Listing)
            }
            Request::Catalog => self.catalog_for(from, P2P).await.and_then(|catalog| {
                serde_json::to_vec(&catalog)
                    .ok()
                    .filter(|bytes| bytes.len() <= protocol::CATALOG_BYTES_MAX)
                    .map(|bytes| Response::Catalog(serde_bytes::ByteBuf::from(bytes)))
                    .ok_or(Refusal::Internal)
            }),
            Request::AccessRequest(request) => self
                .access_request(from, P2P, *request)
                .await
                .map(Response::AccessRequest),
            Request::AccessStatus { id } => self
                .access_status(from, &id)
                .await
                .map(Response::AccessRequest),
            Request::AccessWithdraw { id } => self
                .access_withdraw(from, P2P, &id)
                .await
                .map(Response::AccessRequest),
            Request::Status | Request::Blocks { .. } => {
                return Response::Refused("not a gateway request".to_owned());
            }
        };
        answer.unwrap_or_else(|refusal| Response::Denied(Denial::from(&refusal)))
    }

    /// A read through the pipeline: its first chunk, and a download's
    /// ticket when more follow.
    async fn first_chunk(
        &self,
        from: &Did,
        path: String,
        range: Option<ByteRange>,
        if_match: Option<String>,
        purpose: Option<String>,
    ) -> Result<Response, Refusal> {
        let path = match ResourcePath::parse(&path) {
            Ok(path) => path,
            Err(error) => {
                let refusal = Refusal::BadPath {
                    path: path.clone(),
                    error,
                };
                self.refused(P2P, Some(from), Action::Read, &path, &refusal)
                    .await;
                return Err(refusal);
            }
        };
        let fetch = self.read_chunk(&path, range, if_match);
        let (allowed, chunk) = self
            .admit_read(from, P2P, &path, purpose.as_deref(), fetch)
            .await?;
        let Chunk {
            info,
            start,
            end,
            data,
        } = chunk;
        let sent = data.len() as u64;
        let request = Audited::read(P2P, from, &path, purpose.as_deref());
        if start + sent >= end {
            self.record_allowed(request, Some(allowed.grant), sent, None)
                .await;
            return Ok(Response::Object {
                info,
                start,
                end,
                data: serde_bytes::ByteBuf::from(data),
            });
        }
        // More chunks follow: one authorization, one rate-limit token and,
        // when it ends, one audit record for them all.
        let download = Download {
            caller: *from,
            path: path.clone(),
            etag: info.etag.clone(),
            grant: allowed.grant,
            purpose: purpose.clone(),
            next: start + sent,
            end,
            sent,
            touched: Instant::now(),
        };
        let opened = match self.inner.downloads.lock() {
            Ok(mut downloads) => downloads.open(download),
            Err(_) => Err(Refusal::Internal),
        };
        match opened {
            Ok(ticket) => Ok(Response::Download {
                info,
                start,
                end,
                data: serde_bytes::ByteBuf::from(data),
                ticket: serde_bytes::ByteBuf::from(ticket.to_vec()),
            }),
            Err(refusal) => {
                self.record_refused(request, &refusal).await;
                Err(refusal)
            }
        }
    }

    /// The next chunk of a download authorized at its first. The grant
    /// must still hold (a revocation stops a download between chunks) and
    /// the object must not have changed.
    async fn next_chunk(&self, from: &Did, ticket: &[u8], at: u64) -> Result<Response, Refusal> {
        let Ok(ticket) = Ticket::try_from(ticket) else {
            return Err(Refusal::UnknownDownload);
        };
        let download = match self.inner.downloads.lock() {
            Ok(downloads) => downloads.get(&ticket, from).cloned(),
            Err(_) => return Err(Refusal::Internal),
        }
        .ok_or(Refusal::UnknownDownload)?;
        if at != download.next {
            return Err(Refusal::BadChunk {
                expected: download.next,
                asked: at,
            });
        }
        let read = async {
            self.ready()?;
            self.grant_still_holds(download.grant)?;
            let range = ByteRange::Bounded(at, download.end - 1);
            self.read_stored_chunk(&download.path, Some(range), Some(download.etag.clone()))
                .await
        }
        .await;
        let (start, data) = match read {
            Ok(chunk) if !chunk.data.is_empty() => (chunk.start, chunk.data),
            Ok(_) => return Err(Refusal::Internal),
            Err(refusal) => {
                // The download ends here: its record says how far it got.
                let ended = match self.inner.downloads.lock() {
                    Ok(mut downloads) => downloads.close(&ticket),
                    Err(_) => None,
                };
                if let Some(ended) = ended {
                    self.record_download(&ended, Some(refusal.code().as_str()))
                        .await;
                }
                return Err(refusal);
            }
        };
        let finished = match self.inner.downloads.lock() {
            Ok(mut downloads) => downloads.advance(&ticket, data.len() as u64),
            Err(_) => return Err(Refusal::Internal),
        };
        if let Some(finished) = finished {
            self.record_download(&finished, None).await;
        }
        Ok(Response::Chunk {
            start,
            data: serde_bytes::ByteBuf::from(data),
        })
    }

    /// Ends the downloads idle for [`DOWNLOAD_IDLE_MAX`], each with its
    /// record (the bytes sent, `incomplete`).
    pub(super) async fn end_idle_downloads(&self) {
        let idle = match self.inner.downloads.lock() {
            Ok(mut downloads) => downloads.take_idle(Instant::now()),
            Err(_) => return,
        };
        for download in idle {
            self.record_download(&download, Some("incomplete")).await;
        }
    }
}
