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

use quorate_api::objects::{ByteRange, Forward, ListQuery, Precondition, is_media_type};
use quorate_api::refusal::Refusal;
use quorate_api::signature::ExpectedDigest;
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;
use tokio::sync::mpsc;

use super::Gateway;
use super::accounting::Audited;
use super::downloads::{DOWNLOAD_IDLE_MAX, Download, Ticket};
use super::read::{Asked, Chunk};
use super::uploads::Upload;
use super::write::{Incoming, WriteTerms};
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
                    self.end_idle_uploads().await;
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
                query,
            } => {
                self.first_chunk(from, path, range, if_match, purpose, query)
                    .await
            }
            Request::Chunk { ticket, at } => self.next_chunk(from, &ticket, at).await,
            Request::Put {
                path,
                content_type,
                size,
                precondition,
                purpose,
                data,
                digest,
            } => {
                let first = FirstChunk {
                    content_type,
                    size,
                    precondition,
                    purpose,
                    data: data.into_vec(),
                    digest: digest.map(|d| d.into_vec()),
                };
                self.put_first(from, path, first).await
            }
            Request::PutChunk {
                ticket,
                at,
                data,
                digest,
            } => {
                let digest = digest.map(|d| d.into_vec());
                self.put_next(from, &ticket, at, &data, digest).await
            }
            Request::Delete {
                path,
                precondition,
                purpose,
            } => match self.parse_path(from, &path, Action::Delete).await {
                Ok(path) => self
                    .delete(
                        from,
                        P2P,
                        &path,
                        purpose.as_deref(),
                        precondition,
                        &Forward::default(),
                    )
                    .await
                    .map(|()| Response::Deleted),
                Err(refusal) => Err(refusal),
            },
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
        query: Option<String>,
    ) -> Result<Response, Refusal> {
        let path = self.parse_path(from, &path, Action::Read).await?;
        let forward = Forward {
            query,
            ..Forward::default()
        };
        let asked = Asked {
            caller: from,
            path: &path,
            purpose: purpose.as_deref(),
            forward: &forward,
        };
        let (allowed, chunk) = self
            .admit_read(&asked, P2P, |allowed| {
                self.read_chunk(&asked, allowed, range, if_match)
            })
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

    /// `path` as a resource path; a bad one is refused and audited.
    async fn parse_path(
        &self,
        from: &Did,
        path: &str,
        action: Action,
    ) -> Result<ResourcePath, Refusal> {
        match ResourcePath::parse(path) {
            Ok(path) => Ok(path),
            Err(error) => {
                let refusal = Refusal::BadPath {
                    path: path.to_owned(),
                    error,
                };
                self.refused(P2P, Some(from), action, path, &refusal).await;
                Err(refusal)
            }
        }
    }

    /// A write's first chunk: the whole pipeline (one authorization, one
    /// rate-limit token); the write commits here if it is also the last,
    /// else an upload opens for the rest.
    async fn put_first(
        &self,
        from: &Did,
        path: String,
        first: FirstChunk,
    ) -> Result<Response, Refusal> {
        let path = self.parse_path(from, &path, Action::Write).await?;
        let FirstChunk {
            content_type,
            size,
            precondition,
            purpose,
            data,
            digest,
        } = first;
        let checked = sha256_of(digest).and_then(|digest| {
            if is_media_type(&content_type) {
                Ok(digest)
            } else {
                Err(Refusal::BadRequest(
                    "the content type must be a media type (type/subtype; parameters)",
                ))
            }
        });
        let digest = match checked {
            Ok(digest) => digest,
            Err(refusal) => {
                let request = Audited::change(P2P, from, Action::Write, &path, purpose.as_deref());
                self.record_refused(request, &refusal).await;
                return Err(refusal);
            }
        };
        let allowed = self
            .admit_write(from, P2P, &path, purpose.as_deref(), size)
            .await?;
        let terms = WriteTerms {
            content_type,
            precondition,
            purpose,
        };
        let request = Audited::change(P2P, from, Action::Write, &path, terms.purpose.as_deref());
        let store = self.inner.parts.objects.clone();
        let mut incoming = match Incoming::create(&store, self.write_limit(), None).await {
            Ok(incoming) => incoming,
            Err(refusal) => {
                self.record_write_refused(request, Some(allowed.grant), 0, &refusal)
                    .await;
                return Err(refusal);
            }
        };
        if let Err(refusal) = incoming.append(&data).await {
            return Err(self
                .abandon(request, allowed.grant, incoming, refusal)
                .await);
        }
        if let Some(digest) = digest {
            let expected = ExpectedDigest::sha256(digest);
            return self
                .finish_write(&path, request, allowed.grant, incoming, &expected, &terms)
                .await
                .map(Response::Written);
        }
        let next = incoming.size();
        let upload = Upload {
            caller: *from,
            path: path.clone(),
            grant: allowed.grant,
            terms: terms.clone(),
            incoming: Some(incoming),
            touched: Instant::now(),
        };
        let opened = match self.inner.uploads.lock() {
            Ok(mut uploads) => uploads.open(upload),
            Err(_) => return Err(Refusal::Internal),
        };
        match opened {
            Ok(ticket) => Ok(Response::Uploading {
                ticket: serde_bytes::ByteBuf::from(ticket.to_vec()),
                next,
            }),
            Err((refusal, upload)) => {
                let Upload { incoming, .. } = *upload;
                match incoming {
                    Some(incoming) => Err(self
                        .abandon(request, allowed.grant, incoming, refusal)
                        .await),
                    None => Err(refusal),
                }
            }
        }
    }

    /// The next chunk of an upload authorized at its first: the ledger
    /// fresh and the grant still holding, the bytes where the last chunk
    /// ended; the write commits at the chunk that carries the digest.
    async fn put_next(
        &self,
        from: &Did,
        ticket: &[u8],
        at: u64,
        data: &[u8],
        digest: Option<Vec<u8>>,
    ) -> Result<Response, Refusal> {
        let Ok(ticket) = Ticket::try_from(ticket) else {
            return Err(Refusal::UnknownUpload);
        };
        let taken = match self.inner.uploads.lock() {
            Ok(mut uploads) => uploads.take_incoming(&ticket, from),
            Err(_) => return Err(Refusal::Internal),
        };
        let (mut incoming, grant, path, terms) = taken?;
        if at != incoming.size() {
            let expected = incoming.size();
            self.put_back(&ticket, incoming).await;
            return Err(Refusal::BadChunk {
                expected,
                asked: at,
            });
        }
        let request = Audited::change(P2P, from, Action::Write, &path, terms.purpose.as_deref());
        let checked = match sha256_of(digest) {
            Ok(digest) => self
                .ready()
                .and_then(|()| self.grant_still_holds(grant))
                .map(|()| digest),
            Err(refusal) => Err(refusal),
        };
        let appended = match checked {
            Ok(digest) => incoming.append(data).await.map(|()| digest),
            Err(refusal) => Err(refusal),
        };
        let digest = match appended {
            Ok(digest) => digest,
            Err(refusal) => {
                self.close_upload(&ticket);
                return Err(self.abandon(request, grant, incoming, refusal).await);
            }
        };
        match digest {
            Some(digest) => {
                self.close_upload(&ticket);
                let expected = ExpectedDigest::sha256(digest);
                self.finish_write(&path, request, grant, incoming, &expected, &terms)
                    .await
                    .map(Response::Written)
            }
            None => {
                let next = incoming.size();
                self.put_back(&ticket, incoming).await;
                Ok(Response::Uploading {
                    ticket: serde_bytes::ByteBuf::from(ticket.to_vec()),
                    next,
                })
            }
        }
    }

    /// Returns an upload's file to its table (or removes it if the upload
    /// is gone).
    async fn put_back(&self, ticket: &Ticket, incoming: Incoming) {
        let back = match self.inner.uploads.lock() {
            Ok(mut uploads) => uploads.put_back(ticket, incoming),
            Err(_) => return,
        };
        if let Some(incoming) = back {
            incoming.discard().await;
        }
    }

    fn close_upload(&self, ticket: &Ticket) {
        if let Ok(mut uploads) = self.inner.uploads.lock() {
            uploads.close(ticket);
        }
    }

    /// Ends the uploads idle for [`UPLOAD_IDLE_MAX`](super::UPLOAD_IDLE_MAX):
    /// their files removed, each with its record (the bytes received,
    /// `incomplete`).
    pub(super) async fn end_idle_uploads(&self) {
        let idle = match self.inner.uploads.lock() {
            Ok(mut uploads) => uploads.take_idle(Instant::now()),
            Err(_) => return,
        };
        for upload in idle {
            let Upload {
                caller,
                path,
                grant,
                terms,
                incoming,
                ..
            } = upload;
            let received = incoming.as_ref().map_or(0, Incoming::size);
            if let Some(incoming) = incoming {
                incoming.discard().await;
            }
            let request =
                Audited::change(P2P, &caller, Action::Write, &path, terms.purpose.as_deref());
            self.record_write_ended(request, Some(grant), received, "incomplete")
                .await;
        }
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

/// A write's first chunk, as [`Request::Put`] carries it.
struct FirstChunk {
    content_type: String,
    size: Option<u64>,
    precondition: Precondition,
    purpose: Option<String>,
    data: Vec<u8>,
    digest: Option<Vec<u8>>,
}

/// A chunk's digest, when it carries one: 32 bytes of sha-256.
fn sha256_of(digest: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, Refusal> {
    digest
        .map(|d| {
            <[u8; 32]>::try_from(d.as_slice())
                .map_err(|_| Refusal::BadRequest("an upload's digest is 32 bytes of sha-256"))
        })
        .transpose()
}
