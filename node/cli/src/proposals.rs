//! `quorate proposal …`: proposals of grants, revocations and membership
//! changes through the node's local API, decisions on them, and the grant
//! terms in human time (`--for`, `--until`, `--not-before`).

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::api::{checked, client, ensure_hex_id, id_of, print_json};
use crate::governance::WaitArg;
use crate::{HomeArg, time};

/// Longest grant the CLI writes in days (the ledger policy may allow less).
const GRANT_DAYS_MAX: u64 = 3650;
/// Shortest grant the CLI writes: anything shorter is surely a typo.
const GRANT_MS_MIN: u64 = 60_000;

/// What a grant proposal says (`proposal grant`, or `grant propose`).
#[derive(Debug, Args)]
pub(crate) struct GrantProposal {
    #[command(flatten)]
    home: HomeArg,
    /// The grantee: a member name (e.g. org-b) or its did:key.
    #[arg(long)]
    to: String,
    /// A resource pattern: `*`, `prefix/*` or an exact path (repeatable).
    #[arg(long = "resource", required = true)]
    resources: Vec<String>,
    /// `read`, `list`, `write` or `delete` (repeatable).
    #[arg(long = "action", default_values_t = ["read".to_owned()])]
    actions: Vec<String>,
    /// How long the grant lasts: 90m, 12h, 30d, 2w (or s for seconds),
    /// from --not-before if given, else from now. At most 3650 days.
    #[arg(
        long = "for",
        value_name = "DURATION",
        default_value = "30d",
        conflicts_with = "until_ms",
        value_parser = parse_grant_length
    )]
    for_ms: u64,
    /// When the grant ends, instead of --for: a UTC time such as
    /// 2027-03-31T00:00:00Z, or a date such as 2027-03-31 (as the day
    /// begins, midnight UTC).
    #[arg(long = "until", value_name = "TIME", value_parser = time::parse_instant_ms)]
    until_ms: Option<u64>,
    /// When the grant starts, if later than now (same forms as --until).
    #[arg(long = "not-before", value_name = "TIME", value_parser = time::parse_instant_ms)]
    not_before_ms: Option<u64>,
    /// Deprecated: whole days, as --for Nd (kept for old scripts).
    #[arg(
        long,
        hide = true,
        conflicts_with_all = ["for_ms", "until_ms"],
        value_parser = clap::value_parser!(u64).range(1..=GRANT_DAYS_MAX)
    )]
    days: Option<u64>,
    /// Why the data is shared.
    #[arg(long)]
    purpose: Option<String>,
    /// A rate limit under this grant: REQUESTS/SECONDS, e.g. 100/60.
    #[arg(long, value_name = "N/SECS", value_parser = parse_rate)]
    rate: Option<(u32, u32)>,
    #[command(flatten)]
    wait: WaitArg,
}

/// Which grant to revoke (`proposal revoke`, or `grant revoke`).
#[derive(Debug, Args)]
pub(crate) struct RevokeProposal {
    #[command(flatten)]
    home: HomeArg,
    /// The grant id (64 hex digits).
    grant: String,
    #[command(flatten)]
    wait: WaitArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProposalCommand {
    /// Propose a grant of this organization's data to another member.
    Grant(GrantProposal),
    /// Propose revoking a grant (alone, if this organization granted it).
    Revoke(RevokeProposal),
    /// Propose admitting a new organization (its did:key from
    /// `quorate did show --did-only` on its node).
    AddMember {
        #[command(flatten)]
        home: HomeArg,
        /// Its short name.
        #[arg(long)]
        name: String,
        /// Its did:key.
        #[arg(long)]
        did: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Propose removing a member; its grants end when it is removed.
    RemoveMember {
        #[command(flatten)]
        home: HomeArg,
        /// The member's name or did:key.
        member: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// List the proposals the node knows, open and recently closed, with
    /// their state (a JSON array).
    List {
        #[command(flatten)]
        home: HomeArg,
        /// Only open ones (pending or eligible).
        #[arg(long)]
        open: bool,
    },
    /// Show one proposal: its state, who endorsed and who rejected it and
    /// why, and what this node's policy said (JSON).
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// The proposal id.
        id: String,
    },
    /// Endorse a pending proposal (final: it cannot be rejected after).
    Approve {
        #[command(flatten)]
        home: HomeArg,
        /// The proposal id.
        id: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Reject a pending proposal, with a reason every member sees (final).
    Reject {
        #[command(flatten)]
        home: HomeArg,
        /// The proposal id.
        id: String,
        /// Why (at most 256 bytes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw a pending proposal this organization made.
    Withdraw {
        #[command(flatten)]
        home: HomeArg,
        /// The proposal id.
        id: String,
    },
}

/// `--for`: a duration from one minute to [`GRANT_DAYS_MAX`] days, in ms.
fn parse_grant_length(text: &str) -> Result<u64, String> {
    let ms = time::parse_duration_ms(text)?;
    if ms < GRANT_MS_MIN {
        return Err("a grant lasts at least one minute".to_owned());
    }
    if ms > GRANT_DAYS_MAX * time::DAY_MS {
        return Err(format!("a grant lasts at most {GRANT_DAYS_MAX} days"));
    }
    Ok(ms)
}

/// The window a grant proposal asks for, in ms since the Unix epoch:
/// `(not_before, not_after)`, `not_before` absent to start now. The flags'
/// own syntax is checked as they are parsed; this checks them against `now`
/// and each other.
fn grant_window(
    now: u64,
    not_before: Option<u64>,
    until: Option<u64>,
    length_ms: u64,
) -> Result<(Option<u64>, u64), String> {
    if let Some(start) = not_before
        && start <= now
    {
        return Err(format!(
            "--not-before {} is in the past (leave it out to start now)",
            time::rfc3339_ms(start)
        ));
    }
    let start = not_before.unwrap_or(now);
    let Some(end) = until else {
        return Ok((not_before, start.saturating_add(length_ms)));
    };
    let shown = time::rfc3339_ms(end);
    if end <= now {
        return Err(format!("--until {shown} is in the past"));
    }
    if end <= start {
        return Err("--not-before must be before --until".to_owned());
    }
    if end - start < GRANT_MS_MIN {
        return Err(format!(
            "--until {shown}: a grant lasts at least one minute"
        ));
    }
    if end - start > GRANT_DAYS_MAX * time::DAY_MS {
        return Err(format!(
            "--until {shown}: a grant lasts at most {GRANT_DAYS_MAX} days"
        ));
    }
    Ok((not_before, end))
}

fn parse_rate(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not REQUESTS/SECONDS (e.g. 100/60)");
    let (n, secs) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    let secs: u32 = secs.parse().map_err(|_| bad())?;
    if n == 0 || secs == 0 {
        return Err(bad());
    }
    Ok((n, secs))
}

pub(crate) fn proposal(command: ProposalCommand) -> anyhow::Result<()> {
    match command {
        ProposalCommand::Grant(proposal) => propose_grant(proposal)?,
        ProposalCommand::Revoke(proposal) => propose_revoke(proposal)?,
        ProposalCommand::AddMember {
            home,
            name,
            did,
            wait,
        } => {
            let body = serde_json::json!({ "add_member": { "name": name, "did": did } });
            propose(home, &body, &wait)?;
        }
        ProposalCommand::RemoveMember { home, member, wait } => {
            let body = serde_json::json!({ "remove_member": { "member": member } });
            propose(home, &body, &wait)?;
        }
        ProposalCommand::List { home, open } => {
            let api = client(home)?;
            let list = checked(api.get("/v1/proposals"), &api)?.json()?;
            let list: Vec<serde_json::Value> = list
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !open || matches!(p["state"].as_str(), Some("pending" | "eligible")))
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ProposalCommand::Show { home, id } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            print_json(&checked(api.get(&format!("/v1/proposals/{id}")), &api)?)?;
        }
        ProposalCommand::Approve { home, id, wait } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            let path = format!("/v1/proposals/{id}/approve");
            checked(api.request("POST", &path, None), &api)?;
            println!("endorsed {id}");
            wait.apply(&api, &id)?;
        }
        ProposalCommand::Reject { home, id, reason } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            let path = format!("/v1/proposals/{id}/reject");
            let body = reason.map(|reason| serde_json::json!({ "reason": reason }).to_string());
            let body = body.as_deref().map(|b| ("application/json", b.as_bytes()));
            checked(api.request("POST", &path, body), &api)?;
            println!("rejected {id}");
        }
        ProposalCommand::Withdraw { home, id } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            let path = format!("/v1/proposals/{id}/withdraw");
            checked(api.request("POST", &path, None), &api)?;
            println!("withdrew {id}");
        }
    }
    Ok(())
}

/// Posts a proposal, prints its id, and waits if asked.
fn propose(home: HomeArg, body: &serde_json::Value, wait: &WaitArg) -> anyhow::Result<()> {
    let api = client(home)?;
    let response = checked(api.post_json("/v1/proposals", body), &api)?;
    let id = id_of(&response)?;
    println!("{id}");
    wait.apply(&api, &id)
}

pub(crate) fn propose_grant(proposal: GrantProposal) -> anyhow::Result<()> {
    let GrantProposal {
        home,
        to,
        resources,
        actions,
        for_ms,
        until_ms,
        not_before_ms,
        days,
        purpose,
        rate,
        wait,
    } = proposal;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let length_ms = days.map_or(for_ms, |days| days * time::DAY_MS);
    let (not_before_ms, not_after_ms) =
        grant_window(now, not_before_ms, until_ms, length_ms).map_err(anyhow::Error::msg)?;
    let body = serde_json::json!({ "grant": {
        "grantee": to,
        "resources": resources,
        "actions": actions,
        "not_before_ms": not_before_ms,
        "not_after_ms": not_after_ms,
        "purpose": purpose,
        "rate_limit": rate.map(|(requests, per_seconds)| serde_json::json!({
            "requests": requests, "per_seconds": per_seconds
        })),
    }});
    propose(home, &body, &wait)
}

pub(crate) fn propose_revoke(
    RevokeProposal { home, grant, wait }: RevokeProposal,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "revoke": { "grant": grant } });
    propose(home, &body, &wait)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const DAY: u64 = time::DAY_MS;
    /// 2027-03-31T00:00:00Z.
    const NOW: u64 = 1_806_451_200_000;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        grant: GrantProposal,
    }

    fn parse(flags: &[&str]) -> Result<GrantProposal, clap::Error> {
        let args = ["quorate", "--to", "org-b", "--resource", "*"];
        Cli::try_parse_from(args.iter().chain(flags)).map(|cli| cli.grant)
    }

    #[test]
    fn time_flags_parse_to_milliseconds() {
        let g = parse(&[]).unwrap();
        assert_eq!(
            (g.for_ms, g.until_ms, g.not_before_ms, g.days),
            (30 * DAY, None, None, None)
        );
        let g = parse(&["--for", "2w", "--not-before", "2027-04-01"]).unwrap();
        assert_eq!((g.for_ms, g.not_before_ms), (14 * DAY, Some(NOW + DAY)));
        let g = parse(&["--until", "2027-04-01T12:00:00Z"]).unwrap();
        assert_eq!(g.until_ms, Some(NOW + DAY + DAY / 2));
        // The deprecated alias still parses, alone.
        assert_eq!(parse(&["--days", "7"]).unwrap().days, Some(7));
    }

    #[test]
    fn time_flags_that_clap_refuses() {
        for flags in [
            &["--for", "30"][..],
            &["--for", "0m"],
            &["--for", "59s"],
            &["--for", "3651d"],
            &["--until", "2027-02-29"],
            &["--not-before", "tomorrow"],
            &["--for", "1d", "--until", "2028-01-01"],
            &["--days", "1", "--for", "1d"],
            &["--days", "1", "--until", "2028-01-01"],
            &["--days", "0"],
            &["--days", "3651"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?}");
        }
        assert_eq!(parse_grant_length("90m"), Ok(90 * 60_000));
        assert_eq!(parse_grant_length("3650d"), Ok(3650 * DAY));
        assert_eq!(
            parse_grant_length("0m").unwrap_err(),
            "a grant lasts at least one minute"
        );
        assert_eq!(
            parse_grant_length("3651d").unwrap_err(),
            "a grant lasts at most 3650 days"
        );
    }

    #[test]
    fn windows_from_now_or_a_later_start() {
        assert_eq!(
            grant_window(NOW, None, None, 30 * DAY),
            Ok((None, NOW + 30 * DAY))
        );
        let start = NOW + DAY;
        assert_eq!(
            grant_window(NOW, Some(start), None, 30 * DAY),
            Ok((Some(start), start + 30 * DAY))
        );
        assert_eq!(
            grant_window(NOW, None, Some(NOW + 60_000), 30 * DAY),
            Ok((None, NOW + 60_000))
        );
        assert_eq!(
            grant_window(NOW, Some(start), Some(start + 3650 * DAY), 30 * DAY),
            Ok((Some(start), start + 3650 * DAY))
        );
    }

    #[test]
    fn each_bad_window_is_one_line_naming_the_flag() {
        for ((not_before, until), says) in [
            (
                (None, Some(NOW - DAY)),
                "--until 2027-03-30T00:00:00Z is in the past",
            ),
            (
                (None, Some(NOW)),
                "--until 2027-03-31T00:00:00Z is in the past",
            ),
            (
                (Some(NOW - 1), None),
                "--not-before 2027-03-30T23:59:59.999Z is in the past (leave it out to start now)",
            ),
            (
                (Some(NOW + 2 * DAY), Some(NOW + DAY)),
                "--not-before must be before --until",
            ),
            (
                (Some(NOW + DAY), Some(NOW + DAY)),
                "--not-before must be before --until",
            ),
            (
                (None, Some(NOW + 59_999)),
                "--until 2027-03-31T00:00:59.999Z: a grant lasts at least one minute",
            ),
            (
                (None, Some(NOW + 3650 * DAY + 1)),
                "--until 2037-03-28T00:00:00.001Z: a grant lasts at most 3650 days",
            ),
        ] {
            assert_eq!(
                grant_window(NOW, not_before, until, 30 * DAY),
                Err(says.to_owned())
            );
        }
    }
}
