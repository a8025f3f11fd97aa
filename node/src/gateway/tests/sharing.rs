//! Goal: a member's catalog shows each member exactly the offers meant for
//! it, and an access request is kept only when its requester signed it,
//! sent it itself, addressed it here, and stays within the offer it cites
//! and the desk's bounds; the endorsement policy's verdict decides what
//! happens next. Method: the data protocol's answers, called with decoded
//! requests as the network loop hands them over; the driver is played by
//! the test, which answers the gateway's commands.

use quorate_api::local::catalog::{Offer, OfferTerms};
use quorate_api::local::endorsement::Outcome;
use quorate_contracts::Action;
use quorate_ledger::hash::Hash;

use super::*;
use crate::agreement::driver::Command;
use crate::agreement::policy::Verdict;
use crate::net::protocol::{Denial, Request, Response};
use crate::sharing::desk::Standing;
use crate::sharing::request::{AccessRequestBody, SignedAccessRequest};

fn offer(resource: &str, audience: &[&str]) -> Offer {
    Offer {
        title: format!("Data under {resource}"),
        description: None,
        resource: resource.to_owned(),
        media_type: Some("text/csv".into()),
        keywords: Vec::new(),
        schema: None,
        terms: OfferTerms {
            actions: vec![Action::Read],
            duration_max: Some("30d".into()),
            purposes: vec!["customs clearance".into()],
        },
        audience: audience.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn datasets(response: Response) -> Vec<String> {
    let Response::Catalog(bytes) = response else {
        panic!("not a catalog: {response:?}");
    };
    let catalog: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(catalog["@type"], "dcat:Catalog");
    catalog["dcat:dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dct:identifier"].as_str().unwrap().to_owned())
        .collect()
}

fn denied(response: Response) -> Denial {
    match response {
        Response::Denied(denial) => denial,
        other => panic!("not denied: {other:?}"),
    }
}

impl Fixture {
    /// A request from member `from` to org-a, as `from` would sign it.
    fn request(
        &self,
        from: usize,
        nonce: u8,
        tweak: impl FnOnce(&mut AccessRequestBody),
    ) -> SignedAccessRequest {
        let mut body = AccessRequestBody {
            chain: self.consortium.chain.genesis_hash(),
            requester: self.did(from),
            owner: self.did(OWNER),
            offer: Some("shipments".into()),
            resources: vec!["datasets/shipments/*".into()],
            actions: vec![Action::Read],
            not_before_ms: None,
            not_after_ms: None,
            duration_ms: Some(7 * 86_400_000),
            purpose: Some("customs clearance".into()),
            message: Some("for the audit".into()),
            created_at_ms: NOW,
            nonce: [nonce; 16],
        };
        tweak(&mut body);
        SignedAccessRequest::sign(body, &self.consortium.keys[from]).unwrap()
    }

    /// Plays the driver for one command: the policy says `outcome`.
    fn answer_policy(&self, outcome: Outcome) -> tokio::task::JoinHandle<()> {
        let verdict = Verdict {
            outcome,
            rule: Some("test-rule".into()),
            reason: (outcome == Outcome::Reject).then(|| "not for you".to_owned()),
        };
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let mut commands = commands.lock().await;
            if let Some(Command::JudgeAccess { reply, .. }) = commands.recv().await {
                let _ = reply.send(Some(verdict));
            }
        })
    }
}

#[tokio::test]
async fn each_member_sees_the_offers_meant_for_it_and_outsiders_none() {
    let f = Fixture::new();
    let catalog = f.gateway.sharing().catalog();
    catalog
        .put("shipments", &offer("datasets/shipments/*", &[]), NOW)
        .unwrap();
    catalog
        .put("customs", &offer("datasets/customs/*", &["org-b"]), NOW)
        .unwrap();
    let (org_b, org_c) = (f.did(GRANTEE), f.did(STRANGER_TO_GRANTS));
    let mut b_sees = datasets(f.gateway.answer_peer(&org_b, Request::Catalog).await);
    b_sees.sort();
    assert_eq!(b_sees, ["customs", "shipments"]);
    assert_eq!(
        datasets(f.gateway.answer_peer(&org_c, Request::Catalog).await),
        ["shipments"]
    );
    let outsider = quorate_did::Keypair::from_seed(&[99; 32]).did();
    let refused = denied(f.gateway.answer_peer(&outsider, Request::Catalog).await);
    assert_eq!(refused.code, "not-a-member");
    f.go_stale();
    let stale = denied(f.gateway.answer_peer(&org_b, Request::Catalog).await);
    assert_eq!(stale.code, "stale-ledger");
    // Every read is audited, allowed or refused.
    let records = f.audit().await;
    let catalog_reads: Vec<_> = records
        .iter()
        .filter(|r| r.decision.action == "catalog")
        .map(|r| r.decision.decision.as_str())
        .collect();
    assert_eq!(catalog_reads, ["allow", "allow", "deny", "deny"]);
}

#[tokio::test]
async fn a_request_is_kept_only_if_its_requester_signed_sent_and_addressed_it() {
    let f = Fixture::new();
    f.gateway
        .sharing()
        .catalog()
        .put("shipments", &offer("datasets/shipments/*", &[]), NOW)
        .unwrap();
    let (org_b, org_c) = (f.did(GRANTEE), f.did(STRANGER_TO_GRANTS));
    let code = |r: Response| denied(r).code;
    // Sent by another member than the one that signed it.
    let b_signed = f.request(GRANTEE, 1, |_| {});
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_c, Request::AccessRequest(Box::new(b_signed.clone())))
                .await
        ),
        "invalid-access-request"
    );
    // Tampered with after signing.
    let mut tampered = b_signed.clone();
    tampered.body.resources = vec!["*".into()];
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessRequest(Box::new(tampered)))
                .await
        ),
        "invalid-access-request"
    );
    // Addressed to another member, or another consortium.
    let elsewhere = f.request(GRANTEE, 2, |b| b.owner = f.did(STRANGER_TO_GRANTS));
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessRequest(Box::new(elsewhere)))
                .await
        ),
        "invalid-access-request"
    );
    let other_chain = f.request(GRANTEE, 3, |b| b.chain = Hash([1; 32]));
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessRequest(Box::new(other_chain)))
                .await
        ),
        "invalid-access-request"
    );
    // Made long ago (a replay of an old request is no new one).
    let old = f.request(GRANTEE, 4, |b| b.created_at_ms = NOW - 3_600_000);
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessRequest(Box::new(old)))
                .await
        ),
        "invalid-access-request"
    );
    // Outside the offer it cites: another resource, no purpose, too long.
    for (nonce, tweak) in [
        (
            5u8,
            Box::new(|b: &mut AccessRequestBody| b.resources = vec!["datasets/customs/*".into()])
                as Box<dyn FnOnce(&mut AccessRequestBody)>,
        ),
        (6, Box::new(|b: &mut AccessRequestBody| b.purpose = None)),
        (
            7,
            Box::new(|b: &mut AccessRequestBody| b.duration_ms = Some(40 * 86_400_000)),
        ),
        (
            8,
            Box::new(|b: &mut AccessRequestBody| b.actions = vec![Action::Write]),
        ),
    ] {
        let outside = f.request(GRANTEE, nonce, tweak);
        assert_eq!(
            code(
                f.gateway
                    .answer_peer(&org_b, Request::AccessRequest(Box::new(outside)))
                    .await
            ),
            "outside-offer"
        );
    }
    let unknown = f.request(GRANTEE, 9, |b| b.offer = Some("nothing".into()));
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessRequest(Box::new(unknown)))
                .await
        ),
        "unknown-offer"
    );
    // Nothing refused was kept.
    assert!(
        f.gateway
            .sharing()
            .desk()
            .list(NOW)
            .await
            .unwrap()
            .is_empty()
    );

    // A good one is kept, then put to the policy: `ask` leaves it open.
    let asked = f.answer_policy(Outcome::Ask);
    let good = f.request(GRANTEE, 10, |_| {});
    let id = good.id().unwrap();
    let answer = f
        .gateway
        .answer_peer(&org_b, Request::AccessRequest(Box::new(good.clone())))
        .await;
    asked.await.unwrap();
    assert!(
        matches!(answer, Response::AccessRequest(Standing::Open)),
        "{answer:?}"
    );
    // Sent again: the same request, as it stands, not a second one.
    let again = f
        .gateway
        .answer_peer(&org_b, Request::AccessRequest(Box::new(good)))
        .await;
    assert!(matches!(again, Response::AccessRequest(Standing::Open)));
    assert_eq!(f.gateway.sharing().desk().list(NOW).await.unwrap().len(), 1);
    let kept = f.gateway.sharing().desk().get(&id, NOW).await.unwrap();
    assert_eq!(kept.policy.as_deref(), Some("rule test-rule: ask a person"));
    // Its status is its requester's to ask, nobody else's; so is
    // withdrawing it.
    assert!(matches!(
        f.gateway
            .answer_peer(&org_b, Request::AccessStatus { id })
            .await,
        Response::AccessRequest(Standing::Open)
    ));
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_c, Request::AccessStatus { id })
                .await
        ),
        "unknown-access-request"
    );
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_c, Request::AccessWithdraw { id })
                .await
        ),
        "unknown-access-request"
    );
    assert!(matches!(
        f.gateway
            .answer_peer(&org_b, Request::AccessWithdraw { id })
            .await,
        Response::AccessRequest(Standing::Withdrawn { .. })
    ));
    assert_eq!(
        code(
            f.gateway
                .answer_peer(&org_b, Request::AccessWithdraw { id })
                .await
        ),
        "access-request-closed"
    );
    // The filing and the withdrawals are audited, with the request's id.
    let records = f.audit().await;
    let filed = records
        .iter()
        .filter(|r| r.decision.action == "access-request" && r.decision.decision == "allow")
        .count();
    assert_eq!(filed, 2, "the first filing and its repeat");
    assert!(
        records
            .iter()
            .any(|r| r.decision.action == "access-withdraw"
                && r.decision.resource == id.to_string()
                && r.decision.decision == "allow")
    );
}

#[tokio::test]
async fn a_rejecting_policy_declines_with_its_reason() {
    let f = Fixture::new();
    f.gateway
        .sharing()
        .catalog()
        .put("shipments", &offer("datasets/shipments/*", &[]), NOW)
        .unwrap();
    let judged = f.answer_policy(Outcome::Reject);
    let request = f.request(GRANTEE, 1, |_| {});
    let answer = f
        .gateway
        .answer_peer(&f.did(GRANTEE), Request::AccessRequest(Box::new(request)))
        .await;
    judged.await.unwrap();
    match answer {
        Response::AccessRequest(Standing::Declined { reason, by, .. }) => {
            assert_eq!(reason, "not for you");
            assert_eq!(by, "policy:test-rule");
        }
        other => panic!("not declined: {other:?}"),
    }
}
