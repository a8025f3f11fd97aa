//! Writes: a member stores or deletes an object in this organization's
//! namespace, under a grant that gives it `write` (or `delete`) on the
//! path.
//!
//! A write is authorized before a byte of its body is read, and once
//! however many pieces the body comes in (a streamed HTTP body, or chunks
//! over libp2p: [`super::uploads`]). The bytes go to an upload file of the
//! store as they arrive, hashed twice on the way: blake3 for the ETag, and
//! sha-256 (sha-512 too when the writer sent one) for the digest the
//! writer promised. The write commits only if the digest matches, the
//! ledger is fresh, the grant still holds and the precondition holds (read
//! in the index transaction that writes); then its one audit record names
//! the writer, the bytes and the sha-256. Anything else removes the upload
//! and stores nothing, and is audited as refused with the bytes received.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use quorate_api::gateway::{Upload, Wrote};
use quorate_api::objects::{Forward, ObjectBody, Precondition, Written};
use quorate_api::refusal::Refusal;
use quorate_api::signature::{ExpectedDigest, StreamingDigest, sha256_field};
use quorate_contracts::{Action, GrantId, ResourcePath};
use quorate_did::Did;
use tokio::io::AsyncWriteExt as _;

use super::accounting::Audited;
use super::decide::Allowed;
use super::objects::{Committed, Content, Deleted, ObjectStore};
use super::upstream::{Call, Upstreams, Verb};
use super::{Gateway, storage_failed};

/// How long a write's body may send nothing before the write is refused
/// (a client that stalls cannot hold an upload open for ever).
pub const WRITE_IDLE_MAX: Duration = Duration::from_secs(30);

/// The largest body written to an upstream route's service: held in memory
/// until its digest is checked, so that the service never sees a byte of a
/// body that does not match.
pub const UPSTREAM_WRITE_BYTES_MAX: u64 = 16 * MIB;
/// The bytes of bodies to upstream services held at once, in all
/// (`UPSTREAM_WRITES_MIB_MAX` MiB): past it a write is refused with
/// `too-many-uploads` (503, retry) before its body is read.
pub const UPSTREAM_WRITES_MIB_MAX: usize = 64;
const MIB: u64 = 1024 * 1024;

/// An upload being received: its file in the store's upload directory and
/// its hashes so far.
#[derive(Debug)]
pub(super) struct Incoming {
    file: tokio::fs::File,
    path: PathBuf,
    // Boxed: the hash states are kilobytes, and an upload moves between
    // its table and the task writing its chunk.
    etag: Box<blake3::Hasher>,
    digest: Box<StreamingDigest>,
    size: u64,
    limit: u64,
}

impl Incoming {
    /// A new upload file, for at most `limit` bytes; `expected` says which
    /// digests to compute (sha-256 alone if `None`).
    pub(super) async fn create(
        store: &ObjectStore,
        limit: u64,
        expected: Option<&ExpectedDigest>,
    ) -> Result<Self, Refusal> {
        let path = store.upload_path().map_err(storage_failed)?;
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| storage_failed(e.into()))?;
        Ok(Self {
            file,
            path,
            etag: Box::new(blake3::Hasher::new()),
            digest: Box::new(StreamingDigest::new(expected)),
            size: 0,
            limit,
        })
    }

    /// Bytes received so far.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// The next piece of the body; refused past the limit.
    pub(super) async fn append(&mut self, piece: &[u8]) -> Result<(), Refusal> {
        let size = self.size.saturating_add(piece.len() as u64);
        if size > self.limit {
            return Err(Refusal::TooLarge { max: self.limit });
        }
        self.etag.update(piece);
        self.digest.update(piece);
        self.file
            .write_all(piece)
            .await
            .map_err(|e| storage_failed(e.into()))?;
        self.size = size;
        Ok(())
    }

    /// Removes the upload file.
    pub(super) async fn discard(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

/// What a write stores besides its bytes.
#[derive(Debug, Clone)]
pub(super) struct WriteTerms {
    pub(super) content_type: String,
    pub(super) precondition: Precondition,
    pub(super) purpose: Option<String>,
}

impl Gateway {
    /// The largest object a member may write: `[gateway] write_bytes_max`,
    /// never above `object_bytes_max`.
    pub(super) fn write_limit(&self) -> u64 {
        let config = &self.inner.parts.config;
        config.write_bytes_max.min(config.object_bytes_max)
    }

    /// The front half of every write: decide (`write` on the path), and
    /// refuse a path an upstream serves or a declared length over the
    /// limit. A refusal is audited here.
    pub(super) async fn admit_write(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        purpose: Option<&str>,
        declared: Option<u64>,
    ) -> Result<Allowed, Refusal> {
        let limit = self.write_limit();
        let outcome = self
            .decide(caller, Action::Write, path, purpose)
            .and_then(|allowed| {
                if self.upstreams().serves(path) {
                    return Err(Refusal::NotWritable(path.clone()));
                }
                if declared.is_some_and(|length| length > limit) {
                    return Err(Refusal::TooLarge { max: limit });
                }
                Ok(allowed)
            });
        if let Err(refusal) = &outcome {
            let request = Audited::change(transport, caller, Action::Write, path, purpose);
            self.record_refused(request, refusal).await;
        }
        outcome
    }

    /// A write over HTTP: to an upstream route's service if one serves the
    /// path, else admitted, its body streamed to an upload file, then
    /// committed if it matches its digest.
    pub async fn write(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        upload: Upload,
    ) -> Result<Wrote, Refusal> {
        let upstreams = self.upstreams();
        if upstreams.serves(path) {
            return self
                .forward_write(&upstreams, caller, transport, path, upload)
                .await
                .map(Wrote::Forwarded);
        }
        let Upload {
            body,
            length,
            digest,
            content_type,
            purpose,
            precondition,
            post,
            forward,
        } = upload;
        if post || forward.query.is_some() {
            let refusal = if post {
                Refusal::PostToStored(path.clone())
            } else {
                super::read::QUERY_ON_STORED
            };
            let request =
                Audited::change(transport, caller, Action::Write, path, purpose.as_deref());
            self.record_refused(request, &refusal).await;
            drop(body);
            return Err(refusal);
        }
        let allowed = self
            .admit_write(caller, transport, path, purpose.as_deref(), length)
            .await?;
        let terms = WriteTerms {
            content_type,
            precondition,
            purpose,
        };
        let request = Audited::change(
            transport,
            caller,
            Action::Write,
            path,
            terms.purpose.as_deref(),
        );
        let store = self.inner.parts.objects.clone();
        let mut incoming = match Incoming::create(&store, self.write_limit(), Some(&digest)).await {
            Ok(incoming) => incoming,
            Err(refusal) => {
                self.record_write_refused(request, Some(allowed.grant), 0, &refusal)
                    .await;
                return Err(refusal);
            }
        };
        let mut stream = body.into_data_stream();
        loop {
            let piece = match tokio::time::timeout(WRITE_IDLE_MAX, stream.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(piece))) => piece,
                Ok(Some(Err(_))) => {
                    let refusal = Refusal::BadRequest("the body broke off before its end");
                    return Err(self
                        .abandon(request, allowed.grant, incoming, refusal)
                        .await);
                }
                Err(_) => {
                    let refusal = Refusal::BadRequest("the body sent nothing for 30 s");
                    return Err(self
                        .abandon(request, allowed.grant, incoming, refusal)
                        .await);
                }
            };
            if let Err(refusal) = incoming.append(&piece).await {
                return Err(self
                    .abandon(request, allowed.grant, incoming, refusal)
                    .await);
            }
        }
        self.finish_write(path, request, allowed.grant, incoming, &digest, &terms)
            .await
            .map(Wrote::Stored)
    }

    /// A write to an upstream route's service (signed HTTP only): decided
    /// like any write, its body read into memory (at most
    /// [`UPSTREAM_WRITE_BYTES_MAX`]) and checked against its digest before
    /// the service sees a byte, then sent as PUT or POST with the query and
    /// the headers the route allows; the service's answer goes back. One
    /// audit record names the writer, the bytes and their sha-256.
    async fn forward_write(
        &self,
        upstreams: &Upstreams,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        upload: Upload,
    ) -> Result<ObjectBody, Refusal> {
        let Upload {
            body,
            length,
            digest,
            content_type,
            purpose,
            post,
            forward,
            ..
        } = upload;
        let request = Audited::change(transport, caller, Action::Write, path, purpose.as_deref());
        let limit = self.write_limit().min(UPSTREAM_WRITE_BYTES_MAX);
        let admitted = self
            .decide(caller, Action::Write, path, purpose.as_deref())
            .and_then(|allowed| match length {
                Some(length) if length > limit => Err(Refusal::TooLarge { max: limit }),
                _ => Ok(allowed),
            });
        // The bodies held at once are bounded in all: what this one may
        // take is reserved before a byte is read.
        let reserved = admitted.and_then(|allowed| {
            let mib = length.unwrap_or(limit).min(limit).div_ceil(MIB).max(1);
            let units = u32::try_from(mib).unwrap_or(u32::MAX);
            self.inner
                .upstream_writes
                .clone()
                .try_acquire_many_owned(units)
                .map(|permit| (allowed, permit))
                .map_err(|_| Refusal::TooManyUploads)
        });
        let (allowed, _reserved) = match reserved {
            Ok(reserved) => reserved,
            Err(refusal) => {
                self.record_refused(request, &refusal).await;
                drop(body);
                return Err(refusal);
            }
        };
        let grant = allowed.grant;
        let mut hashed = StreamingDigest::new(Some(&digest));
        let mut data: Vec<u8> = Vec::new();
        let mut stream = body.into_data_stream();
        let received = loop {
            let piece = match tokio::time::timeout(WRITE_IDLE_MAX, stream.next()).await {
                Ok(None) => break Ok(()),
                Ok(Some(Ok(piece))) => piece,
                Ok(Some(Err(_))) => {
                    break Err(Refusal::BadRequest("the body broke off before its end"));
                }
                Err(_) => break Err(Refusal::BadRequest("the body sent nothing for 30 s")),
            };
            if (data.len() + piece.len()) as u64 > limit {
                break Err(Refusal::TooLarge { max: limit });
            }
            hashed.update(&piece);
            data.extend_from_slice(&piece);
        };
        let size = data.len() as u64;
        let checked = received.and_then(|()| {
            let sha256 = hashed.finish(&digest).map_err(Refusal::Digest)?;
            self.ready()?;
            self.grant_still_holds(grant)?;
            Ok(sha256)
        });
        let sha256 = match checked {
            Ok(sha256) => sha256,
            Err(refusal) => {
                self.record_write_refused(request, Some(grant), size, &refusal)
                    .await;
                return Err(refusal);
            }
        };
        let call = Call {
            verb: if post { Verb::Post } else { Verb::Put },
            path,
            query: forward.query.as_deref(),
            headers: &forward.headers,
            caller,
            grant,
            purpose: purpose.as_deref(),
            body: Some((content_type, data.into())),
        };
        match super::read::proxy(upstreams, call).await {
            Ok(answer) => {
                self.record_written(request, grant, size, sha256_field(&sha256))
                    .await;
                Ok(answer)
            }
            Err(refusal) => {
                self.record_write_refused(request, Some(grant), size, &refusal)
                    .await;
                Err(refusal)
            }
        }
    }

    /// Ends a write without storing it: the upload removed, the refusal
    /// audited with the bytes received.
    pub(super) async fn abandon(
        &self,
        request: Audited<'_>,
        grant: GrantId,
        incoming: Incoming,
        refusal: Refusal,
    ) -> Refusal {
        let received = incoming.size();
        incoming.discard().await;
        self.record_write_refused(request, Some(grant), received, &refusal)
            .await;
        refusal
    }

    /// The back half of every write, once its body has arrived: the digest,
    /// a fresh ledger, the grant still holding (a revocation during a long
    /// upload stores nothing), the precondition; then the commit and its
    /// audit record.
    pub(super) async fn finish_write(
        &self,
        path: &ResourcePath,
        request: Audited<'_>,
        grant: GrantId,
        mut incoming: Incoming,
        expected: &ExpectedDigest,
        terms: &WriteTerms,
    ) -> Result<Written, Refusal> {
        if incoming.file.flush().await.is_err() {
            return Err(self
                .abandon(request, grant, incoming, Refusal::Internal)
                .await);
        }
        let checked = (*incoming.digest)
            .clone()
            .finish(expected)
            .map_err(Refusal::Digest)
            .and_then(|sha256| {
                self.ready()?;
                self.grant_still_holds(grant)?;
                Ok(sha256)
            });
        let sha256 = match checked {
            Ok(sha256) => sha256,
            Err(refusal) => return Err(self.abandon(request, grant, incoming, refusal).await),
        };
        let Incoming {
            file,
            path: upload,
            etag,
            size,
            ..
        } = incoming;
        drop(file);
        let store = self.inner.parts.objects.clone();
        let path = path.clone();
        let content_type = terms.content_type.clone();
        let precondition = terms.precondition.clone();
        let now = (self.inner.clock)().0;
        let committed = tokio::task::spawn_blocking(move || {
            let content = Content {
                upload: &upload,
                etag: etag.finalize().to_hex().to_string(),
                size,
                content_type: &content_type,
                now_ms: now,
            };
            let committed = store.commit_if(&path, content, |current| precondition.holds(current));
            if committed.is_err() {
                let _ = std::fs::remove_file(&upload);
            }
            committed
        })
        .await
        .map_err(|_| Refusal::Internal)
        .and_then(|committed| committed.map_err(storage_failed));
        let digest = sha256_field(&sha256);
        match committed {
            Ok(Committed::Stored { info, replaced }) => {
                self.record_written(request, grant, size, digest.clone())
                    .await;
                Ok(Written {
                    object: info,
                    digest,
                    replaced,
                })
            }
            Ok(Committed::Refused) => {
                let refusal = Refusal::PreconditionFailed(terms.precondition.unmet());
                self.record_write_refused(request, Some(grant), size, &refusal)
                    .await;
                Err(refusal)
            }
            Err(refusal) => {
                self.record_write_refused(request, Some(grant), size, &refusal)
                    .await;
                Err(refusal)
            }
        }
    }

    /// A delete under a grant that gives `delete` on the path, if
    /// `precondition` holds; audited either way.
    pub async fn delete(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        purpose: Option<&str>,
        precondition: Precondition,
        forward: &Forward,
    ) -> Result<(), Refusal> {
        let request = Audited::change(transport, caller, Action::Delete, path, purpose);
        let upstreams = self.upstreams();
        let outcome = async {
            let allowed = self.decide(caller, Action::Delete, path, purpose)?;
            if upstreams.serves(path) {
                // The service decides; its answer's body is not passed on.
                let call = Call {
                    verb: Verb::Delete,
                    path,
                    query: forward.query.as_deref(),
                    headers: &forward.headers,
                    caller,
                    grant: allowed.grant,
                    purpose,
                    body: None,
                };
                super::read::proxy(&upstreams, call).await?;
                return Ok(allowed);
            }
            if forward.query.is_some() {
                return Err(super::read::QUERY_ON_STORED);
            }
            let store = self.inner.parts.objects.clone();
            let owned = path.clone();
            let unmet = precondition.unmet();
            let deleted = tokio::task::spawn_blocking(move || {
                store.delete_if(&owned, |current| {
                    current.is_none() || precondition.holds(current)
                })
            })
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(storage_failed)?;
            match deleted {
                Deleted::Deleted => Ok(allowed),
                Deleted::Missing => Err(Refusal::NotFound(path.clone())),
                Deleted::Refused => Err(Refusal::PreconditionFailed(unmet)),
            }
        }
        .await;
        match outcome {
            Ok(allowed) => {
                self.record_allowed(request, Some(allowed.grant), 0, None)
                    .await;
                Ok(())
            }
            Err(refusal) => {
                self.record_refused(request, &refusal).await;
                Err(refusal)
            }
        }
    }
}
