//! Writes into members' namespaces, as the local API asks for them: the
//! client's body goes on to the member's gateway over libp2p as it
//! arrives, in chunks of at most [`UPLOAD_CHUNK_BYTES`] (so one write holds
//! one chunk in memory, whatever its size), its sha-256 computed on the
//! way and sent with the last chunk. The member checks it before storing
//! anything, and answers with the digest of what it stored, which must be
//! ours.

use quorate_api::objects::{PeerWrite, Precondition, Written};
use quorate_api::signature::{ExpectedDigest, StreamingDigest, sha256_field};

use super::*;
use crate::gateway::WRITE_IDLE_MAX;
use crate::net::protocol::UPLOAD_CHUNK_BYTES;

impl LocalNode {
    /// Streams `body` to `peer`'s gateway as a write of `path`.
    pub(super) async fn write_to_peer(
        &self,
        peer: String,
        path: ResourcePath,
        write: PeerWrite,
        body: Body,
    ) -> Result<Written, Problem> {
        let peer = self.peer_did(&peer)?;
        let PeerWrite {
            content_type,
            length,
            precondition,
            purpose,
        } = write;
        let mut stream = body.into_data_stream();
        let mut carry = Vec::new();
        let mut digest = StreamingDigest::new(None);
        let mut ticket: Option<serde_bytes::ByteBuf> = None;
        let mut sent = 0u64;
        let mut first = Some((content_type, precondition, purpose));
        loop {
            let (data, ended) = next_chunk(&mut stream, &mut carry).await?;
            digest.update(&data);
            let sha256 = ended.then(|| digest.clone().finish(&ExpectedDigest::none()));
            let sha256 = sha256.transpose().map_err(|_| Problem::internal())?;
            let length_now = data.len() as u64;
            let data = serde_bytes::ByteBuf::from(data);
            let last = sha256.map(|d| serde_bytes::ByteBuf::from(d.to_vec()));
            let request = match (&ticket, first.take()) {
                (None, Some((content_type, precondition, purpose))) => Request::Put {
                    path: path.to_string(),
                    content_type,
                    size: length,
                    precondition,
                    purpose,
                    data,
                    digest: last,
                },
                (Some(ticket), _) => Request::PutChunk {
                    ticket: ticket.clone(),
                    at: sent,
                    data,
                    digest: last,
                },
                (None, None) => return Err(Problem::internal()),
            };
            let answer = self.ask_peer(&peer, &request).await?;
            sent += length_now;
            match (answer, sha256) {
                (
                    Response::Uploading {
                        ticket: next_ticket,
                        next,
                    },
                    None,
                ) if next == sent => {
                    ticket = Some(next_ticket);
                }
                (Response::Written(written), Some(sha256)) => {
                    // What the member says it stored must be what we sent.
                    if written.digest != sha256_field(&sha256) {
                        return Err(unexpected(
                            "the member stored a body whose sha-256 is not that of what was sent",
                        ));
                    }
                    return Ok(written);
                }
                _ => return Err(unexpected("unexpected answer to an upload")),
            }
        }
    }

    /// Asks `peer`'s gateway to delete `path`.
    pub(super) async fn delete_at_peer(
        &self,
        peer: String,
        path: ResourcePath,
        precondition: Precondition,
        purpose: Option<String>,
    ) -> Result<(), Problem> {
        let peer = self.peer_did(&peer)?;
        let request = Request::Delete {
            path: path.to_string(),
            precondition,
            purpose,
        };
        match self.ask_peer(&peer, &request).await? {
            Response::Deleted => Ok(()),
            _ => Err(unexpected("unexpected answer to a delete")),
        }
    }
}

/// The next chunk of the body (at most [`UPLOAD_CHUNK_BYTES`]), and
/// whether the body ended with it; `carry` keeps what arrived past it.
async fn next_chunk(
    stream: &mut axum::body::BodyDataStream,
    carry: &mut Vec<u8>,
) -> Result<(Vec<u8>, bool), Problem> {
    let chunk = UPLOAD_CHUNK_BYTES as usize;
    while carry.len() < chunk {
        match tokio::time::timeout(WRITE_IDLE_MAX, stream.next()).await {
            Ok(Some(Ok(piece))) => carry.extend_from_slice(&piece),
            Ok(Some(Err(e))) => {
                return Err(Problem::bad_request(format!(
                    "the upload broke off before its end: {e}"
                )));
            }
            Ok(None) => return Ok((std::mem::take(carry), true)),
            Err(_) => {
                return Err(Problem::bad_request(format!(
                    "the upload sent nothing for {} s",
                    WRITE_IDLE_MAX.as_secs()
                )));
            }
        }
    }
    let rest = carry.split_off(chunk);
    Ok((std::mem::replace(carry, rest), false))
}
