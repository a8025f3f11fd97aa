//! Goal: the network actor connects members over real libp2p (TCP + Noise +
//! Yamux on 127.0.0.1), names each peer by its did:key, delivers gossip and
//! requests between members, and refuses gossip from a non-member.
//! Method: three swarms in one process (two members, one outsider), each
//! bounded in time.

use std::time::Duration;

use quorate_did::{Did, Keypair};
use quorate_node::network::{self, Client, Event, Topic};
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHAIN: &str = "test-chain";
const WAIT: Duration = Duration::from_secs(15);

async fn start(key: &Keypair, bootstrap: &[String]) -> (Client, mpsc::Receiver<Event>, String) {
    let (client, events, event_loop) =
        network::spawn(key, CHAIN, &["/ip4/127.0.0.1/tcp/0".to_owned()], bootstrap).unwrap();
    tokio::spawn(event_loop.run());
    let address = timeout(WAIT, async {
        loop {
            if let Some(a) = client.listen_addrs().await.into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("listening");
    let peer = network::identity::peer_id(&key.did());
    (client, events, format!("{address}/p2p/{peer}"))
}

async fn next_matching<T>(
    events: &mut mpsc::Receiver<Event>,
    mut f: impl FnMut(Event) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if let Some(t) = f(event) {
                return t;
            }
        }
    })
    .await
    .expect("event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_gossip_and_request_and_outsiders_are_refused() {
    let a_key = Keypair::from_seed(&[1; 32]);
    let b_key = Keypair::from_seed(&[2; 32]);
    let outsider = Keypair::from_seed(&[3; 32]);
    let members: Vec<Did> = vec![a_key.did(), b_key.did()];

    let (a, mut a_events, a_addr) = start(&a_key, &[]).await;
    let (b, mut b_events, _) = start(&b_key, std::slice::from_ref(&a_addr)).await;
    let (c, _c_events, _) = start(&outsider, std::slice::from_ref(&a_addr)).await;
    for client in [&a, &b, &c] {
        client.set_members(members.clone()).await;
    }

    let connected = next_matching(&mut b_events, |e| match e {
        Event::Connected(did) => Some(did),
        _ => None,
    })
    .await;
    assert_eq!(connected, a_key.did(), "B names its peer by A's did:key");

    // Gossip: A publishes until B has it (subscriptions travel after the
    // connection is up). The outsider publishes too; A must never pass it on.
    let outsider_did = outsider.did();
    let gossip = tokio::spawn({
        let (a, c) = (a.clone(), c.clone());
        async move {
            for i in 0..100u32 {
                a.publish(Topic::Consensus, format!("vote {i}").into_bytes())
                    .await;
                c.publish(Topic::Consensus, format!("forged {i}").into_bytes())
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (from, data) = next_matching(&mut b_events, |e| match e {
        Event::Gossip {
            from,
            topic: Topic::Consensus,
            data,
            id,
            via,
        } => {
            let b = b.clone();
            tokio::spawn(async move { b.validate(id, via, true).await });
            Some((from, data))
        }
        _ => None,
    })
    .await;
    assert_eq!(from, a_key.did());
    assert!(String::from_utf8(data).unwrap().starts_with("vote "));

    // Request-response, answered by A's driver side.
    let responder = tokio::spawn(async move {
        let mut seen_outsider_gossip = false;
        loop {
            match a_events.recv().await {
                Some(Event::Request { from, data, reply }) => {
                    let mut answer = b"echo:".to_vec();
                    answer.extend_from_slice(&data);
                    a.respond(reply, answer).await;
                    return (from, seen_outsider_gossip);
                }
                Some(Event::Gossip { from, .. }) if from == outsider_did => {
                    seen_outsider_gossip = true
                }
                Some(_) => {}
                None => panic!("A's events ended"),
            }
        }
    });
    let answer = timeout(WAIT, b.request(a_key.did(), b"status?".to_vec()))
        .await
        .expect("answer in time")
        .expect("request succeeds");
    assert_eq!(answer, b"echo:status?");
    let (asker, seen_outsider_gossip) = responder.await.unwrap();
    assert_eq!(asker, b_key.did());
    assert!(
        !seen_outsider_gossip,
        "gossip from a non-member reached the driver"
    );
    gossip.abort();
}
