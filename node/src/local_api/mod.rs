//! The node behind the local API ([`quorate_api::local::Node`]): the
//! adapter here, its refusals as problems in [`problems`], what its
//! methods share in [`support`].

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt as _;
use quorate_api::auth::{Principal, Unauthenticated};
use quorate_api::local::access::LocalAction;
use quorate_api::local::responses::{
    AuditRecord, BlockEntry, BlockView, CertificateView, EntryLocation, GrantView, Identity,
    LedgerSummary, MemberView, Members, NewToken, NodeStatus, ProposalView, TokenView, Tokens,
};
use quorate_api::local::{AuditQuery, GrantPage, GrantQuery, Node, ProposalRequest, TokenRequest};
use quorate_api::objects::{ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo};
use quorate_api::problem::Problem;
use quorate_contracts::{GrantId, GrantStatus, MemberId, ResourcePath, Timestamp};
use quorate_did::Did;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;

use quorate_api::local::access_requests::{
    AccessRequestQuery, AccessRequestView, AccessRequests, NewAccessRequest,
};
use quorate_api::local::catalog::{Offer, OfferView, Offers};
use quorate_api::local::endorsement::{EndorsementPolicy, EndorsementPolicyView};
use quorate_ledger::entry::EntryId;

use crate::agreement::driver::{ApprovalPolicy, Command, DecideError, Handle, ProposeError};
use crate::gateway::{Gateway, open_range};
use crate::home::tokens::{CreateError, RevokeError, StoredToken, TokenRegistry};
use crate::net;
use crate::net::protocol::{self, Request, Response};
use crate::proofs::{GrantProofError, StatusProofError};

mod peer_write;
mod problems;
mod proposals;
mod sharing;
mod support;

use problems::*;
use support::*;

/// The local API's view of the running node: a driver handle, the gateway
/// and the network (for fetching from peers).
#[derive(Debug, Clone)]
pub struct LocalNode {
    handle: Handle,
    gateway: Gateway,
    net: net::Client,
    object_bytes_max: u64,
    /// The chain's identity (its genesis block's hash).
    genesis_hash: quorate_ledger::hash::Hash,
    /// Reads of the ledger (blocks, entries, proofs), beside the driver.
    ledger: quorate_ledger::ledger::LedgerReader,
    /// Who may call the local API.
    access: Access,
    /// Live events.
    events: crate::events::EventHub,
    /// Where the endorsement policy lives, and whether the config fixes it.
    policy: PolicyHome,
}

/// What [`LocalNode`] is made of.
#[derive(Debug)]
pub struct LocalNodeParts {
    /// The driver's handle.
    pub handle: Handle,
    /// The member gateway (its published state, objects and audit log).
    pub gateway: Gateway,
    /// The network, for peers' objects.
    pub net: net::Client,
    /// Largest object stored.
    pub object_bytes_max: u64,
    /// The chain's identity (its genesis block's hash).
    pub genesis_hash: quorate_ledger::hash::Hash,
    /// Reads of the ledger beside the driver.
    pub ledger: quorate_ledger::ledger::LedgerReader,
    /// Who may call the local API.
    pub access: Access,
    /// Where the endorsement policy lives.
    pub policy: PolicyHome,
}

/// The endorsement policy's place in the home.
#[derive(Debug, Clone)]
pub struct PolicyHome {
    /// `[consensus] approval`: only `policy` lets the API replace the rules.
    pub approval: ApprovalPolicy,
    /// The home's `endorsement-policy.toml`.
    pub path: std::path::PathBuf,
}

/// Who may call the local API: the home's tokens, and the identity
/// provider's JWTs when `[auth.oidc]` is set.
#[derive(Debug, Clone)]
pub struct Access {
    /// The bootstrap admin and the named tokens.
    pub tokens: std::sync::Arc<TokenRegistry>,
    /// Single sign-on.
    pub oidc: Option<std::sync::Arc<crate::oidc::OidcVerifier>>,
    /// The single-sign-on tokens revoked before their expiry.
    pub jwt_revocations: std::sync::Arc<crate::home::jwt_revocations::JwtRevocations>,
}

impl LocalNode {
    /// The API's node, from the parts it reads.
    pub fn new(parts: LocalNodeParts) -> Self {
        let LocalNodeParts {
            handle,
            gateway,
            net,
            object_bytes_max,
            genesis_hash,
            ledger,
            access,
            policy,
        } = parts;
        Self {
            handle,
            gateway,
            net,
            object_bytes_max,
            genesis_hash,
            ledger,
            access,
            policy,
            // Ids of this run start above any of an earlier one.
            events: crate::events::EventHub::starting_after(now_ms().saturating_mul(1000)),
        }
    }

    /// What the block at `height` did to grants: the grants it made (id
    /// and terms, from the block itself, so nothing waits for the state
    /// to be republished) and the ids of those it revoked. Empty if it
    /// cannot be read.
    pub(crate) async fn grant_changes(
        &self,
        height: u64,
    ) -> (
        Vec<(String, quorate_api::local::responses::GrantTerms)>,
        Vec<String>,
    ) {
        let Ok(blocks) = self.blocks(height, height).await else {
            return (Vec::new(), Vec::new());
        };
        let state = self.gateway.state();
        let name = crate::views::member_name(&state);
        let (mut made, mut revoked) = (Vec::new(), Vec::new());
        for entry in blocks.iter().flat_map(|b| b.block.entries.iter()) {
            match &entry.proposal.body {
                quorate_contracts::Body::Grant(terms) => {
                    if let Ok(id) = entry.id() {
                        made.push((id.to_string(), crate::views::terms(terms, &name)));
                    }
                }
                quorate_contracts::Body::Revoke { grant } => revoked.push(grant.to_string()),
                _ => {}
            }
        }
        (made, revoked)
    }

    /// Starts publishing live events (blocks, entries, proposals,
    /// readiness) until the driver stops.
    pub fn start_events(&self) {
        tokio::spawn(
            self.events
                .clone()
                .feed(self.clone(), self.handle.status_receiver()),
        );
    }

    /// A member's DID from its name or did:key.
    fn peer_did(&self, peer: &str) -> Result<Did, Problem> {
        let state = self.gateway.state();
        state
            .member_named(peer)
            .map(|m| m.did)
            .ok_or_else(|| Problem::not_found(format!("no member {peer:?}")))
    }

    /// One request to a peer's gateway.
    async fn ask_peer(&self, peer: &Did, request: &Request) -> Result<Response, Problem> {
        let bytes = protocol::encode(request).map_err(|_| Problem::internal())?;
        let unreachable = |detail: String| {
            let mut p = Problem::new(StatusCode::BAD_GATEWAY, "peer-unreachable", detail);
            p.retry_after_secs = Some(1);
            p
        };
        let answer = self
            .net
            .request_data(*peer, bytes)
            .await
            .map_err(|e| unreachable(format!("the peer did not answer: {e}")))?;
        let response: Response = protocol::decode(&answer)
            .map_err(|_| unreachable("the peer's answer is malformed".into()))?;
        match response {
            Response::Denied(denial) => Err(Problem::from(denial.into_refusal())),
            Response::Refused(reason) => Err(unreachable(format!("the peer refused: {reason}"))),
            other => Ok(other),
        }
    }

    /// One command to the driver, and its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverGone> {
        let (reply, answer) = oneshot::channel();
        self.handle.send(make(reply)).await.ok_or(DriverGone)?;
        answer.await.map_err(|_| DriverGone)
    }
}

impl Node for LocalNode {
    fn authenticate(&self, token: &str) -> Result<Principal, Unauthenticated> {
        match &self.access.oidc {
            Some(oidc) if crate::oidc::looks_like_jwt(token) => oidc.verify(token),
            _ => self.access.tokens.authenticate(token, now_ms()),
        }
    }

    async fn record_action(&self, action: LocalAction) {
        self.gateway
            .auditor()
            .record(crate::gateway::audit::Decision {
                purpose: None,
                digest: None,
                transport: "local".to_owned(),
                caller: Some(action.principal),
                action: action.action.to_owned(),
                resource: action.subject,
                decision: if action.refused.is_none() {
                    "allow"
                } else {
                    "deny"
                }
                .to_owned(),
                reason: action.refused.map(str::to_owned),
                grant: None,
                bytes: action.bytes,
            })
            .await;
    }

    fn console_sign_in(&self) -> Option<quorate_api::console::OidcClient> {
        self.access.oidc.as_ref().and_then(|o| o.console_sign_in())
    }

    async fn events(
        &self,
        principal: &Principal,
        after: Option<u64>,
    ) -> Result<quorate_api::local::EventStream, Problem> {
        self.events.subscribe(&principal.label, after)
    }

    async fn tokens(&self) -> Result<Tokens, Problem> {
        let now = now_ms();
        let tokens = self.access.tokens.list();
        Ok(Tokens {
            tokens: tokens.iter().map(|t| token_view(t, now)).collect(),
        })
    }

    async fn create_token(&self, request: TokenRequest) -> Result<NewToken, Problem> {
        let now = now_ms();
        let life_ms = request.expires_in_s.map(|s| s.saturating_mul(1000));
        let registry = self.access.tokens.clone();
        let made = tokio::task::spawn_blocking(move || {
            registry.create(&request.name, &request.roles, life_ms, now)
        })
        .await
        .map_err(|e| internal("making a token", &e))?;
        match made {
            Ok((stored, token)) => Ok(NewToken {
                view: token_view(&stored, now),
                token: token.to_string(),
            }),
            Err(e @ CreateError::Exists(_)) => Err(Problem::new(
                StatusCode::CONFLICT,
                "token-exists",
                e.to_string(),
            )),
            Err(e @ CreateError::TooMany) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too-many-tokens",
                e.to_string(),
            )),
            Err(
                e @ (CreateError::InvalidName(_) | CreateError::NoRoles | CreateError::InvalidLife),
            ) => Err(Problem::bad_request(e.to_string())),
            Err(e @ (CreateError::Random(_) | CreateError::Io { .. })) => {
                Err(internal("making a token", &e))
            }
        }
    }

    async fn revoke_token(&self, name: String) -> Result<(), Problem> {
        let registry = self.access.tokens.clone();
        let revoked = tokio::task::spawn_blocking(move || registry.revoke(&name))
            .await
            .map_err(|e| internal("revoking a token", &e))?;
        match revoked {
            Ok(()) => Ok(()),
            Err(e @ RevokeError::Unknown(_)) => Err(Problem::not_found(e.to_string())),
            Err(e @ RevokeError::Io { .. }) => Err(internal("revoking a token", &e)),
        }
    }

    async fn upstreams(&self) -> Result<quorate_api::local::responses::UpstreamsView, Problem> {
        Ok(self.gateway.upstreams().view())
    }

    async fn reload_upstreams(
        &self,
    ) -> Result<quorate_api::local::responses::UpstreamsView, Problem> {
        let table = self.gateway.upstream_table().clone();
        let reloaded = tokio::task::spawn_blocking(move || table.reload())
            .await
            .map_err(|e| internal("reloading the upstream routes", &e))?;
        match reloaded {
            Ok(upstreams) => Ok(upstreams.view()),
            Err(e) => {
                tracing::warn!(target: "upstream", error = %e, "reload refused; the routes in force are kept");
                Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "config-invalid",
                    format!("{e}; the routes in force are kept"),
                ))
            }
        }
    }

    async fn jwt_revocations(
        &self,
    ) -> Result<quorate_api::local::responses::JwtRevocations, Problem> {
        let revocations = self
            .access
            .jwt_revocations
            .list(now_ms())
            .into_iter()
            .map(jwt_revocation_view)
            .collect();
        Ok(quorate_api::local::responses::JwtRevocations { revocations })
    }

    async fn revoke_jwt(
        &self,
        request: quorate_api::local::requests::JwtRevocationRequest,
    ) -> Result<quorate_api::local::responses::JwtRevocationView, Problem> {
        use crate::home::jwt_revocations::{RevokeJwt, RevokeJwtError};
        let revocations = self.access.jwt_revocations.clone();
        let revoke = RevokeJwt {
            subject: request.subject,
            jti: request.jti,
            keep_ms: request.keep_s.map(|s| s.saturating_mul(1000)),
            reason: request.reason,
        };
        let now = now_ms();
        let made = tokio::task::spawn_blocking(move || revocations.revoke(revoke, now))
            .await
            .map_err(|e| internal("revoking a JWT", &e))?;
        match made {
            Ok(made) => Ok(jwt_revocation_view(made)),
            Err(e @ RevokeJwtError::Full) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too-many-revocations",
                e.to_string(),
            )),
            Err(e @ RevokeJwtError::Io { .. }) => Err(internal("revoking a JWT", &e)),
            Err(e) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-revocation",
                e.to_string(),
            )),
        }
    }

    async fn status(&self) -> NodeStatus {
        let status = self.handle.status();
        NodeStatus {
            height: status.height,
            tip_hash: status.tip_hash,
            tip_time_ms: status.tip_time_ms,
            epoch: status.epoch,
            members: status.members as u64,
            is_member: status.is_member,
            peers: status.peers as u64,
            pending_proposals: status.pending_proposals as u64,
            evidence: status.evidence as u64,
            rejected: status
                .rejected
                .iter()
                .map(|(reason, count)| ((*reason).to_owned(), *count))
                .collect(),
            decided_reusing_check: status.decided_reusing_check,
            decided_rechecked: status.decided_rechecked,
            last_commit_age_ms: status
                .last_commit
                .map(|last| last.elapsed().as_millis() as u64),
        }
    }

    async fn propose(&self, request: ProposalRequest) -> Result<String, Problem> {
        let id = self
            .ask(|reply| Command::ProposeRequest { request, reply })
            .await??;
        Ok(id.to_string())
    }

    async fn proposals(&self) -> Vec<ProposalView> {
        // A stopping node has no proposals left to show.
        self.ask(|reply| Command::Proposals {
            open_only: false,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    async fn proposal(&self, id: String) -> Result<ProposalView, Problem> {
        let id = proposal_id(&id)?;
        if let Some(view) = self.ask(|reply| Command::Proposal { id, reply }).await? {
            return Ok(view);
        }
        // Not (or no longer) in the mempool: committed, perhaps.
        match self.committed_proposal(id).await? {
            Some(view) => Ok(view),
            None => Err(Problem::not_found(format!(
                "no proposal {id}: neither open, nor closed recently, nor committed"
            ))),
        }
    }

    async fn decide(
        &self,
        id: String,
        approve: bool,
        reason: Option<String>,
    ) -> Result<(), Problem> {
        let id = proposal_id(&id)?;
        let decided = self
            .ask(|reply| Command::Decide {
                id,
                approve,
                reason,
                reply,
            })
            .await?;
        self.closed_if_committed(id, decided).await
    }

    async fn withdraw(&self, id: String) -> Result<(), Problem> {
        let id = proposal_id(&id)?;
        let withdrawn = self.ask(|reply| Command::Withdraw { id, reply }).await?;
        self.closed_if_committed(id, withdrawn).await
    }

    async fn endorsement_policy(&self) -> Result<EndorsementPolicyView, Problem> {
        Ok(self
            .ask(|reply| Command::EndorsementPolicy { reply })
            .await?)
    }

    async fn set_endorsement_policy(
        &self,
        document: EndorsementPolicy,
    ) -> Result<EndorsementPolicyView, Problem> {
        if self.policy.approval != ApprovalPolicy::Policy {
            let shorthand = format!("{:?}", self.policy.approval).to_lowercase();
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "policy-fixed-by-config",
                format!(
                    "config.toml sets [consensus] approval = \"{shorthand}\", which fixes the policy; set approval = \"policy\" and restart to use rules"
                ),
            ));
        }
        let policy = crate::agreement::policy::Policy::compile(document.clone()).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                e.to_string(),
            )
        })?;
        let path = self.policy.path.clone();
        let written = document.clone();
        blocking(move || crate::home::endorsement::write(&path, &written)).await?;
        self.ask(|reply| Command::SetEndorsementPolicy {
            policy: Box::new(policy),
            source: "file".to_owned(),
            reply,
        })
        .await?;
        Ok(EndorsementPolicyView {
            source: "file".to_owned(),
            policy: document,
        })
    }

    async fn grants(&self, query: GrantQuery) -> Result<GrantPage, Problem> {
        // From the published state (an O(1) snapshot): the driver is not
        // asked, and a page costs its rows, at most GRANTS_SCAN_MAX.
        let state = self.gateway.state();
        let tip_time = Timestamp(self.handle.status().tip_time_ms);
        let limit = query.page_size()? as usize;
        let member = |wanted: &Option<String>| -> Option<Option<MemberId>> {
            wanted.as_ref().map(|w| state.member_named(w).map(|m| m.id))
        };
        let (grantee, grantor) = (member(&query.grantee), member(&query.grantor));
        // A filter naming no member matches nothing.
        if matches!(grantee, Some(None)) || matches!(grantor, Some(None)) {
            return Ok(GrantPage::default());
        }
        let status = query.status.as_deref().map(str::to_ascii_lowercase);
        let after = match &query.after {
            Some(after) => Some(
                after
                    .parse::<GrantId>()
                    .map_err(|_| Problem::bad_request("after must be a grant id"))?,
            ),
            None => None,
        };
        let name = crate::views::member_name(&state);
        let mut page = GrantPage::default();
        let mut last = None;
        let mut scanned = 0;
        state
            .visit_grants(after.as_ref(), &mut |id, record| {
                if page.grants.len() == limit || scanned == GRANTS_SCAN_MAX {
                    page.next_after = last.map(|id: GrantId| id.to_string());
                    return std::ops::ControlFlow::Break(());
                }
                scanned += 1;
                last = Some(id);
                let wanted = grantee.is_none_or(|g| g == Some(record.terms.grantee))
                    && grantor.is_none_or(|g| g == Some(record.terms.grantor))
                    && status.as_deref().is_none_or(|s| {
                        s == crate::views::standing(record, tip_time).as_str()
                            || s == status_kind(&record.status)
                    });
                if wanted {
                    page.grants
                        .push(crate::views::grant(&id, record, tip_time, &name));
                }
                std::ops::ControlFlow::Continue(())
            })
            .map_err(rows_failed)?;
        Ok(page)
    }

    async fn grant(&self, id: String) -> Result<GrantView, Problem> {
        let grant: GrantId = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not a grant id (64 hex digits)"))
        })?;
        let state = self.gateway.state();
        let tip_time = Timestamp(self.handle.status().tip_time_ms);
        let record = state
            .grant(&grant)
            .map_err(rows_failed)?
            .ok_or_else(|| Problem::not_found(format!("no committed grant {id}")))?;
        Ok(crate::views::grant(
            &grant,
            &record,
            tip_time,
            &crate::views::member_name(&state),
        ))
    }

    async fn grant_status(&self, id: String, at: Option<u64>) -> Result<Vec<u8>, Problem> {
        let grant: GrantId = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not a grant id (64 hex digits)"))
        })?;
        let reader = self.ledger.clone();
        Ok(on_reader(move || crate::proofs::grant_status(&reader, &grant, at)).await??)
    }

    async fn member_status(&self, member: String, at: Option<u64>) -> Result<Vec<u8>, Problem> {
        let (reader, state) = (self.ledger.clone(), self.gateway.state());
        Ok(on_reader(move || crate::proofs::member_status(&reader, &state, &member, at)).await??)
    }

    async fn grant_proof(&self, id: String) -> Result<Vec<u8>, Problem> {
        let grant: quorate_contracts::GrantId = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not a grant id (64 hex digits)"))
        })?;
        let reader = self.ledger.clone();
        Ok(on_reader(move || crate::proofs::grant_proof(&reader, &grant)).await??)
    }

    async fn identity(&self) -> Identity {
        let state = self.gateway.state();
        let member = state.member_by_did(self.gateway.me());
        Identity {
            name: self.gateway.name().to_owned(),
            did: self.gateway.me().to_string(),
            member_id: member.map(|m| m.id.to_string()),
            document: self.gateway.me().document(),
        }
    }

    async fn members(&self) -> Members {
        let state = self.gateway.state();
        let members = state
            .members
            .values()
            .map(|m| MemberView {
                name: m.name.clone(),
                did: m.did.to_string(),
                id: m.id.to_string(),
                is_me: &m.did == self.gateway.me(),
            })
            .collect();
        Members {
            epoch: state.epoch,
            members,
        }
    }

    async fn put_object(
        &self,
        path: ResourcePath,
        content_type: String,
        body: Body,
    ) -> Result<ObjectInfo, Problem> {
        let store = self.gateway.objects().clone();
        let upload = store.upload_path().map_err(|_| Problem::internal())?;
        let written = write_upload(&upload, body, self.object_bytes_max).await;
        let (etag, size) = match written {
            Ok(done) => done,
            Err(problem) => {
                let _ = tokio::fs::remove_file(&upload).await;
                return Err(problem);
            }
        };
        let now = crate::agreement::driver::now().0;
        blocking(move || store.commit(&path, &upload, etag, size, &content_type, now)).await
    }

    async fn get_object(
        &self,
        path: ResourcePath,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, Problem> {
        open_range(self.gateway.objects(), &path, range)
            .await
            .map_err(Problem::from)
    }

    async fn head_object(&self, path: ResourcePath) -> Result<ObjectInfo, Problem> {
        let store = self.gateway.objects().clone();
        let shown = path.to_string();
        blocking(move || store.meta(&path))
            .await?
            .ok_or_else(|| Problem::not_found(format!("no object {shown}")))
    }

    async fn delete_object(&self, path: ResourcePath) -> Result<(), Problem> {
        let store = self.gateway.objects().clone();
        let shown = path.to_string();
        let existed = blocking(move || store.delete(&path)).await?;
        if existed {
            Ok(())
        } else {
            Err(Problem::not_found(format!("no object {shown}")))
        }
    }

    async fn list_objects(&self, query: ListQuery) -> Result<Listing, Problem> {
        let store = self.gateway.objects().clone();
        let limit = query.limit.unwrap_or(100);
        blocking(move || store.list(&query.prefix, query.after.as_deref(), limit)).await
    }

    async fn peer_get(
        &self,
        peer: String,
        path: ResourcePath,
        range: Option<ByteRange>,
        purpose: Option<String>,
        query: Option<String>,
    ) -> Result<ObjectBody, Problem> {
        let peer = self.peer_did(&peer)?;
        let first = Request::Object {
            path: path.to_string(),
            range,
            if_match: None,
            purpose,
            query,
        };
        let unexpected = |detail: &str| {
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "peer-unreachable",
                detail.to_owned(),
            )
        };
        let (info, start, end, data, ticket) = match self.ask_peer(&peer, &first).await? {
            Response::Object {
                info,
                start,
                end,
                data,
            } => (info, start, end, data, None),
            Response::Download {
                info,
                start,
                end,
                data,
                ticket,
            } => (info, start, end, data, Some(ticket)),
            _ => return Err(unexpected("unexpected answer")),
        };
        let next = start + data.len() as u64;
        if next > end || end > info.size || (ticket.is_none() && next != end) {
            return Err(unexpected("inconsistent answer"));
        }
        // The first chunk is in hand; the rest of the download (one
        // authorization at the owner) is fetched as the client reads.
        let this = self.clone();
        let rest = futures::stream::unfold(next, move |at| {
            let (this, ticket) = (this.clone(), ticket.clone());
            async move {
                let ticket = ticket.filter(|_| at < end)?;
                let request = Request::Chunk { ticket, at };
                match this.ask_peer(&peer, &request).await {
                    Ok(Response::Chunk { start, data })
                        if start == at && !data.is_empty() && at + data.len() as u64 <= end =>
                    {
                        let next = at + data.len() as u64;
                        Some((Ok(axum::body::Bytes::from(data.into_vec())), next))
                    }
                    Ok(_) => Some((
                        Err(std::io::Error::other("the peer's chunk does not fit")),
                        end,
                    )),
                    Err(p) => Some((Err(std::io::Error::other(p.detail)), end)),
                }
            }
        });
        let first = futures::stream::once(async move {
            Ok::<_, std::io::Error>(axum::body::Bytes::from(data.into_vec()))
        });
        Ok(ObjectBody {
            info,
            span: (start, end),
            partial: range.is_some(),
            sized: true,
            body: Body::from_stream(first.chain(rest)),
            status: None,
            passed: axum::http::HeaderMap::new(),
        })
    }

    async fn peer_put(
        &self,
        peer: String,
        path: ResourcePath,
        write: quorate_api::objects::PeerWrite,
        body: Body,
    ) -> Result<quorate_api::objects::Written, Problem> {
        self.write_to_peer(peer, path, write, body).await
    }

    async fn peer_delete(
        &self,
        peer: String,
        path: ResourcePath,
        precondition: quorate_api::objects::Precondition,
        purpose: Option<String>,
    ) -> Result<(), Problem> {
        self.delete_at_peer(peer, path, precondition, purpose).await
    }

    async fn peer_list(
        &self,
        peer: String,
        query: ListQuery,
        purpose: Option<String>,
    ) -> Result<Listing, Problem> {
        let peer = self.peer_did(&peer)?;
        let request = Request::List {
            purpose,
            prefix: query.prefix,
            after: query.after,
            limit: query
                .limit
                .unwrap_or(100)
                .min(crate::gateway::objects::LIST_LIMIT_MAX) as u32,
        };
        match self.ask_peer(&peer, &request).await? {
            // A peer's listing names paths this node will be asked for: one
            // that is not a resource path (`..`, a query) is a peer's
            // nonsense, not something to pass on.
            Response::Listing(listing)
                if listing
                    .objects
                    .iter()
                    .all(|o| ResourcePath::parse(&o.path).is_ok()) =>
            {
                Ok(listing)
            }
            Response::Listing(_) => Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "peer-unreachable",
                "the member listed a path that is not a resource path",
            )),
            _ => Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "peer-unreachable",
                "unexpected answer",
            )),
        }
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, Problem> {
        let path = self.gateway.auditor().path().to_owned();
        let query = crate::gateway::audit::Query {
            caller: query.caller,
            decision: query.decision,
            limit: query.limit,
        };
        let records = blocking(move || crate::gateway::audit::query(&path, &query)).await?;
        Ok(records
            .into_iter()
            .map(|r| AuditRecord {
                seq: r.seq,
                time_ms: r.time_ms,
                transport: r.decision.transport,
                caller: r.decision.caller,
                action: r.decision.action,
                resource: r.decision.resource,
                decision: r.decision.decision,
                reason: r.decision.reason,
                grant: r.decision.grant,
                bytes: r.decision.bytes,
                purpose: r.decision.purpose,
                digest: r.decision.digest,
                prev: r.prev,
                hash: r.hash,
            })
            .collect())
    }

    type Gateway = Gateway;
    fn gateway(&self) -> Gateway {
        self.gateway.clone()
    }

    async fn metrics(&self) -> String {
        let status = self.handle.status();
        let (allowed, denied) = self.gateway.decisions();
        let age = status
            .last_commit
            .map(|at| at.elapsed().as_secs_f64())
            .unwrap_or(-1.0);
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "quorate_ledger_height",
            "Committed height.",
            "gauge",
            status.height.to_string(),
        );
        metric(
            "quorate_last_commit_age_seconds",
            "Seconds since the last commit.",
            "gauge",
            format!("{age:.3}"),
        );
        metric(
            "quorate_peers",
            "Connected peers.",
            "gauge",
            status.peers.to_string(),
        );
        metric(
            "quorate_network_dropped_events_total",
            "Agreement events (gossip, sync requests) dropped because the driver was behind.",
            "counter",
            self.net.dropped_events().to_string(),
        );
        let auditor = self.gateway.auditor();
        let (write_failures, lost, refused_unrecorded) = auditor.failure_counts();
        metric(
            "quorate_audit_writable",
            "1 while the audit log is written; 0 while writes fail (the gateway serves nobody).",
            "gauge",
            u8::from(auditor.failure().is_none()).to_string(),
        );
        metric(
            "quorate_audit_write_failures_total",
            "Writes of the audit log that failed (each retried until it succeeds).",
            "counter",
            write_failures.to_string(),
        );
        metric(
            "quorate_audit_records_lost_total",
            "Decisions not recorded because the audit log failed for long enough to fill its queue.",
            "counter",
            lost.to_string(),
        );
        metric(
            "quorate_audit_refusals_unrecorded_total",
            "Requests refused as audit-unavailable, counted rather than recorded.",
            "counter",
            refused_unrecorded.to_string(),
        );
        metric(
            "quorate_audit_chain_broken",
            "1 if the audit log's last records did not verify at start.",
            "gauge",
            u8::from(auditor.broken().is_some()).to_string(),
        );
        metric(
            "quorate_members",
            "Members in the epoch.",
            "gauge",
            status.members.to_string(),
        );
        metric(
            "quorate_pending_proposals",
            "Open proposals.",
            "gauge",
            status.pending_proposals.to_string(),
        );
        metric(
            "quorate_equivocations",
            "Equivocations detected.",
            "gauge",
            status.evidence.to_string(),
        );
        out.push_str("# HELP quorate_decided_blocks_total Decided blocks, by whether the check made when each was proposed was reused or the block was checked again.\n# TYPE quorate_decided_blocks_total counter\n");
        out.push_str(&format!(
            "quorate_decided_blocks_total{{check=\"reused\"}} {}\n",
            status.decided_reusing_check
        ));
        out.push_str(&format!(
            "quorate_decided_blocks_total{{check=\"repeated\"}} {}\n",
            status.decided_rechecked
        ));
        out.push_str("# HELP quorate_gateway_decisions_total Gateway decisions.\n# TYPE quorate_gateway_decisions_total counter\n");
        out.push_str(&format!(
            "quorate_gateway_decisions_total{{decision=\"allow\"}} {allowed}\n"
        ));
        out.push_str(&format!(
            "quorate_gateway_decisions_total{{decision=\"deny\"}} {denied}\n"
        ));
        out.push_str("# HELP quorate_rejected_messages_total Peer messages dropped, by reason.\n# TYPE quorate_rejected_messages_total counter\n");
        for (reason, count) in &status.rejected {
            out.push_str(&format!(
                "quorate_rejected_messages_total{{reason=\"{reason}\"}} {count}\n"
            ));
        }
        out.push_str("# HELP quorate_endorsement_policy_decisions_total What this node's endorsement policy decided, by outcome and rule (empty: no rule matched).\n# TYPE quorate_endorsement_policy_decisions_total counter\n");
        for ((outcome, rule), count) in &status.policy_decisions {
            out.push_str(&format!(
                "quorate_endorsement_policy_decisions_total{{outcome=\"{outcome}\",rule=\"{rule}\"}} {count}\n"
            ));
        }
        out
    }

    async fn entry(&self, id: String) -> Result<EntryLocation, Problem> {
        let entry: quorate_ledger::entry::EntryId = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not an entry id (64 hex digits)"))
        })?;
        let reader = self.ledger.clone();
        let location = on_reader(move || reader.entry_location(&entry))
            .await?
            .map_err(|e| ledger_read_failed(&e))?;
        match location {
            Some((height, index)) => Ok(EntryLocation {
                id: entry.to_string(),
                height,
                index,
            }),
            None => Err(Problem::not_found(format!("entry {id} is not committed"))),
        }
    }

    async fn ready(&self) -> Result<(), Problem> {
        self.gateway.ready().map_err(Problem::from)?;
        // A chain found broken at start does not stop serving (new records
        // chain on as before), but the node does not call itself ready
        // until an operator has looked.
        if self.gateway.auditor().broken().is_some() {
            return Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "audit-broken",
                "the audit log's last records did not verify at start; the node's log says where",
            ));
        }
        Ok(())
    }

    async fn ledger(&self) -> Result<LedgerSummary, Problem> {
        // From the published status and state: no work for the driver.
        let status = self.handle.status();
        let state = self.gateway.state();
        Ok(LedgerSummary {
            chain_id: state.chain_id.clone(),
            genesis_hash: self.genesis_hash.to_string(),
            height: status.height,
            tip_hash: status.tip_hash,
            tip_time_ms: status.tip_time_ms,
            epoch: status.epoch,
            members: status.members as u64,
            active_grants: state.active_grants(),
            grants: state.grant_counts().total,
        })
    }

    async fn block(&self, height: u64) -> Result<(BlockView, Vec<u8>), Problem> {
        let block = self
            .blocks(height, height)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Problem::not_found(format!("no block at height {height} yet")))?;
        let bytes = quorate_ledger::codec::encode(&block).map_err(|_| Problem::internal())?;
        Ok((block_view(&block, &self.gateway.state()), bytes))
    }

    async fn offers(&self) -> Result<Offers, Problem> {
        Ok(self.offers_now())
    }

    async fn offer(&self, id: String) -> Result<OfferView, Problem> {
        self.offer_now(&id)
    }

    async fn put_offer(&self, id: String, offer: Offer) -> Result<(OfferView, bool), Problem> {
        self.write_offer(id, offer).await
    }

    async fn delete_offer(&self, id: String) -> Result<(), Problem> {
        self.remove_offer(id).await
    }

    async fn catalog(&self) -> Result<serde_json::Value, Problem> {
        self.own_catalog()
    }

    async fn peer_catalog(&self, peer: String) -> Result<serde_json::Value, Problem> {
        self.fetch_catalog(&peer).await
    }

    async fn access_requests(&self, query: AccessRequestQuery) -> Result<AccessRequests, Problem> {
        self.list_access_requests(query).await
    }

    async fn access_request(&self, id: String) -> Result<AccessRequestView, Problem> {
        self.show_access_request(&id).await
    }

    async fn request_access(
        &self,
        request: NewAccessRequest,
    ) -> Result<AccessRequestView, Problem> {
        self.ask_for_access(request).await
    }

    async fn accept_access_request(
        &self,
        id: String,
        by: Principal,
    ) -> Result<AccessRequestView, Problem> {
        self.accept_request(&id, &by).await
    }

    async fn decline_access_request(
        &self,
        id: String,
        reason: String,
        by: Principal,
    ) -> Result<AccessRequestView, Problem> {
        self.decline_request(&id, &reason, &by).await
    }

    async fn withdraw_access_request(&self, id: String) -> Result<AccessRequestView, Problem> {
        self.withdraw_request(&id).await
    }

    async fn ledger_export(&self) -> Result<Body, Problem> {
        use quorate_ledger::export;
        // Height and hash are published together, after the block is durable.
        let status = self.handle.status();
        let header = export::ExportHeader {
            chain_id: self.gateway.state().chain_id.clone(),
            genesis_hash: self.genesis_hash,
            tip_height: status.height,
            tip_hash: status.tip_hash.parse().map_err(|_| Problem::internal())?,
        };
        let preamble = export::preamble(&header).map_err(|_| Problem::internal())?;
        // Blocks are read from the driver a batch at a time and sent as
        // they come: memory stays at one batch whatever the chain's length.
        // A failure part-way ends the body early, which the reader reports
        // as a truncated export (its header names the tip it must reach).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let node = self.clone();
        tokio::spawn(async move {
            if tx.send(Ok(preamble)).await.is_err() {
                return;
            }
            let mut from = 0;
            while from <= header.tip_height {
                let to = crate::net::protocol::sync_batch_end(from, header.tip_height);
                let blocks = match node.blocks(from, to).await {
                    Ok(blocks) if !blocks.is_empty() => blocks,
                    _ => {
                        let _ = tx
                            .send(Err(std::io::Error::other("the ledger could not be read")))
                            .await;
                        return;
                    }
                };
                for block in &blocks {
                    from = block.block.header.height + 1;
                    let record = export::block_record(block).map_err(std::io::Error::other);
                    if tx.send(record).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Body::from_stream(
            tokio_stream_from(rx).map(|chunk| chunk.map(axum::body::Bytes::from)),
        ))
    }
}

/// Most grants one `GET /v1/grants` reads past its filters: a query that
/// matches few grants gets a short page and a `next` link, never a scan of
/// the whole ledger.
pub const GRANTS_SCAN_MAX: usize = 10_000;
