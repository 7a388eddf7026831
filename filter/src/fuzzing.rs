//! One input through everything a client controls: the cookie codec, the envelope and header-mode
//! codec, the request policy (headers split from the input), pluginConfig parsing and the
//! dead-host list. The fuzz target
//! (`filter/fuzz`) calls this, and so does the regression test that replays every input the
//! fuzzer ever crashed on (`filter/fuzz/regressions/`), so a fixed crash stays fixed.

use crate::config::Config;
use crate::policy::{Carrier, RequestPlan};
use crate::{codec, cookies, dead_hosts, envelope, policy};
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

/// Every carrier on: the default envelope header and a header-mode one.
fn all_carriers_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config {
        session_header: "x-session".to_owned(),
        ..Config::default()
    })
}

/// The override hosts Envoy's `stateful_session` filters (cookie, envelope and header mode, as
/// configured in `config`) would take from the request once the filter applied `plan` to
/// `headers`: nothing when kasi answered the request itself. The cookie's value is read with
/// kasi's own decoder, which accepts everything Envoy's does (and more).
pub fn envoy_hosts_after(
    config: &Config,
    headers: &[(&[u8], &[u8])],
    plan: &RequestPlan,
) -> Vec<(Carrier, Vec<u8>)> {
    if plan.not_found {
        return Vec::new();
    }
    let values = |wanted: &str| -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter(|(n, _)| !wanted.is_empty() && n.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, v)| v.to_vec())
            .collect()
    };
    let rewritten = |mut values: Vec<Vec<u8>>, rewrite: &Option<Option<Vec<u8>>>| {
        match rewrite {
            Some(None) => values.clear(),
            Some(Some(v)) => values = vec![v.clone()],
            None => {}
        }
        values
    };
    let envelopes = rewritten(
        values(&config.mcp_header),
        &plan.envelope_rewrite.clone().map(Some),
    );
    let header_values = rewritten(values(&config.session_header), &plan.header_rewrite);
    let cookie_values = rewritten(values("cookie"), &plan.cookie_rewrite);
    fn as_slices(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(Vec::as_slice).collect()
    }
    let mut hosts = Vec::new();
    if !config.mcp_header.is_empty() {
        let reading = envelope::envoy_envelope_transcription(&as_slices(&envelopes));
        if let Some(host) = reading.override_host {
            hosts.push((Carrier::Envelope, host));
        }
    }
    if !config.session_header.is_empty() {
        if let Some(host) = envelope::envoy_header_transcription(&as_slices(&header_values)) {
            hosts.push((Carrier::Header, host));
        }
    }
    let cookie =
        cookies::envoy_transcription(&as_slices(&cookie_values), config.cookie_name.as_bytes());
    if let Some(address) = cookie.and_then(|v| codec::decode(&v).ok()) {
        hosts.push((Carrier::Cookie, address.address.to_string().into_bytes()));
    }
    hosts
}

/// Panics if, after `plan`, Envoy would follow any carrier to an address kasi does not allow
/// (an address text Envoy's host map cannot hold is harmless: nothing matches it).
pub fn assert_envoy_reads_only_approved(
    config: &Config,
    headers: &[(&[u8], &[u8])],
    plan: &RequestPlan,
    is_dead: impl Fn(&str) -> bool,
) {
    for (carrier, host) in envoy_hosts_after(config, headers, plan) {
        if let Ok(address) = codec::parse_address(&host) {
            assert!(
                config.allows(&address) && !is_dead(&policy::canonical_address(&address)),
                "after the filter, Envoy's {} reading follows {address}",
                carrier.as_str()
            );
        }
    }
    if plan.not_found {
        assert!(plan.steer_to().is_none(), "an answered request was steered");
    }
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
    // The envelope and header-mode grammars: the port and the transcriptions read the same.
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let reading = envelope::envoy_envelope_transcription(&lines);
    match envelope::decode_envelope(lines[0]) {
        Ok(e) => {
            assert_eq!(
                reading.replaced_by,
                Some(e.original()),
                "envelope value differs"
            );
            assert_eq!(
                reading.override_host.map(|h| codec::parse_address(&h)),
                Some(Ok(e.address)),
                "envelope host differs"
            );
        }
        Err(envelope::HeaderError::Empty | envelope::HeaderError::NoOriginalValue) => {
            assert_eq!(
                reading.replaced_by, None,
                "Envoy restores what kasi did not read"
            )
        }
        Err(envelope::HeaderError::TooLong(_)) => {}
        Err(_) => assert!(
            reading.replaced_by.is_some()
                && reading
                    .override_host
                    .is_none_or(|h| codec::parse_address(&h).is_err()),
            "Envoy reads an address kasi found none in"
        ),
    }
    let header = envelope::envoy_header_transcription(&lines);
    match envelope::decode_header_value(lines[0]) {
        Ok(a) => assert_eq!(header.map(|h| codec::parse_address(&h)), Some(Ok(a))),
        Err(envelope::HeaderError::TooLong(_)) => {}
        Err(_) => assert!(header.is_none_or(|h| codec::parse_address(&h).is_err())),
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
    let dead = |a: &str| dead_hosts::contains(data, a.as_bytes(), now);
    assert_envoy_reads_only_approved(config(), &headers, &plan, dead);
    let all = all_carriers_config();
    let every = policy::plan_request(all, &headers, || now, dead);
    assert_envoy_reads_only_approved(all, &headers, &every, dead);
    if let Some(address) = every.steer_to() {
        let addr: std::net::SocketAddr = address.parse().expect("routed address parses");
        assert!(
            all.allows(&addr),
            "routed outside the allowed CIDRs/ports: {address}"
        );
    }
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
    assert_envoy_reads_only_approved(signed_config(), &headers, &signed, |_| false);
    let _ = policy::issued_in_header(Carrier::Envelope, &lines, b"10.0.0.1:8012");
    let _ = policy::issued_in_header(Carrier::Header, &lines, data);
}
