//! What the end-to-end test files share: loopback addresses, Envoy-shaped cookies, decision
//! lines, and the one assertion every routing check makes.

use crate::{Pod, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `127.0.0.<last_octet>`: every address the tests use is loopback.
pub fn loopback(last_octet: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet))
}

/// A cookie value the way Envoy 1.40 writes it: quoted base64 of the protobuf.
pub fn envoy_cookie(address: SocketAddr, expires: Option<u64>) -> String {
    format!("\"{}\"", kasi_filter::codec::encode_proto(address, expires))
}

/// Asserts the response is a 200 from `pod`.
#[track_caller]
pub fn assert_served_by(response: &Response, pod: &Pod, what: &str) {
    assert_eq!(
        (response.status, response.pod()),
        (200, Some(pod.name())),
        "{what}: expected 200 from pod {}, got {response:?}",
        pod.name()
    );
}

/// Every decision line in Envoy's log: the worker thread that wrote it (the `[%t]` field of
/// Envoy's default log format) and its JSON object.
pub fn decision_lines(log: &str) -> Vec<(String, serde_json::Value)> {
    log.lines()
        .filter_map(|line| {
            let (prefix, json) = line.split_once("kasi_affinity {")?;
            let thread = prefix
                .split(']')
                .nth(1)?
                .trim_start_matches('[')
                .to_string();
            let json = serde_json::from_str(&format!("{{{json}")).ok()?;
            Some((thread, json))
        })
        .collect()
}
