//! One input through everything a client controls: the cookie codec, the request policy (headers
//! split from the input), pluginConfig parsing and the dead-host list. The fuzz target
//! (`filter/fuzz`) calls this, and so does the regression test that replays every input the
//! fuzzer ever crashed on (`filter/fuzz/regressions/`), so a fixed crash stays fixed.

use crate::config::Config;
use crate::{codec, dead_hosts, policy};
use std::sync::OnceLock;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(Config::default)
}

fn signed_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config {
        session_keys: crate::signing::SessionKeys::new([&[5u8; 32]]),
        ..Config::default()
    })
}

/// Panics if the filter would misbehave on `data`: a panic anywhere, a route outside the
/// allowed CIDRs and ports, or the request phase's IPv4 fast path disagreeing with the general
/// decoder and policy it stands in for.
pub fn check_request(data: &[u8]) {
    let general = codec::decode(data);
    let mut buf = [0u8; codec::MAX_ENCODED_LEN];
    if let Some(fast) = codec::decode_ipv4(data, &mut buf) {
        assert_eq!(
            Ok(fast.session_cookie()),
            general,
            "fast and general decoders disagree"
        );
        let address = std::net::SocketAddr::V4(fast.address);
        assert_eq!(fast.text, policy::canonical_address(&address));
        let (cookie, address) = policy::decode_session(data).expect("the fast decoder accepted it");
        assert_eq!(Ok(cookie), general);
        assert_eq!(address, fast.text);
    }
    // Envoy's cookie grammar: the port and the transcription of Envoy's code read the same.
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for name in [&b"kasi-session"[..], b"k", b"k "] {
        assert_eq!(
            crate::cookies::find(headers.iter().copied(), name).map(<[u8]>::to_vec),
            crate::cookies::envoy_transcription(&headers, name),
            "the cookie grammar differs from Envoy's"
        );
        for restored in [None, Some(&b"Zm9v"[..])] {
            let rewritten = crate::cookies::rewrite(headers.iter().copied(), name, restored);
            let after: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
            let expected = crate::cookies::find(headers.iter().copied(), name).and(restored);
            assert_eq!(
                crate::cookies::envoy_transcription(&after, name).as_deref(),
                expected,
                "after a rewrite Envoy reads something kasi did not approve"
            );
        }
    }
    let _ = Config::parse(data);
    // Headers: lines of `name\0value`, so the fuzzer can build several cookie headers.
    let headers: Vec<(&[u8], &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|line| match line.iter().position(|&b| b == 0) {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (&b"cookie"[..], line),
        })
        .collect();
    let now = data.len() as u64 * 1_000_000_007;
    let plan = policy::plan_request(
        config(),
        &headers,
        || now,
        |a| dead_hosts::contains(data, a.as_bytes(), now),
    );
    if let Some(address) = plan.steer_to() {
        let addr: std::net::SocketAddr = address.parse().expect("routed address parses");
        assert!(
            config().allows(&addr),
            "routed outside the allowed CIDRs/ports: {address}"
        );
    }
    let _ = dead_hosts::with(data, b"10.0.0.1:8012", now + 30, now);
    let _ = policy::issued_cookie([data], "kasi-session");
    let _ = policy::sign_set_cookie(data, "kasi-session", &signed_config().session_keys, data);
    let signed = policy::plan_request(signed_config(), &headers, || now, |_| false);
    // The table of verified sessions decides as the HMAC does, first time and again.
    let mut table = crate::signing::VerifiedSessions::new(2);
    for _ in 0..2 {
        let cached = policy::plan_request_verified(
            signed_config(),
            &headers,
            || now,
            |_| false,
            Some(&mut table),
        );
        assert_eq!(
            cached, signed,
            "the verified-session table changed a decision"
        );
    }
    // No input carries a MAC under a key it does not know.
    assert!(
        signed.steer_to().is_none(),
        "a request without a valid signature routed with signed sessions on"
    );
}
