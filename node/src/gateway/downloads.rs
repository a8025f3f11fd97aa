//! Downloads over libp2p: a read longer than one chunk, authorized once.
//! Its later chunks present a ticket bound to the caller, the object, the
//! range and the ETag; the download's one audit record is written when it
//! ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quorate_api::refusal::Refusal;
use quorate_contracts::{GrantId, ResourcePath};
use quorate_did::Did;

use crate::net::protocol::TICKET_BYTES;

/// Downloads over libp2p open at once, all members together; past this a
/// new one is refused (`too-many-downloads`) until others end.
pub const DOWNLOADS_MAX: usize = 1024;
/// Downloads one member may have open at once.
pub const DOWNLOADS_PER_MEMBER_MAX: usize = 64;
/// A download whose next chunk is not asked for within this ends (its
/// record written with what was sent).
pub const DOWNLOAD_IDLE_MAX: Duration = Duration::from_secs(60);

/// A download's ticket.
pub(super) type Ticket = [u8; TICKET_BYTES];

/// One download over libp2p: authorized at its first chunk, for a range of
/// one object at one ETag.
#[derive(Debug, Clone)]
pub(super) struct Download {
    pub(super) caller: Did,
    pub(super) path: ResourcePath,
    pub(super) etag: String,
    pub(super) grant: GrantId,
    /// The purpose declared at its first chunk.
    pub(super) purpose: Option<String>,
    /// Where the next chunk starts.
    pub(super) next: u64,
    /// Where the range ends (exclusive).
    pub(super) end: u64,
    /// Bytes sent so far.
    pub(super) sent: u64,
    pub(super) touched: Instant,
}

/// The open downloads, by ticket.
#[derive(Debug, Default)]
pub(super) struct Downloads {
    open: HashMap<Ticket, Download>,
}

impl Downloads {
    /// Opens `download`; its ticket.
    pub(super) fn open(&mut self, download: Download) -> Result<Ticket, Refusal> {
        let mine = self
            .open
            .values()
            .filter(|d| d.caller == download.caller)
            .count();
        if self.open.len() >= DOWNLOADS_MAX || mine >= DOWNLOADS_PER_MEMBER_MAX {
            return Err(Refusal::TooManyDownloads);
        }
        let mut ticket = [0u8; TICKET_BYTES];
        getrandom::fill(&mut ticket).map_err(|_| Refusal::Internal)?;
        self.open.insert(ticket, download);
        Ok(ticket)
    }

    /// The download `ticket` names, if it is `caller`'s.
    pub(super) fn get(&self, ticket: &Ticket, caller: &Did) -> Option<&Download> {
        self.open.get(ticket).filter(|d| d.caller == *caller)
    }

    /// Counts a chunk sent; the download if that was its last.
    pub(super) fn advance(&mut self, ticket: &Ticket, bytes: u64) -> Option<Download> {
        let download = self.open.get_mut(ticket)?;
        download.next += bytes;
        download.sent += bytes;
        download.touched = Instant::now();
        if download.next >= download.end {
            return self.open.remove(ticket);
        }
        None
    }

    /// Ends the download `ticket` names.
    pub(super) fn close(&mut self, ticket: &Ticket) -> Option<Download> {
        self.open.remove(ticket)
    }

    /// Ends the downloads idle for [`DOWNLOAD_IDLE_MAX`] at `now`.
    pub(super) fn take_idle(&mut self, now: Instant) -> Vec<Download> {
        let idle: Vec<Ticket> = self
            .open
            .iter()
            .filter(|(_, d)| now.saturating_duration_since(d.touched) >= DOWNLOAD_IDLE_MAX)
            .map(|(t, _)| *t)
            .collect();
        idle.iter().filter_map(|t| self.open.remove(t)).collect()
    }
}
