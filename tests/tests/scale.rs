//! Goal: a node restarts on a ledger of 100,000 grants and is serving and
//! committing within seconds (before the state became rows, a node could
//! not restart past ~55,000 grants: its state was one blob over the decode
//! limit). The grants it holds are enforced: a grantee reads through one,
//! a stranger is refused.
//! Method: a 4-node testnet of real processes is stopped; 100,000 grants
//! are appended to every node's own ledger through the library (each
//! signed and endorsed by the members' real keys, each block certified,
//! every ledger checking every block itself); the testnet is started again
//! and must commit past the built tip. Waits are bounded; how long the
//! restart took is printed, not asserted (benchmarks measure time).

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_contracts::Timestamp;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::ledger::Ledger;
use quorate_tests::{Testnet, admin, eventually, gateway, key, put_object, signed_get};

const GRANTS: usize = 100_000;
const NAMES: [&str; 4] = ["org-a", "org-b", "org-c", "org-d"];

fn ledger_path(net: &Testnet, name: &str) -> std::path::PathBuf {
    net.home(name).join("data/ledger.redb")
}

fn height(net: &Testnet, name: &str) -> Option<u64> {
    admin(net, name).get("/v1/status").ok()?.json().ok()?["height"].as_u64()
}

#[test]
fn a_node_restarts_on_a_hundred_thousand_grants_and_commits() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    net.cli(&["testnet", "down"]);

    // Every ledger to the longest tip, then the grants on all four.
    let keys: Vec<_> = NAMES.iter().map(|n| key(&net, n)).collect();
    let mut ledgers: Vec<Ledger> = NAMES
        .iter()
        .map(|n| Ledger::open(&ledger_path(&net, n)).unwrap())
        .collect();
    let tip = |l: &Ledger| l.chain().unwrap().tip().height;
    let best = (0..4).max_by_key(|i| tip(&ledgers[*i])).unwrap();
    let best_tip = tip(&ledgers[best]);
    for i in 0..4 {
        while tip(&ledgers[i]) < best_tip {
            let from = tip(&ledgers[i]) + 1;
            let blocks = ledgers[best].blocks(from, best_tip).unwrap();
            ledgers[i].append_batch(&blocks).unwrap();
        }
    }
    let mut builder = ledgers.remove(best);
    let started = Instant::now();
    let (senders, appenders): (Vec<_>, Vec<_>) = ledgers
        .into_iter()
        .map(|mut ledger| {
            let (send, receive) = mpsc::sync_channel::<CommittedBlock>(4);
            let thread = std::thread::spawn(move || {
                for block in receive {
                    ledger.append(&block).unwrap();
                }
                ledger.chain().unwrap().tip().height
            });
            (send, thread)
        })
        .unzip();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    quorate_ledger::testing::append_grants(&mut builder, &keys, GRANTS, Timestamp(now), |b| {
        for send in &senders {
            send.send(b.clone()).unwrap();
        }
    });
    drop(senders);
    let built_tip = tip(&builder);
    assert_eq!(
        builder.chain().unwrap().state().grant_counts().total,
        GRANTS as u64
    );
    for appender in appenders {
        assert_eq!(appender.join().unwrap(), built_tip);
    }
    drop(builder);
    eprintln!(
        "built {GRANTS} grants on 4 ledgers in {:.1?} (tip {built_tip})",
        started.elapsed()
    );

    // Start again: every node opens its 100k-grant ledger and they commit.
    let started = Instant::now();
    net.cli(&["testnet", "up", "--detach"]);
    eventually(
        Duration::from_secs(60),
        "commits past the built tip",
        || {
            NAMES
                .iter()
                .all(|n| height(&net, n).is_some_and(|h| h > built_tip))
        },
    );
    eprintln!(
        "restarted on {GRANTS} grants: serving and committing on all 4 in {:.1?}",
        started.elapsed()
    );
    let ledger = admin(&net, "org-a")
        .get("/v1/ledger")
        .unwrap()
        .json()
        .unwrap();
    assert!(
        ledger["grants"].as_u64().unwrap() >= GRANTS as u64,
        "{ledger}"
    );

    // Grant 0 lets org-b read org-a's `scale/0/*`; org-c has no grant from
    // org-a on it.
    let a = admin(&net, "org-a");
    put_object(&a, "scale/0/readme.txt", "text/plain", b"one of many\n");
    let (served, _) = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/objects/scale/0/readme.txt",
        &keys[1],
        "s-1",
    );
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.body, b"one of many\n");
    let (refused, _) = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/objects/scale/0/readme.txt",
        &keys[2],
        "s-2",
    );
    assert_eq!(refused.status, 403, "{}", refused.text());

    // A new grant still commits everywhere, and a page of the listing is
    // a page, not the ledger.
    let id = net.grant("org-a", "org-b", "after-restart/*", &NAMES);
    let page = a.get("/v1/grants?grantor=org-a").unwrap();
    assert_eq!(page.json().unwrap().as_array().unwrap().len(), 100);
    assert!(page.header("link").is_some(), "a next page");
    let shown = a.get(&format!("/v1/grants/{id}")).unwrap();
    assert_eq!(shown.json().unwrap()["standing"], "active");
}
