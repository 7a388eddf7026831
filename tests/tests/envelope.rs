//! End to end: sessions without cookies (issue 14). MCP clients carry their session in
//! `Mcp-Session-Id`, which Envoy's `envoy.http.stateful_session.envelope` wraps on responses
//! (`base64("ip:port") + ";UV:" + base64(server's id)`) and unwraps on requests; Envoy's header
//! mode carries `base64("ip:port")` in a header of its own. Real Envoy (run once with 1.40 and
//! once with 1.36: `KASI_ENVOY`), the compiled filter, pods on loopback that are stateful MCP
//! servers under `/mcp`; every test asserts where bytes went (`x-kasi-pod`, each pod's request
//! count, what each pod saw), not only what the filter says it did.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kasi_e2e::{
    assert_served_by, decision_lines, envoy_cookie, loopback, Envoy, EnvoyOptions, McpSession, Pod,
    Response, Session, AUTHORITY, COOKIE_NAME, MCP_HEADER, SESSION_HEADER,
};
use kasi_filter::envelope::{
    decode_envelope, decode_header_value, encode_envelope, encode_header_value,
    envoy_envelope_transcription, envoy_header_transcription, session_hash, HeaderError,
};
use kasi_filter::signing::{self, SessionKeys, COOKIE_SEPARATOR, ENVELOPE_SEPARATOR};
use std::net::SocketAddr;
use std::time::Duration;

const KEY: [u8; 32] = [0x42; 32];
const OTHER_KEY: [u8; 32] = [0x24; 32];

/// Pods a, b, c on 127.0.0.2–4, one shared port: inside the tests' `127.0.0.0/29`.
fn three_pods() -> Vec<Pod> {
    Pod::start_group(&[("a", loopback(2)), ("b", loopback(3)), ("c", loopback(4))])
}

/// pluginConfig that allows `127.0.0.0/29` on `port`, logs every decision, and reads the header
/// mode's `x-kasi-session`; `signed`: with a session key.
fn plugin_config(port: u16, signed: bool) -> serde_json::Value {
    let mut config = serde_json::json!({
        "allowed_cidrs": ["127.0.0.0/29"],
        "allowed_ports": [port],
        "log_decisions": "all",
        "session_header": SESSION_HEADER,
    });
    if signed {
        config["session_keys"] = serde_json::json!([signing::key_text(&KEY)]);
    }
    config
}

/// The sidecar with the filter, the cookie `stateful_session` and the envelope one for MCP.
fn mcp_sidecar(config: &serde_json::Value) -> EnvoyOptions {
    EnvoyOptions::with_filter(&config.to_string()).with_envelope(MCP_HEADER)
}

/// Puts `address` into PassthroughCluster's host map (see security.rs): one request whose
/// original destination it is, then a moment for the main thread to post the map.
fn into_host_map(envoy: &Envoy, address: SocketAddr) {
    let _ = envoy.client().get(address, "/warm", &[]);
    std::thread::sleep(Duration::from_millis(300));
}

fn mcp_headers(values: &[String]) -> Vec<(&str, &str)> {
    values
        .iter()
        .map(|v| ("Mcp-Session-Id", v.as_str()))
        .collect()
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// Issue 14: Envoy's envelope, read by real Envoy (1.36 or 1.40) without kasi, on Istio's
/// PassthroughCluster (which follows `stateful_session`'s host when it is in the host map),
/// exactly as the port in `kasi_filter::envelope` and the transcription of Envoy's C++ predict:
/// whether the target pod is reached, and what the pod is handed in place of the envelope.
#[test]
fn real_envoy_reads_envelopes_as_the_port_does() {
    let pods = Pod::start_group(&[("a", loopback(2)), ("t", loopback(3)), ("b", loopback(4))]);
    let (a, t, b) = (&pods[0], &pods[1], &pods[2]);
    let envoy = Envoy::start(
        &EnvoyOptions::default()
            .istio_passthrough()
            .without_cookie_sessions()
            .with_envelope(MCP_HEADER),
    );
    let target = b64(&t.addr().to_string());
    let other = b64(&b.addr().to_string());
    let sid = b64("sid-1");
    let mac = "K:AAAAAAAAAAAAAAAAAAAAAA";
    let mapped = b64(&format!("[::ffff:127.0.0.3]:{}", t.port()));
    let spaced = b64(&format!("{} ", t.addr()));
    // Same bytes as `target` but with non-zero bits after the last byte.
    let loose_bits = {
        let mut s = target.trim_end_matches('=').to_string();
        let pad = target.len() - s.len();
        let last = s.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let i = alphabet.find(last).unwrap();
        s.push(alphabet.as_bytes()[i + 1] as char);
        s + &"=".repeat(pad)
    };
    let url_safe_uv = STANDARD
        .encode([0xfb, 0xff])
        .replace('+', "-")
        .replace('/', "_");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("Envoy's own", vec![format!("{target};UV:{sid}")]),
        ("empty pieces", vec![format!(";;{target};;UV:{sid};")]),
        (
            "a K: piece (signed)",
            vec![format!("{target};UV:{sid};{mac}")],
        ),
        ("K: before UV:", vec![format!("{target};{mac};UV:{sid}")]),
        (
            "two UV: pieces",
            vec![format!("{target};UV:{sid};UV:{}", b64("x"))],
        ),
        (
            "an invalid UV: first",
            vec![format!("{target};UV:%%%%;UV:{sid}")],
        ),
        ("no UV:", vec![target.clone()]),
        ("empty UV:", vec![format!("{target};UV:")]),
        ("a space before UV:", vec![format!("{target}; UV:{sid}")]),
        ("UV: first", vec![format!("UV:{sid};{target}")]),
        (
            "unpadded UV:",
            vec![format!("{target};UV:{}", sid.trim_end_matches('='))],
        ),
        ("URL-safe UV:", vec![format!("{target};UV:{url_safe_uv}")]),
        ("a space inside UV:", vec![format!("{target};UV:c2 kLTE=")]),
        (
            "a stray = inside UV:",
            vec![format!("{target};UV:c2=kLTE=")],
        ),
        (
            "unpadded address",
            vec![format!("{};UV:{sid}", target.trim_end_matches('='))],
        ),
        (
            "address with loose bits",
            vec![format!("{loose_bits};UV:{sid}")],
        ),
        (
            "address with a trailing space",
            vec![format!("{spaced};UV:{sid}")],
        ),
        ("IPv4-mapped address", vec![format!("{mapped};UV:{sid}")]),
        ("only separators", vec![";;".to_string()]),
        (
            "two copies, the target first",
            vec![
                format!("{target};UV:{sid}"),
                format!("{other};UV:{}", b64("x")),
            ],
        ),
        (
            "two copies, the target second",
            vec![
                format!("{other};UV:{}", b64("x")),
                format!("{target};UV:{sid}"),
            ],
        ),
        (
            "two copies, the first without UV:",
            vec![target.clone(), format!("{target};UV:{sid}")],
        ),
    ];
    for (what, values) in &cases {
        into_host_map(&envoy, t.addr());
        let before_t = t.requests();
        let response = envoy
            .client()
            .get(a.addr(), "/", &mcp_headers(values))
            .unwrap();
        let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let oracle = envoy_envelope_transcription(&slices);
        // The port: honoured (an address) → that host; not honoured → the original destination.
        let port = decode_envelope(slices[0]);
        let expected_pod = match &port {
            Ok(e) if e.address == t.addr() => t,
            _ => a,
        };
        assert_served_by(&response, expected_pod, &format!("{what} {values:?}"));
        assert_eq!(
            t.requests(),
            before_t + usize::from(expected_pod.name() == "t"),
            "{what}"
        );
        // What the pod is handed: the restored original value, or the header untouched.
        let expected_at_pod: Vec<String> = match (&port, &oracle.replaced_by) {
            (Ok(e), Some(restored)) => {
                assert_eq!(&e.original(), restored, "{what}: port and transcription");
                vec![String::from_utf8(restored.clone()).unwrap()]
            }
            (Err(HeaderError::Empty | HeaderError::NoOriginalValue), None) => values.clone(),
            (Err(HeaderError::NotBase64 | HeaderError::Address(_)), Some(restored)) => {
                vec![String::from_utf8(restored.clone()).unwrap()]
            }
            (port, oracle) => panic!("{what}: port {port:?} but transcription {oracle:?}"),
        };
        assert_eq!(
            response.mcp_sessions_at_pod(),
            expected_at_pod,
            "{what}: what Envoy handed the pod"
        );
    }

    // The response side: the server's one `mcp-session-id` comes back wrapped exactly as
    // `encode_envelope` writes it, for the pod that served.
    let response = McpSession::new()
        .get(&envoy.client(), a.addr(), &[])
        .unwrap();
    assert_served_by(&response, a, "initialize");
    let issued = a.mcp_sessions();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(
        response.mcp_session_id(),
        Some(encode_envelope(&a.addr().to_string(), issued[0].as_bytes()).as_str()),
        "{response:?}"
    );
}

/// Issue 14: header mode, read by real Envoy without kasi, as the port predicts: the first copy,
/// Envoy base64 of an address Envoy finds in the host map, and the header is passed on as sent.
#[test]
fn real_envoy_reads_header_mode_as_the_port_does() {
    let pods = Pod::start_group(&[("a", loopback(2)), ("t", loopback(3)), ("b", loopback(4))]);
    let (a, t, b) = (&pods[0], &pods[1], &pods[2]);
    let envoy = Envoy::start(
        &EnvoyOptions::default()
            .istio_passthrough()
            .without_cookie_sessions()
            .with_session_header(SESSION_HEADER),
    );
    let target = b64(&t.addr().to_string());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("Envoy's own", vec![target.clone()]),
        (
            "signed with '.'",
            vec![format!("{target}.AAAAAAAAAAAAAAAAAAAAAA")],
        ),
        ("unpadded", vec![target.trim_end_matches('=').to_string()]),
        (
            "a space inside",
            vec![format!("{} {}", &target[..4], &target[5..])],
        ),
        (
            "two copies, the target first",
            vec![target.clone(), b64(&b.addr().to_string())],
        ),
        (
            "two copies, the target second",
            vec![b64(&b.addr().to_string()), target.clone()],
        ),
        (
            "an envelope",
            vec![encode_envelope(&t.addr().to_string(), b"x")],
        ),
    ];
    for (what, values) in &cases {
        into_host_map(&envoy, t.addr());
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| (SESSION_HEADER, v.as_str()))
            .collect();
        let response = envoy.client().get(a.addr(), "/", &headers).unwrap();
        let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let port = decode_header_value(slices[0]);
        let oracle = envoy_header_transcription(&slices);
        assert_eq!(
            port.is_ok(),
            oracle.is_some_and(|h| kasi_filter::codec::parse_address(&h).is_ok()),
            "{what}: port and transcription"
        );
        let expected_pod = if port == Ok(t.addr()) { t } else { a };
        assert_served_by(&response, expected_pod, &format!("{what} {values:?}"));
        assert_eq!(
            response.session_headers_at_pod(),
            values.iter().map(String::as_str).collect::<Vec<_>>(),
            "{what}: header mode passes the header on untouched"
        );
    }
}

/// The plain envelope and the MAC of a signed one (`<envelope>;K:<MAC>`).
fn split_signed(value: &str) -> (&str, Option<&str>) {
    let (plain, mac) = signing::split(value.as_bytes(), ENVELOPE_SEPARATOR);
    (
        std::str::from_utf8(plain).unwrap(),
        mac.map(|m| std::str::from_utf8(m).unwrap()),
    )
}

/// `value` signed for `authority` with `key`, as kasi signs an envelope.
fn signed_envelope(key: &[u8; 32], value: &str, authority: &str) -> String {
    let signed = SessionKeys::new([key])
        .sign(value.as_bytes(), authority.as_bytes(), ENVELOPE_SEPARATOR)
        .unwrap();
    String::from_utf8(signed).unwrap()
}

/// kasi's own 404: MCP's "Session not found", JSON, answered before any pod.
#[track_caller]
fn assert_kasi_not_found(response: &Response, what: &str) {
    assert!(
        response.is_mcp_not_found() && response.pod().is_none(),
        "{what}: expected kasi's 404 JSON-RPC \"Session not found\", got {response:?}"
    );
    assert_eq!(
        response.header_values("content-type"),
        vec!["application/json"],
        "{what}: {response:?}"
    );
}

fn envelope_lines(envoy: &Envoy, decision: &str) -> Vec<serde_json::Value> {
    decision_lines(&envoy.log())
        .into_iter()
        .map(|(_, line)| line)
        .filter(|line| line["decision"] == decision && line["carrier"] == "envelope")
        .collect()
}

/// Issue 14: an MCP session sticks to the pod that initialized it. The activator picks pods
/// round robin; Envoy wraps the server's id, kasi signs the envelope (or not, without keys), and
/// every later request of the session reaches that pod, which is handed exactly its own id.
#[test]
fn mcp_sessions_stick_to_the_pod_that_initialized_them() {
    const SESSIONS: usize = 9;
    const ROUNDS: usize = 6;
    let pods = three_pods();
    let keys = SessionKeys::new([&KEY]);
    for signed in [true, false] {
        let envoy = Envoy::start(&mcp_sidecar(&plugin_config(pods[0].port(), signed)));
        let client = envoy.client();
        let mut sessions = vec![McpSession::new(); SESSIONS];
        let mut pinned: Vec<Option<(String, String)>> = vec![None; SESSIONS];
        let mut round_robin = 0;
        for round in 0..ROUNDS {
            for (s, session) in sessions.iter_mut().enumerate() {
                let original = &pods[round_robin % pods.len()];
                round_robin += 1;
                let what = format!("signed {signed}, session {s}, round {round}");
                let response = session.get(&client, original.addr(), &[]).unwrap();
                assert_eq!(response.status, 200, "{what}: {response:?}");
                let served = response.pod().expect("a pod answered").to_string();
                let envelope = response
                    .mcp_session_id()
                    .unwrap_or_else(|| panic!("{what}: no mcp-session-id: {response:?}"));
                let (plain, mac) = split_signed(envelope);
                if signed {
                    let mac = mac.unwrap_or_else(|| panic!("{what}: unsigned {envelope}"));
                    assert_eq!(
                        mac.as_bytes(),
                        keys.mac(plain.as_bytes(), AUTHORITY.as_bytes()).unwrap(),
                        "{what}: the MAC is the contract's, over the envelope and the Host"
                    );
                } else {
                    assert_eq!(mac, None, "{what}: {envelope}");
                }
                let decoded = decode_envelope(plain.as_bytes()).unwrap();
                match &pinned[s] {
                    None => {
                        assert_eq!(served, original.name(), "{what}: a new session");
                        assert!(response.mcp_sessions_at_pod().is_empty(), "{what}");
                        assert_eq!(decoded.address, original.addr(), "{what}: {envelope}");
                        let id = String::from_utf8(decoded.original()).unwrap();
                        assert!(original.mcp_sessions().contains(&id), "{what}: {id}");
                        pinned[s] = Some((served, id));
                    }
                    Some((pod, id)) => {
                        assert_eq!(&served, pod, "{what}: sent to {}", original.name());
                        // The session is in its header: no session cookie rides along. The
                        // sidecar skips the cookie `stateful_session` for a request that carries
                        // `mcp-session-id` (the bundle's matcher), signed or not.
                        assert!(
                            !response
                                .header_values("set-cookie")
                                .iter()
                                .any(|c| c.starts_with(COOKIE_NAME)),
                            "{what}: {response:?}"
                        );
                        assert_eq!(
                            response.mcp_sessions_at_pod(),
                            vec![id.as_str()],
                            "{what}: the pod is handed exactly its own id"
                        );
                        assert_eq!(String::from_utf8(decoded.original()).unwrap(), *id);
                    }
                }
            }
        }
        let total = (SESSIONS * ROUNDS) as u64;
        let with_session = (SESSIONS * (ROUNDS - 1)) as u64;
        assert_eq!(envoy.counter("kasi_affinity.requests"), total);
        assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), with_session);
        assert_eq!(envoy.counter("kasi_affinity.sticky_hits"), with_session);
        for counter in [
            "mcp_not_found",
            "rejected_malformed",
            "rejected_dead",
            "rebinds",
        ] {
            assert_eq!(
                envoy.counter(&format!("kasi_affinity.{counter}")),
                0,
                "{counter}"
            );
        }
        let pins = envelope_lines(&envoy, "pin");
        assert_eq!(pins.len(), SESSIONS, "signed {signed}: {pins:#?}");
        assert!(pins
            .iter()
            .all(|l| l["authority"] == AUTHORITY && l["reason"] == "new_session"));
        assert_eq!(
            envelope_lines(&envoy, "routed").len() as u64,
            with_session,
            "signed {signed}"
        );
        // Lines name a session by the hash of its server id (as `kasi decode` shows it), never
        // by the id, which would let a log reader act in the session.
        let hashes: Vec<String> = pinned
            .iter()
            .map(|p| session_hash(p.as_ref().unwrap().1.as_bytes()))
            .collect();
        let mut logged: Vec<String> = pins
            .iter()
            .map(|l| l["session"].as_str().unwrap_or_default().to_owned())
            .collect();
        logged.sort();
        let mut expected = hashes.clone();
        expected.sort();
        assert_eq!(logged, expected, "signed {signed}: {pins:#?}");
        assert!(envelope_lines(&envoy, "routed")
            .iter()
            .all(|l| hashes.iter().any(|h| l["session"] == h.as_str())));
        let log = envoy.log();
        for (_, id) in pinned.iter().flatten() {
            assert!(
                !log.contains(id.as_str()),
                "the raw session id {id} is in the log"
            );
        }
    }
}

/// In a chain where the cookie `stateful_session` also runs for MCP requests (one kasi did not
/// build: an older bundle, istiod's own persistent-session filter), Envoy issues a session cookie
/// on every MCP response; signed kasi takes it out (an MCP client keeps no jar, and signing it
/// would cost an HMAC per request) and the session still sticks.
#[test]
fn a_cookie_issued_on_an_mcp_response_is_taken_out() {
    const ROUNDS: usize = 4;
    let pods = three_pods();
    let options = EnvoyOptions {
        skip_cookie_session_for_headers: false,
        ..mcp_sidecar(&plugin_config(pods[0].port(), true))
    };
    let envoy = Envoy::start(&options);
    let client = envoy.client();
    let mut session = McpSession::new();
    let mut pinned = None;
    for round in 0..ROUNDS {
        let original = &pods[round % pods.len()];
        let response = session.get(&client, original.addr(), &[]).unwrap();
        assert_eq!(response.status, 200, "round {round}: {response:?}");
        let served = response.pod().expect("a pod answered").to_string();
        let pinned = pinned.get_or_insert_with(|| served.clone());
        assert_eq!(&served, pinned, "round {round}");
        if round > 0 {
            assert!(
                !response
                    .header_values("set-cookie")
                    .iter()
                    .any(|c| c.starts_with(COOKIE_NAME)),
                "round {round}: {response:?}"
            );
        }
    }
    let routed = (ROUNDS - 1) as u64;
    assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), routed);
    assert_eq!(envoy.counter("kasi_affinity.sticky_hits"), routed);
}

/// Issue 14: the pinned pod dies. The request that finds it dead is answered with MCP's 404
/// JSON-RPC "Session not found" in place of Envoy's 503 — the session's one failed request —,
/// after which the client starts a new session that pins a live pod and sticks. Other sessions
/// pinned to the dead pod get the 404 at once on either worker (the dead-host list is shared):
/// never a 5xx.
#[test]
fn a_dead_pod_costs_an_mcp_session_one_404_then_it_pins_elsewhere() {
    let mut pods = three_pods();
    let mut b = pods.remove(1);
    let live = [&pods[0], &pods[1]];
    let envoy = Envoy::start(&mcp_sidecar(&plugin_config(b.port(), true)));
    let client = envoy.client();
    let b_addr = b.addr();
    let mut session = McpSession::new();
    assert_served_by(
        &session.get(&client, b_addr, &[]).unwrap(),
        &b,
        "initialize on b",
    );
    let b_envelope = session.id().unwrap().to_string();
    for i in 0..4 {
        let response = session.get(&client, live[i % 2].addr(), &[]).unwrap();
        assert_served_by(&response, &b, "before b dies");
    }
    b.stop();

    let mut failed = Vec::new();
    let mut not_found = 0;
    let mut new_pod = None;
    for i in 0..8 {
        let response = session.get(&client, live[i % 2].addr(), &[]).unwrap();
        match response.status {
            200 => {
                new_pod = Some(response);
                break;
            }
            404 => {
                assert_kasi_not_found(&response, "the dead session");
                assert_eq!(session.id(), None, "the client dropped the session");
                not_found += 1;
            }
            _ => {
                assert!(response.status >= 500, "{response:?}");
                assert_eq!(not_found, 0, "a failure after the 404: {response:?}");
                failed.push(response);
            }
        }
    }
    assert!(failed.is_empty(), "a 5xx instead of MCP's 404: {failed:#?}");
    assert_eq!(not_found, 1, "exactly one 404");
    let new_pod = new_pod.expect("the client's new session was served");
    let served = live
        .iter()
        .find(|p| Some(p.name()) == new_pod.pod())
        .unwrap_or_else(|| panic!("served by a pod that is not live: {new_pod:?}"));
    assert_eq!(session.pinned_address(), Some(served.addr()), "{new_pod:?}");
    for i in 0..10 {
        let response = session.get(&client, live[i % 2].addr(), &[]).unwrap();
        assert_served_by(&response, served, &format!("after the rebind, request {i}"));
    }

    // Other sessions pinned to b, one new connection each, until both workers have answered one
    // with the 404: none fails with a 5xx.
    let threads_that_knew = || {
        let mut threads: Vec<String> = decision_lines(&envoy.log())
            .into_iter()
            .filter(|(_, l)| l["address"] == b_addr.to_string() && l["reason"] == "dead")
            .map(|(thread, _)| thread)
            .collect();
        threads.sort();
        threads.dedup();
        threads
    };
    for i in 0..40 {
        if threads_that_knew().len() >= 2 {
            break;
        }
        let response = McpSession::with_id(&b_envelope)
            .get(&client, live[i % 2].addr(), &[])
            .unwrap();
        assert_kasi_not_found(&response, &format!("other session {i} pinned to b"));
    }
    assert_eq!(
        threads_that_knew().len(),
        2,
        "{:#?}",
        decision_lines(&envoy.log())
    );
    let line = envelope_lines(&envoy, "rejected")
        .into_iter()
        .find(|l| l["reason"] == "dead")
        .expect("a decision line rejecting the dead envelope");
    assert_eq!(line["address"], b_addr.to_string(), "{line}");
    assert_eq!(line["authority"], AUTHORITY, "{line}");
    assert_eq!(line["answer"], 404, "{line}");
    assert!(envoy.counter("kasi_affinity.mcp_not_found") >= 2);
    // The first 404 answered the failed connection (the request was counted routed); every
    // later one a dead envelope.
    assert_eq!(
        envoy.counter("kasi_affinity.mcp_not_found"),
        envoy.counter("kasi_affinity.rejected_dead") + 1,
        "every dead envelope was answered 404"
    );
}

/// Issue 14, security first: forged envelopes never reach any pod, let alone one outside the
/// allowed CIDRs or ports, on the bundle's PassthroughCluster and on Istio's (which follows
/// `stateful_session` to any address in its host map, where the traps are put before each
/// attempt). kasi answers every one with MCP's 404; no pod sees a byte of it. Controls without
/// the filter show the attack is real.
#[test]
fn forged_envelopes_are_answered_404_and_reach_no_pod() {
    let pods = three_pods();
    let (a, b) = (&pods[0], &pods[1]);
    let port = a.port();
    let outside = Pod::start("trap-cidr", SocketAddr::new(loopback(100), port)).unwrap();
    let other_port = Pod::start("trap-port", SocketAddr::new(loopback(2), 0)).unwrap();
    let sid = b64("sid-1");
    let envelope_for = |address: SocketAddr| format!("{};UV:{sid}", b64(&address.to_string()));

    // Control: Istio's cluster without kasi follows an envelope to the trap in its host map.
    {
        let envoy = Envoy::start(
            &EnvoyOptions::default()
                .istio_passthrough()
                .with_envelope(MCP_HEADER),
        );
        into_host_map(&envoy, outside.addr());
        let response = envoy
            .client()
            .get(a.addr(), "/", &mcp_headers(&[envelope_for(outside.addr())]))
            .unwrap();
        assert_served_by(&response, &outside, "control without the filter");
    }

    let config = plugin_config(port, true);
    let with_filter = mcp_sidecar(&config);
    for (cluster, options) in [
        ("kasi's bundle's PassthroughCluster", with_filter.clone()),
        (
            "Istio's PassthroughCluster",
            with_filter.istio_passthrough(),
        ),
    ] {
        let envoy = Envoy::start(&options);
        // Signed with kasi's own key: the address policy holds even for a value kasi signed.
        let sign = |value: &str| signed_envelope(&KEY, value, AUTHORITY);
        let valid_b = sign(&envelope_for(b.addr()));
        let altered = valid_b.replacen(&sid, &b64("sid-2"), 1);
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            (
                "outside the CIDRs",
                vec![sign(&envelope_for(outside.addr()))],
                "disallowed",
            ),
            (
                "outside the ports",
                vec![sign(&envelope_for(other_port.addr()))],
                "disallowed",
            ),
            (
                "the admin address",
                vec![sign(&envelope_for(envoy.admin_addr()))],
                "disallowed",
            ),
            (
                "malformed base64",
                // One character short: no longer a multiple of 4.
                vec![sign(&format!(
                    "{};UV:{sid}",
                    &b64(&b.addr().to_string())[1..]
                ))],
                "malformed",
            ),
            (
                "no UV: part",
                vec![sign(&b64(&b.addr().to_string()))],
                "malformed",
            ),
            // Unsigned, whatever else they are.
            ("empty", vec![String::new()], "bad_signature"),
            ("10 KB", vec!["A".repeat(10 * 1024)], "bad_signature"),
            (
                "two values, the first outside",
                vec![sign(&envelope_for(outside.addr())), valid_b.clone()],
                "disallowed",
            ),
            (
                "two values, the first garbage",
                vec!["%%%;UV:%%%".to_string(), valid_b.clone()],
                "bad_signature",
            ),
            ("unsigned", vec![envelope_for(b.addr())], "bad_signature"),
            (
                "another key's MAC",
                vec![signed_envelope(
                    &OTHER_KEY,
                    &envelope_for(b.addr()),
                    AUTHORITY,
                )],
                "bad_signature",
            ),
            (
                "signed for another host",
                vec![signed_envelope(
                    &KEY,
                    &envelope_for(b.addr()),
                    "other.example.com",
                )],
                "bad_signature",
            ),
            ("the original value altered", vec![altered], "bad_signature"),
            (
                "signed, outside, as a cookie MAC",
                vec![String::from_utf8(
                    SessionKeys::new([&KEY])
                        .sign(
                            envelope_for(outside.addr()).as_bytes(),
                            AUTHORITY.as_bytes(),
                            COOKIE_SEPARATOR,
                        )
                        .unwrap(),
                )
                .unwrap()],
                "bad_signature",
            ),
        ];
        for (what, values, reason) in &cases {
            into_host_map(&envoy, outside.addr());
            into_host_map(&envoy, other_port.addr());
            let counts = |pods: &[&Pod]| pods.iter().map(|p| p.requests()).collect::<Vec<_>>();
            let all = [&pods[0], &pods[1], &pods[2], &outside, &other_port];
            let before = counts(&all);
            let counter = if *reason == "bad_signature" {
                "kasi_affinity.rejected_malformed".to_string()
            } else {
                format!("kasi_affinity.rejected_{reason}")
            };
            let (rejected, not_found) = (
                envoy.counter(&counter),
                envoy.counter("kasi_affinity.mcp_not_found"),
            );
            let lines = envelope_lines(&envoy, "rejected").len();
            let response = envoy
                .client()
                .get(a.addr(), "/mcp", &mcp_headers(values))
                .unwrap();
            assert_kasi_not_found(&response, &format!("{cluster}, {what}"));
            assert_eq!(counts(&all), before, "{cluster}, {what}: a pod was reached");
            assert_eq!(
                envoy.counter(&counter),
                rejected + 1,
                "{cluster}, {what}: {counter}"
            );
            assert_eq!(
                envoy.counter("kasi_affinity.mcp_not_found"),
                not_found + 1,
                "{cluster}, {what}"
            );
            let new_lines = envelope_lines(&envoy, "rejected");
            assert_eq!(new_lines.len(), lines + 1, "{cluster}, {what}");
            let line = new_lines.last().unwrap();
            assert_eq!(line["reason"], *reason, "{cluster}, {what}: {line}");
            assert_eq!(line["answer"], 404, "{cluster}, {what}: {line}");
        }
        assert_eq!(envoy.counter("kasi_affinity.cookie_routed"), 0, "{cluster}");
    }

    // Unsigned (no session_keys): a well-formed envelope for an allowed pod is honoured, and a
    // second copy naming a trap never matters: Envoy reads the first, as kasi does.
    let envoy = Envoy::start(&mcp_sidecar(&plugin_config(port, false)).istio_passthrough());
    into_host_map(&envoy, outside.addr());
    let before = outside.requests();
    let response = envoy
        .client()
        .get(
            a.addr(),
            "/",
            &mcp_headers(&[envelope_for(b.addr()), envelope_for(outside.addr())]),
        )
        .unwrap();
    assert_served_by(&response, b, "unsigned, the allowed envelope first");
    assert_eq!(
        response.mcp_sessions_at_pod(),
        vec!["sid-1"],
        "{response:?}"
    );
    let response = envoy
        .client()
        .get(
            a.addr(),
            "/",
            &mcp_headers(&[envelope_for(outside.addr()), envelope_for(b.addr())]),
        )
        .unwrap();
    assert_kasi_not_found(&response, "unsigned, the trap first");
    assert_eq!(outside.requests(), before, "the trap was reached");
}

/// Issue 14: header mode (`session_header`). The value Envoy writes is signed with '.'; a
/// signed value sticks and reaches `stateful_session` (and the pod) as Envoy's plain value; a
/// forged one is removed, never followed, and the session re-pinned (signed) where it landed.
#[test]
fn header_mode_sessions_are_signed_sticky_and_forgeries_rebind() {
    let pods = three_pods();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let outside = Pod::start("trap-cidr", SocketAddr::new(loopback(100), a.port())).unwrap();
    let keys = SessionKeys::new([&KEY]);
    let options = EnvoyOptions::with_filter(&plugin_config(a.port(), true).to_string())
        .with_session_header(SESSION_HEADER)
        .istio_passthrough();
    let envoy = Envoy::start(&options);
    let client = envoy.client();
    let get = |original: &Pod, value: Option<&str>| -> Response {
        let headers: Vec<(&str, &str)> = value.map(|v| (SESSION_HEADER, v)).into_iter().collect();
        client.get(original.addr(), "/", &headers).unwrap()
    };

    let first = get(a, None);
    assert_served_by(&first, a, "a new session");
    let issued = first
        .header(SESSION_HEADER)
        .unwrap_or_else(|| panic!("no {SESSION_HEADER}: {first:?}"))
        .to_string();
    let (plain, mac) = signing::split(issued.as_bytes(), COOKIE_SEPARATOR);
    assert_eq!(plain, encode_header_value(&a.addr().to_string()).as_bytes());
    assert_eq!(
        mac,
        Some(&keys.mac(plain, AUTHORITY.as_bytes()).unwrap()[..]),
        "{issued}"
    );
    for (i, original) in [b, c, b, c].into_iter().enumerate() {
        let response = get(original, Some(&issued));
        assert_served_by(&response, a, &format!("signed header session, request {i}"));
        assert_eq!(
            response.session_headers_at_pod(),
            vec![std::str::from_utf8(plain).unwrap()],
            "Envoy's plain value is what stateful_session and the pod see"
        );
    }

    let sign = |value: &str| {
        String::from_utf8(
            keys.sign(value.as_bytes(), AUTHORITY.as_bytes(), COOKIE_SEPARATOR)
                .unwrap(),
        )
        .unwrap()
    };
    for (what, forged, counter) in [
        (
            "unsigned",
            encode_header_value(&c.addr().to_string()),
            "rejected_malformed",
        ),
        (
            "outside the CIDRs",
            sign(&encode_header_value(&outside.addr().to_string())),
            "rejected_disallowed",
        ),
        (
            "one character short",
            sign(&encode_header_value(&c.addr().to_string())[1..]),
            "rejected_malformed",
        ),
    ] {
        into_host_map(&envoy, outside.addr());
        let (before_c, before_outside) = (c.requests(), outside.requests());
        let rejected = envoy.counter(&format!("kasi_affinity.{counter}"));
        let response = get(b, Some(&forged));
        assert_served_by(&response, b, what);
        assert!(
            response.session_headers_at_pod().is_empty(),
            "{what}: the forged value reached the pod: {response:?}"
        );
        assert_eq!(
            (c.requests(), outside.requests()),
            (before_c, before_outside),
            "{what}"
        );
        let reissued = response
            .header(SESSION_HEADER)
            .unwrap_or_else(|| panic!("{what}: no new session: {response:?}"));
        assert_eq!(
            reissued,
            sign(&encode_header_value(&b.addr().to_string())),
            "{what}: re-pinned where it landed, signed"
        );
        assert_eq!(
            envoy.counter(&format!("kasi_affinity.{counter}")),
            rejected + 1,
            "{what}"
        );
    }
    let lines: Vec<serde_json::Value> = decision_lines(&envoy.log())
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l["carrier"] == "header")
        .collect();
    for decision in ["pin", "routed", "rejected", "rebind"] {
        assert!(
            lines.iter().any(|l| l["decision"] == decision),
            "no {decision} line with carrier header: {lines:#?}"
        );
    }
    assert_eq!(envoy.counter("kasi_affinity.rebinds"), 3);
}

/// Issue 14: cookie sessions still work beside MCP sessions, and a request carrying both is
/// decided by the envelope (the more specific session) with the cookie judged all the same: a
/// forged cookie is removed, a forged envelope is answered 404 whatever the cookie says.
#[test]
fn cookie_sessions_still_work_beside_mcp_sessions() {
    let pods = three_pods();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let outside = Pod::start("trap-cidr", SocketAddr::new(loopback(100), a.port())).unwrap();
    let envoy = Envoy::start(&mcp_sidecar(&plugin_config(a.port(), true)));
    let client = envoy.client();

    let mut browser = Session::new(COOKIE_NAME);
    assert_served_by(
        &browser.get(&client, a.addr(), "/", &[]).unwrap(),
        a,
        "browser",
    );
    let mut mcp = McpSession::new();
    assert_served_by(&mcp.get(&client, b.addr(), &[]).unwrap(), b, "initialize");
    for (i, original) in [b, c, a, c].into_iter().enumerate() {
        let response = browser.get(&client, original.addr(), "/", &[]).unwrap();
        assert_served_by(&response, a, &format!("browser, request {i}"));
        let response = mcp.get(&client, original.addr(), &[]).unwrap();
        assert_served_by(&response, b, &format!("MCP, request {i}"));
    }

    let cookie = format!("{COOKIE_NAME}={}", browser.cookie().unwrap());
    let envelope = mcp.id().unwrap().to_string();
    let both = client
        .get(
            c.addr(),
            "/mcp",
            &[("Cookie", &cookie), ("Mcp-Session-Id", &envelope)],
        )
        .unwrap();
    assert_served_by(&both, b, "a cookie for a and an envelope for b");
    assert_eq!(both.cookies_at_pod().len(), 1, "{both:?}");

    let forged_cookie = format!(
        "{COOKIE_NAME}={}; theme=dark",
        envoy_cookie(outside.addr(), None)
    );
    into_host_map(&envoy, outside.addr());
    let outside_before = outside.requests();
    let response = client
        .get(
            c.addr(),
            "/mcp",
            &[("Cookie", &forged_cookie), ("Mcp-Session-Id", &envelope)],
        )
        .unwrap();
    assert_served_by(&response, b, "a forged cookie beside a valid envelope");
    assert_eq!(outside.requests(), outside_before, "the trap was reached");
    assert_eq!(
        response.cookies_at_pod(),
        vec!["theme=dark"],
        "{response:?}"
    );
    assert!(
        decision_lines(&envoy.log())
            .iter()
            .any(|(_, l)| l["carrier"] == "cookie"
                && l["decision"] == "rejected"
                && l["address"] == outside.addr().to_string()),
        "the forged cookie's rejection is logged"
    );

    let before: Vec<usize> = pods.iter().chain([&outside]).map(Pod::requests).collect();
    let forged_envelope = format!("{};UV:{}", b64(&a.addr().to_string()), b64("x"));
    let response = client
        .get(
            c.addr(),
            "/mcp",
            &[("Cookie", &cookie), ("Mcp-Session-Id", &forged_envelope)],
        )
        .unwrap();
    assert_kasi_not_found(&response, "a forged envelope beside a valid cookie");
    assert_eq!(
        pods.iter()
            .chain([&outside])
            .map(Pod::requests)
            .collect::<Vec<_>>(),
        before,
        "no pod reached"
    );
}

/// `mcp_header: ""` turns MCP sessions off: kasi leaves `mcp-session-id` alone, whatever it
/// holds (the server answers for a session it does not know itself).
#[test]
fn mcp_header_off_leaves_the_header_alone() {
    let pods = three_pods();
    let a = &pods[0];
    let mut config = plugin_config(a.port(), true);
    config["mcp_header"] = serde_json::json!("");
    let envoy = Envoy::start(&EnvoyOptions::with_filter(&config.to_string()));
    let response = envoy
        .client()
        .get(a.addr(), "/mcp", &[("Mcp-Session-Id", "not-an-envelope")])
        .unwrap();
    assert_eq!(response.status, 404, "{response:?}");
    assert_eq!(response.pod(), Some("a"), "the pod's own 404: {response:?}");
    assert_eq!(envoy.counter("kasi_affinity.mcp_not_found"), 0);
    assert_eq!(envoy.counter("kasi_affinity.requests"), 1);
}

/// `kasi manifests --cookie-name ""` (MCP only): the filter reads no cookie — a session cookie
/// for another pod neither steers nor is removed, a failed response expires no cookie — while MCP
/// sessions stick as before.
#[test]
fn cookie_sessions_off_leave_cookies_alone() {
    let mut pods = three_pods();
    let mut config = plugin_config(pods[0].port(), true);
    config["cookie_name"] = serde_json::json!("");
    // As the bundle renders it: no cookie `stateful_session` either.
    let envoy = Envoy::start(&mcp_sidecar(&config).without_cookie_sessions());
    let client = envoy.client();
    let (a, b) = (&pods[0], &pods[1]);

    let cookie = format!("{COOKIE_NAME}={}", envoy_cookie(b.addr(), None));
    let response = client.get(a.addr(), "/", &[("Cookie", &cookie)]).unwrap();
    assert_served_by(&response, a, "a cookie naming b, sent to a");
    assert_eq!(
        response.cookies_at_pod(),
        vec![cookie.as_str()],
        "the cookie reached the pod as sent: {response:?}"
    );
    assert!(
        response.header_values("set-cookie").is_empty(),
        "{response:?}"
    );

    let mut mcp = McpSession::new();
    assert_served_by(&mcp.get(&client, b.addr(), &[]).unwrap(), b, "initialize");
    for original in [&pods[0], &pods[2]] {
        let response = mcp.get(&client, original.addr(), &[]).unwrap();
        assert_served_by(&response, b, "MCP session");
    }
    assert_eq!(
        envoy.counter("kasi_affinity.cookie_routed"),
        2,
        "the MCP calls"
    );
    assert_eq!(envoy.counter("kasi_affinity.rejected_bad_signature"), 0);

    // A pod that fails to connect: no cookie is expired on the way back.
    let c_addr = pods[2].addr();
    pods[2].stop();
    let failed = client.get(c_addr, "/", &[("Cookie", &cookie)]).unwrap();
    assert!(failed.status >= 500, "{failed:?}");
    assert!(
        failed.header_values("set-cookie").is_empty(),
        "no cookie to expire: {failed:?}"
    );
}
