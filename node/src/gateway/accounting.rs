//! Per-request accounting: each request is one audit record, allow or
//! deny, and one count in the metrics. A read over libp2p that takes many
//! chunks is still one request: its record is written when the download
//! ends, with the bytes it sent.

use std::sync::atomic::Ordering;

use quorate_api::refusal::Refusal;
use quorate_contracts::{Action, GrantId, ResourcePath};
use quorate_did::Did;

use super::downloads::Download;
use super::p2p::P2P;
use super::{Gateway, action_name, audit};

/// A request as its audit record names it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Audited<'a> {
    /// `http` or `p2p`.
    pub(super) transport: &'a str,
    /// The caller, once authenticated.
    pub(super) caller: Option<&'a Did>,
    pub(super) action: Action,
    /// The path, or the listing's prefix.
    pub(super) resource: &'a str,
    /// The purpose the caller declared.
    pub(super) purpose: Option<&'a str>,
}

impl<'a> Audited<'a> {
    /// A write or delete (`action`) of `path` by `caller`, for `purpose`.
    pub(super) fn change(
        transport: &'a str,
        caller: &'a Did,
        action: Action,
        path: &'a ResourcePath,
        purpose: Option<&'a str>,
    ) -> Self {
        Self {
            transport,
            caller: Some(caller),
            action,
            resource: path.as_str(),
            purpose,
        }
    }

    /// A read of `path` by `caller`, for `purpose`.
    pub(super) fn read(
        transport: &'a str,
        caller: &'a Did,
        path: &'a ResourcePath,
        purpose: Option<&'a str>,
    ) -> Self {
        Self {
            transport,
            caller: Some(caller),
            action: Action::Read,
            resource: path.as_str(),
            purpose,
        }
    }
}

impl Gateway {
    /// An allowed request: its grant (a listing has none), the bytes sent,
    /// and why it ended early if it did.
    pub(super) async fn record_allowed(
        &self,
        request: Audited<'_>,
        grant: Option<GrantId>,
        bytes: u64,
        cut_short: Option<&str>,
    ) {
        self.inner.allowed.fetch_add(1, Ordering::Relaxed);
        self.write_record(request, "allow", cut_short, grant, bytes, None)
            .await;
    }

    /// A write that was stored: its grant, the bytes received and their
    /// sha-256 (`Content-Digest` form).
    pub(super) async fn record_written(
        &self,
        request: Audited<'_>,
        grant: GrantId,
        bytes: u64,
        digest: String,
    ) {
        self.inner.allowed.fetch_add(1, Ordering::Relaxed);
        self.write_record(request, "allow", None, Some(grant), bytes, Some(digest))
            .await;
    }

    /// A write refused after its body started to arrive (its digest did
    /// not match, the grant ended meanwhile, it broke off): nothing was
    /// stored; the bytes received are recorded.
    pub(super) async fn record_write_refused(
        &self,
        request: Audited<'_>,
        grant: Option<GrantId>,
        bytes: u64,
        refusal: &Refusal,
    ) {
        self.record_write_ended(request, grant, bytes, refusal.code().as_str())
            .await;
    }

    /// A write that ended without being stored, for `reason` (a refusal's
    /// code, or `incomplete` for an upload that went idle).
    pub(super) async fn record_write_ended(
        &self,
        request: Audited<'_>,
        grant: Option<GrantId>,
        bytes: u64,
        reason: &str,
    ) {
        self.inner.denied.fetch_add(1, Ordering::Relaxed);
        self.write_record(request, "deny", Some(reason), grant, bytes, None)
            .await;
    }

    /// A refused request, with its refusal's code.
    pub(super) async fn record_refused(&self, request: Audited<'_>, refusal: &Refusal) {
        self.inner.denied.fetch_add(1, Ordering::Relaxed);
        self.write_record(
            request,
            "deny",
            Some(refusal.code().as_str()),
            None,
            0,
            None,
        )
        .await;
    }

    /// The one record of a download over libp2p, when it ends: complete,
    /// or cut short (`cut_short` says why) after the bytes it sent.
    pub(super) async fn record_download(&self, download: &Download, cut_short: Option<&str>) {
        let request = Audited::read(
            P2P,
            &download.caller,
            &download.path,
            download.purpose.as_deref(),
        );
        self.record_allowed(request, Some(download.grant), download.sent, cut_short)
            .await;
    }

    /// Audits a request refused before the pipeline (by a transport:
    /// unsigned, bad signature, replay, bad path).
    pub async fn refused(
        &self,
        transport: &str,
        caller: Option<&Did>,
        action: Action,
        resource: &str,
        refusal: &Refusal,
    ) {
        let request = Audited {
            transport,
            caller,
            action,
            resource,
            purpose: None,
        };
        self.record_refused(request, refusal).await;
    }

    async fn write_record(
        &self,
        request: Audited<'_>,
        decision: &str,
        reason: Option<&str>,
        grant: Option<GrantId>,
        bytes: u64,
        digest: Option<String>,
    ) {
        self.inner
            .parts
            .auditor
            .record(audit::Decision {
                transport: request.transport.to_owned(),
                caller: request.caller.map(|c| c.to_string()),
                action: action_name(request.action).to_owned(),
                resource: request.resource.to_owned(),
                decision: decision.to_owned(),
                reason: reason.map(str::to_owned),
                grant: grant.map(|g| g.to_string()),
                bytes,
                purpose: request.purpose.map(str::to_owned),
                digest,
            })
            .await;
    }
}
