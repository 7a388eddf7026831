//! End to end: real Envoy (1.40, and 1.36 in `./dev test`'s second run) with the activator
//! sidecar's routing config as kasi's bundle leaves it, the compiled kasi filter, and HTTP pods on
//! loopback. Each test starts its own pods and Envoy on fresh ports. The filter steers through
//! filter state: no routing header ever reaches a pod, and routing is checked by which pod
//! answered (`x-kasi-pod`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kasi_e2e::{
    assert_served_by, decision_lines, envoy_cookie, loopback, Envoy, EnvoyOptions, Pod, Session,
    COOKIE_NAME,
};
use kasi_filter::codec::encode_legacy;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Pods a, b, c on 127.0.0.2–4, one shared port: inside the tests' `127.0.0.0/29`.
fn three_pods() -> Vec<Pod> {
    Pod::start_group(&[("a", loopback(2)), ("b", loopback(3)), ("c", loopback(4))])
}

/// pluginConfig that allows the pods and nothing else on loopback, logging every decision.
fn plugin_config(port: u16) -> String {
    serde_json::json!({
        "allowed_cidrs": ["127.0.0.0/29"],
        "allowed_ports": [port],
        "log_decisions": "all",
    })
    .to_string()
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// (a) The problem kasi solves: on Istio's PassthroughCluster the session cookie alone does not
/// pin a pod Envoy has not used recently; the socket's original destination wins.
#[test]
fn without_filter_cookie_for_unused_pod_is_ignored() {
    let pods = three_pods();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let envoy = Envoy::start(&EnvoyOptions::default().istio_passthrough());
    let client = envoy.client();
    let cookie = envoy_cookie(b.addr(), None);

    // b is never an original destination here, so it never enters the cluster's host map.
    for (i, original) in [a, c, a, c].into_iter().enumerate() {
        let mut session = Session::with_cookie(COOKIE_NAME, &cookie);
        let response = session.get(&client, original.addr(), "/", &[]).unwrap();
        assert_served_by(&response, original, &format!("request {i}"));
        assert_eq!(
            response.cookies_at_pod(),
            vec![format!("{COOKIE_NAME}={cookie}")],
            "without the filter the cookie reaches the pod untouched"
        );
        assert_eq!(
            response.set_cookie_address(COOKIE_NAME),
            Some(original.addr()),
            "stateful_session re-pins the session to the pod that served"
        );
    }
    assert_eq!(b.requests(), 0, "pod b must not be reached");
}

/// (c) A client-sent routing header is removed, every copy of it, and counted; it never reaches
/// the pod and never routes (security.rs shows the cluster ignores it even without the filter).
#[test]
fn client_sent_routing_header_is_stripped() {
    let pods = three_pods();
    let a = &pods[0];
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&plugin_config(a.port())));
    let admin = envoy.admin_addr().to_string();
    let client = envoy.client();
    let once = client
        .get(
            a.addr(),
            "/server_info",
            &[("x-envoy-original-dst-host", &admin)],
        )
        .unwrap();
    // Every copy is removed, not just the first one.
    let twice = client
        .get(
            a.addr(),
            "/server_info",
            &[
                ("x-envoy-original-dst-host", &admin),
                ("X-Envoy-Original-Dst-Host", &admin),
            ],
        )
        .unwrap();
    for (what, response) in [("one header", &once), ("two headers", &twice)] {
        assert_served_by(response, a, what);
        assert!(
            !response.body.contains("\"version\""),
            "{what}: admin answered: {response:?}"
        );
        assert!(
            response.routing_headers_at_pod().is_empty(),
            "{what}: the pod saw the client's routing header: {response:?}"
        );
    }
    assert_eq!(a.requests(), 2);
    assert!(envoy.counter("kasi_affinity.header_stripped") >= 2);
}

/// (b) With the filter every request of a session lands on the session's pod, although the
/// activator picks the original destination round robin.
#[test]
fn with_filter_sessions_stick_to_their_pod() {
    const SESSIONS: usize = 24;
    const REQUESTS_PER_SESSION: usize = 10;
    let pods = three_pods();
    // With a TTL Envoy 1.40 writes `expires` from its monotonic clock (seconds since boot):
    // the filter must honour such cookies, not count them as long expired.
    let envoy = Envoy::start(&EnvoyOptions {
        cookie_ttl: Some("120s".to_string()),
        ..EnvoyOptions::with_filter(&plugin_config(pods[0].port()))
    });
    let client = envoy.client();
    let mut sessions = vec![Session::new(COOKIE_NAME); SESSIONS];
    let mut pinned: Vec<Option<String>> = vec![None; SESSIONS];
    let mut round_robin = 0;

    // Sessions interleave, as real users do, so every pod serves many sessions at once.
    for round in 0..REQUESTS_PER_SESSION {
        for (s, session) in sessions.iter_mut().enumerate() {
            let original = &pods[round_robin % pods.len()];
            round_robin += 1;
            let response = session.get(&client, original.addr(), "/", &[]).unwrap();
            assert_eq!(
                response.status, 200,
                "session {s} round {round}: {response:?}"
            );
            assert!(
                response.routing_headers_at_pod().is_empty(),
                "the filter steers through filter state, never by header: {response:?}"
            );
            let served = response.pod().expect("a pod answered").to_string();
            match &pinned[s] {
                None => {
                    assert_eq!(
                        served,
                        original.name(),
                        "a new session goes where it was sent"
                    );
                    assert_eq!(
                        response.set_cookie_address(COOKIE_NAME),
                        Some(original.addr()),
                        "session {s}: Envoy pins the new session to the pod that served"
                    );
                    assert!(
                        response
                            .header_values("set-cookie")
                            .iter()
                            .any(|c| c.contains("Max-Age=120")),
                        "the cookie carries the TTL: {response:?}"
                    );
                    pinned[s] = Some(served);
                }
                Some(pod) => assert_eq!(
                    &served,
                    pod,
                    "session {s} round {round}: sent to {}, cookie {:?}",
                    original.name(),
                    session.cookie()
                ),
            }
        }
    }

    let total = (SESSIONS * REQUESTS_PER_SESSION) as u64;
    let with_cookie = (SESSIONS * (REQUESTS_PER_SESSION - 1)) as u64;
    let served: usize = pods.iter().map(Pod::requests).sum();
    assert_eq!(served as u64, total);
    assert_eq!(envoy.counter("kasi_affinity.requests"), total);
    assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), with_cookie);
    assert_eq!(envoy.counter("kasi_affinity.sticky_hits"), with_cookie);
    assert_eq!(envoy.counter("kasi_affinity.rebinds"), 0);
    assert_eq!(envoy.counter("kasi_affinity.rejected_expired"), 0);
}

/// (d) Forged cookies are neither followed nor passed on; the session is re-pinned to the pod
/// that actually served.
#[test]
fn forged_cookies_are_rejected_and_removed() {
    let pods = three_pods();
    let port = pods[0].port();
    let outside_cidrs = Pod::start("trap-cidr", SocketAddr::new(loopback(100), port))
        .expect("bind the trap pod outside the allowed CIDRs");
    let outside_ports = Pod::start("trap-port", SocketAddr::new(loopback(2), 0))
        .expect("bind the trap pod on a port");
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&plugin_config(port)));
    let client = envoy.client();

    let truncated = STANDARD.encode([0x0a, 15, b'1', b'2', b'7']);
    let cases = [
        (
            "address outside the CIDRs",
            envoy_cookie(outside_cidrs.addr(), None),
            "rejected_disallowed",
        ),
        (
            "port outside allowed_ports",
            envoy_cookie(outside_ports.addr(), None),
            "rejected_disallowed",
        ),
        (
            "the admin address",
            envoy_cookie(envoy.admin_addr(), None),
            "rejected_disallowed",
        ),
        ("garbage", "%%%not-base64".to_string(), "rejected_malformed"),
        ("truncated protobuf", truncated, "rejected_malformed"),
        ("10 KB value", "A".repeat(10 * 1024), "rejected_malformed"),
    ];

    for (i, (what, value, counter)) in cases.iter().enumerate() {
        let original = &pods[i % pods.len()];
        let counter = format!("kasi_affinity.{counter}");
        let before = envoy.counter(&counter);
        let cookie = format!("{COOKIE_NAME}={value}; theme=dark");
        let response = client
            .get(original.addr(), "/", &[("Cookie", &cookie)])
            .unwrap();
        assert_served_by(&response, original, what);
        assert_eq!(
            response.cookies_at_pod(),
            vec!["theme=dark"],
            "{what}: only the forged cookie is removed"
        );
        assert_eq!(
            response.set_cookie_address(COOKIE_NAME),
            Some(original.addr()),
            "{what}: a fresh cookie for the pod that served; headers {:?}",
            response.headers
        );
        assert_eq!(envoy.counter(&counter), before + 1, "{what}: {counter}");
    }
    assert_eq!(
        outside_cidrs.requests(),
        0,
        "trap outside the CIDRs was reached"
    );
    assert_eq!(
        outside_ports.requests(),
        0,
        "trap on another port was reached"
    );
    assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), 0);
    assert_eq!(envoy.counter("kasi_affinity.rebinds"), cases.len() as u64);
}

/// (e) Expiry: a past Unix time is expired; Envoy's monotonic-clock `expires` (seconds since
/// boot) is "unknown" and honoured; pre-1.27 legacy cookies are honoured.
#[test]
fn expiry_and_cookie_formats() {
    let pods = three_pods();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&plugin_config(a.port())));
    let client = envoy.client();

    let expired = envoy_cookie(b.addr(), Some(now_unix_s() - 100));
    let response = Session::with_cookie(COOKIE_NAME, &expired)
        .get(&client, a.addr(), "/", &[])
        .unwrap();
    assert_served_by(&response, a, "expired cookie");
    assert!(
        response.cookies_at_pod().is_empty(),
        "the expired cookie reached the pod: {response:?}"
    );
    assert_eq!(response.set_cookie_address(COOKIE_NAME), Some(a.addr()));
    assert_eq!(envoy.counter("kasi_affinity.rejected_expired"), 1);
    assert_eq!(b.requests(), 0);

    let monotonic = envoy_cookie(b.addr(), Some(86_000));
    let response = Session::with_cookie(COOKIE_NAME, &monotonic)
        .get(&client, a.addr(), "/", &[])
        .unwrap();
    assert_served_by(&response, b, "cookie with a monotonic-clock expires");

    let legacy = encode_legacy(c.addr());
    let response = Session::with_cookie(COOKIE_NAME, &legacy)
        .get(&client, a.addr(), "/", &[])
        .unwrap();
    assert_served_by(&response, c, "legacy cookie");

    assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), 2);
    assert_eq!(envoy.counter("kasi_affinity.rejected_expired"), 1);
}

/// (f) A pinned pod dies: at most one failed request, then the session is re-pinned to a live
/// pod and stays there. Every request is a new connection, so the kernel spreads them over
/// Envoy's two workers: other sessions pinned to the dead pod must not fail again on the other
/// worker, which shows the dead-host memory is shared between the workers' VMs.
#[test]
fn dead_pod_fails_over_after_at_most_one_error() {
    let mut pods = three_pods();
    let mut b = pods.remove(1);
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&plugin_config(b.port())));
    let client = envoy.client();
    let b_addr = b.addr();
    let b_cookie = envoy_cookie(b_addr, None);
    let mut session = Session::with_cookie(COOKIE_NAME, &b_cookie);
    let live = [&pods[0], &pods[1]];

    for i in 0..6 {
        let response = session.get(&client, live[i % 2].addr(), "/", &[]).unwrap();
        assert_served_by(&response, &b, "before b dies");
    }
    b.stop();

    let mut failures = Vec::new();
    let mut rebound = None;
    for i in 0..10 {
        match session.get(&client, live[i % 2].addr(), "/", &[]) {
            Ok(response) if response.status == 200 => {
                rebound = Some(response);
                break;
            }
            Ok(response) => {
                // The failed response drops the cookie, so the client's next request (which may
                // reach another activator replica) starts a new session instead of failing too.
                let expires_cookie = response
                    .header_values("set-cookie")
                    .iter()
                    .any(|h| h.starts_with(&format!("{COOKIE_NAME}=;")) && h.contains("Max-Age=0"));
                assert!(
                    expires_cookie,
                    "the failed response expires the cookie: {response:?}"
                );
                assert_eq!(session.cookie(), None, "the jar dropped the dead cookie");
                failures.push(format!("{response:?}"))
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.len() <= 1, "more than one failure: {failures:#?}");
    for failure in &failures {
        assert!(failure.contains("status: 5"), "failures are 5xx: {failure}");
    }
    let rebound = rebound.expect("a live pod answered within 10 requests");
    let new_pod = rebound.pod().expect("a pod answered").to_string();
    let new_pod = *live
        .iter()
        .find(|p| p.name() == new_pod)
        .unwrap_or_else(|| panic!("served by a pod that is not live: {rebound:?}"));
    assert_eq!(
        rebound.set_cookie_address(COOKIE_NAME),
        Some(new_pod.addr()),
        "the rebinding response pins the session to the live pod that served: {rebound:?}"
    );

    for i in 0..24 {
        let response = session.get(&client, live[i % 2].addr(), "/", &[]).unwrap();
        assert_served_by(
            &response,
            new_pod,
            &format!("after the rebind, request {i}"),
        );
    }

    // Other sessions still pinned to b, one new connection each, until both workers have
    // turned one away: none may fail, i.e. the worker that did not see the failure knows too.
    let threads_that_knew_b_dead = || {
        let mut threads: Vec<String> = decision_lines(&envoy.log())
            .into_iter()
            .filter(|(_, line)| line["address"] == b_addr.to_string())
            .filter(|(_, line)| line["decision"] == "dead" || line["reason"] == "dead")
            .map(|(thread, _)| thread)
            .collect();
        threads.sort();
        threads.dedup();
        threads
    };
    for i in 0..40 {
        if threads_that_knew_b_dead().len() >= 2 {
            break;
        }
        let original = live[i % 2];
        let response = Session::with_cookie(COOKIE_NAME, &b_cookie)
            .get(&client, original.addr(), "/", &[])
            .unwrap();
        assert_served_by(
            &response,
            original,
            &format!("other session {i} pinned to b"),
        );
    }
    assert_eq!(
        threads_that_knew_b_dead().len(),
        2,
        "both workers must have turned b away; decision lines: {:#?}",
        decision_lines(&envoy.log())
    );
    assert!(envoy.counter("kasi_affinity.rejected_dead") >= 1);
    assert!(envoy.counter("kasi_affinity.rebinds") >= 1);

    let lines = decision_lines(&envoy.log());
    let complete = |line: &serde_json::Value| {
        ["decision", "address", "authority", "reason"]
            .iter()
            .all(|key| line.get(key).is_some())
    };
    assert!(
        lines.iter().any(|(_, line)| complete(line)
            && line["reason"] == "dead"
            && line["address"] == b_addr.to_string()
            && line["authority"] == kasi_e2e::AUTHORITY),
        "no complete decision line rejecting {b_addr} as dead in: {lines:#?}"
    );
}

/// (h) `log_decisions`: "off" writes no decision line; "changes" logs new pins and rejects but
/// not the requests a cookie routed unchanged; "all" logs those too. (A refused pluginConfig is
/// `security.rs`'s `a_refused_plugin_config_never_opens_the_relay`.)
#[test]
fn log_decisions_chooses_which_lines_are_written() {
    let pods = three_pods();
    let (a, b) = (&pods[0], &pods[1]);
    let forged = envoy_cookie("127.0.0.100:1".parse().unwrap(), None);
    for (mode, expected) in [
        ("off", &[][..]),
        ("changes", &["pin", "rejected", "rebind"][..]),
        ("all", &["pin", "routed", "rejected", "rebind"][..]),
    ] {
        let config = serde_json::json!({
            "allowed_cidrs": ["127.0.0.0/29"],
            "allowed_ports": [a.port()],
            "log_decisions": mode,
        })
        .to_string();
        let envoy = Envoy::start(&EnvoyOptions::with_filter(&config));
        let client = envoy.client();
        let mut session = Session::new(COOKIE_NAME);
        for original in [a, b, a] {
            let response = session.get(&client, original.addr(), "/", &[]).unwrap();
            assert_served_by(&response, a, &format!("{mode}: pinned session"));
        }
        let response = Session::with_cookie(COOKIE_NAME, &forged)
            .get(&client, b.addr(), "/", &[])
            .unwrap();
        assert_served_by(&response, b, &format!("{mode}: forged cookie"));

        let mut decisions: Vec<String> = decision_lines(&envoy.log())
            .into_iter()
            .map(|(_, json)| json["decision"].as_str().unwrap_or_default().to_string())
            .collect();
        decisions.sort();
        decisions.dedup();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(decisions, expected, "log_decisions {mode:?}");
        assert_eq!(
            envoy.counter("kasi_affinity.sticky_hits"),
            2,
            "{mode}: counters do not depend on logging"
        );
    }
}

/// (i) The activator sent a new session to a pod that just died (its endpoints not updated yet):
/// the 503 must not pin the session to the dead pod, as `stateful_session` alone would.
#[test]
fn a_failed_new_session_is_not_pinned_to_the_dead_pod() {
    let mut pods = three_pods();
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&plugin_config(pods[0].port())));
    let client = envoy.client();
    let dead = pods[1].addr();
    pods[1].stop();
    let response = Session::new(COOKIE_NAME)
        .get(&client, dead, "/", &[])
        .unwrap();
    assert_eq!(response.status, 503, "{response:?}");
    let ours = response.set_cookie_headers(COOKIE_NAME);
    assert_eq!(
        ours,
        vec![format!("{COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly").as_str()],
        "{response:?}"
    );
    // The dead address is quarantined: a cookie naming it is now turned away, not routed.
    let mut stale = Session::with_cookie(COOKIE_NAME, &envoy_cookie(dead, None));
    let response = stale.get(&client, pods[0].addr(), "/", &[]).unwrap();
    assert_served_by(&response, &pods[0], "a cookie for the quarantined pod");
    assert_eq!(envoy.counter("kasi_affinity.rejected_dead"), 1);
}

/// (j) Decision lines written in the response phase for a request without a cookie (a new
/// session's pin; the pod the activator picked refusing the connection) name the request's
/// authority, although the response phase, a local reply's above all, cannot read the request.
#[test]
fn response_phase_decision_lines_name_the_authority() {
    let mut pods = three_pods();
    let config = serde_json::json!({
        "allowed_cidrs": ["127.0.0.0/29"],
        "allowed_ports": [pods[0].port()],
        "log_decisions": "changes",
    })
    .to_string();
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&config));
    let client = envoy.client();
    let response = Session::new(COOKIE_NAME)
        .get(&client, pods[0].addr(), "/", &[])
        .unwrap();
    assert_served_by(&response, &pods[0], "a new session");
    let dead = pods[1].addr();
    pods[1].stop();
    let response = Session::new(COOKIE_NAME)
        .get(&client, dead, "/", &[])
        .unwrap();
    assert_eq!(response.status, 503, "{response:?}");

    let lines = decision_lines(&envoy.log());
    for (decision, address) in [("pin", pods[0].addr()), ("dead", dead)] {
        let line = lines
            .iter()
            .map(|(_, line)| line)
            .find(|line| line["decision"] == decision)
            .unwrap_or_else(|| panic!("no {decision} line in {lines:#?}"));
        assert_eq!(line["address"], address.to_string(), "{line}");
        assert_eq!(line["authority"], kasi_e2e::AUTHORITY, "{line}");
    }
}
