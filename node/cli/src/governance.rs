//! Waiting for a proposal's outcome (`--wait`), and this node's
//! endorsement policy (`quorate policy show|set`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use quorate_testnet::client::ApiClient;

use crate::HomeArg;
use crate::api::{checked, client};

/// Longest `--wait`.
const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);
/// How often a waiting command looks at the proposal.
const POLL: Duration = Duration::from_millis(200);

/// `--wait [TIMEOUT]` on a proposal command.
#[derive(Debug, Clone, Args)]
pub(crate) struct WaitArg {
    /// Wait until the proposal is committed (prints its height) or can no
    /// longer be (prints why, and exits non-zero); at most TIMEOUT (90s,
    /// 10m, 1h; 2m if not given).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "2m", value_parser = parse_wait)]
    pub(crate) wait: Option<Duration>,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    let d = text
        .parse::<quorate_node::home::duration::HumanDuration>()
        .map_err(|e| e.to_string())?
        .0;
    if d.is_zero() || d > WAIT_MAX {
        return Err(format!(
            "wait between 1s and {}h",
            WAIT_MAX.as_secs() / 3600
        ));
    }
    Ok(d)
}

impl WaitArg {
    /// Waits for proposal `id` if asked to; the id itself was printed.
    pub(crate) fn apply(&self, api: &ApiClient, id: &str) -> anyhow::Result<()> {
        match self.wait {
            Some(timeout) => wait_for(api, id, timeout),
            None => Ok(()),
        }
    }
}

/// Polls `GET /v1/proposals/{id}` until it closes or `timeout` passes.
/// Progress and the outcome go to stderr (stdout keeps the id alone, for
/// scripts); a failure, withdrawal, expiry or timeout is an error.
pub(crate) fn wait_for(api: &ApiClient, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout.min(WAIT_MAX);
    let path = format!("/v1/proposals/{id}");
    let mut last = String::new();
    loop {
        let view = checked(api.get(&path), api)?.json()?;
        let state = view["state"].as_str().unwrap_or("unknown").to_owned();
        match state.as_str() {
            "committed" => {
                eprintln!("committed at height {}", view["height"]);
                return Ok(());
            }
            "failed" => bail!(
                "proposal {id} failed: {}",
                view["reason"].as_str().unwrap_or("no reason given")
            ),
            "withdrawn" => bail!("proposal {id} was withdrawn by its proposer"),
            "expired" => bail!(
                "proposal {id} expired before a quorum endorsed it (endorsed by {})",
                names(&view["endorsers"])
            ),
            _ => {}
        }
        let progress = match state.as_str() {
            "pending" => format!(
                "pending: endorsed by {} of the {} needed ({})",
                view["endorsements"],
                view["required"],
                names(&view["endorsers"])
            ),
            other => other.to_owned(),
        };
        if progress != last {
            eprintln!("{progress}");
            last = progress;
        }
        if Instant::now() >= deadline {
            bail!(
                "proposal {id} is still {state} after {}s; `quorate proposal show {id}` tells who has decided",
                timeout.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

fn names(list: &serde_json::Value) -> String {
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "nobody".to_owned()
    } else {
        names.join(", ")
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Print the endorsement policy in force (TOML, as the file holds it)
    /// and where it comes from.
    Show {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Replace the endorsement policy with FILE (TOML, or JSON if it ends
    /// in .json): checked whole, written to the home's
    /// endorsement-policy.toml, in force at once; undecided proposals are
    /// judged again.
    Set {
        #[command(flatten)]
        home: HomeArg,
        /// The new policy.
        file: PathBuf,
    },
}

/// Largest policy file read.
const POLICY_FILE_BYTES_MAX: u64 = 256 * 1024;

pub(crate) fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Show { home } => {
            let api = client(home)?;
            let mut view = checked(api.get("/v1/endorsement-policy"), &api)?.json()?;
            let source = view
                .as_object_mut()
                .and_then(|v| v.remove("source"))
                .and_then(|s| s.as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned());
            println!("# source: {source}");
            let policy: quorate_api::local::endorsement::EndorsementPolicy =
                serde_json::from_value(view).context("the node's policy does not parse")?;
            print!("{}", toml::to_string(&policy)?);
        }
        PolicyCommand::Set { home, file } => {
            let size = std::fs::metadata(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .len();
            if size > POLICY_FILE_BYTES_MAX {
                bail!(
                    "{} is larger than {POLICY_FILE_BYTES_MAX} bytes",
                    file.display()
                );
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let policy: quorate_api::local::endorsement::EndorsementPolicy =
                if file.extension().is_some_and(|e| e == "json") {
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a policy", file.display()))?
                } else {
                    toml::from_str(&text).map_err(|e| {
                        anyhow::anyhow!(
                            "{} is not a policy: {}",
                            file.display(),
                            e.to_string().trim_end().replace('\n', " ")
                        )
                    })?
                };
            let api = client(home)?;
            let body = serde_json::to_vec(&policy)?;
            let view = checked(
                api.request(
                    "PUT",
                    "/v1/endorsement-policy",
                    Some(("application/json", &body)),
                ),
                &api,
            )?
            .json()?;
            let rules = view["rules"].as_array().map_or(0, Vec::len);
            println!("endorsement policy replaced: {rules} rules, in force");
        }
    }
    Ok(())
}
