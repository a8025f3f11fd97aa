//! The node as the API sees it: the one seam between HTTP and the node.

use std::future::Future;

use axum::body::Body;
use quorate_contracts::ResourcePath;

use super::access::LocalAction;
use super::access_requests::{
    AccessRequestQuery, AccessRequestView, AccessRequests, NewAccessRequest,
};
use super::catalog::{Offer, OfferView, Offers};
use super::endorsement::{EndorsementPolicy, EndorsementPolicyView};
use super::requests::JwtRevocationRequest;
use super::responses::{
    AuditRecord, BlockView, EntryLocation, GrantPage, GrantView, Identity, LedgerSummary, Members,
    NewToken, NodeStatus, ProposalView, Tokens,
};
use super::responses::{JwtRevocationView, JwtRevocations, UpstreamsView};
use super::{AuditQuery, GrantQuery, ProposalRequest, TokenRequest};
use crate::auth::{Principal, Unauthenticated};

/// A client's stream of live events.
pub type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = super::responses::LiveEvent> + Send>>;
use crate::objects::{
    ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo, PeerWrite, Precondition, Written,
};
use crate::problem::Problem;

/// The node as the API sees it.
pub trait Node: Clone + Send + Sync + 'static {
    /// Who a bearer token names: the bootstrap admin, or a named token's
    /// principal (unknown, revoked and expired tokens are refused). Called
    /// on every request, so it reads memory only.
    fn authenticate(&self, token: &str) -> Result<Principal, Unauthenticated>;
    /// Records a state-changing call (done or refused) in the audit log.
    fn record_action(&self, action: LocalAction) -> impl Future<Output = ()> + Send;
    /// Live events after the id `after` (only new ones if `None`), for as
    /// long as the client reads; refused when too many clients stream, in
    /// all or as `principal`.
    fn events(
        &self,
        principal: &Principal,
        after: Option<u64>,
    ) -> impl Future<Output = Result<EventStream, Problem>> + Send;
    /// Sign-in through the identity provider for the console, if set.
    fn console_sign_in(&self) -> Option<crate::console::OidcClient> {
        None
    }
    /// The named API tokens.
    fn tokens(&self) -> impl Future<Output = Result<Tokens, Problem>> + Send;
    /// Makes a named API token (durable on return); its secret is in the
    /// answer only.
    fn create_token(
        &self,
        request: TokenRequest,
    ) -> impl Future<Output = Result<NewToken, Problem>> + Send;
    /// Revokes a named API token: refused from the moment this returns.
    fn revoke_token(&self, name: String) -> impl Future<Output = Result<(), Problem>> + Send;
    /// The single-sign-on tokens refused before their expiry.
    fn jwt_revocations(&self) -> impl Future<Output = Result<JwtRevocations, Problem>> + Send;
    /// Refuses, from now on, the single-sign-on tokens `request` names
    /// (durable on return).
    fn revoke_jwt(
        &self,
        request: JwtRevocationRequest,
    ) -> impl Future<Output = Result<JwtRevocationView, Problem>> + Send;
    /// The upstream routes in force and the health of their URLs.
    fn upstreams(&self) -> impl Future<Output = Result<UpstreamsView, Problem>> + Send;
    /// Reads the config's `[[upstream]]` routes again and puts them in
    /// force; an invalid config is refused (`config-invalid`) and the
    /// routes in force are kept.
    fn reload_upstreams(&self) -> impl Future<Output = Result<UpstreamsView, Problem>> + Send;
    /// Height, peers, freshness.
    fn status(&self) -> impl Future<Output = NodeStatus> + Send;
    /// Proposes as this member; returns the proposal id.
    fn propose(
        &self,
        request: ProposalRequest,
    ) -> impl Future<Output = Result<String, Problem>> + Send;
    /// Proposals the node knows, with their state.
    fn proposals(&self) -> impl Future<Output = Vec<ProposalView>> + Send;
    /// One proposal: from the mempool, or (committed and forgotten there)
    /// from the ledger.
    fn proposal(&self, id: String) -> impl Future<Output = Result<ProposalView, Problem>> + Send;
    /// Endorses (`approve`) or rejects a proposal, with a reason for a
    /// rejection; final once done.
    fn decide(
        &self,
        id: String,
        approve: bool,
        reason: Option<String>,
    ) -> impl Future<Output = Result<(), Problem>> + Send;
    /// Withdraws a proposal this member made.
    fn withdraw(&self, id: String) -> impl Future<Output = Result<(), Problem>> + Send;
    /// The endorsement policy in force and where it comes from.
    fn endorsement_policy(
        &self,
    ) -> impl Future<Output = Result<EndorsementPolicyView, Problem>> + Send;
    /// Replaces the endorsement policy (checked, then durable, then in
    /// force); undecided proposals are judged again.
    fn set_endorsement_policy(
        &self,
        policy: EndorsementPolicy,
    ) -> impl Future<Output = Result<EndorsementPolicyView, Problem>> + Send;
    /// One page of the committed grants that match `query`, in id order.
    fn grants(&self, query: GrantQuery) -> impl Future<Output = Result<GrantPage, Problem>> + Send;
    /// One committed grant (`id` is 64 hex digits).
    fn grant(&self, id: String) -> impl Future<Output = Result<GrantView, Problem>> + Send;
    /// A proof of a grant's record at height `at` (the tip if `None`), as
    /// canonical CBOR (`docs/ledger-format.md` section 6), checkable
    /// offline from genesis.
    fn grant_status(
        &self,
        id: String,
        at: Option<u64>,
    ) -> impl Future<Output = Result<Vec<u8>, Problem>> + Send;
    /// A proof of a member's row at height `at` (the tip if `None`): was
    /// it a member then, under which name and key (`member` is a did:key,
    /// current or former, or a current member's name), as canonical CBOR
    /// (`docs/ledger-format.md` section 6.4).
    fn member_status(
        &self,
        member: String,
        at: Option<u64>,
    ) -> impl Future<Output = Result<Vec<u8>, Problem>> + Send;
    /// A committed grant's proof, as canonical CBOR (see
    /// `docs/ledger-format.md`), checkable offline from genesis.
    fn grant_proof(&self, id: String) -> impl Future<Output = Result<Vec<u8>, Problem>> + Send;
    /// This node: name, DID, member id.
    fn identity(&self) -> impl Future<Output = Identity> + Send;
    /// The current members, with whether each is connected.
    fn members(&self) -> impl Future<Output = Members> + Send;
    /// Stores an object, streaming `body` to disk (durable on return).
    fn put_object(
        &self,
        path: ResourcePath,
        content_type: String,
        body: Body,
    ) -> impl Future<Output = Result<ObjectInfo, Problem>> + Send;
    /// Reads one of this organization's objects.
    fn get_object(
        &self,
        path: ResourcePath,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<ObjectBody, Problem>> + Send;
    /// An object's metadata.
    fn head_object(
        &self,
        path: ResourcePath,
    ) -> impl Future<Output = Result<ObjectInfo, Problem>> + Send;
    /// Deletes an object.
    fn delete_object(&self, path: ResourcePath)
    -> impl Future<Output = Result<(), Problem>> + Send;
    /// Lists this organization's objects.
    fn list_objects(
        &self,
        query: ListQuery,
    ) -> impl Future<Output = Result<Listing, Problem>> + Send;
    /// Fetches a member's object over libp2p; the member's gateway decides.
    /// `query` travels on to the member's upstream route, if one serves
    /// the path.
    fn peer_get(
        &self,
        peer: String,
        path: ResourcePath,
        range: Option<ByteRange>,
        purpose: Option<String>,
        query: Option<String>,
    ) -> impl Future<Output = Result<ObjectBody, Problem>> + Send;
    /// Writes an object into a member's namespace over libp2p, streaming
    /// `body` in chunks; the member's gateway decides (a `write` grant)
    /// and checks the body's sha-256 before it stores anything.
    fn peer_put(
        &self,
        peer: String,
        path: ResourcePath,
        write: PeerWrite,
        body: Body,
    ) -> impl Future<Output = Result<Written, Problem>> + Send;
    /// Deletes an object in a member's namespace over libp2p (a `delete`
    /// grant).
    fn peer_delete(
        &self,
        peer: String,
        path: ResourcePath,
        precondition: Precondition,
        purpose: Option<String>,
    ) -> impl Future<Output = Result<(), Problem>> + Send;
    /// Lists what a member's gateway lets this organization list, for
    /// `purpose` if the caller declared one.
    fn peer_list(
        &self,
        peer: String,
        query: ListQuery,
        purpose: Option<String>,
    ) -> impl Future<Output = Result<Listing, Problem>> + Send;
    /// Audit records, newest last.
    fn audit(
        &self,
        query: AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, Problem>> + Send;
    /// The gateway pipeline, behind the signed routes.
    type Gateway: crate::gateway::Pipeline;
    /// Its handle (cheap to clone).
    fn gateway(&self) -> Self::Gateway;
    /// Prometheus text.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// Where a committed entry (grant, revocation, membership change) is
    /// on the ledger.
    fn entry(&self, id: String) -> impl Future<Output = Result<EntryLocation, Problem>> + Send;
    /// Whether the node can decide requests now (its ledger is fresh).
    fn ready(&self) -> impl Future<Output = Result<(), Problem>> + Send;
    /// The committed chain at a glance (id, genesis, tip, epoch, counts).
    fn ledger(&self) -> impl Future<Output = Result<LedgerSummary, Problem>> + Send;
    /// A committed block: a view of it, and its canonical CBOR (a
    /// `CommittedBlock` of `docs/ledger-format.md`).
    fn block(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<(BlockView, Vec<u8>), Problem>> + Send;
    /// This organization's catalog offers, by id.
    fn offers(&self) -> impl Future<Output = Result<Offers, Problem>> + Send;
    /// One offer.
    fn offer(&self, id: String) -> impl Future<Output = Result<OfferView, Problem>> + Send;
    /// Writes an offer, new or replacing the one of that id (checked, then
    /// durable, then shown to members); whether it is new.
    fn put_offer(
        &self,
        id: String,
        offer: Offer,
    ) -> impl Future<Output = Result<(OfferView, bool), Problem>> + Send;
    /// Removes an offer.
    fn delete_offer(&self, id: String) -> impl Future<Output = Result<(), Problem>> + Send;
    /// This organization's catalog, every offer, as DCAT in JSON-LD (what
    /// a member in every offer's audience reads).
    fn catalog(&self) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// A member's catalog as that member shows it to this organization,
    /// over libp2p.
    fn peer_catalog(
        &self,
        peer: String,
    ) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// Access requests, incoming and outgoing, newest first (outgoing ones
    /// still open are checked with their owners first).
    fn access_requests(
        &self,
        query: AccessRequestQuery,
    ) -> impl Future<Output = Result<AccessRequests, Problem>> + Send;
    /// One access request (an outgoing one still open is checked with its
    /// owner first).
    fn access_request(
        &self,
        id: String,
    ) -> impl Future<Output = Result<AccessRequestView, Problem>> + Send;
    /// Asks a member for access, over libp2p: signed by this member, kept
    /// by the owner (durably) before this returns.
    fn request_access(
        &self,
        request: NewAccessRequest,
    ) -> impl Future<Output = Result<AccessRequestView, Problem>> + Send;
    /// Accepts an incoming request: this organization proposes the grant.
    fn accept_access_request(
        &self,
        id: String,
        by: Principal,
    ) -> impl Future<Output = Result<AccessRequestView, Problem>> + Send;
    /// Declines an incoming request with a reason the requester reads.
    fn decline_access_request(
        &self,
        id: String,
        reason: String,
        by: Principal,
    ) -> impl Future<Output = Result<AccessRequestView, Problem>> + Send;
    /// Withdraws an outgoing request (its owner is told).
    fn withdraw_access_request(
        &self,
        id: String,
    ) -> impl Future<Output = Result<AccessRequestView, Problem>> + Send;
    /// The whole committed chain as an export file (`docs/ledger-format.md`),
    /// streamed; `quorate ledger verify` checks it offline.
    fn ledger_export(&self) -> impl Future<Output = Result<Body, Problem>> + Send;
}
