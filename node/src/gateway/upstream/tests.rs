use super::*;

fn section(prefix: &str, url: &str) -> UpstreamSection {
    UpstreamSection {
        prefix: prefix.into(),
        url: Some(url.into()),
        urls: Vec::new(),
        balance: Balance::RoundRobin,
        timeout: default_timeout(),
        request_headers: Vec::new(),
        response_headers: Vec::new(),
    }
}

fn spread(urls: &[&str], balance: Balance) -> UpstreamSection {
    UpstreamSection {
        url: None,
        urls: urls.iter().map(|u| u.to_string()).collect(),
        balance,
        ..section("erp", "http://unused")
    }
}

#[test]
fn routes_match_whole_segments_and_bad_routes_are_refused() {
    let upstreams = Upstreams::new(&[section("erp", "http://127.0.0.1:9/api/")]).unwrap();
    let path = |p: &str| ResourcePath::parse(p).unwrap();
    assert!(upstreams.serves(&path("erp/orders/42")));
    assert!(!upstreams.serves(&path("erp")));
    assert!(!upstreams.serves(&path("erpx/orders")));
    let orders = path("erp/orders/42");
    let (route, rest) = upstreams.route(&orders).unwrap();
    assert_eq!(
        (route.targets[0].base.as_str(), rest),
        ("http://127.0.0.1:9/api", "orders/42")
    );

    let refused = |s: UpstreamSection| Upstreams::new(&[s]).unwrap_err();
    assert!(matches!(
        refused(section("../x", "http://a")),
        UpstreamConfigError::Prefix(_)
    ));
    for url in ["https://a", "http://a?q=1", "a:9", "http:///x"] {
        assert!(
            matches!(
                refused(section("erp", url)),
                UpstreamConfigError::Url { .. }
            ),
            "{url}"
        );
    }
    assert!(matches!(
        refused(spread(&[], Balance::RoundRobin)),
        UpstreamConfigError::Urls(_)
    ));
    let both = UpstreamSection {
        urls: vec!["http://b".into()],
        ..section("erp", "http://a")
    };
    assert!(matches!(refused(both), UpstreamConfigError::Urls(_)));
    let many: Vec<String> = (0..=URLS_MAX).map(|i| format!("http://h{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        refused(spread(&many, Balance::RoundRobin)),
        UpstreamConfigError::Urls(_)
    ));
    assert!(matches!(
        Upstreams::new(&[section("erp", "http://a"), section("erp", "http://b")]).unwrap_err(),
        UpstreamConfigError::Duplicate(_)
    ));
    let zero = UpstreamSection {
        timeout: HumanDuration(Duration::ZERO),
        ..section("erp", "http://a")
    };
    assert!(matches!(refused(zero), UpstreamConfigError::Timeout(_)));
}

#[test]
fn allow_lists_refuse_what_is_never_forwarded() {
    let with = |request: &[&str], response: &[&str]| UpstreamSection {
        request_headers: request.iter().map(|s| s.to_string()).collect(),
        response_headers: response.iter().map(|s| s.to_string()).collect(),
        ..section("erp", "http://a")
    };
    let upstreams = Upstreams::new(&[with(&["Accept", "accept", "X-Tenant"], &["ETag"])]);
    let route = &upstreams.unwrap().routes[0];
    assert_eq!(route.request_headers, ["accept", "x-tenant"]);
    assert_eq!(route.response_headers, ["etag"]);
    for bad in [
        "Authorization",
        "signature",
        "Connection",
        "transfer-encoding",
        "Range",
        "quorate-member",
        "Quorate-Audience",
        "cookie",
        "Set-Cookie",
        "x-forwarded-for",
        "forwarded",
        "if-match",
        "content-length",
        "bad header",
        "",
    ] {
        let error = Upstreams::new(&[with(&[bad], &[])]).unwrap_err();
        assert!(
            matches!(
                error,
                UpstreamConfigError::Header {
                    list: "request_headers",
                    ..
                }
            ),
            "{bad}"
        );
        assert!(Upstreams::new(&[with(&[], &[bad])]).is_err(), "{bad}");
    }
    let many: Vec<String> = (0..=HEADERS_MAX).map(|i| format!("x-h{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(Upstreams::new(&[with(&many, &[])]).is_err());
}

#[test]
fn a_request_carries_the_query_the_allowed_headers_and_who_asks() {
    let section = UpstreamSection {
        request_headers: vec!["accept".into()],
        ..section("erp", "http://a")
    };
    let upstreams = Upstreams::new(&[section]).unwrap();
    let path = ResourcePath::parse("erp/orders").unwrap();
    let (route, rest) = upstreams.route(&path).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("text/csv"));
    headers.insert("cookie", HeaderValue::from_static("secret=1"));
    headers.insert("quorate-member", HeaderValue::from_static("did:key:forged"));
    let caller = quorate_did::Keypair::from_seed(&[7; 32]).did();
    let call = Call {
        verb: Verb::Get,
        path: &path,
        query: Some("status=open&page=2"),
        headers: &headers,
        caller: &caller,
        grant: GrantId([9; 32]),
        purpose: Some("customs clearance"),
        body: None,
    };
    let outgoing = route.request(&call, rest).unwrap();
    assert_eq!(outgoing.path_and_query, "orders?status=open&page=2");
    assert_eq!(outgoing.headers["accept"], "text/csv");
    assert!(outgoing.headers.get("cookie").is_none());
    assert_eq!(outgoing.headers[MEMBER_HEADER], caller.to_string().as_str());
    assert_eq!(
        outgoing.headers[GRANT_HEADER],
        GrantId([9; 32]).to_string().as_str()
    );
    assert_eq!(outgoing.headers["quorate-purpose"], "customs clearance");

    // A change carries the member's preconditions, listed or not; a read
    // does not.
    let mut conditional = headers.clone();
    conditional.insert("if-none-match", HeaderValue::from_static("*"));
    let read = Call {
        headers: &conditional,
        body: None,
        ..call
    };
    assert!(
        route
            .request(&read, rest)
            .unwrap()
            .headers
            .get("if-none-match")
            .is_none()
    );
    let post = Call {
        verb: Verb::Post,
        headers: &conditional,
        body: None,
        ..call
    };
    assert_eq!(
        route.request(&post, rest).unwrap().headers["if-none-match"],
        "*"
    );

    let bad = Call {
        query: Some("a b"),
        ..call
    };
    assert!(matches!(
        route.request(&bad, rest),
        Err(UpstreamFailure::BadQuery(_))
    ));
}

#[test]
fn round_robin_takes_each_url_in_turn_and_skips_open_circuits() {
    let upstreams = Upstreams::new(&[spread(
        &["http://a", "http://b", "http://c"],
        Balance::RoundRobin,
    )])
    .unwrap();
    let route = &upstreams.routes[0];
    let picks: Vec<usize> = (0..6).map(|_| route.pick(None).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    // b fails until its circuit opens: it is skipped.
    for _ in 0..BREAKER_FAILURES {
        route.targets[1].admit().ok().unwrap();
        route.targets[1].settle("erp", false);
    }
    let picks: Vec<usize> = (0..4).map(|_| route.pick(None).unwrap()).collect();
    assert!(!picks.contains(&1), "{picks:?}");
    assert!(picks.contains(&0) && picks.contains(&2));
    // A retry never goes back to the URL it tried.
    assert_ne!(route.pick(Some(0)).unwrap(), 0);
    // Every URL open: refused at once, with when to try again.
    for target in [0, 2] {
        for _ in 0..BREAKER_FAILURES {
            route.targets[target].settle("erp", false);
        }
    }
    let refused = quorate_api::refusal::Refusal::from(route.pick(None).unwrap_err());
    assert_eq!(refused.code().as_str(), "upstream-unavailable");
    assert!(
        refused
            .retry_after_secs()
            .is_some_and(|s| s <= BREAKER_COOLDOWN.as_secs())
    );
    let view = upstreams.view();
    assert!(
        view.routes[0]
            .urls
            .iter()
            .all(|u| u.open && u.failures >= BREAKER_FAILURES)
    );
}

#[test]
fn least_connections_takes_the_least_busy_url() {
    let upstreams = Upstreams::new(&[spread(
        &["http://a", "http://b", "http://c"],
        Balance::LeastConnections,
    )])
    .unwrap();
    let route = &upstreams.routes[0];
    let busy_a = InFlight::enter(&route.targets[0].in_flight);
    let busy_c = [
        InFlight::enter(&route.targets[2].in_flight),
        InFlight::enter(&route.targets[2].in_flight),
    ];
    for _ in 0..5 {
        assert_eq!(route.pick(None).unwrap(), 1);
    }
    let busy_b = [
        InFlight::enter(&route.targets[1].in_flight),
        InFlight::enter(&route.targets[1].in_flight),
        InFlight::enter(&route.targets[1].in_flight),
    ];
    assert_eq!(route.pick(None).unwrap(), 0);
    drop((busy_a, busy_b, busy_c));
    assert!(
        route
            .targets
            .iter()
            .all(|t| t.in_flight.load(Ordering::Relaxed) == 0)
    );
}

#[test]
fn a_circuit_opens_after_consecutive_failures_and_a_success_closes_it() {
    let upstreams = Upstreams::new(&[section("erp", "http://127.0.0.1:9")]).unwrap();
    let target = &upstreams.routes[0].targets[0];
    for _ in 0..BREAKER_FAILURES - 1 {
        assert!(target.admit().is_ok());
        target.settle("erp", false);
    }
    assert!(target.admit().is_ok());
    target.settle("erp", true);
    for _ in 0..BREAKER_FAILURES {
        assert!(target.admit().is_ok());
        target.settle("erp", false);
    }
    assert!(target.admit().is_err());
    assert!(!target.available(Instant::now()));
    assert!(target.available(Instant::now() + BREAKER_COOLDOWN));
}

#[test]
fn a_cooled_down_circuit_lets_one_trial_through_at_a_time() {
    let upstreams = Upstreams::new(&[section("erp", "http://127.0.0.1:9")]).unwrap();
    let target = &upstreams.routes[0].targets[0];
    for _ in 0..BREAKER_FAILURES {
        assert!(target.admit().is_ok());
        target.settle("erp", false);
    }
    // Cool-down over: one trial is admitted, the others wait for it.
    target.breaker().open_until = Some(Instant::now());
    assert!(target.admit().is_ok());
    assert!(target.admit().is_err());
    assert!(!target.available(Instant::now()));
    // A trial whose caller went away is given up after a cool-down.
    assert!(target.available(Instant::now() + BREAKER_COOLDOWN));
    // The trial fails: open again, for another cool-down.
    target.settle("erp", false);
    assert!(target.admit().is_err());
    assert!(target.available(Instant::now() + BREAKER_COOLDOWN));
    // A trial that succeeds closes the circuit for every call.
    target.breaker().open_until = Some(Instant::now());
    assert!(target.admit().is_ok());
    target.settle("erp", true);
    assert!(target.admit().is_ok() && target.admit().is_ok());
}
