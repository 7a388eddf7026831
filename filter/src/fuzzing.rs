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
        let now = data.len() as u64 * 1_000_000_007;
        let dead = data.first().is_some_and(|b| b % 2 == 1);
        let routed = policy::routes_ipv4(config(), &fast, || now, |_| dead);
        let verdict = policy::judge(config(), data, || now, |_| dead);
        assert_eq!(
            routed,
            matches!(verdict, policy::Verdict::Routed { .. }),
            "fast route and judge disagree: {verdict:?}"
        );
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
    let plan = policy::plan_request(config(), headers.iter().copied(), now, |a| {
        dead_hosts::contains(data, a.as_bytes(), now)
    });
    if let Some(address) = plan.header_value() {
        let addr: std::net::SocketAddr = address.parse().expect("routed address parses");
        assert!(
            config().allows(&addr),
            "routed outside the allowed CIDRs/ports: {address}"
        );
    }
    let _ = dead_hosts::with(data, b"10.0.0.1:8012", now + 30, now);
    let _ = policy::issued_cookie([data], "kasi-session");
}
