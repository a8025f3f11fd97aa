//! The access desk: the requests this organization received (incoming)
//! and made (outgoing), where each stands, kept in `access-requests.cbor`
//! in the data directory (rewritten whole and durably before a change is
//! acknowledged to anyone).
//!
//! Bounded everywhere: at most [`RECORDS_MAX`] requests kept, at most
//! [`OPEN_PER_MEMBER_MAX`] open from (or to) one member, at most
//! [`NEW_PER_MEMBER_PER_HOUR`] new ones from one member an hour, at most
//! [`KEPT_PER_MEMBER_MAX`] kept per member, the file at most 32 MiB; an open
//! request expires after [`OPEN_TTL_MS`], a closed one is forgotten after
//! [`CLOSED_KEEP_MS`] (or sooner, oldest first, when room is needed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quorate_api::local::access_requests::{
    AccessRequestState, AccessRequestView, DECLINE_REASON_BYTES_MAX, Direction,
};
use quorate_contracts::{MemberId, State};
use quorate_ledger::hash::Hash;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::request::SignedAccessRequest;

/// File name of the desk in the data directory.
pub const DESK_FILE: &str = "access-requests.cbor";
/// Most requests kept, both directions together.
pub const RECORDS_MAX: usize = 1024;
/// Most open requests from one member (incoming), or to one (outgoing).
pub const OPEN_PER_MEMBER_MAX: usize = 16;
/// Most new requests one member may make of this organization an hour.
pub const NEW_PER_MEMBER_PER_HOUR: usize = 64;
/// How long a request stays open without a decision.
pub const OPEN_TTL_MS: u64 = 30 * 86_400_000;
/// How long a closed request stays listed.
pub const CLOSED_KEEP_MS: u64 = 30 * 86_400_000;
/// Most requests kept from (or to) one member, closed ones included: one
/// member cannot fill the desk, nor its file.
pub const KEPT_PER_MEMBER_MAX: usize = 128;
/// Longest `by` (who decided) kept from an owner's answer.
const BY_BYTES_MAX: usize = 128;
/// Largest desk file written or read: a change that would make it larger
/// is refused (`Full`), so the file always opens again.
const DESK_FILE_BYTES_MAX: u64 = 32 << 20;
/// The file's format version.
const FORMAT_VERSION: u32 = 1;

/// Where a request stands (as kept and as the owner answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// Waiting for the owner.
    Open,
    /// Accepted: the owner proposed the grant `proposal`.
    Accepted {
        /// The grant proposal (the grant's id once committed).
        proposal: Hash,
        /// Who accepted (`admin`, `token:<name>`, `policy:<rule>`).
        by: String,
        /// When (ms).
        at_ms: u64,
    },
    /// Declined.
    Declined {
        /// Why.
        reason: String,
        /// Who declined.
        by: String,
        /// When (ms).
        at_ms: u64,
    },
    /// Withdrawn by the requester.
    Withdrawn {
        /// When (ms).
        at_ms: u64,
    },
    /// Nobody decided in time.
    Expired {
        /// When (ms).
        at_ms: u64,
    },
}

impl Standing {
    /// Whether it waits for a decision.
    pub fn is_open(&self) -> bool {
        matches!(self, Standing::Open)
    }

    /// When it closed, if it did.
    fn closed_at(&self) -> Option<u64> {
        match self {
            Standing::Open => None,
            Standing::Accepted { at_ms, .. }
            | Standing::Declined { at_ms, .. }
            | Standing::Withdrawn { at_ms }
            | Standing::Expired { at_ms } => Some(*at_ms),
        }
    }

    /// The same, with what came from a peer cut to our bounds, and its
    /// time no later than `now_ms` (a peer's clock cannot keep a record
    /// here forever).
    pub fn bounded(self, now_ms: u64) -> Self {
        let cut =
            |text: String, max: usize| quorate_contracts::truncate_at_char(&text, max).to_owned();
        match self {
            Standing::Accepted {
                proposal,
                by,
                at_ms,
            } => Standing::Accepted {
                proposal,
                by: cut(by, BY_BYTES_MAX),
                at_ms: at_ms.min(now_ms),
            },
            Standing::Declined { reason, by, at_ms } => Standing::Declined {
                reason: cut(reason, DECLINE_REASON_BYTES_MAX),
                by: cut(by, BY_BYTES_MAX),
                at_ms: at_ms.min(now_ms),
            },
            Standing::Withdrawn { at_ms } => Standing::Withdrawn {
                at_ms: at_ms.min(now_ms),
            },
            Standing::Expired { at_ms } => Standing::Expired {
                at_ms: at_ms.min(now_ms),
            },
            Standing::Open => Standing::Open,
        }
    }

    fn view(&self) -> AccessRequestState {
        match self.clone() {
            Standing::Open => AccessRequestState::Open {},
            Standing::Accepted {
                proposal,
                by,
                at_ms,
            } => AccessRequestState::Accepted {
                proposal: proposal.to_string(),
                by,
                at_ms,
            },
            Standing::Declined { reason, by, at_ms } => {
                AccessRequestState::Declined { reason, by, at_ms }
            }
            Standing::Withdrawn { at_ms } => AccessRequestState::Withdrawn { at_ms },
            Standing::Expired { at_ms } => AccessRequestState::Expired { at_ms },
        }
    }
}

/// Which way a kept request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Way {
    /// Asked of this organization.
    Incoming,
    /// Asked by it.
    Outgoing,
}

/// One kept request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The request as signed.
    pub request: SignedAccessRequest,
    /// Its id.
    pub id: Hash,
    /// Which way it goes.
    pub way: Way,
    /// The requester (member id, stable across key rotations).
    pub requester: MemberId,
    /// The owner.
    pub owner: MemberId,
    /// Where it stands.
    pub standing: Standing,
    /// When this node stored it (ms).
    pub stored_at_ms: u64,
    /// For an outgoing request: when the owner last answered about it.
    pub checked_at_ms: Option<u64>,
    /// For an incoming one: what the policy said.
    pub policy: Option<String>,
}

impl Record {
    /// The API's view, with members by name (their did:key once removed).
    pub fn view(&self, state: &State) -> AccessRequestView {
        let name = |id: &MemberId, did: &quorate_did::Did| {
            state
                .members
                .get(id)
                .map_or_else(|| did.to_string(), |m| m.name.clone())
        };
        let body = &self.request.body;
        AccessRequestView {
            id: self.id.to_string(),
            direction: match self.way {
                Way::Incoming => Direction::Incoming,
                Way::Outgoing => Direction::Outgoing,
            },
            requester: name(&self.requester, &body.requester),
            owner: name(&self.owner, &body.owner),
            offer: body.offer.clone(),
            resources: body.resources.clone(),
            actions: body.actions.clone(),
            not_before_ms: body.not_before_ms,
            not_after_ms: body.not_after_ms,
            duration_ms: body.duration_ms,
            purpose: body.purpose.clone(),
            message: body.message.clone(),
            created_at_ms: body.created_at_ms,
            state: self.standing.view(),
            checked_at_ms: self.checked_at_ms,
            policy: self.policy.clone(),
        }
    }
}

/// Why the desk refused a change (nothing changed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeskError {
    /// No request of that id (in that direction).
    #[error("no access request {0}")]
    Unknown(Hash),
    /// The request is decided (or withdrawn, or expired) already.
    #[error("access request {id} is {state} already")]
    Closed {
        /// Its id.
        id: Hash,
        /// How it ended.
        state: &'static str,
    },
    /// Too many open requests from (or to) this member.
    #[error(
        "{OPEN_PER_MEMBER_MAX} requests between these members are open already: wait for a decision or withdraw one"
    )]
    TooManyOpen,
    /// Too many new requests from this member lately.
    #[error(
        "at most {NEW_PER_MEMBER_PER_HOUR} new access requests an hour from one member; try again later"
    )]
    TooFrequent,
    /// The desk is full of open requests.
    #[error("the access desk holds {RECORDS_MAX} open requests; try again later")]
    Full,
    /// The file cannot be written (nothing changed).
    #[error("cannot write the access requests: {0}")]
    Io(std::io::Error),
}

impl Standing {
    fn word(&self) -> &'static str {
        match self {
            Standing::Open => "open",
            Standing::Accepted { .. } => "accepted",
            Standing::Declined { .. } => "declined",
            Standing::Withdrawn { .. } => "withdrawn",
            Standing::Expired { .. } => "expired",
        }
    }
}

/// Why the desk file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not a desk file.
    #[error("{path} is not an access-request file: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why not.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct DeskFile {
    version: u32,
    records: Vec<Record>,
}

#[derive(Debug, Default)]
struct Records {
    by_id: BTreeMap<Hash, Record>,
    /// When each member's recent new requests arrived (the last hour's).
    arrivals: HashMap<MemberId, VecDeque<u64>>,
    /// Incoming requests whose grant is being proposed.
    accepting: std::collections::HashSet<Hash>,
    /// Expiries made in memory, not yet written.
    dirty: bool,
}

/// The access desk (cheap to clone).
#[derive(Debug, Clone)]
pub struct Desk {
    path: Arc<PathBuf>,
    records: Arc<Mutex<Records>>,
}

impl Desk {
    /// Reads `dir/access-requests.cbor` (empty if there is none).
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let path = dir.join(DESK_FILE);
        let mut records = Records::default();
        let read =
            crate::home::durable::read_bounded(&path, DESK_FILE_BYTES_MAX).map_err(|source| {
                OpenError::Io {
                    path: path.clone(),
                    source,
                }
            })?;
        if let Some(bytes) = read {
            let corrupt = |why: String| OpenError::Corrupt {
                path: path.clone(),
                why,
            };
            let file: DeskFile =
                quorate_ledger::codec::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
            if file.version != FORMAT_VERSION {
                return Err(corrupt(format!("format version {}", file.version)));
            }
            if file.records.len() > RECORDS_MAX {
                return Err(corrupt(format!("more than {RECORDS_MAX} requests")));
            }
            for record in file.records {
                records.by_id.insert(record.id, record);
            }
        }
        Ok(Self {
            path: Arc::new(path),
            records: Arc::new(Mutex::new(records)),
        })
    }

    /// Every kept request, newest first, after expiring what is due.
    pub async fn list(&self, now_ms: u64) -> Result<Vec<Record>, DeskError> {
        let mut records = self.records.lock().await;
        if expire(&mut records, now_ms) || records.dirty {
            self.write(&records).await?;
            records.dirty = false;
        }
        let mut out: Vec<Record> = records.by_id.values().cloned().collect();
        out.sort_by(|a, b| {
            b.request
                .body
                .created_at_ms
                .cmp(&a.request.body.created_at_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// One kept request.
    pub async fn get(&self, id: &Hash, now_ms: u64) -> Option<Record> {
        let mut records = self.records.lock().await;
        if expire(&mut records, now_ms) {
            // Written with the next change; what is shown is already due.
            records.dirty = true;
        }
        records.by_id.get(id).cloned()
    }

    /// Marks an open incoming request as being accepted (its grant is
    /// being proposed): a second accept, or a withdrawal, is refused until
    /// [`Desk::end_accepting`]. So one request is never proposed twice.
    pub async fn begin_accepting(&self, id: &Hash, now_ms: u64) -> Result<Record, DeskError> {
        let mut records = self.records.lock().await;
        expire(&mut records, now_ms);
        let record = records
            .by_id
            .get(id)
            .filter(|r| r.way == Way::Incoming)
            .cloned()
            .ok_or(DeskError::Unknown(*id))?;
        must_be_open(&record)?;
        if !records.accepting.insert(*id) {
            return Err(DeskError::Closed {
                id: *id,
                state: "being accepted",
            });
        }
        Ok(record)
    }

    /// Whether an incoming request's grant is being proposed.
    pub async fn is_accepting(&self, id: &Hash) -> bool {
        self.records.lock().await.accepting.contains(id)
    }

    /// Ends what [`Desk::begin_accepting`] began.
    pub async fn end_accepting(&self, id: &Hash) {
        self.records.lock().await.accepting.remove(id);
    }

    /// Keeps a request received from its requester (checked by the
    /// caller), within the bounds; a request kept already is returned as
    /// it stands (a retry is no new request). Durable on return.
    pub async fn receive(
        &self,
        request: SignedAccessRequest,
        id: Hash,
        requester: MemberId,
        owner: MemberId,
        now_ms: u64,
    ) -> Result<(Record, bool), DeskError> {
        let mut records = self.records.lock().await;
        if let Some(kept) = records.by_id.get(&id) {
            return Ok((kept.clone(), false));
        }
        expire(&mut records, now_ms);
        let arrivals = records.arrivals.entry(requester).or_default();
        while arrivals
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) > 3_600_000)
        {
            arrivals.pop_front();
        }
        if arrivals.len() >= NEW_PER_MEMBER_PER_HOUR {
            return Err(DeskError::TooFrequent);
        }
        let record = Record {
            request,
            id,
            way: Way::Incoming,
            requester,
            owner,
            standing: Standing::Open,
            stored_at_ms: now_ms,
            checked_at_ms: None,
            policy: None,
        };
        let before = records.by_id.clone();
        admit(&mut records, record.clone())?;
        if let Err(e) = self.write(&records).await {
            records.by_id = before;
            return Err(e);
        }
        records
            .arrivals
            .entry(requester)
            .or_default()
            .push_back(now_ms);
        Ok((record, true))
    }

    /// Keeps a request this organization made, once the owner has it.
    pub async fn sent(&self, record: Record) -> Result<Record, DeskError> {
        let mut records = self.records.lock().await;
        if let Some(kept) = records.by_id.get(&record.id) {
            return Ok(kept.clone());
        }
        expire(&mut records, record.stored_at_ms);
        let before = records.by_id.clone();
        admit(&mut records, record.clone())?;
        if let Err(e) = self.write(&records).await {
            records.by_id = before;
            return Err(e);
        }
        Ok(record)
    }

    /// Whether this organization may ask `owner` for more now (its open
    /// requests to it are within the bound).
    pub async fn may_ask(&self, owner: MemberId) -> Result<(), DeskError> {
        let records = self.records.lock().await;
        let open = records
            .by_id
            .values()
            .filter(|r| r.way == Way::Outgoing && r.owner == owner && r.standing.is_open())
            .count();
        if open >= OPEN_PER_MEMBER_MAX {
            return Err(DeskError::TooManyOpen);
        }
        Ok(())
    }

    /// Changes an open request of direction `way` with `change` (which
    /// may refuse), durably. `check` sees the record first (who asks).
    pub async fn update(
        &self,
        id: &Hash,
        way: Way,
        now_ms: u64,
        change: impl FnOnce(&mut Record) -> Result<(), DeskError>,
    ) -> Result<Record, DeskError> {
        let mut records = self.records.lock().await;
        expire(&mut records, now_ms);
        let Some(record) = records.by_id.get(id).filter(|r| r.way == way) else {
            return Err(DeskError::Unknown(*id));
        };
        let before = record.clone();
        let mut after = before.clone();
        change(&mut after)?;
        if after == before {
            return Ok(after);
        }
        records.by_id.insert(*id, after.clone());
        if let Err(e) = self.write(&records).await {
            records.by_id.insert(*id, before);
            return Err(e);
        }
        Ok(after)
    }

    async fn write(&self, records: &Records) -> Result<(), DeskError> {
        let file = DeskFile {
            version: FORMAT_VERSION,
            records: records.by_id.values().cloned().collect(),
        };
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let bytes = quorate_ledger::codec::encode(&file).map_err(std::io::Error::other)?;
            if bytes.len() as u64 > DESK_FILE_BYTES_MAX {
                return Ok(false);
            }
            crate::home::durable::replace(&path, &bytes).map(|()| true)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(DeskError::Io)?;
        if written {
            Ok(())
        } else {
            Err(DeskError::Full)
        }
    }
}

/// Adds `record` if the bounds allow: its open requests per member, and
/// the desk's size (making room by forgetting the oldest closed ones).
fn admit(records: &mut Records, record: Record) -> Result<(), DeskError> {
    let between = |r: &Record| match record.way {
        Way::Incoming => r.way == Way::Incoming && r.requester == record.requester,
        Way::Outgoing => r.way == Way::Outgoing && r.owner == record.owner,
    };
    let open = records
        .by_id
        .values()
        .filter(|r| between(r) && r.standing.is_open())
        .count();
    if open >= OPEN_PER_MEMBER_MAX {
        return Err(DeskError::TooManyOpen);
    }
    // The member's oldest closed requests make room for its new one.
    let kept: Vec<(u64, Hash)> = records
        .by_id
        .values()
        .filter(|r| between(r))
        .filter_map(|r| r.standing.closed_at().map(|at| (at, r.id)))
        .collect();
    let all_kept = records.by_id.values().filter(|r| between(r)).count();
    if all_kept >= KEPT_PER_MEMBER_MAX {
        match kept.into_iter().min() {
            Some((_, id)) => {
                records.by_id.remove(&id);
            }
            None => return Err(DeskError::TooManyOpen),
        }
    }
    if records.by_id.len() >= RECORDS_MAX {
        let oldest_closed = records
            .by_id
            .values()
            .filter_map(|r| r.standing.closed_at().map(|at| (at, r.id)))
            .min();
        match oldest_closed {
            Some((_, id)) => {
                records.by_id.remove(&id);
            }
            None => return Err(DeskError::Full),
        }
    }
    records.by_id.insert(record.id, record);
    Ok(())
}

/// Expires open requests past [`OPEN_TTL_MS`] and forgets closed ones
/// past [`CLOSED_KEEP_MS`]; whether anything changed.
fn expire(records: &mut Records, now_ms: u64) -> bool {
    let mut changed = false;
    records.by_id.retain(|_, r| {
        let keep = r
            .standing
            .closed_at()
            .is_none_or(|at| now_ms.saturating_sub(at) <= CLOSED_KEEP_MS);
        changed |= !keep;
        keep
    });
    for record in records.by_id.values_mut() {
        // An outgoing request is the owner's to expire, and it says so; a
        // day later it expires here too (the owner may be gone).
        let ttl = match record.way {
            Way::Incoming => OPEN_TTL_MS,
            Way::Outgoing => OPEN_TTL_MS + 86_400_000,
        };
        if record.standing.is_open() && now_ms.saturating_sub(record.stored_at_ms) > ttl {
            record.standing = Standing::Expired { at_ms: now_ms };
            changed = true;
        }
    }
    changed
}

/// Refuses a change to a closed request, naming how it ended.
pub fn must_be_open(record: &Record) -> Result<(), DeskError> {
    if record.standing.is_open() {
        Ok(())
    } else {
        Err(DeskError::Closed {
            id: record.id,
            state: record.standing.word(),
        })
    }
}

#[cfg(test)]
mod tests {
    use quorate_contracts::Action;
    use quorate_did::Keypair;

    use super::super::request::AccessRequestBody;
    use super::*;

    fn signed(requester: &Keypair, owner: &Keypair, nonce: u8) -> SignedAccessRequest {
        let body = AccessRequestBody {
            chain: Hash([9; 32]),
            requester: requester.did(),
            owner: owner.did(),
            offer: None,
            resources: vec!["datasets/*".into()],
            actions: vec![Action::Read],
            not_before_ms: None,
            not_after_ms: None,
            duration_ms: Some(86_400_000),
            purpose: None,
            message: None,
            created_at_ms: u64::from(nonce),
            nonce: [nonce; 16],
        };
        SignedAccessRequest::sign(body, requester).unwrap()
    }

    #[tokio::test]
    async fn requests_survive_a_restart_and_a_retry_is_the_same_request() {
        let dir = tempfile::tempdir().unwrap();
        let (b, a) = (Keypair::from_seed(&[2; 32]), Keypair::from_seed(&[1; 32]));
        let (mb, ma) = (MemberId([2; 32]), MemberId([1; 32]));
        let desk = Desk::open(dir.path()).unwrap();
        let request = signed(&b, &a, 1);
        let id = request.id().unwrap();
        let (first, new) = desk.receive(request.clone(), id, mb, ma, 10).await.unwrap();
        assert!(new && first.standing.is_open());
        let (again, new) = desk.receive(request, id, mb, ma, 11).await.unwrap();
        assert!(!new && again == first);
        desk.update(&id, Way::Incoming, 12, |r| {
            must_be_open(r)?;
            r.standing = Standing::Declined {
                reason: "not now".into(),
                by: "admin".into(),
                at_ms: 12,
            };
            Ok(())
        })
        .await
        .unwrap();
        let reopened = Desk::open(dir.path()).unwrap();
        let kept = reopened.get(&id, 12).await.unwrap();
        assert!(matches!(kept.standing, Standing::Declined { .. }));
        let closed = reopened
            .update(&id, Way::Incoming, 13, |r| must_be_open(r))
            .await
            .unwrap_err();
        assert!(matches!(
            closed,
            DeskError::Closed {
                state: "declined",
                ..
            }
        ));
        // The wrong direction is no such request.
        assert!(matches!(
            reopened.update(&id, Way::Outgoing, 13, |_| Ok(())).await,
            Err(DeskError::Unknown(_))
        ));
    }

    #[tokio::test]
    async fn one_member_cannot_fill_the_desk() {
        let dir = tempfile::tempdir().unwrap();
        let (b, a) = (Keypair::from_seed(&[2; 32]), Keypair::from_seed(&[1; 32]));
        let (mb, ma) = (MemberId([2; 32]), MemberId([1; 32]));
        let desk = Desk::open(dir.path()).unwrap();
        for n in 0..OPEN_PER_MEMBER_MAX as u8 {
            let r = signed(&b, &a, n);
            let id = r.id().unwrap();
            desk.receive(r, id, mb, ma, 100).await.unwrap();
        }
        let r = signed(&b, &a, 200);
        let id = r.id().unwrap();
        assert!(matches!(
            desk.receive(r.clone(), id, mb, ma, 100).await,
            Err(DeskError::TooManyOpen)
        ));
        // Another member still gets in.
        let c = Keypair::from_seed(&[3; 32]);
        let rc = signed(&c, &a, 1);
        let idc = rc.id().unwrap();
        desk.receive(rc, idc, MemberId([3; 32]), ma, 100)
            .await
            .unwrap();
        assert_eq!(desk.list(100).await.unwrap().len(), OPEN_PER_MEMBER_MAX + 1);
        // Thirty days later the open ones have expired, and a month after
        // that they are forgotten.
        let later = 100 + OPEN_TTL_MS + 1;
        assert!(
            desk.list(later)
                .await
                .unwrap()
                .iter()
                .all(|r| matches!(r.standing, Standing::Expired { .. }))
        );
        assert!(
            desk.list(later + CLOSED_KEEP_MS + 1)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_member_asking_too_often_is_told_to_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (b, a) = (Keypair::from_seed(&[2; 32]), Keypair::from_seed(&[1; 32]));
        let (mb, ma) = (MemberId([2; 32]), MemberId([1; 32]));
        let desk = Desk::open(dir.path()).unwrap();
        for n in 0..NEW_PER_MEMBER_PER_HOUR as u8 {
            let r = signed(&b, &a, n);
            let id = r.id().unwrap();
            desk.receive(r, id, mb, ma, 1_000).await.unwrap();
            desk.update(&id, Way::Incoming, 1_000, |r| {
                r.standing = Standing::Withdrawn { at_ms: 1_000 };
                Ok(())
            })
            .await
            .unwrap();
        }
        let r = signed(&b, &a, 250);
        let id = r.id().unwrap();
        assert!(matches!(
            desk.receive(r.clone(), id, mb, ma, 1_000).await,
            Err(DeskError::TooFrequent)
        ));
        desk.receive(r, id, mb, ma, 1_000 + 3_600_001)
            .await
            .unwrap();
    }
}
