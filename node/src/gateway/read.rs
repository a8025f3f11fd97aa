//! Reads: what an allowed read is served, from the object store or an
//! upstream service. Over HTTP the range streams; over libp2p it travels
//! in chunks of at most [`OBJECT_CHUNK_BYTES`], each read whole into a
//! buffer. Both go through [`Gateway::admit_read`] first.

use std::future::Future;
use std::io::Read as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt as _;
use quorate_api::objects::{ByteRange, Forward, ObjectBody, ObjectInfo};
use quorate_api::refusal::{Refusal, UpstreamFailure};
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;
use tokio_util::io::ReaderStream;

use super::accounting::Audited;
use super::decide::Allowed;
use super::objects::ObjectStore;
use super::upstream::{Call, Upstreams, Verb};
use super::{Gateway, storage_failed};
use crate::net::protocol::OBJECT_CHUNK_BYTES;

/// Bytes per read of a streamed object.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Objects up to this size are read in one piece, larger ones streamed.
const SMALL_OBJECT_BYTES: u64 = 64 * 1024;

/// Up to one chunk of a range, in memory.
#[derive(Debug)]
pub(super) struct Chunk {
    /// The object.
    pub(super) info: ObjectInfo,
    /// Where `data` starts in the object.
    pub(super) start: u64,
    /// Where the range asked for ends (exclusive).
    pub(super) end: u64,
    /// At most [`OBJECT_CHUNK_BYTES`].
    pub(super) data: Vec<u8>,
}

/// Who asks for what: the parts of a read every step needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked<'a> {
    pub(super) caller: &'a Did,
    pub(super) path: &'a ResourcePath,
    pub(super) purpose: Option<&'a str>,
    pub(super) forward: &'a Forward,
}

impl<'a> Asked<'a> {
    /// The call an upstream route makes for this read, once allowed.
    fn call(&self, allowed: Allowed) -> Call<'a> {
        Call {
            verb: if self.forward.head {
                Verb::Head
            } else {
                Verb::Get
            },
            path: self.path,
            query: self.forward.query.as_deref(),
            headers: &self.forward.headers,
            caller: self.caller,
            grant: allowed.grant,
            purpose: self.purpose,
            body: None,
        }
    }
}

/// A query string on a path no upstream route serves.
pub(super) const QUERY_ON_STORED: Refusal =
    Refusal::BadRequest("a query string is for upstream routes; a stored object takes none");

impl Gateway {
    /// The pipeline for a read over HTTP; the body streams the range.
    pub async fn read(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        range: Option<ByteRange>,
        purpose: Option<&str>,
        forward: &Forward,
    ) -> Result<ObjectBody, Refusal> {
        let asked = Asked {
            caller,
            path,
            purpose,
            forward,
        };
        let upstreams = self.upstreams();
        let fetch = |allowed: Allowed| async move {
            if upstreams.serves(path) {
                proxy(&upstreams, asked.call(allowed)).await
            } else if forward.query.is_some() {
                Err(QUERY_ON_STORED)
            } else {
                open_range(&self.inner.parts.objects, path, range).await
            }
        };
        let (allowed, object) = self.admit_read(&asked, transport, fetch).await?;
        let request = Audited::read(transport, caller, path, purpose);
        let bytes = object.span.1 - object.span.0;
        self.record_allowed(request, Some(allowed.grant), bytes, None)
            .await;
        Ok(object)
    }

    /// The front half of every read: decide, then `fetch` what to serve
    /// (called only once allowed: an upstream is never asked on behalf of
    /// a refused request). A refusal at either step is audited here; the
    /// caller accounts for an allowed read once it knows its bytes.
    pub(super) async fn admit_read<T, F>(
        &self,
        asked: &Asked<'_>,
        transport: &str,
        fetch: impl FnOnce(Allowed) -> F,
    ) -> Result<(Allowed, T), Refusal>
    where
        F: Future<Output = Result<T, Refusal>>,
    {
        let outcome = async {
            let allowed = self.decide(asked.caller, Action::Read, asked.path, asked.purpose)?;
            Ok((allowed, fetch(allowed).await?))
        }
        .await;
        if let Err(refusal) = &outcome {
            let request = Audited::read(transport, asked.caller, asked.path, asked.purpose);
            self.record_refused(request, refusal).await;
        }
        outcome
    }

    /// Up to one chunk of `range` of what `asked` names, from its
    /// upstream or the store (the libp2p path), once `allowed`.
    pub(super) async fn read_chunk(
        &self,
        asked: &Asked<'_>,
        allowed: Allowed,
        range: Option<ByteRange>,
        if_match: Option<String>,
    ) -> Result<Chunk, Refusal> {
        let upstreams = self.upstreams();
        if upstreams.serves(asked.path) {
            return proxy_chunk(&upstreams, asked.call(allowed), range).await;
        }
        if asked.forward.query.is_some() {
            return Err(QUERY_ON_STORED);
        }
        self.read_stored_chunk(asked.path, range, if_match).await
    }

    /// Up to one chunk of `range` of the stored object `path`, if it still
    /// has the ETag `if_match`.
    pub(super) async fn read_stored_chunk(
        &self,
        path: &ResourcePath,
        range: Option<ByteRange>,
        if_match: Option<String>,
    ) -> Result<Chunk, Refusal> {
        let store = self.inner.parts.objects.clone();
        let owned = path.clone();
        let buffer = chunk_buffer();
        tokio::task::spawn_blocking(move || {
            let (info, (start, end), file) = open_span(&store, &owned, range, if_match.as_deref())?;
            let data = read_into(file, (end - start).min(OBJECT_CHUNK_BYTES), buffer)?;
            Ok(Chunk {
                info,
                start,
                end,
                data,
            })
        })
        .await
        .map_err(|_| Refusal::Internal)?
    }
}

/// An upstream's answer as an object body (streamed, whole: `Range` is
/// not forwarded, which RFC 9110 allows).
pub(super) async fn proxy(upstreams: &Upstreams, call: Call<'_>) -> Result<ObjectBody, Refusal> {
    let path = call.path.to_string();
    let response = upstreams.call(call).await?;
    let size = response.length.unwrap_or(0);
    Ok(ObjectBody {
        info: ObjectInfo {
            path,
            size,
            etag: String::new(),
            content_type: response.content_type,
            modified_ms: 0,
        },
        span: (0, size),
        partial: false,
        sized: response.length.is_some(),
        body: response.body,
        status: (response.status != StatusCode::OK).then_some(response.status),
        passed: response.headers,
    })
}

/// An upstream's answer for the libp2p path: buffered, so at most one
/// chunk, with an ETag of its content; `range` applied here.
async fn proxy_chunk(
    upstreams: &Upstreams,
    call: Call<'_>,
    range: Option<ByteRange>,
) -> Result<Chunk, Refusal> {
    let object = proxy(upstreams, call).await?;
    let mut data = buffered(object.body, OBJECT_CHUNK_BYTES).await?;
    let info = ObjectInfo {
        size: data.len() as u64,
        etag: blake3::hash(&data).to_hex().to_string(),
        ..object.info
    };
    let (start, end) = span(range, info.size)?;
    data.truncate(end as usize);
    data.drain(..start as usize);
    Ok(Chunk {
        info,
        start,
        end,
        data,
    })
}

/// `body` in memory, refused past `limit` bytes.
pub(super) async fn buffered(body: Body, limit: u64) -> Result<Vec<u8>, UpstreamFailure> {
    let mut data = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| UpstreamFailure::BodyBroke(e.to_string()))?;
        if (data.len() + piece.len()) as u64 > limit {
            return Err(UpstreamFailure::TooLarge(limit));
        }
        data.extend_from_slice(&piece);
    }
    Ok(data)
}

/// Opens `range` of the stored object `path` as a streamed body.
pub async fn open_range(
    store: &Arc<ObjectStore>,
    path: &ResourcePath,
    range: Option<ByteRange>,
) -> Result<ObjectBody, Refusal> {
    let store = store.clone();
    let owned = path.clone();
    let (info, span, content) = tokio::task::spawn_blocking(move || {
        let (info, span, file) = open_span(&store, &owned, range, None)?;
        let length = span.1 - span.0;
        // Small: read it here, in this one blocking call, rather than
        // stream it through a file handle that blocks per read.
        let content = if length <= SMALL_OBJECT_BYTES {
            Content::Read(read_into(file, length, Vec::new())?)
        } else {
            Content::File(file)
        };
        Ok::<_, Refusal>((info, span, content))
    })
    .await
    .map_err(|_| Refusal::Internal)??;
    let body = match content {
        Content::Read(data) => Body::from(data),
        Content::File(file) => {
            let reader =
                tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), span.1 - span.0);
            Body::from_stream(ReaderStream::with_capacity(reader, STREAM_CHUNK_BYTES))
        }
    };
    Ok(ObjectBody {
        info,
        span,
        partial: range.is_some(),
        sized: true,
        body,
        status: None,
        passed: axum::http::HeaderMap::new(),
    })
}

enum Content {
    Read(Vec<u8>),
    File(std::fs::File),
}

/// The span `[start, end)` that `range` asks for in an object of `size`
/// bytes (all of it without a range).
fn span(range: Option<ByteRange>, size: u64) -> Result<(u64, u64), Refusal> {
    match range {
        None => Ok((0, size)),
        Some(range) => range
            .resolve(size)
            .ok_or(Refusal::RangeNotSatisfiable { size }),
    }
}

/// Opens `range` of the stored object `path` (blocking): its info, the
/// span, and the file at the span's start. With `if_match`, only if the
/// object still has that ETag.
fn open_span(
    store: &ObjectStore,
    path: &ResourcePath,
    range: Option<ByteRange>,
    if_match: Option<&str>,
) -> Result<(ObjectInfo, (u64, u64), std::fs::File), Refusal> {
    let Some(meta) = store.meta(path).map_err(storage_failed)? else {
        return Err(Refusal::NotFound(path.clone()));
    };
    let span = span(range, meta.size)?;
    let Some((info, file)) = store.open_at(path, span.0).map_err(storage_failed)? else {
        return Err(Refusal::NotFound(path.clone()));
    };
    // The span is the one measured: an object replaced in between is
    // refused rather than served from the other content.
    if info.etag != meta.etag || if_match.is_some_and(|etag| etag != info.etag) {
        return Err(Refusal::Changed);
    }
    Ok((info, span, file))
}

/// `length` bytes of `file` into `buffer` (blocking).
fn read_into(file: std::fs::File, length: u64, mut buffer: Vec<u8>) -> Result<Vec<u8>, Refusal> {
    buffer.clear();
    buffer.reserve_exact(length as usize);
    file.take(length)
        .read_to_end(&mut buffer)
        .map_err(|e| storage_failed(e.into()))?;
    Ok(buffer)
}

/// A buffer for one chunk, allocated by the caller's (async) thread.
/// Chunks are read on the blocking pool, whose many threads each get a
/// malloc arena of their own: a 4 MiB buffer allocated there stays cached
/// in that thread's arena, so a long download touching many pool threads
/// grew the node by several chunks per thread (the large-object test saw
/// 25 to 60 MiB for one 96 MiB fetch). Allocated on the few worker threads
/// instead, the memory is reused.
fn chunk_buffer() -> Vec<u8> {
    Vec::with_capacity(OBJECT_CHUNK_BYTES as usize)
}
