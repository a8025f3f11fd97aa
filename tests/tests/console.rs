//! Goal: the web console works in a real browser for each role, with what
//! that role may do: under manual approval an approver of org-b sees a
//! pending grant, approves it in the console and sees it become active,
//! and downloads its proof (which verifies offline); a reader sees no
//! approve button, and the API refuses the reader's approval; a publisher
//! of org-a uploads an object in the console, and org-b's reader fetches
//! it through org-b's node under the grant, and offers a dataset in
//! org-a's catalog, which org-b's approver finds in the console and asks
//! for, and org-a's approver accepts; org-b's live events announce
//! the grant and, once org-a revokes it, its revocation. Screenshots of the main pages
//! are written (to $QUORATE_SCREENSHOTS, or the test's directory).
//! Method: a 4-node testnet of the real binary with manual approval;
//! Debian's headless Chromium driven by Selenium through chromedriver
//! (`tests/console/browser.py`). Skipped (with a reason) when Chromium or
//! Selenium is absent, unless QUORATE_REQUIRE_BROWSER is set (`.ci/run`
//! installs them and sets it).

use std::time::Duration;

use quorate_testnet::client::ApiClient;
use quorate_tests::{
    Events, Testnet, admin, browser_present, eventually, home_arg, run_browser, run_ok,
};

fn token(net: &Testnet, org: &str, name: &str, role: &str) -> String {
    run_ok(&[
        "token",
        "create",
        "--home",
        &home_arg(&net.home(org)),
        "--name",
        name,
        "--role",
        role,
    ])
    .trim()
    .to_owned()
}

#[test]
fn each_role_uses_the_console_for_what_it_may_do() {
    if !browser_present() {
        eprintln!("skipped: Chromium, chromedriver or Selenium is not installed");
        return;
    }
    let (net, _) = Testnet::up(&["--nodes", "4", "--approval", "manual"]);
    let (a, b) = (admin(&net, "org-a"), admin(&net, "org-b"));
    let approver = token(&net, "org-b", "ann", "approver");
    let reader = token(&net, "org-b", "rob", "reader");
    let publisher = token(&net, "org-a", "pia", "publisher");
    let approver_a = token(&net, "org-a", "amy", "approver");

    // org-a proposes grants to org-b (read and list), by the CLI.
    let home_a = home_arg(&net.home("org-a"));
    let propose = |resource: &str, days: &str| {
        run_ok(&[
            "proposal",
            "grant",
            "--home",
            &home_a,
            "--to",
            "org-b",
            "--resource",
            resource,
            "--action",
            "read",
            "--action",
            "list",
            "--days",
            days,
        ])
        .trim()
        .to_owned()
    };
    // org-c approves by the CLI; org-b's is the deciding approval.
    let proposal = propose("reports/*", "7");
    eventually(
        Duration::from_secs(20),
        "org-b and org-c see the proposal",
        || {
            ["org-b", "org-c"].iter().all(|org| {
                admin(&net, org)
                    .get("/v1/proposals")
                    .is_ok_and(|r| r.text().contains(&proposal))
            })
        },
    );
    run_ok(&[
        "proposal",
        "approve",
        "--home",
        &home_arg(&net.home("org-c")),
        &proposal,
    ]);
    // The reader's approval is refused by the API, whatever the page shows.
    let refused = ApiClient::new(b.address().to_owned(), reader.clone())
        .request("POST", &format!("/v1/proposals/{proposal}/approve"), None)
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());

    // A client of org-b's live events, from before the approval.
    let mut events = Events::open(b.address(), &reader, None);

    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    let screenshots = std::env::var_os("QUORATE_SCREENSHOTS")
        .map_or_else(|| dir.path().join("screenshots"), Into::into);
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(&screenshots).unwrap();
    let upload = dir.path().join("q1.csv");
    std::fs::write(&upload, "region,units\nnorth,42\n").unwrap();
    let plan = serde_json::json!({
        "a": format!("http://{}", a.address()),
        "b": format!("http://{}", b.address()),
        "approver": approver, "reader": reader, "publisher": publisher, "approver_a": approver_a,
        "admin_b": std::fs::read_to_string(net.home("org-b").join("admin.token")).unwrap().trim(),
        // A grant's id is its proposal's id.
        "proposal": proposal, "grant": proposal,
        "upload": upload, "downloads": downloads, "screenshots": screenshots,
    });
    let seen = run_browser(&plan);

    assert_eq!(
        seen["reader_pages"],
        serde_json::json!([
            "overview",
            "proposals",
            "grants",
            "data",
            "catalog",
            "access",
            "ledger"
        ]),
        "a reader has no audit page"
    );
    assert_eq!(seen["reader_buttons"], 0, "a reader gets no approve button");
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    // The proof downloaded in the browser verifies offline.
    let proof = seen["proof"].as_str().unwrap();
    let verified = run_ok(&["grant", "verify", proof]);
    assert!(verified.contains("OK"), "{verified}");
    // The object org-b's reader fetched is what org-a's publisher uploaded.
    let fetched = std::fs::read_to_string(seen["fetched"].as_str().unwrap()).unwrap();
    assert_eq!(fetched, "region,units\nnorth,42\n");
    // The access request org-b's approver made in the console, accepted
    // in org-a's: both nodes say so, and org-a proposed the grant.
    let request = seen["access_request"].as_str().unwrap();
    for org in ["org-a", "org-b"] {
        let shown: serde_json::Value = serde_json::from_str(&run_ok(&[
            "access",
            "show",
            "--home",
            &home_arg(&net.home(org)),
            request,
        ]))
        .unwrap();
        assert_eq!(shown["state"], "accepted", "{org}: {shown}");
        assert_eq!(shown["resources"][0], "reports/*", "the offer's resource");
        assert_eq!(shown["purpose"], "planning", "the offer's purpose");
    }
    for page in [
        "proposals",
        "grants",
        "data",
        "catalog",
        "access",
        "overview",
        "audit",
        "ledger",
    ] {
        assert!(screenshots.join(format!("{page}.png")).exists(), "{page}");
    }
    // The live events announced the grant with its parties.
    let (_, grant) = events.until("grant-committed", |g| g["id"] == proposal.as_str());
    assert_eq!(
        (grant["grantor"].as_str(), grant["grantee"].as_str()),
        (Some("org-a"), Some("org-b"))
    );
    // A grant that ends within a day is announced as expiring.
    let brief = propose("briefly/*", "1");
    for org in ["org-b", "org-c"] {
        eventually(
            Duration::from_secs(20),
            "the brief proposal arrives",
            || {
                admin(&net, org)
                    .get("/v1/proposals")
                    .is_ok_and(|r| r.text().contains(&brief))
            },
        );
        run_ok(&[
            "proposal",
            "approve",
            "--home",
            &home_arg(&net.home(org)),
            &brief,
        ]);
    }
    let (_, expiring) = events.until("grant-expiring", |g| g["id"] == brief.as_str());
    assert_eq!(expiring["grantee"], "org-b");
    // org-a revokes the first alone (its grantor), and org-b's events say so.
    run_ok(&[
        "proposal",
        "revoke",
        "--home",
        &home_arg(&net.home("org-a")),
        &proposal,
    ]);
    let (_, revoked) = events.until("grant-revoked", |g| g["id"] == proposal.as_str());
    assert_eq!(revoked["grantee"], "org-b");
    // The approval went through the console with ann's token, and says so.
    eventually(
        Duration::from_secs(10),
        "ann's approval in the audit log",
        || {
            b.get("/v1/audit?caller=token:ann")
                .unwrap()
                .json()
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["action"] == "approve" && r["decision"] == "allow")
        },
    );
}
