//! `quorate token …`: the named API tokens of a running node, through its
//! local API with the home's admin token.

use anyhow::Context as _;
use clap::Subcommand;
use quorate_node::home::duration::HumanDuration;

use crate::HomeArg;
use crate::api::{checked, client};

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a named API token with roles; prints the token once (the node
    /// keeps only its hash). Roles: admin, approver, publisher, reader,
    /// auditor, metrics.
    Create {
        #[command(flatten)]
        home: HomeArg,
        /// Its name (a-z, 0-9, '.', '_', '-'; up to 64).
        #[arg(long)]
        name: String,
        /// A role it holds (repeatable).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<quorate_api::auth::Role>,
        /// How long it lasts (e.g. 12h, 30d); for ever if absent.
        #[arg(long, value_name = "DURATION")]
        expires: Option<HumanDuration>,
    },
    /// List the named tokens (names, roles and times; never secrets).
    List {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Revoke a named token: the node refuses it from then on.
    Revoke {
        #[command(flatten)]
        home: HomeArg,
        /// Its name.
        name: String,
    },
    /// Refuse single-sign-on tokens (JWTs of [auth.oidc]) before they
    /// expire: a person's, issued until now (--subject), or one token
    /// (--jti).
    RevokeJwt {
        #[command(flatten)]
        home: HomeArg,
        /// Every token of this `sub` issued until now (the person signs
        /// in again for a new one).
        #[arg(long, required_unless_present = "jti")]
        subject: Option<String>,
        /// The one token with this `jti`.
        #[arg(long)]
        jti: Option<String>,
        /// How long the node keeps the revocation: longer than the
        /// provider's tokens live (at most 366d).
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        keep: HumanDuration,
        /// Why (kept with it).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the single-sign-on revocations in force.
    JwtRevocations {
        #[command(flatten)]
        home: HomeArg,
    },
}

fn parse_role(text: &str) -> Result<quorate_api::auth::Role, String> {
    quorate_api::auth::Role::parse(text).ok_or_else(|| {
        format!("{text:?} is not a role (admin, approver, publisher, reader, auditor or metrics)")
    })
}

pub(crate) fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            home,
            name,
            roles,
            expires,
        } => {
            let expires_in_s = match expires {
                Some(HumanDuration(d)) if d.as_secs() == 0 => {
                    anyhow::bail!("--expires must be at least 1s")
                }
                Some(HumanDuration(d)) => Some(d.as_secs()),
                None => None,
            };
            let api = client(home)?;
            let body = serde_json::json!({
                "name": name,
                "roles": roles,
                "expires_in_s": expires_in_s,
            });
            let made = checked(api.post_json("/v1/tokens", &body), &api)?.json()?;
            let token = made["token"]
                .as_str()
                .context("the node's answer has no token")?;
            println!("{token}");
            eprintln!(
                "token {name} ({}) made{}; it is shown only now: store it, or revoke it and make another",
                made["roles"]
                    .as_array()
                    .map(|r| r
                        .iter()
                        .filter_map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                made["expires_ms"]
                    .as_u64()
                    .map(|ms| format!(", expires {}", utc(ms)))
                    .unwrap_or_default(),
            );
        }
        TokenCommand::List { home } => {
            let api = client(home)?;
            let listed = checked(api.get("/v1/tokens"), &api)?.json()?;
            let tokens = listed["tokens"].as_array().cloned().unwrap_or_default();
            println!("{:<24} {:<28} {:<22} EXPIRES", "NAME", "ROLES", "CREATED");
            for token in tokens {
                let roles: Vec<&str> = token["roles"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|r| r.as_str()).collect())
                    .unwrap_or_default();
                let expires = match token["expires_ms"].as_u64() {
                    None => "never".to_owned(),
                    Some(ms) if token["expired"] == true => format!("{} (expired)", utc(ms)),
                    Some(ms) => utc(ms),
                };
                println!(
                    "{:<24} {:<28} {:<22} {expires}",
                    token["name"].as_str().unwrap_or("?"),
                    roles.join(","),
                    utc(token["created_ms"].as_u64().unwrap_or(0)),
                );
            }
        }
        TokenCommand::Revoke { home, name } => {
            anyhow::ensure!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{name:?} is not a token name (a-z, 0-9, '.', '_', '-')"
            );
            let api = client(home)?;
            checked(
                api.request("DELETE", &format!("/v1/tokens/{name}"), None),
                &api,
            )?;
            println!("revoked {name}");
        }
        TokenCommand::RevokeJwt {
            home,
            subject,
            jti,
            keep: HumanDuration(keep),
            reason,
        } => {
            let api = client(home)?;
            let body = serde_json::json!({
                "subject": subject,
                "jti": jti,
                "keep_s": keep.as_secs(),
                "reason": reason,
            });
            let made = checked(api.post_json("/v1/jwt-revocations", &body), &api)?.json()?;
            let until = utc(made["until_ms"].as_u64().unwrap_or(0));
            match (made["subject"].as_str(), made["jti"].as_str()) {
                (Some(sub), None) => println!(
                    "refusing {sub}'s single-sign-on tokens issued until now; kept until {until}"
                ),
                (None, Some(jti)) => println!("refusing the token {jti}; kept until {until}"),
                (Some(sub), Some(jti)) => {
                    println!("refusing {sub}'s token {jti}; kept until {until}")
                }
                (None, None) => anyhow::bail!("the node's answer names nothing revoked"),
            }
        }
        TokenCommand::JwtRevocations { home } => {
            let api = client(home)?;
            let listed = checked(api.get("/v1/jwt-revocations"), &api)?.json()?;
            println!(
                "{:<24} {:<24} {:<22} {:<22} REASON",
                "SUBJECT", "JTI", "REVOKED", "KEPT UNTIL"
            );
            for r in listed["revocations"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<24} {:<22} {:<22} {}",
                    r["subject"].as_str().unwrap_or("-"),
                    r["jti"].as_str().unwrap_or("-"),
                    utc(r["revoked_ms"].as_u64().unwrap_or(0)),
                    utc(r["until_ms"].as_u64().unwrap_or(0)),
                    r["reason"].as_str().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = crate::time::civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(super::utc(1_796_083_199_000), "2026-11-30 23:59:59Z");
    }
}
