//! Uploads over libp2p: a member's write longer than one chunk, authorized
//! once at its first chunk. Its later chunks present a ticket bound to the
//! writer; each must start where the last ended. The write's one audit
//! record is written when it commits, is refused, or goes idle.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quorate_api::refusal::Refusal;
use quorate_contracts::{GrantId, ResourcePath};
use quorate_did::Did;

use super::downloads::Ticket;
use super::write::{Incoming, WriteTerms};
use crate::net::protocol::TICKET_BYTES;

/// Uploads over libp2p open at once, all members together; past this a
/// new one is refused (`too-many-uploads`) until others end. Each holds
/// an upload file of at most `[gateway] write_bytes_max`.
pub const UPLOADS_MAX: usize = 64;
/// Uploads one member may have open at once.
pub const UPLOADS_PER_MEMBER_MAX: usize = 8;
/// An upload whose next chunk does not come within this ends, and its file
/// is removed.
pub const UPLOAD_IDLE_MAX: Duration = Duration::from_secs(60);

/// One upload over libp2p.
#[derive(Debug)]
pub(super) struct Upload {
    pub(super) caller: Did,
    pub(super) path: ResourcePath,
    pub(super) grant: GrantId,
    pub(super) terms: WriteTerms,
    /// The file and hashes; `None` while a chunk is being written (a
    /// second chunk at the same time is refused).
    pub(super) incoming: Option<Incoming>,
    pub(super) touched: Instant,
}

/// The open uploads, by ticket.
#[derive(Debug, Default)]
pub(super) struct Uploads {
    open: HashMap<Ticket, Upload>,
}

impl Uploads {
    /// Opens `upload`; its ticket. Refused (with the upload handed back,
    /// so its file can be removed) past the bounds.
    pub(super) fn open(&mut self, upload: Upload) -> Result<Ticket, (Refusal, Box<Upload>)> {
        let mine = self
            .open
            .values()
            .filter(|u| u.caller == upload.caller)
            .count();
        if self.open.len() >= UPLOADS_MAX || mine >= UPLOADS_PER_MEMBER_MAX {
            return Err((Refusal::TooManyUploads, Box::new(upload)));
        }
        let mut ticket = [0u8; TICKET_BYTES];
        if getrandom::fill(&mut ticket).is_err() {
            return Err((Refusal::Internal, Box::new(upload)));
        }
        self.open.insert(ticket, upload);
        Ok(ticket)
    }

    /// The file of the upload `ticket` names, if it is `caller`'s and no
    /// other chunk of it is being written; it stays open, marked busy,
    /// until [`Uploads::put_back`] or [`Uploads::close`].
    pub(super) fn take_incoming(
        &mut self,
        ticket: &Ticket,
        caller: &Did,
    ) -> Result<(Incoming, GrantId, ResourcePath, WriteTerms), Refusal> {
        let upload = self
            .open
            .get_mut(ticket)
            .filter(|u| u.caller == *caller)
            .ok_or(Refusal::UnknownUpload)?;
        let incoming = upload.incoming.take().ok_or(Refusal::BadRequest(
            "a chunk of this upload is being written",
        ))?;
        upload.touched = Instant::now();
        Ok((
            incoming,
            upload.grant,
            upload.path.clone(),
            upload.terms.clone(),
        ))
    }

    /// Hands the file back after a chunk: the upload waits for the next.
    /// The file comes back if the upload is gone.
    pub(super) fn put_back(&mut self, ticket: &Ticket, incoming: Incoming) -> Option<Incoming> {
        match self.open.get_mut(ticket) {
            Some(upload) => {
                upload.incoming = Some(incoming);
                upload.touched = Instant::now();
                None
            }
            None => Some(incoming),
        }
    }

    /// Ends the upload `ticket` names.
    pub(super) fn close(&mut self, ticket: &Ticket) -> Option<Upload> {
        self.open.remove(ticket)
    }

    /// Ends the uploads idle for [`UPLOAD_IDLE_MAX`] at `now` (not those
    /// with a chunk being written).
    pub(super) fn take_idle(&mut self, now: Instant) -> Vec<Upload> {
        let idle: Vec<Ticket> = self
            .open
            .iter()
            .filter(|(_, u)| {
                u.incoming.is_some() && now.saturating_duration_since(u.touched) >= UPLOAD_IDLE_MAX
            })
            .map(|(t, _)| *t)
            .collect();
        idle.iter().filter_map(|t| self.open.remove(t)).collect()
    }
}
