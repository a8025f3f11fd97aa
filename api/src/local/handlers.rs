//! The handlers: each reads its request (every rejection a problem), calls
//! the [`Node`] and writes its answer.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quorate_contracts::ResourcePath;

use super::access::ActionNote;
use super::endorsement::EndorsementPolicy;
use super::requests::{REASON_BYTES_MAX, RejectRequest};
use super::responses::{Identity, Members, NodeStatus, PrincipalView, ProposalId, ProposalView};
use super::{
    AuditQuery, BlockQuery, GrantQuery, JSON_BODY_BYTES_MAX, Node, ProposalRequest, StatusQuery,
    TokenRequest,
};
use crate::auth::Principal;
use crate::objects::{ListQuery, PeerWrite, Precondition, is_media_type, object_headers, range_of};
use crate::problem::Problem;

/// `path` as a resource path, or a 400 `bad-path`.
pub(crate) fn resource(path: &str) -> Result<ResourcePath, Problem> {
    ResourcePath::parse(path).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-path",
            format!("{path:?} is not a resource path: {e}"),
        )
    })
}

/// A path parameter the router could not read (bytes that are not UTF-8
/// once percent-decoded): 400 `bad-path`.
pub(super) fn path_problem(rejection: PathRejection) -> Problem {
    if rejection.status().is_server_error() {
        return Problem::internal();
    }
    Problem::new(StatusCode::BAD_REQUEST, "bad-path", rejection.body_text())
}

/// A query string that does not fit the route's filters: 400.
pub(super) fn query_problem(rejection: QueryRejection) -> Problem {
    Problem::bad_request(rejection.body_text())
}

/// A JSON body that could not be read: 413 over the limit, 415 without a
/// JSON `Content-Type`, else 400.
pub(super) fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(format!(
            "JSON bodies are limited to {JSON_BODY_BYTES_MAX} bytes"
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            rejection.body_text(),
        ),
        status if status.is_server_error() => Problem::internal(),
        _ => Problem::bad_request(rejection.body_text()),
    }
}

/// An id path parameter: 64 hex digits (a grant, proposal or entry id), or
/// a 400 `bad-request`.
fn hex_id(id: Result<Path<String>, PathRejection>, what: &str) -> Result<String, Problem> {
    let Path(id) = id.map_err(path_problem)?;
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Problem::bad_request(format!(
            "{id:?} is not a {what} id (64 hex digits)"
        )))
    }
}

pub(super) fn json_or_problem<T: serde::Serialize>(result: Result<T, Problem>) -> Response {
    match result {
        Ok(json) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn readyz<N: Node>(State(node): State<N>) -> Response {
    match node.ready().await {
        Ok(()) => "ready".into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn entry<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match hex_id(id, "entry") {
        Ok(id) => json_or_problem(node.entry(id).await),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn ledger<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.ledger().await)
}

pub(super) async fn block<N: Node>(
    State(node): State<N>,
    height: Result<Path<String>, PathRejection>,
    query: Result<Query<BlockQuery>, QueryRejection>,
) -> Response {
    let Path(height) = match height {
        Ok(height) => height,
        Err(e) => return path_problem(e).into_response(),
    };
    // Decimal digits only (no sign), at most u64::MAX.
    let parsed = height
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| height.parse::<u64>().ok())
        .flatten();
    let Some(height) = parsed else {
        return Problem::bad_request(format!(
            "{height:?} is not a block height (0 to {})",
            u64::MAX
        ))
        .into_response();
    };
    let cbor = match query.map(|Query(q)| q.format) {
        Ok(None) => false,
        Ok(Some(f)) if f == "json" => false,
        Ok(Some(f)) if f == "cbor" => true,
        Ok(Some(f)) => {
            return Problem::bad_request(format!("format {f:?}: use json or cbor")).into_response();
        }
        Err(e) => return query_problem(e).into_response(),
    };
    match node.block(height).await {
        Ok((_, bytes)) if cbor => ([(CONTENT_TYPE, "application/cbor")], bytes).into_response(),
        Ok((json, _)) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn ledger_export<N: Node>(State(node): State<N>) -> Response {
    match node.ledger_export().await {
        Ok(body) => ([(CONTENT_TYPE, "application/octet-stream")], body).into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn identity<N: Node>(State(node): State<N>) -> Json<Identity> {
    Json(node.identity().await)
}

pub(super) async fn members<N: Node>(State(node): State<N>) -> Json<Members> {
    Json(node.members().await)
}

pub(super) async fn metrics<N: Node>(State(node): State<N>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics().await,
    )
        .into_response()
}

pub(super) async fn list_objects<N: Node>(
    State(node): State<N>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.list_objects(query).await),
        Err(e) => query_problem(e).into_response(),
    }
}

pub(super) async fn get_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        let range = range_of(&headers)?;
        node.get_object(resource(&path)?, range).await
    };
    match result.await {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn head_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        node.head_object(resource(&path)?).await
    };
    match result.await {
        Ok(info) => {
            let mut response = StatusCode::OK.into_response();
            object_headers(&info, response.headers_mut());
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(info.size));
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// The media type a put stores: its `Content-Type` if that is one (see
/// [`is_media_type`]), `application/octet-stream` if absent, else a 400
/// `bad-content-type` (it is echoed on every read of the object).
fn stored_content_type(headers: &HeaderMap) -> Result<String, Problem> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok("application/octet-stream".to_owned());
    };
    match value.to_str() {
        Ok(text) if is_media_type(text) => Ok(text.to_owned()),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-content-type",
            format!(
                "Content-Type must be a media type (type/subtype; parameters), at most {} bytes",
                crate::objects::CONTENT_TYPE_BYTES_MAX
            ),
        )),
    }
}

/// A put: an empty body stores an empty object (a legitimate object, such
/// as a marker file).
pub(super) async fn put_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        let path = resource(&path)?;
        let content_type = stored_content_type(&headers)?;
        node.put_object(path, content_type, body).await
    };
    match result.await {
        Ok(info) => {
            let note = ActionNote {
                subject: Some(info.path.clone()),
                bytes: info.size,
            };
            (StatusCode::CREATED, axum::Extension(note), Json(info)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn delete_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        node.delete_object(resource(&path)?).await
    };
    match result.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// The precondition of a write or delete (`If-Match`, `If-None-Match`).
fn precondition_of(headers: &HeaderMap) -> Result<Precondition, Problem> {
    Precondition::of(headers).map_err(Problem::bad_request)
}

/// The declared `Content-Length`, when there is one.
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    headers
        .get(CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_request("Content-Length is not a number"))
        })
        .transpose()
}

/// A write into a member's namespace through this node: 201 with what
/// the member stored (200 if it replaced an object), or the member's
/// refusal.
pub(super) async fn peer_put<N: Node>(
    State(node): State<N>,
    params: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Path((peer, path)) = params.map_err(path_problem)?;
        let path = resource(&path)?;
        let write = PeerWrite {
            content_type: stored_content_type(&headers)?,
            length: declared_length(&headers)?,
            precondition: precondition_of(&headers)?,
            purpose: purpose_of(&headers)?,
        };
        node.peer_put(peer, path, write, body).await
    };
    match result.await {
        Ok(written) => {
            let note = ActionNote {
                subject: Some(written.object.path.clone()),
                bytes: written.object.size,
            };
            let status = if written.replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, axum::Extension(note), Json(written)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

/// A delete in a member's namespace through this node.
pub(super) async fn peer_delete<N: Node>(
    State(node): State<N>,
    params: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path((peer, path)) = params.map_err(path_problem)?;
        let path = resource(&path)?;
        let subject = path.to_string();
        node.peer_delete(
            peer,
            path,
            precondition_of(&headers)?,
            purpose_of(&headers)?,
        )
        .await
        .map(|()| subject)
    };
    match result.await {
        Ok(subject) => {
            let note = ActionNote {
                subject: Some(subject),
                bytes: 0,
            };
            (StatusCode::NO_CONTENT, axum::Extension(note)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn peer_get<N: Node>(
    State(node): State<N>,
    params: Result<Path<(String, String)>, PathRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path((peer, path)) = params.map_err(path_problem)?;
        let range = range_of(&headers)?;
        let purpose = purpose_of(&headers)?;
        let query = uri.query().map(str::to_owned);
        node.peer_get(peer, resource(&path)?, range, purpose, query)
            .await
    };
    match result.await {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn peer_list<N: Node>(
    State(node): State<N>,
    peer: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let purpose = match purpose_of(&headers) {
        Ok(purpose) => purpose,
        Err(problem) => return problem.into_response(),
    };
    match (peer, query) {
        (Err(e), _) => path_problem(e).into_response(),
        (_, Err(e)) => query_problem(e).into_response(),
        (Ok(Path(peer)), Ok(Query(query))) => {
            json_or_problem(node.peer_list(peer, query, purpose).await)
        }
    }
}

/// The purpose a client declares for a fetch from a peer, in the
/// `Quorate-Purpose` header (passed on to the peer's gateway, which serves
/// a purpose-bound grant only to a request that declares its purpose).
fn purpose_of(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(crate::signature::PURPOSE_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::bad_request(crate::purpose::PurposeError::Encoding.to_string()))?;
    crate::purpose::decode(text)
        .map(Some)
        .map_err(|e| Problem::bad_request(e.to_string()))
}

pub(super) async fn audit<N: Node>(
    State(node): State<N>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.audit(query).await),
        Err(e) => query_problem(e).into_response(),
    }
}

pub(super) async fn status<N: Node>(State(node): State<N>) -> Json<NodeStatus> {
    Json(node.status().await)
}

pub(super) async fn proposals<N: Node>(State(node): State<N>) -> Json<Vec<ProposalView>> {
    Json(node.proposals().await)
}

pub(super) async fn grants<N: Node>(
    State(node): State<N>,
    query: Result<Query<GrantQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return Problem::bad_request(
            "grant queries take grantee, grantor, status, after and limit",
        )
        .into_response();
    };
    let limit = match query.page_size() {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    if let Some(after) = &query.after
        && !(after.len() == 64 && after.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Problem::bad_request("after must be a grant id (64 hex digits)").into_response();
    }
    match node.grants(query.clone()).await {
        Ok(page) => {
            let mut response = Json(page.grants).into_response();
            if let Some(after) = page.next_after {
                let link = format!(
                    "</v1/grants?{}>; rel=\"next\"",
                    query.next_page(&after, limit)
                );
                if let Ok(value) = axum::http::HeaderValue::from_str(&link) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::LINK, value);
                }
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn grant<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.grant(id).await {
        Ok(grant) => Json(grant).into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn grant_proof<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    cbor_proof(node.grant_proof(id).await)
}

pub(super) async fn grant_status<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let at = match status_height(query) {
        Ok(at) => at,
        Err(problem) => return problem.into_response(),
    };
    cbor_proof(node.grant_status(id, at).await)
}

/// The height a status query names (the tip if none).
fn status_height(
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Option<u64>, Problem> {
    match query {
        Ok(Query(query)) => Ok(query.at),
        Err(_) => Err(Problem::bad_request(
            "a status query takes at=HEIGHT (a whole number)",
        )),
    }
}

/// A proof as canonical CBOR, or the problem.
fn cbor_proof(proof: Result<Vec<u8>, Problem>) -> Response {
    match proof {
        Ok(cbor) => ([(CONTENT_TYPE, "application/cbor")], cbor).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Longest member path segment: a did:key (at most 128 bytes) or a name.
const MEMBER_PARAM_BYTES_MAX: usize = 128;

pub(super) async fn member_status<N: Node>(
    State(node): State<N>,
    member: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Response {
    let member = match member {
        Ok(Path(member)) if !member.is_empty() && member.len() <= MEMBER_PARAM_BYTES_MAX => member,
        _ => {
            return Problem::bad_request(
                "the path names a member: a did:key, or a name (at most 128 bytes)",
            )
            .into_response();
        }
    };
    let at = match status_height(query) {
        Ok(at) => at,
        Err(problem) => return problem.into_response(),
    };
    cbor_proof(node.member_status(member, at).await)
}

pub(super) async fn propose<N: Node>(
    State(node): State<N>,
    body: Result<Json<ProposalRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.propose(request).await {
        Ok(id) => {
            let note = ActionNote {
                subject: Some(id.clone()),
                bytes: 0,
            };
            (
                StatusCode::ACCEPTED,
                axum::Extension(note),
                Json(ProposalId { id }),
            )
                .into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn approve<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    decide(node, id, true, None).await
}

pub(super) async fn reject<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
    request: axum::extract::Request,
) -> Response {
    // The body is optional: none (whatever the Content-Type says, since
    // some clients always send one) or `{"reason": "..."}`.
    let bytes = match axum::body::to_bytes(request.into_body(), JSON_BODY_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Problem::too_large(format!(
                "JSON bodies are limited to {JSON_BODY_BYTES_MAX} bytes"
            ))
            .into_response();
        }
    };
    let reason = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice::<RejectRequest>(&bytes) {
            Ok(RejectRequest { reason }) => {
                if reason.is_empty() || reason.len() > REASON_BYTES_MAX {
                    return Problem::bad_request(format!(
                        "a rejection's reason is 1 to {REASON_BYTES_MAX} bytes, this one {}",
                        reason.len()
                    ))
                    .into_response();
                }
                Some(reason)
            }
            Err(e) => {
                return Problem::bad_request(format!(
                    "the body is not {{\"reason\": \"...\"}}: {e}"
                ))
                .into_response();
            }
        }
    };
    decide(node, id, false, reason).await
}

pub(super) async fn decide<N: Node>(
    node: N,
    id: Result<Path<String>, PathRejection>,
    approve: bool,
    reason: Option<String>,
) -> Response {
    let id = match hex_id(id, "proposal") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.decide(id, approve, reason).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn proposal<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match hex_id(id, "proposal") {
        Ok(id) => json_or_problem(node.proposal(id).await),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn withdraw<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match hex_id(id, "proposal") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.withdraw(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn endorsement_policy<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.endorsement_policy().await)
}

pub(super) async fn set_endorsement_policy<N: Node>(
    State(node): State<N>,
    body: Result<Json<EndorsementPolicy>, JsonRejection>,
) -> Response {
    let Json(policy) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    json_or_problem(node.set_endorsement_policy(policy).await)
}

pub(super) async fn principal(axum::Extension(principal): axum::Extension<Principal>) -> Response {
    Json(PrincipalView {
        principal: principal.label,
        roles: principal.roles.iter().collect(),
        expires_ms: principal.expires_ms,
    })
    .into_response()
}

pub(super) async fn tokens<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.tokens().await)
}

pub(super) async fn create_token<N: Node>(
    State(node): State<N>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.create_token(request).await {
        Ok(token) => {
            let note = ActionNote {
                subject: Some(token.view.name.clone()),
                bytes: 0,
            };
            (StatusCode::CREATED, axum::Extension(note), Json(token)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn upstreams<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.upstreams().await)
}

pub(super) async fn reload_upstreams<N: Node>(State(node): State<N>) -> Response {
    match node.reload_upstreams().await {
        Ok(routes) => {
            let note = ActionNote {
                subject: Some(format!("{} routes", routes.routes.len())),
                bytes: 0,
            };
            (axum::Extension(note), Json(routes)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn jwt_revocations<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.jwt_revocations().await)
}

pub(super) async fn revoke_jwt<N: Node>(
    State(node): State<N>,
    body: Result<Json<super::requests::JwtRevocationRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.revoke_jwt(request).await {
        Ok(revoked) => {
            let note = ActionNote {
                subject: revoked.subject.clone().or_else(|| revoked.jti.clone()),
                bytes: 0,
            };
            (StatusCode::CREATED, axum::Extension(note), Json(revoked)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn revoke_token<N: Node>(
    State(node): State<N>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let name = match name {
        Ok(Path(name)) => name,
        Err(e) => return path_problem(e).into_response(),
    };
    match node.revoke_token(name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// `GET /v1/events`: Server-Sent Events, from `Last-Event-ID` (or
/// `?after=`) on, each shown only to a principal whose roles open the read
/// route it comes from; a comment every 15 s keeps idle connections up.
pub(super) async fn events<N: Node>(
    State(node): State<N>,
    axum::Extension(principal): axum::Extension<Principal>,
    query: Result<Query<super::requests::EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return query_problem(e).into_response(),
    };
    let resume = match headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::parse::<u64>))
    {
        None => None,
        Some(Ok(Ok(id))) => Some(id),
        Some(_) => {
            return Problem::bad_request("Last-Event-ID is not an event id (a whole number)")
                .into_response();
        }
    };
    let stream = match node.events(&principal, resume.or(query.after)).await {
        Ok(stream) => stream,
        Err(problem) => return problem.into_response(),
    };
    let events = stream
        .filter(move |event| std::future::ready(super::access::may_see(&principal, &event.kind)))
        .map(|event| {
            Ok::<_, std::convert::Infallible>(
                Event::default()
                    .id(event.id.to_string())
                    .event(event.kind)
                    .data(event.data.to_string()),
            )
        });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}
