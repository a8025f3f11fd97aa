//! `quorate testnet …`: a local consortium of real node processes.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use quorate_testnet::launch::{Approval, NodeStatus, Testnet};
use quorate_testnet::partition;

/// How long `up` waits for every node to connect and commit.
const UP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCommand {
    /// Create (or resume) a local testnet and start its nodes; waits until
    /// all are connected and committing, prints how to reach them, then
    /// shows live status until Ctrl-C, which stops them all.
    Up {
        #[command(flatten)]
        dir: DirArg,
        /// Number of organizations (for a new testnet).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Return once the nodes are up and leave them running.
        #[arg(long)]
        detach: bool,
        /// How the nodes decide on proposals (for a new testnet): policy
        /// (each node's endorsement-policy.toml: grants by their grantor
        /// endorsed, membership changes left to a person), auto (endorse
        /// whatever the rules accept) or manual (a person decides each).
        #[arg(long, value_enum, default_value_t = ApprovalArg::Policy)]
        approval: ApprovalArg,
    },
    /// A new organization joins: its own home and key, a node that syncs
    /// and verifies the ledger from genesis, and an AddMember proposal
    /// (filed by a member, the sponsor). Under auto approval it becomes a
    /// member once a quorum endorses; otherwise people decide (the default
    /// endorsement policy asks a person for a new member): the command
    /// prints the approvals to run, or with --approve runs them as each
    /// member's operator (the testnet holds every home).
    Join {
        #[command(flatten)]
        dir: DirArg,
        /// The new organization's name (lowercase letters, digits, '-').
        #[arg(long)]
        name: String,
        /// The member that files the proposal (default: the first running).
        #[arg(long)]
        sponsor: Option<String>,
        /// Approve the join on every other member, as its operator, and
        /// wait until the new organization is a member.
        #[arg(long)]
        approve: bool,
    },
    /// Show each node's state, height, peers and pending proposals.
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop every node (SIGTERM, then SIGKILL after 10 s).
    Down {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop every node and delete the testnet directory.
    Reset {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Print the end of a node's log.
    Logs {
        /// The organization, e.g. org-a.
        name: String,
        #[command(flatten)]
        dir: DirArg,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
    /// SIGKILL a node (no chance to clean up), for crash testing.
    Kill {
        /// The organization.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop a node if it runs, then start it again.
    Restart {
        /// The organization.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// SIGSTOP a node: it holds its connections but answers nothing.
    Pause {
        /// The organization.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// SIGCONT a paused node.
    Resume {
        /// The organization.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Cut the named organizations off from the others: packets between
    /// the two sides' libp2p ports are dropped, as when a link goes down
    /// (packet-filter rules; needs root and iptables). Replaces any
    /// partition already made; local APIs stay reachable. `down` heals it.
    Partition {
        /// The organizations on the cut-off side.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Remove the partition, if any.
    Heal {
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DirArg {
    /// The testnet directory.
    #[arg(long, env = "QUORATE_TESTNET_DIR", value_name = "DIR", default_value_os_t = default_dir())]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ApprovalArg {
    Policy,
    Auto,
    Manual,
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("quorate-testnet")
}

fn quorate_bin() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the quorate binary")
}

pub(crate) fn run(command: TestnetCommand) -> anyhow::Result<()> {
    use rustix::process::Signal;
    match command {
        TestnetCommand::Up {
            dir,
            nodes,
            detach,
            approval,
        } => up(&dir.dir, nodes.into(), detach, approval),
        TestnetCommand::Join {
            dir,
            name,
            sponsor,
            approve,
        } => join(&dir.dir, &name, sponsor.as_deref(), approve),
        TestnetCommand::Status { dir } => {
            print_status(&Testnet::open(&dir.dir)?);
            Ok(())
        }
        TestnetCommand::Down { dir } => down(&Testnet::open(&dir.dir)?),
        TestnetCommand::Reset { dir } => {
            down(&Testnet::open(&dir.dir)?)?;
            std::fs::remove_dir_all(&dir.dir)
                .with_context(|| format!("cannot remove {}", dir.dir.display()))?;
            println!("removed {}", dir.dir.display());
            Ok(())
        }
        TestnetCommand::Logs { name, dir, lines } => {
            let testnet = Testnet::open(&dir.dir)?;
            println!("{}", testnet.log_tail(testnet.node(&name)?, lines)?);
            Ok(())
        }
        TestnetCommand::Kill { name, dir } => signal(&dir.dir, &name, Signal::KILL, "killed"),
        TestnetCommand::Pause { name, dir } => signal(&dir.dir, &name, Signal::STOP, "paused"),
        TestnetCommand::Resume { name, dir } => signal(&dir.dir, &name, Signal::CONT, "resumed"),
        TestnetCommand::Restart { name, dir } => {
            let testnet = Testnet::open(&dir.dir)?;
            let node = testnet.node(&name)?;
            testnet.stop(node)?;
            let child = testnet.start(node, &quorate_bin()?)?;
            println!("restarted {name} (pid {})", child.id());
            Ok(())
        }
        TestnetCommand::Partition { names, dir } => {
            let testnet = Testnet::open(&dir.dir)?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            partition::partition(&testnet, &names)?;
            let others: Vec<&str> = testnet
                .nodes()
                .iter()
                .map(|n| n.name.as_str())
                .filter(|n| !names.contains(n))
                .collect();
            println!(
                "partitioned: {} | {}  (`quorate testnet heal` to undo)",
                names.join(" "),
                others.join(" ")
            );
            Ok(())
        }
        TestnetCommand::Heal { dir } => {
            if partition::heal(&Testnet::open(&dir.dir)?)? {
                println!("healed: every node can reach every other again");
            } else {
                println!("not partitioned");
            }
            Ok(())
        }
    }
}

fn signal(
    dir: &Path,
    name: &str,
    signal: rustix::process::Signal,
    done: &str,
) -> anyhow::Result<()> {
    let testnet = Testnet::open(dir)?;
    let pid = testnet.signal(testnet.node(name)?, signal)?;
    println!("{done} {name} (pid {pid})");
    Ok(())
}

fn up(dir: &Path, n: usize, detach: bool, approval: ApprovalArg) -> anyhow::Result<()> {
    let started_at = Instant::now();
    let quorate = quorate_bin()?;
    let testnet = if Testnet::exists(dir) {
        let testnet = Testnet::open(dir)?;
        println!(
            "resuming the testnet in {} ({} organizations)",
            dir.display(),
            testnet.nodes().len()
        );
        testnet
    } else {
        println!("creating {n} organizations in {}", dir.display());
        let approval = match approval {
            ApprovalArg::Policy => Approval::Policy,
            ApprovalArg::Auto => Approval::Auto,
            ApprovalArg::Manual => Approval::Manual,
        };
        Testnet::create(dir, n, approval, &quorate)?
    };
    let mut started = Vec::new();
    for node in testnet.nodes() {
        if let Some(pid) = quorate_testnet::launch::running_pid(&node.home) {
            println!("  {:<8} already running (pid {pid})", node.name);
            continue;
        }
        match testnet.start(node, &quorate) {
            Ok(child) => {
                println!("  {:<8} started (pid {})", node.name, child.id());
                started.push((node.name.clone(), child));
            }
            Err(e) => {
                for (name, _) in &started {
                    let _ = testnet.node(name).and_then(|node| testnet.stop(node));
                }
                return Err(e);
            }
        }
    }
    let waited = testnet.wait_committing(UP_TIMEOUT, &mut started, |ready, total| {
        println!("  connected and committing: {ready}/{total}");
    });
    if let Err(e) = waited {
        if !detach {
            let _ = down(&testnet);
        }
        return Err(e);
    }
    println!(
        "\nthe testnet is up and committing ({:.1} s)\n",
        started_at.elapsed().as_secs_f64()
    );
    print_status(&testnet);
    print_walkthrough(&testnet);
    if detach {
        println!(
            "\nthe nodes keep running; `quorate testnet status|down --dir {}`",
            dir.display()
        );
        return Ok(());
    }
    monitor(&testnet)?;
    down(&testnet)
}

fn join(dir: &Path, name: &str, sponsor: Option<&str>, approve: bool) -> anyhow::Result<()> {
    let quorate = quorate_bin()?;
    let mut testnet = Testnet::open(dir)?;
    let sponsor = match sponsor {
        Some(sponsor) => testnet.node(sponsor)?.clone(),
        None => testnet
            .nodes()
            .iter()
            .find(|n| testnet.status(n).status.is_some())
            .cloned()
            .context("no node of the testnet is running; `quorate testnet up` first")?,
    };
    let spec = testnet.add_node(name, &quorate)?;
    // Proposed first: members serve blocks only to members and to a node
    // that a pending AddMember names, so the new node can sync only once
    // the proposal is out.
    let body = serde_json::json!({ "add_member": { "name": name, "did": spec.did } });
    let response = Testnet::client(&sponsor)
        .post_json("/v1/proposals", &body)
        .with_context(|| format!("cannot reach {}", sponsor.name))?;
    anyhow::ensure!(
        response.is_success(),
        "{} refused the proposal: {}",
        sponsor.name,
        response.problem_detail()
    );
    let id = response.json()?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("{} proposed adding {name}: {id}", sponsor.name);
    let mut child = testnet.start(&spec, &quorate)?;
    println!("started {name} (pid {}): {}", child.id(), spec.did);
    // Synced: within a few blocks of the sponsor, from genesis, verified.
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{name} exited ({status}): {}", testnet.log_tail(&spec, 1)?);
        }
        let mine = testnet.status(&spec).height();
        let theirs = testnet.status(&sponsor).height();
        if let (Some(mine), Some(theirs)) = (mine, theirs)
            && mine + 2 >= theirs
            && mine > 0
        {
            println!("{name} synced and verified the ledger to height {mine}");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} did not sync within {UP_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let auto =
        std::fs::read_to_string(sponsor.home.join("config.toml"))?.contains("approval = \"auto\"");
    let others: Vec<_> = testnet
        .nodes()
        .iter()
        .filter(|n| n.name != sponsor.name && n.name != name)
        .cloned()
        .collect();
    if approve && !auto {
        for node in &others {
            let response = Testnet::client(node)
                .request("POST", &format!("/v1/proposals/{id}/approve"), None)
                .with_context(|| format!("cannot reach {}", node.name))?;
            if response.is_success() {
                println!("{} approved adding {name}", node.name);
            } else {
                println!(
                    "{} did not approve: {}",
                    node.name,
                    response.problem_detail()
                );
            }
        }
    } else if !auto {
        println!("people decide on a new member: a quorum must approve it, e.g.");
        for node in &others {
            println!(
                "  quorate proposal approve {id} --home {}",
                node.home.display()
            );
        }
        println!("(or run `quorate testnet join` with --approve to approve it on every member)");
        return Ok(());
    }
    while Instant::now() < deadline {
        let member = testnet
            .status(&spec)
            .status
            .is_some_and(|s| s["is_member"] == true);
        if member {
            println!("{name} is a member");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!(
        "{name} was not admitted within {UP_TIMEOUT:?}; see `quorate proposal list --home {}`",
        sponsor.home.display()
    )
}

/// Live status until SIGINT or SIGTERM.
fn monitor(testnet: &Testnet) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let flag = stop.clone();
    runtime.spawn(async move {
        quorate_node::run::shutdown_signal().await;
        flag.store(true, Ordering::SeqCst);
    });
    let tty = std::io::stdout().is_terminal();
    println!("\nlive status (Ctrl-C stops every node):");
    let mut drawn = 0usize;
    let mut last_print = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) {
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if last_print.elapsed() >= every {
            let lines = status_lines(testnet);
            let mut out = std::io::stdout().lock();
            if tty && drawn > 0 {
                // Redraw in place: up `drawn` lines, clear to the end.
                let _ = write!(out, "\x1b[{drawn}A\x1b[J");
            }
            for line in &lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
            drawn = lines.len();
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping…");
    Ok(())
}

fn down(testnet: &Testnet) -> anyhow::Result<()> {
    // SIGTERM all first, so they stop in parallel; `stop` then waits.
    let mut failed = Vec::new();
    let running: Vec<bool> = testnet
        .nodes()
        .iter()
        .map(|node| testnet.status(node).pid.is_some())
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = testnet
            .nodes()
            .iter()
            .map(|node| (node, scope.spawn(|| testnet.stop(node))))
            .collect();
        for ((node, handle), was_running) in handles.into_iter().zip(running) {
            match handle.join() {
                Ok(Ok(true)) => println!("  {:<8} stopped", node.name),
                Ok(Ok(false)) if !was_running => println!("  {:<8} not running", node.name),
                Ok(Ok(false)) => {
                    println!("  {:<8} did not stop in time: killed", node.name);
                    failed.push(node.name.clone());
                }
                Ok(Err(e)) => {
                    println!("  {:<8} {e:#}", node.name);
                    failed.push(node.name.clone());
                }
                Err(_) => failed.push(node.name.clone()),
            }
        }
    });
    // Rules must not outlive the testnet they were made for.
    match partition::heal(testnet) {
        Ok(true) => println!("  partition healed"),
        Ok(false) => {}
        Err(e) => println!("  the partition was not removed: {e:#}"),
    }
    anyhow::ensure!(
        failed.is_empty(),
        "not stopped cleanly: {}",
        failed.join(", ")
    );
    Ok(())
}

fn status_lines(testnet: &Testnet) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<8} {:<9} {:>7} {:>6} {:>8} {:>10}  API",
        "NAME", "STATE", "HEIGHT", "PEERS", "PENDING", "LAST BLOCK"
    )];
    for node in testnet.nodes() {
        let status: NodeStatus = testnet.status(node);
        let show = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let age = status
            .last_commit_age_ms()
            .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        lines.push(format!(
            "{:<8} {:<9} {:>7} {:>6} {:>8} {:>10}  http://{}",
            node.name,
            status.state(),
            show(status.height()),
            show(status.peers()),
            show(status.pending()),
            age,
            node.api
        ));
    }
    lines
}

fn print_status(testnet: &Testnet) {
    println!(
        "chain {}  ({})",
        testnet.chain_id(),
        testnet.dir().display()
    );
    for line in status_lines(testnet) {
        println!("{line}");
    }
}

fn print_walkthrough(testnet: &Testnet) {
    println!();
    for node in testnet.nodes() {
        println!("{:<8} {}", node.name, node.did);
        println!("         p2p      {}", node.p2p);
        println!(
            "         gateway  https://{}   (members' signed requests)",
            node.gateway
        );
        println!(
            "         home     {}   (admin token: admin.token)",
            node.home.display()
        );
    }
    println!(
        "\ngateway certificates are issued by the testnet's authority: {}",
        testnet.authority_cert().display()
    );
    let [a, b, ..] = testnet.nodes() else {
        return;
    };
    let (home_a, home_b) = (a.home.display(), b.home.display());
    let (name_a, name_b) = (&a.name, &b.name);
    println!("\ntry it:");
    println!("  # {name_a} stores a file");
    println!(
        "  printf 'id,port\\n1,Rotterdam\\n' | quorate data put --home {home_a} datasets/shipments/2026-11.csv --content-type text/csv"
    );
    println!("  # {name_b} asks for it through its own node: refused, it holds no grant");
    println!("  quorate peer get --home {home_b} {name_a} datasets/shipments/2026-11.csv");
    println!(
        "  # {name_a} grants {name_b} read access to its shipments for 30 days; the others endorse it"
    );
    println!(
        "  quorate proposal grant --home {home_a} --to {name_b} --resource 'datasets/shipments/*' --action read --for 30d"
    );
    println!("  # now it is served (and both decisions are in {name_a}'s audit log)");
    println!("  quorate peer get --home {home_b} {name_a} datasets/shipments/2026-11.csv");
    println!("  quorate audit tail --home {home_a}");
    println!("  # a proof of the grant, checked offline from genesis");
    println!(
        "  quorate grant proof GRANT_ID --home {home_b} --out grant.proof && quorate grant verify grant.proof"
    );
}
