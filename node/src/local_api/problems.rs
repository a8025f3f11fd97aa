//! The node's refusals as the local API's problems, each mapped in one
//! place.

use super::*;

// The driver's refusals as problems: each error, one place.

/// The driver took no command, or dropped it unanswered: it is stopping.
#[derive(Debug, thiserror::Error)]
#[error("the node is stopping")]
pub(super) struct DriverGone;

impl From<DriverGone> for Problem {
    fn from(e: DriverGone) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node-stopping",
            e.to_string(),
        )
    }
}

pub(super) fn not_a_member(detail: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "not-a-member", detail)
}

pub(super) fn not_ready(detail: String) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", detail)
}

/// A fault of this node: the cause goes to the log, not the client.
pub(super) fn internal(what: &str, cause: &dyn std::fmt::Display) -> Problem {
    tracing::error!(target: "local_api", error = %cause, "{what}");
    Problem::internal()
}

/// The ledger could not be read: logged, and a 500 that says so.
pub(super) fn ledger_read_failed(cause: &dyn std::fmt::Display) -> Problem {
    tracing::error!(target: "ledger", error = %cause, "cannot read the ledger");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ledger-read-failed",
        "the node could not read its ledger; see its log",
    )
}

impl From<ProposeError> for Problem {
    fn from(e: ProposeError) -> Self {
        use ProposeError as E;
        match e {
            E::NotAMember => not_a_member(e.to_string()),
            E::NoLedger => not_ready(e.to_string()),
            E::UnknownMember(_)
            | E::BadResource { .. }
            | E::BadGrantId(_)
            | E::BadDid { .. }
            | E::Invalid(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "proposal-rejected",
                e.to_string(),
            ),
            E::Full(_) => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-proposals",
                    e.to_string(),
                );
                p.retry_after_secs = Some(PROPOSALS_FULL_RETRY_SECS);
                p
            }
            E::Entropy(_) | E::Encode(_) | E::Refused(_) => internal("cannot propose", &e),
        }
    }
}

/// When to try again after the mempool was full: proposals commit or
/// expire on the order of the heartbeat.
const PROPOSALS_FULL_RETRY_SECS: u64 = 5;

impl From<DecideError> for Problem {
    fn from(e: DecideError) -> Self {
        use DecideError as E;
        match e {
            E::NotAMember => not_a_member(e.to_string()),
            E::NoLedger => not_ready(e.to_string()),
            E::UnknownProposal(_) => Problem::not_found(e.to_string()),
            E::Closed { .. } => {
                Problem::new(StatusCode::CONFLICT, "proposal-closed", e.to_string())
            }
            E::AlreadyDecided { .. } => {
                Problem::new(StatusCode::CONFLICT, "already-decided", e.to_string())
            }
            E::NotProposer(_) => Problem::new(StatusCode::FORBIDDEN, "not-proposer", e.to_string()),
            E::Encode(_) | E::Refused(_) => internal("cannot decide", &e),
        }
    }
}

impl From<GrantProofError> for Problem {
    fn from(e: GrantProofError) -> Self {
        use GrantProofError as E;
        match e {
            E::UnknownGrant(_) => Problem::not_found(e.to_string()),
            E::Read(_) => ledger_read_failed(&e),
            E::Encode(_) => internal("cannot encode a grant proof", &e),
        }
    }
}

impl From<StatusProofError> for Problem {
    fn from(e: StatusProofError) -> Self {
        use StatusProofError as E;
        match e {
            E::UnknownGrant(_) | E::UnknownMember(_) => Problem::not_found(e.to_string()),
            E::BeyondTip { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "height-beyond-tip",
                e.to_string(),
            ),
            E::NotHeld(_) => Problem::new(StatusCode::NOT_FOUND, "height-not-held", e.to_string()),
            E::NoLedger => not_ready(e.to_string()),
            E::Read(_) => ledger_read_failed(&e),
        }
    }
}

/// A failed read of the grant rows: logged here, 500 to the client.
pub(super) fn rows_failed(e: quorate_contracts::RowsError) -> Problem {
    tracing::error!(target: "ledger", error = %e, "reading grant rows failed");
    Problem::internal()
}

/// A peer answered what its request does not call for (502
/// `peer-unreachable`).
pub(super) fn unexpected(detail: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "peer-unreachable",
        detail.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use quorate_api::problem::Problem;
    use quorate_ledger::codec::EncodeError;
    use quorate_ledger::ledger::LedgerError;

    use super::{DecideError, DriverGone, GrantProofError, ProposeError, StatusProofError};
    use crate::agreement::mempool::AddError;

    fn seen(problem: Problem) -> (u16, &'static str) {
        (problem.status.as_u16(), problem.code)
    }

    #[test]
    fn each_refusal_of_the_driver_has_its_own_problem_type() {
        let id = quorate_ledger::hash::Hash([7; 32]);
        let grant = quorate_contracts::GrantId([9; 32]);
        let encode = || EncodeError::from_message("too deep");
        let read = || LedgerError::BeyondTip { height: 9, tip: 1 };
        let propose = [
            (ProposeError::NotAMember, (403, "not-a-member")),
            (ProposeError::NoLedger, (503, "not-ready")),
            (
                ProposeError::UnknownMember("org-z".into()),
                (422, "proposal-rejected"),
            ),
            (
                ProposeError::BadGrantId("zz".into()),
                (422, "proposal-rejected"),
            ),
            (
                ProposeError::BadDid {
                    did: "did:web:x".into(),
                    reason: "did:web:x".parse::<quorate_did::Did>().unwrap_err(),
                },
                (422, "proposal-rejected"),
            ),
            (
                ProposeError::BadResource {
                    pattern: "".into(),
                    reason: quorate_contracts::ResourcePattern::parse("").unwrap_err(),
                },
                (422, "proposal-rejected"),
            ),
            (
                AddError::Rule(quorate_contracts::Violation::SelfGrant).into(),
                (422, "proposal-rejected"),
            ),
            (AddError::Full.into(), (503, "too-many-proposals")),
            (AddError::ProposerFull.into(), (503, "too-many-proposals")),
            (AddError::Unsigned.into(), (500, "internal")),
            (ProposeError::Encode(encode()), (500, "internal")),
        ];
        for (error, expected) in propose {
            let shown = error.to_string();
            assert_eq!(seen(error.into()), expected, "{shown}");
        }
        let decide = [
            (DecideError::NotAMember, (403, "not-a-member")),
            (DecideError::NoLedger, (503, "not-ready")),
            (AddError::Unknown(id).into(), (404, "not-found")),
            (
                AddError::BadEndorsement(quorate_contracts::MemberId([1; 32])).into(),
                (500, "internal"),
            ),
            (DecideError::Encode(encode()), (500, "internal")),
            (
                DecideError::Closed {
                    id,
                    state: "committed at height 3".into(),
                },
                (409, "proposal-closed"),
            ),
            (
                DecideError::AlreadyDecided {
                    id,
                    earlier: "endorsed",
                },
                (409, "already-decided"),
            ),
            (DecideError::NotProposer(id), (403, "not-proposer")),
        ];
        for (error, expected) in decide {
            let shown = error.to_string();
            assert_eq!(seen(error.into()), expected, "{shown}");
        }
        let proofs = [
            (GrantProofError::UnknownGrant(grant), (404, "not-found")),
            (GrantProofError::Read(read()), (500, "ledger-read-failed")),
            (GrantProofError::Encode(encode()), (500, "internal")),
        ];
        for (error, expected) in proofs {
            assert_eq!(seen(error.into()), expected);
        }
        let status = [
            (StatusProofError::UnknownGrant(grant), (404, "not-found")),
            (
                StatusProofError::BeyondTip { height: 9, tip: 1 },
                (422, "height-beyond-tip"),
            ),
            (StatusProofError::NotHeld(1), (404, "height-not-held")),
            (StatusProofError::NoLedger, (503, "not-ready")),
            (
                StatusProofError::Read("disk".into()),
                (500, "ledger-read-failed"),
            ),
        ];
        for (error, expected) in status {
            assert_eq!(seen(error.into()), expected);
        }
        assert_eq!(seen(DriverGone.into()), (503, "node-stopping"));
    }

    #[test]
    fn internal_causes_stay_out_of_the_body() {
        let problem: Problem = ProposeError::Encode(EncodeError::from_message("secret")).into();
        assert!(!problem.detail.contains("secret"), "{}", problem.detail);
        let problem: Problem = GrantProofError::Read(LedgerError::NotHeld { height: 1 }).into();
        assert!(!problem.detail.contains("height"), "{}", problem.detail);
    }
}
