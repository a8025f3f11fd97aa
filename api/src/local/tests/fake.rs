//! A node for the route tests: it answers with a sample of every
//! response type, or refuses every fallible call with one chosen problem.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;

use crate::auth::{Principal, Role, Roles, Unauthenticated};
use crate::local::access::LocalAction;
use crate::local::access_requests::{
    AccessRequestQuery, AccessRequestState, AccessRequestView, AccessRequests, Direction,
    NewAccessRequest,
};
use crate::local::catalog::{Offer, OfferSchema, OfferTerms, OfferView, Offers};
use crate::local::endorsement::{EndorsementPolicy, EndorsementPolicyView};
use crate::local::responses::{
    AuditRecord, BlockEntry, BlockView, CertificateView, EntryLocation, GrantTerms, GrantView,
    Identity, LedgerGrantStatus, LedgerSummary, LocalDecision, MemberView, Members, NodeStatus,
    ProposalBody, ProposalState, ProposalView, Standing,
};
use crate::local::responses::{NewToken, RejectionView, TokenView, Tokens};
use crate::local::{
    AuditQuery, GrantPage, GrantQuery, Limits, Node, ProposalRequest, TokenRequest, router,
};
use crate::objects::{ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo};
use crate::problem::Problem;

const TOKEN: &str = "route-test-token";
/// The token of a principal holding one role: `role-<name>`.
pub(super) fn role_token(role: Role) -> String {
    format!("role-{}", role.name())
}
/// A token past its expiry.
pub(super) const EXPIRED_TOKEN: &str = "expired-token";
pub(super) const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Answers with samples, or refuses every fallible call with `refusal`.
#[derive(Clone, Default)]
pub(super) struct Fake {
    pub(super) refusal: Option<Problem>,
    /// The state-changing calls recorded, in order.
    pub(super) actions: std::sync::Arc<std::sync::Mutex<Vec<LocalAction>>>,
}

impl Fake {
    fn answer<T>(&self, value: T) -> Result<T, Problem> {
        match &self.refusal {
            Some(problem) => Err(problem.clone()),
            None => Ok(value),
        }
    }
}

pub(super) fn identity() -> Identity {
    let did = quorate_did::Keypair::from_seed(&[7; 32]).did();
    Identity {
        name: "org-a".into(),
        did: did.to_string(),
        member_id: Some(HEX.into()),
        document: did.document(),
    }
}

fn object() -> ObjectInfo {
    ObjectInfo {
        path: "reports/q1.csv".into(),
        size: 5,
        etag: HEX.into(),
        content_type: "text/csv".into(),
        modified_ms: 1_700_000_000_000,
    }
}

fn listing() -> Listing {
    Listing {
        objects: vec![object()],
        next: Some("reports/q1.csv".into()),
    }
}

fn terms() -> GrantTerms {
    GrantTerms {
        grantor: "org-a".into(),
        grantee: "org-b".into(),
        resources: vec!["reports/*".into()],
        actions: vec![Action::Read, Action::List],
        not_before_ms: 1,
        not_after_ms: u64::MAX,
        purpose: None,
    }
}

fn grant() -> GrantView {
    GrantView {
        id: HEX.into(),
        terms: terms(),
        status: LedgerGrantStatus::Revoked { height: 9 },
        committed_height: 3,
        standing: Standing::Revoked,
        as_of_ms: 2,
    }
}

pub(super) fn proposals() -> Vec<ProposalView> {
    let bodies = [
        ProposalBody::Grant(terms()),
        ProposalBody::Revoke { grant: HEX.into() },
        ProposalBody::AddMember {
            name: "org-c".into(),
            did: identity().did,
        },
        ProposalBody::RemoveMember {
            member: "org-c".into(),
        },
        ProposalBody::RotateKey {
            member: "org-a".into(),
            new_did: identity().did,
        },
        ProposalBody::SetPolicy {
            policy: "Policy { .. }".into(),
        },
        ProposalBody::Genesis {},
    ];
    let states = [
        ProposalState::Pending {
            endorsements: 1,
            required: 2,
        },
        ProposalState::Eligible,
        ProposalState::Committed { height: 3 },
        ProposalState::Failed {
            reason: "rejected by org-b (no)".into(),
        },
        ProposalState::Withdrawn,
        ProposalState::Expired,
    ];
    bodies
        .into_iter()
        .zip(states.into_iter().cycle())
        .map(|(body, state)| ProposalView {
            id: HEX.into(),
            proposer: "org-a".into(),
            body,
            state,
            decision: LocalDecision::Undecided,
            endorsers: vec!["org-a".into()],
            rejections: vec![RejectionView {
                member: "org-b".into(),
                reason: "no".into(),
            }],
            policy: Some("rule everything-else: ask a person".into()),
            created_at_ms: 1_700_000_000_000,
        })
        .collect()
}

fn token_view() -> TokenView {
    TokenView {
        name: "alice".into(),
        roles: vec![Role::Approver],
        created_ms: 1_700_000_000_000,
        expires_ms: Some(1_800_000_000_000),
        expired: false,
    }
}

impl Node for Fake {
    fn authenticate(&self, token: &str) -> Result<Principal, Unauthenticated> {
        if token == TOKEN {
            return Ok(Principal::admin());
        }
        if token == EXPIRED_TOKEN {
            return Err(Unauthenticated::Expired { name: "old".into() });
        }
        let role = token
            .strip_prefix("role-")
            .and_then(Role::parse)
            .ok_or(Unauthenticated::Invalid)?;
        Ok(Principal {
            label: format!("token:{}", role.name()),
            roles: Roles::of(&[role]),
            expires_ms: None,
        })
    }
    async fn record_action(&self, action: LocalAction) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(action);
    }
    async fn events(
        &self,
        _: &Principal,
        after: Option<u64>,
    ) -> Result<crate::local::EventStream, Problem> {
        let all = [
            ("block", serde_json::json!({"height": 4})),
            ("proposal-opened", serde_json::json!({"id": HEX})),
            ("readiness", serde_json::json!({"ready": true})),
        ];
        let events: Vec<crate::local::responses::LiveEvent> = all
            .into_iter()
            .zip(1..)
            .filter(|(_, id)| after.is_none_or(|a| *id > a))
            .map(|((kind, data), id)| crate::local::responses::LiveEvent {
                id,
                kind: kind.to_owned(),
                data,
            })
            .collect();
        self.answer(Box::pin(futures::stream::iter(events)) as crate::local::EventStream)
    }
    async fn tokens(&self) -> Result<Tokens, Problem> {
        self.answer(Tokens {
            tokens: vec![token_view()],
        })
    }
    async fn create_token(&self, _: TokenRequest) -> Result<NewToken, Problem> {
        self.answer(NewToken {
            view: token_view(),
            token: format!("qrt_{}_{HEX}", &HEX[..16]),
        })
    }
    async fn revoke_token(&self, _: String) -> Result<(), Problem> {
        self.answer(())
    }
    async fn jwt_revocations(&self) -> Result<crate::local::responses::JwtRevocations, Problem> {
        self.answer(crate::local::responses::JwtRevocations {
            revocations: vec![revocation()],
        })
    }
    async fn revoke_jwt(
        &self,
        _: crate::local::requests::JwtRevocationRequest,
    ) -> Result<crate::local::responses::JwtRevocationView, Problem> {
        self.answer(revocation())
    }
    async fn upstreams(&self) -> Result<crate::local::responses::UpstreamsView, Problem> {
        self.answer(upstreams())
    }
    async fn reload_upstreams(&self) -> Result<crate::local::responses::UpstreamsView, Problem> {
        self.answer(upstreams())
    }
    async fn status(&self) -> NodeStatus {
        NodeStatus {
            tip_hash: HEX.into(),
            rejected: BTreeMap::from([("bad-signature".to_owned(), 2)]),
            last_commit_age_ms: Some(40),
            ..NodeStatus::default()
        }
    }
    async fn propose(&self, _: ProposalRequest) -> Result<String, Problem> {
        self.answer(HEX.to_owned())
    }
    async fn proposals(&self) -> Vec<ProposalView> {
        proposals()
    }
    async fn proposal(&self, _: String) -> Result<ProposalView, Problem> {
        self.answer(proposals().remove(0))
    }
    async fn decide(&self, _: String, _: bool, _: Option<String>) -> Result<(), Problem> {
        self.answer(())
    }
    async fn withdraw(&self, _: String) -> Result<(), Problem> {
        self.answer(())
    }
    async fn endorsement_policy(&self) -> Result<EndorsementPolicyView, Problem> {
        self.answer(EndorsementPolicyView {
            source: "default".into(),
            policy: EndorsementPolicy::careful(),
        })
    }
    async fn set_endorsement_policy(
        &self,
        policy: EndorsementPolicy,
    ) -> Result<EndorsementPolicyView, Problem> {
        self.answer(EndorsementPolicyView {
            source: "file".into(),
            policy,
        })
    }
    async fn grants(&self, _: GrantQuery) -> Result<GrantPage, Problem> {
        self.answer(GrantPage {
            grants: vec![grant()],
            next_after: Some(HEX.into()),
        })
    }
    async fn grant(&self, _: String) -> Result<GrantView, Problem> {
        self.answer(grant())
    }
    async fn grant_status(&self, _: String, _: Option<u64>) -> Result<Vec<u8>, Problem> {
        self.answer(vec![0xa0])
    }
    async fn member_status(&self, _: String, _: Option<u64>) -> Result<Vec<u8>, Problem> {
        self.answer(vec![0xa0])
    }
    async fn grant_proof(&self, _: String) -> Result<Vec<u8>, Problem> {
        self.answer(vec![0xa0])
    }
    async fn identity(&self) -> Identity {
        identity()
    }
    async fn members(&self) -> Members {
        Members {
            epoch: 1,
            members: vec![MemberView {
                name: "org-a".into(),
                did: identity().did,
                id: HEX.into(),
                is_me: true,
            }],
        }
    }
    async fn put_object(&self, _: ResourcePath, _: String, _: Body) -> Result<ObjectInfo, Problem> {
        self.answer(object())
    }
    async fn get_object(
        &self,
        _: ResourcePath,
        _: Option<ByteRange>,
    ) -> Result<ObjectBody, Problem> {
        self.answer(ObjectBody {
            info: object(),
            span: (0, 5),
            partial: false,
            sized: true,
            body: Body::from("a,b\n1"),
            status: None,
            passed: axum::http::HeaderMap::new(),
        })
    }
    async fn head_object(&self, _: ResourcePath) -> Result<ObjectInfo, Problem> {
        self.answer(object())
    }
    async fn delete_object(&self, _: ResourcePath) -> Result<(), Problem> {
        self.answer(())
    }
    async fn list_objects(&self, _: ListQuery) -> Result<Listing, Problem> {
        self.answer(listing())
    }
    async fn peer_get(
        &self,
        peer: String,
        path: ResourcePath,
        range: Option<ByteRange>,
        _: Option<String>,
        _: Option<String>,
    ) -> Result<ObjectBody, Problem> {
        let _ = peer;
        self.get_object(path, range).await
    }
    async fn peer_put(
        &self,
        _: String,
        _: ResourcePath,
        _: crate::objects::PeerWrite,
        _: Body,
    ) -> Result<crate::objects::Written, Problem> {
        self.answer(crate::objects::Written {
            object: object(),
            digest: "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:".into(),
            replaced: false,
        })
    }
    async fn peer_delete(
        &self,
        _: String,
        _: ResourcePath,
        _: crate::objects::Precondition,
        _: Option<String>,
    ) -> Result<(), Problem> {
        self.answer(())
    }
    async fn peer_list(
        &self,
        _: String,
        _: ListQuery,
        _: Option<String>,
    ) -> Result<Listing, Problem> {
        self.answer(listing())
    }
    async fn audit(&self, _: AuditQuery) -> Result<Vec<AuditRecord>, Problem> {
        self.answer(vec![AuditRecord {
            seq: 1,
            time_ms: 2,
            transport: "http".into(),
            caller: None,
            action: "read".into(),
            resource: "reports/q1.csv".into(),
            decision: "deny".into(),
            reason: Some("no-grant".into()),
            grant: None,
            bytes: 0,
            purpose: Some("customs clearance".into()),
            digest: None,
            prev: "0".repeat(64),
            hash: HEX.into(),
        }])
    }
    type Gateway = Self;
    fn gateway(&self) -> Self {
        self.clone()
    }
    async fn metrics(&self) -> String {
        "quorate_ledger_height 0\n".into()
    }
    async fn entry(&self, _: String) -> Result<EntryLocation, Problem> {
        self.answer(EntryLocation {
            id: HEX.into(),
            height: 4,
            index: 0,
        })
    }
    async fn ready(&self) -> Result<(), Problem> {
        self.answer(())
    }
    async fn ledger(&self) -> Result<LedgerSummary, Problem> {
        self.answer(LedgerSummary {
            chain_id: "quorate-test".into(),
            genesis_hash: HEX.into(),
            height: 4,
            tip_hash: HEX.into(),
            tip_time_ms: 5,
            epoch: 1,
            members: 3,
            active_grants: 1,
            grants: 2,
        })
    }
    async fn block(&self, height: u64) -> Result<(BlockView, Vec<u8>), Problem> {
        self.answer((
            BlockView {
                height,
                hash: HEX.into(),
                prev_hash: HEX.into(),
                epoch: 1,
                time_ms: 5,
                proposer: "org-a".into(),
                tx_root: HEX.into(),
                state_root: HEX.into(),
                entries: vec![BlockEntry {
                    id: HEX.into(),
                    kind: "grant".into(),
                    proposer: "org-a".into(),
                    endorsements: 2,
                }],
                certificate: CertificateView {
                    round: 0,
                    signers: vec![0, 2],
                },
            },
            vec![0xa0],
        ))
    }
    async fn ledger_export(&self) -> Result<Body, Problem> {
        self.answer(Body::from(vec![0u8; 4]))
    }
    async fn offers(&self) -> Result<Offers, Problem> {
        self.answer(Offers {
            offers: vec![offer_view()],
        })
    }
    async fn offer(&self, _: String) -> Result<OfferView, Problem> {
        self.answer(offer_view())
    }
    async fn put_offer(&self, _: String, _: Offer) -> Result<(OfferView, bool), Problem> {
        self.answer((offer_view(), true))
    }
    async fn delete_offer(&self, _: String) -> Result<(), Problem> {
        self.answer(())
    }
    async fn catalog(&self) -> Result<serde_json::Value, Problem> {
        self.answer(serde_json::json!({ "@type": "dcat:Catalog", "dcat:dataset": [] }))
    }
    async fn peer_catalog(&self, _: String) -> Result<serde_json::Value, Problem> {
        self.catalog().await
    }
    async fn access_requests(&self, _: AccessRequestQuery) -> Result<AccessRequests, Problem> {
        self.answer(AccessRequests {
            requests: vec![access_request_view()],
        })
    }
    async fn access_request(&self, _: String) -> Result<AccessRequestView, Problem> {
        self.answer(access_request_view())
    }
    async fn request_access(&self, _: NewAccessRequest) -> Result<AccessRequestView, Problem> {
        self.answer(access_request_view())
    }
    async fn accept_access_request(
        &self,
        _: String,
        by: Principal,
    ) -> Result<AccessRequestView, Problem> {
        let mut view = access_request_view();
        view.state = AccessRequestState::Accepted {
            proposal: HEX.into(),
            by: by.label,
            at_ms: 9,
        };
        self.answer(view)
    }
    async fn decline_access_request(
        &self,
        _: String,
        reason: String,
        by: Principal,
    ) -> Result<AccessRequestView, Problem> {
        let mut view = access_request_view();
        view.state = AccessRequestState::Declined {
            reason,
            by: by.label,
            at_ms: 9,
        };
        self.answer(view)
    }
    async fn withdraw_access_request(&self, _: String) -> Result<AccessRequestView, Problem> {
        let mut view = access_request_view();
        view.state = AccessRequestState::Withdrawn { at_ms: 9 };
        self.answer(view)
    }
}

fn offer_view() -> OfferView {
    OfferView {
        id: "shipments".into(),
        offer: Offer {
            title: "Shipments".into(),
            description: Some("Every shipment, daily".into()),
            resource: "datasets/shipments/*".into(),
            media_type: Some("text/csv".into()),
            keywords: vec!["logistics".into()],
            schema: Some(OfferSchema::Url(
                "https://example.org/shipments.json".into(),
            )),
            terms: OfferTerms {
                actions: vec![Action::Read],
                duration_max: Some("30d".into()),
                purposes: vec!["customs clearance".into()],
            },
            audience: vec!["org-b".into()],
        },
        updated_at_ms: 5,
    }
}

fn access_request_view() -> AccessRequestView {
    AccessRequestView {
        id: HEX.into(),
        direction: Direction::Incoming,
        requester: "org-b".into(),
        owner: "org-a".into(),
        offer: Some("shipments".into()),
        resources: vec!["datasets/shipments/*".into()],
        actions: vec![Action::Read],
        not_before_ms: None,
        not_after_ms: None,
        duration_ms: Some(86_400_000),
        purpose: Some("customs clearance".into()),
        message: Some("for the Q1 audit".into()),
        created_at_ms: 4,
        state: AccessRequestState::Open {},
        checked_at_ms: None,
        policy: Some("rule everything-else: ask a person".into()),
    }
}

pub(super) fn app(node: Fake) -> axum::Router {
    router(node, Limits::default())
}

/// A request with the admin token; `body` JSON when given.
pub(super) fn request(method: &str, uri: &str, body: Option<&str>) -> Request<Body> {
    request_as(TOKEN, method, uri, body)
}

/// A request with `token`; `body` JSON when given.
pub(super) fn request_as(
    token: &str,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    match body {
        Some(json) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_owned())),
        None => builder.body(Body::empty()),
    }
    .unwrap()
}

pub(super) async fn body_of(response: Response) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

impl crate::gateway::Pipeline for Fake {
    async fn read(
        &self,
        _: Did,
        _: ResourcePath,
        _: Option<ByteRange>,
        _: Option<String>,
        _: crate::objects::Forward,
    ) -> Result<ObjectBody, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn list(
        &self,
        _: Did,
        _: ListQuery,
        _: Option<String>,
    ) -> Result<crate::objects::Listing, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn write(
        &self,
        _: Did,
        _: ResourcePath,
        _: crate::gateway::Upload,
    ) -> Result<crate::gateway::Wrote, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn delete(
        &self,
        _: Did,
        _: ResourcePath,
        _: Option<String>,
        _: crate::objects::Precondition,
        _: crate::objects::Forward,
    ) -> Result<(), crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn catalog(&self, _: Did) -> Result<serde_json::Value, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    fn is_member(&self, _: &Did) -> bool {
        false
    }
    async fn refused(
        &self,
        _: Option<Did>,
        _: quorate_contracts::Action,
        _: String,
        _: &crate::refusal::Refusal,
    ) {
    }
}

fn upstreams() -> crate::local::responses::UpstreamsView {
    use crate::local::responses::{UpstreamRouteView, UpstreamUrlView, UpstreamsView};
    UpstreamsView {
        routes: vec![UpstreamRouteView {
            prefix: "erp".into(),
            balance: "round-robin".into(),
            timeout_ms: 10_000,
            request_headers: vec!["accept".into()],
            response_headers: vec!["etag".into()],
            urls: vec![UpstreamUrlView {
                url: "http://127.0.0.1:9000".into(),
                in_flight: 0,
                failures: 0,
                open: false,
            }],
        }],
    }
}

fn revocation() -> crate::local::responses::JwtRevocationView {
    crate::local::responses::JwtRevocationView {
        subject: Some("alice".into()),
        jti: None,
        revoked_ms: 1_800_000_000_000,
        until_ms: 1_802_592_000_000,
        reason: Some("laptop stolen".into()),
    }
}
