//! Goal: the network actor connects members over real libp2p (TCP + Noise +
//! Yamux on 127.0.0.1), names each peer by its did:key, delivers gossip and
//! requests between members, and refuses gossip from a non-member.
//! Method: three swarms in one process (two members, one outsider), each
//! bounded in time.

use std::time::Duration;

use quorate_did::{Did, Keypair};
use quorate_node::net::{self, Client, Event, Inbound, Topic};
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHAIN: &str = "test-chain";
const WAIT: Duration = Duration::from_secs(15);

async fn start(key: &Keypair, bootstrap: &[String]) -> (Client, mpsc::Receiver<Event>, String) {
    let (client, inbound, address) = start_with_inbound(key, bootstrap).await;
    (client, inbound.events, address)
}

/// A swarm listening on a free port, and its full address.
async fn start_with_inbound(key: &Keypair, bootstrap: &[String]) -> (Client, Inbound, String) {
    let (client, inbound, event_loop) =
        net::spawn(key, CHAIN, &["/ip4/127.0.0.1/tcp/0".to_owned()], bootstrap).unwrap();
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
    let peer = net::identity::peer_id(&key.did());
    (client, inbound, format!("{address}/p2p/{peer}"))
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

    let (a, a_inbound, a_addr) = start_with_inbound(&a_key, &[]).await;
    let Inbound {
        events: mut a_events,
        sync: mut a_sync,
        ..
    } = a_inbound;
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

    // Request-response, answered by A's sync-server side.
    let responder = tokio::spawn(async move {
        let mut seen_outsider_gossip = false;
        loop {
            tokio::select! {
                request = a_sync.recv() => {
                    let net::PeerRequest { from, data, reply } = request.expect("A's requests open");
                    let mut answer = b"echo:".to_vec();
                    answer.extend_from_slice(&data);
                    a.respond(reply, answer).await;
                    return (from, seen_outsider_gossip);
                }
                event = a_events.recv() => match event {
                    Some(Event::Gossip { from, .. }) if from == outsider_did => {
                        seen_outsider_gossip = true
                    }
                    Some(_) => {}
                    None => panic!("A's events ended"),
                },
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

/// Goal: a peer that is not a member gets a trickle of requests through,
/// its flood fails fast without reaching the sync server, and a member flooding
/// mempool gossip is held to its budget while another member's votes still
/// arrive. Method: four swarms in one process (members A, B and D, an
/// outsider C); A's "driver" counts what reaches it and answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_flooding_members_are_held_to_their_budgets() {
    use quorate_node::net::limits::{
        MEMPOOL_GOSSIP_BURST, MEMPOOL_GOSSIP_PER_SEC, OUTSIDER_REQUESTS_BURST,
        OUTSIDER_REQUESTS_PER_SEC,
    };
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let a_key = Keypair::from_seed(&[11; 32]);
    let b_key = Keypair::from_seed(&[12; 32]);
    let d_key = Keypair::from_seed(&[14; 32]);
    let outsider = Keypair::from_seed(&[13; 32]);
    let members: Vec<Did> = vec![a_key.did(), b_key.did(), d_key.did()];
    let (a, a_inbound, a_addr) = start_with_inbound(&a_key, &[]).await;
    let Inbound {
        events: mut a_events,
        sync: mut a_sync,
        ..
    } = a_inbound;
    let (b, _b_events, _) = start(&b_key, std::slice::from_ref(&a_addr)).await;
    let (d, _d_events, _) = start(&d_key, std::slice::from_ref(&a_addr)).await;
    let (c, _c_events, _) = start(&outsider, std::slice::from_ref(&a_addr)).await;
    for client in [&a, &b, &c, &d] {
        client.set_members(members.clone()).await;
    }
    timeout(WAIT, async {
        while a.peers().await.len() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("B, C and D connected to A");

    // A's side: count requests and gossip by sender, answer every request.
    let requests: Arc<Mutex<HashMap<Did, usize>>> = Arc::default();
    let gossip: Arc<Mutex<HashMap<(Did, Topic), usize>>> = Arc::default();
    let server = tokio::spawn({
        let (a, requests) = (a.clone(), requests.clone());
        async move {
            while let Some(net::PeerRequest { from, reply, .. }) = a_sync.recv().await {
                *requests.lock().unwrap().entry(from).or_default() += 1;
                a.respond(reply, b"ok".to_vec()).await;
            }
        }
    });
    let responder = tokio::spawn({
        let (a, gossip) = (a.clone(), gossip.clone());
        async move {
            while let Some(event) = a_events.recv().await {
                if let Event::Gossip {
                    from,
                    topic,
                    id,
                    via,
                    ..
                } = event
                {
                    *gossip.lock().unwrap().entry((from, topic)).or_default() += 1;
                    a.validate(id, via, true).await;
                }
            }
        }
    });

    // The outsider's flood: most requests fail, and fail fast.
    let flood_start = std::time::Instant::now();
    let outsider_answers = futures::future::join_all(
        (0..50).map(|_| timeout(WAIT, c.request(a_key.did(), b"blocks?".to_vec()))),
    )
    .await;
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let answered = outsider_answers
        .iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert!(
        outsider_answers.iter().all(Result::is_ok),
        "a refused request timed out instead of failing at once"
    );
    let allowed = OUTSIDER_REQUESTS_BURST + OUTSIDER_REQUESTS_PER_SEC * flood_secs;
    eprintln!("{answered} of the outsider's 50 requests answered in {flood_secs:.2} s");
    assert!(
        answered >= 1 && answered as f64 <= allowed + 1.0,
        "{answered} of the outsider's 50 requests were answered in {flood_secs:.2} s"
    );
    // A member is served in full meanwhile.
    let member_answers = futures::future::join_all(
        (0..50).map(|_| timeout(WAIT, b.request(a_key.did(), b"blocks?".to_vec()))),
    )
    .await;
    assert!(member_answers.iter().all(|r| matches!(r, Ok(Ok(_)))));
    assert_eq!(
        requests.lock().unwrap().get(&outsider.did()).copied(),
        Some(answered),
        "the outsider's refused requests never reached the sync server"
    );

    // B floods the mempool topic; D's vote still reaches A.
    let publish_start = std::time::Instant::now();
    for i in 0..20_000u32 {
        b.publish(Topic::Mempool, i.to_be_bytes().to_vec()).await;
    }
    d.publish(Topic::Consensus, b"d's vote".to_vec()).await;
    timeout(WAIT, async {
        loop {
            let heard = gossip
                .lock()
                .unwrap()
                .get(&(d_key.did(), Topic::Consensus))
                .copied();
            if heard.is_some() {
                return;
            }
            d.publish(Topic::Consensus, b"d's vote".to_vec()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("D's vote reaches A during B's flood");
    let flood_secs = publish_start.elapsed().as_secs_f64();
    let from_b = gossip
        .lock()
        .unwrap()
        .get(&(b_key.did(), Topic::Mempool))
        .copied()
        .unwrap_or(0);
    let allowed = MEMPOOL_GOSSIP_BURST + MEMPOOL_GOSSIP_PER_SEC * flood_secs;
    eprintln!("A heard {from_b} of B's 20,000 mempool messages in {flood_secs:.2} s");
    assert!(
        from_b as f64 <= allowed,
        "A heard {from_b} of B's mempool messages in {flood_secs:.2} s"
    );
    responder.abort();
    server.abort();
}

/// Goal: members' data requests travel on a protocol of their own, to the
/// gateway's stream and never agreement's, and a non-member's are refused
/// before anything sees them. Method: three swarms in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_requests_reach_the_gateway_not_agreement_and_only_from_members() {
    let a_key = Keypair::from_seed(&[21; 32]);
    let b_key = Keypair::from_seed(&[22; 32]);
    let outsider = Keypair::from_seed(&[23; 32]);
    let members: Vec<Did> = vec![a_key.did(), b_key.did()];
    let (a, a_inbound, a_addr) = start_with_inbound(&a_key, &[]).await;
    let (b, _b_events, _) = start(&b_key, std::slice::from_ref(&a_addr)).await;
    let (c, _c_events, _) = start(&outsider, std::slice::from_ref(&a_addr)).await;
    for client in [&a, &b, &c] {
        client.set_members(members.clone()).await;
    }
    timeout(WAIT, async {
        while a.peers().await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("B and C connected to A");
    let net::Inbound {
        sync: mut a_sync,
        data: mut a_data,
        ..
    } = a_inbound;
    let gateway = tokio::spawn({
        let a = a.clone();
        async move {
            let mut from = Vec::new();
            while let Some(request) = a_data.recv().await {
                from.push(request.from);
                a.respond(request.reply, b"object".to_vec()).await;
                if from.len() == 1 {
                    return from;
                }
            }
            from
        }
    });
    let answer = timeout(WAIT, b.request_data(a_key.did(), b"get".to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"object");
    let refused = timeout(WAIT, c.request_data(a_key.did(), b"get".to_vec()))
        .await
        .expect("refused at once, not timed out");
    assert!(refused.is_err(), "a non-member's data request was answered");
    assert_eq!(gateway.await.unwrap(), vec![b_key.did()]);
    // Agreement's request stream saw no request at all.
    assert!(
        a_sync.try_recv().is_err(),
        "a data request reached the sync server"
    );
}
