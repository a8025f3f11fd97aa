//! What nodes say to each other, on top of the network's bytes.
//!
//! Every message is one canonical CBOR item (the ledger's codec), so a
//! peer's bytes are decoded strictly, with size and depth limits, before
//! anything looks at them.

use quorate_api::objects::{ByteRange, Listing, ObjectInfo, Precondition, Written};
use quorate_api::refusal::{Code, Refusal};
use quorate_ledger::block::{Block, CommittedBlock};
use quorate_ledger::codec::{self, DecodeError, EncodeError};
use quorate_ledger::consensus::{SignedProposal, SignedVote};
use quorate_ledger::entry::{Endorsement, Entry, EntryId};
use quorate_ledger::hash::Hash;
use serde::{Deserialize, Serialize};

/// Most blocks one sync response carries (it is also bounded in bytes).
pub const SYNC_BLOCKS_MAX: u64 = 256;

/// The last height of a batch of blocks from `from` for a reader that
/// wants up to `to`: at most [`SYNC_BLOCKS_MAX`] blocks.
pub fn sync_batch_end(from: u64, to: u64) -> u64 {
    to.min(from.saturating_add(SYNC_BLOCKS_MAX - 1))
}

/// Gossip on the consensus topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConsensusMessage {
    /// A proposer's block for a height and round.
    Proposal(SignedProposal<Block>),
    /// A prevote or precommit.
    Vote(SignedVote),
}

/// Gossip on the mempool topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MempoolMessage {
    /// A new proposal (with the endorsements its sender has). Boxed: it is
    /// far larger than an endorsement; serde encodes the box transparently.
    Entry(Box<Entry>),
    /// One member's endorsement of a known proposal.
    Endorsement {
        /// The proposal.
        entry: EntryId,
        /// The endorsement.
        endorsement: Endorsement,
    },
    /// One member's signed rejection of a proposal, with its reason.
    Rejection {
        /// The proposal.
        entry: EntryId,
        /// The rejection.
        rejection: crate::agreement::mempool::Rejection,
    },
    /// The proposer's signed withdrawal of its proposal.
    Withdrawal {
        /// The proposal.
        entry: EntryId,
        /// The withdrawal.
        withdrawal: crate::agreement::mempool::Withdrawal,
    },
}

/// A request to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Where is your chain?
    Status,
    /// Committed blocks `from..=to` (the answer may stop early).
    Blocks {
        /// First height.
        from: u64,
        /// Last height wanted.
        to: u64,
    },
    /// Part of one of the peer's objects, through its gateway.
    Object {
        /// The path.
        path: String,
        /// The range asked for (the whole object if absent).
        range: Option<ByteRange>,
        /// Serve the range only if the object still has this ETag (the
        /// later chunks of one download).
        if_match: Option<String>,
        /// The purpose the requester declares (a grant that names one
        /// serves only requests that declare it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
        /// The query string for an upstream route (without `?`; at most
        /// `upstream::QUERY_BYTES_MAX` bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    /// The next chunk of a download the gateway already authorized (its
    /// first answer was [`Response::Download`]): no new authorization,
    /// rate-limit token or audit record.
    Chunk {
        /// The download's ticket.
        ticket: serde_bytes::ByteBuf,
        /// The first byte wanted: where the previous chunk ended.
        at: u64,
    },
    /// A listing of the peer's objects, filtered by its gateway.
    List {
        /// Paths starting with this.
        prefix: String,
        /// After this path.
        after: Option<String>,
        /// Page size.
        limit: u32,
        /// The purpose the requester declares.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
    },
    /// A write into the peer's namespace, through its gateway: the first
    /// chunk of the body (at most [`UPLOAD_CHUNK_BYTES`]). Authorized once,
    /// here; the rest follows in [`Request::PutChunk`] with the ticket of
    /// the [`Response::Uploading`] answer.
    Put {
        /// The path.
        path: String,
        /// The media type to store.
        content_type: String,
        /// The body's length, when the writer knows it (refused at once
        /// if over the peer's limit).
        size: Option<u64>,
        /// The write's condition on what it replaces.
        precondition: Precondition,
        /// The purpose the writer declares.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
        /// The first bytes.
        data: serde_bytes::ByteBuf,
        /// On the last chunk only: the sha-256 of the whole body, which
        /// the peer checks before it stores anything.
        digest: Option<serde_bytes::ByteBuf>,
    },
    /// The next chunk of an upload the peer's gateway authorized.
    PutChunk {
        /// The upload's ticket.
        ticket: serde_bytes::ByteBuf,
        /// Where these bytes start in the body: what was sent before.
        at: u64,
        /// The bytes (at most [`UPLOAD_CHUNK_BYTES`]).
        data: serde_bytes::ByteBuf,
        /// On the last chunk only: the sha-256 of the whole body.
        digest: Option<serde_bytes::ByteBuf>,
    },
    /// A delete in the peer's namespace, through its gateway.
    Delete {
        /// The path.
        path: String,
        /// The delete's condition on the object.
        precondition: Precondition,
        /// The purpose the writer declares.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
    },
    /// The peer's catalog of offers, as the requester may see it.
    Catalog,
    /// An access request of the sender's, to the peer (its owner).
    AccessRequest(Box<crate::sharing::request::SignedAccessRequest>),
    /// Where one of the sender's access requests stands.
    AccessStatus {
        /// The request's id.
        id: Hash,
    },
    /// The sender withdraws one of its open access requests.
    AccessWithdraw {
        /// The request's id.
        id: Hash,
    },
}

/// Largest catalog document one answer carries (JSON).
pub const CATALOG_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most content bytes one object response carries; longer ranges take
/// several requests.
pub const OBJECT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Length of a download's or upload's ticket (random, unguessable).
pub const TICKET_BYTES: usize = 16;
/// Most body bytes one upload request carries: requests on the data
/// protocol are bounded by it (plus [`REQUEST_OVERHEAD_BYTES`]), far
/// below responses, because a peer's request is read before anything
/// knows whether it is a member's.
pub const UPLOAD_CHUNK_BYTES: u64 = 1024 * 1024;
/// Room for everything but the data in one request.
pub const REQUEST_OVERHEAD_BYTES: u64 = 64 * 1024;

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The peer's tip.
    Status {
        /// Genesis hash: peers on another chain are ignored.
        genesis: Hash,
        /// Tip height.
        height: u64,
        /// Tip hash.
        hash: Hash,
    },
    /// Blocks, in height order from the requested `from`.
    Blocks(Vec<CommittedBlock>),
    /// The peer will not answer (not a member, unknown request, overloaded).
    Refused(String),
    /// Object content: `data` is `[start, start + data.len())` of the
    /// object (at most [`OBJECT_CHUNK_BYTES`]); `end` is where the range
    /// asked for ends.
    Object {
        /// The object.
        info: ObjectInfo,
        /// First byte of `data`.
        start: u64,
        /// End (exclusive) of the whole range asked for.
        end: u64,
        /// The bytes.
        data: serde_bytes::ByteBuf,
    },
    /// The first chunk of a range longer than one chunk, authorized once
    /// for the whole range: the rest is fetched with [`Request::Chunk`]
    /// and `ticket`, pinned to this content (`info.etag`).
    Download {
        /// The object.
        info: ObjectInfo,
        /// First byte of `data`.
        start: u64,
        /// End (exclusive) of the whole range.
        end: u64,
        /// The bytes (at most [`OBJECT_CHUNK_BYTES`]).
        data: serde_bytes::ByteBuf,
        /// Names the download in [`Request::Chunk`] ([`TICKET_BYTES`]).
        ticket: serde_bytes::ByteBuf,
    },
    /// A later chunk of a download.
    Chunk {
        /// First byte of `data`.
        start: u64,
        /// The bytes (at most [`OBJECT_CHUNK_BYTES`]).
        data: serde_bytes::ByteBuf,
    },
    /// An upload goes on: send the bytes from `next` with `ticket`.
    Uploading {
        /// Names the upload in [`Request::PutChunk`] ([`TICKET_BYTES`]).
        ticket: serde_bytes::ByteBuf,
        /// Bytes received so far.
        next: u64,
    },
    /// A write was stored.
    Written(Written),
    /// A delete was done.
    Deleted,
    /// A listing page.
    Listing(Listing),
    /// A catalog: DCAT in JSON-LD, as JSON text (at most
    /// [`CATALOG_BYTES_MAX`]).
    Catalog(serde_bytes::ByteBuf),
    /// Where an access request stands.
    AccessRequest(crate::sharing::desk::Standing),
    /// The gateway refused.
    Denied(Denial),
}

/// A gateway's refusal on the wire: its stable code, not an HTTP status.
/// The one place a [`Refusal`] becomes a libp2p message, and one becomes a
/// refusal again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The refusal's [`Code`] (e.g. `revoked-grant`).
    pub code: String,
    /// Which check failed (no data).
    pub detail: String,
    /// Seconds to wait, when waiting helps.
    pub retry_after_secs: Option<u64>,
}

impl From<&Refusal> for Denial {
    fn from(refusal: &Refusal) -> Self {
        Self {
            code: refusal.code().as_str().to_owned(),
            detail: refusal.to_string(),
            retry_after_secs: refusal.retry_after_secs(),
        }
    }
}

impl Denial {
    /// The refusal as the asking node reports it: the peer's code if it is
    /// one of ours (a peer cannot put arbitrary text in our problem
    /// types), its detail, and its wait.
    pub fn into_refusal(self) -> Refusal {
        Refusal::ByPeer {
            code: Code::parse(&self.code).unwrap_or(Code::PeerRefused),
            detail: self.detail,
            retry_after_secs: self.retry_after_secs,
        }
    }
}

/// Encodes any protocol message.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    codec::encode(message)
}

/// Decodes any protocol message strictly.
pub fn decode<T: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    codec::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_batch_is_at_most_its_bound_and_never_past_what_was_asked() {
        assert_eq!(sync_batch_end(0, 10_000), SYNC_BLOCKS_MAX - 1);
        assert_eq!(sync_batch_end(10, 20), 20);
        assert_eq!(sync_batch_end(u64::MAX - 1, u64::MAX), u64::MAX);
    }
}
