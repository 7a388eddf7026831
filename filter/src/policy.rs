//! What the filter does with one request and its response, as pure functions of their headers.
//! The proxy-wasm glue only reads headers in and applies the plan out.

use crate::codec::{self, DecodeError, Expiry, Ipv4Cookie, SessionCookie};
use crate::config::{canonical_ip, Config};
use crate::cookies;
use std::net::{IpAddr, SocketAddr};

/// Why a session cookie was not honoured; each has its own counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(DecodeError),
    Expired(u64),
    Disallowed,
    Dead,
}

impl Rejection {
    /// The `reason` of the decision log line, and the suffix of the `rejected_*` counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Expired(_) => "expired",
            Rejection::Disallowed => "disallowed",
            Rejection::Dead => "dead",
        }
    }
}

/// What the request's session cookie amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No session cookie: a new session; `stateful_session` will pin it.
    NoCookie,
    /// Honoured: the request goes to `address` (canonical `ip:port`, the header's value).
    Routed {
        cookie: SessionCookie,
        address: String,
    },
    /// Not honoured and removed from the request.
    Rejected {
        rejection: Rejection,
        /// The decoded address, when there was one.
        address: Option<String>,
    },
}

/// What to do to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    /// The client sent the routing header: remove every copy (always, before anything else).
    pub strip_header: bool,
    pub verdict: Verdict,
    /// When the cookie is rejected: the `cookie` headers' replacement (one joined value, or
    /// `None` to remove them all). Untouched otherwise.
    pub cookie_rewrite: Option<Option<Vec<u8>>>,
}

impl RequestPlan {
    /// The routing header's value to set, if any.
    pub fn header_value(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Routed { address, .. } => Some(address),
            _ => None,
        }
    }
}

/// The address as the routing header and the dead-host list spell it (`SocketAddr`'s own text,
/// with IPv4-mapped IPv6 written as IPv4). IPv4, the common case, is written by hand: it is on
/// every routed request's path, and the formatting machinery costs more than the rest of it.
pub fn canonical_address(address: &SocketAddr) -> String {
    match canonical_ip(address.ip()) {
        IpAddr::V4(ip) => {
            let mut text = String::with_capacity(21);
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                push_decimal(&mut text, octet.into());
            }
            text.push(':');
            push_decimal(&mut text, address.port());
            text
        }
        ip => SocketAddr::new(ip, address.port()).to_string(),
    }
}

fn push_decimal(text: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        text.push(char::from(d));
    }
}

/// Decides one request from its headers (lower- or mixed-case names), the wall clock and the
/// dead-host memory.
pub fn plan_request<'a, H, D>(
    config: &Config,
    headers: H,
    now_unix_s: u64,
    is_dead: D,
) -> RequestPlan
where
    H: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    D: FnOnce(&str) -> bool,
{
    let mut strip_header = false;
    let mut cookie_headers: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"cookie") {
            cookie_headers.push(value);
        } else if name.eq_ignore_ascii_case(config.header.as_bytes()) {
            strip_header = true;
        }
    }
    let name = config.cookie_name.as_bytes();
    let verdict = match cookies::find(cookie_headers.iter().copied(), name) {
        None => Verdict::NoCookie,
        Some(value) => judge(config, value, || now_unix_s, is_dead),
    };
    let cookie_rewrite = matches!(verdict, Verdict::Rejected { .. })
        .then(|| cookies::without_all(cookie_headers.iter().copied(), name));
    RequestPlan {
        strip_header,
        verdict,
        cookie_rewrite,
    }
}

/// The verdict on one session cookie's value, as it appears in the `cookie` header. `now`
/// (Unix seconds) is only asked for when the cookie carries a Unix-time `expires`; `is_dead`
/// only for a cookie that passed every other check.
pub fn judge<N, D>(config: &Config, value: &[u8], now: N, is_dead: D) -> Verdict
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    let cookie = match codec::decode(value) {
        Ok(cookie) => cookie,
        Err(e) => {
            return Verdict::Rejected {
                rejection: Rejection::Malformed(e),
                address: None,
            }
        }
    };
    let address = canonical_address(&cookie.address);
    let expired = match cookie.expires {
        Some(at) if at >= codec::PLAUSIBLE_UNIX_TIME => cookie.expiry(now()),
        _ => Expiry::Never,
    };
    let rejection = if let Expiry::Expired(at) = expired {
        Some(Rejection::Expired(at))
    } else if !config.allows(&cookie.address) {
        Some(Rejection::Disallowed)
    } else if is_dead(&address) {
        Some(Rejection::Dead)
    } else {
        None
    };
    match rejection {
        Some(rejection) => Verdict::Rejected {
            rejection,
            address: Some(address),
        },
        None => Verdict::Routed { cookie, address },
    }
}

/// Whether [`judge`] routes the request by a cookie [`codec::decode_ipv4`] read: the same checks
/// in the same order, without allocating (the routing header's value is `cookie.text`). A
/// `false` is some rejection; [`judge`] says which.
pub fn routes_ipv4<N, D>(config: &Config, cookie: &Ipv4Cookie, now: N, is_dead: D) -> bool
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    let expired = match cookie.expires {
        Some(at) if at >= codec::PLAUSIBLE_UNIX_TIME => at < now(),
        _ => false,
    };
    !expired && config.allows(&SocketAddr::V4(cookie.address)) && !is_dead(cookie.text)
}

/// Envoy's legacy response-flag bit for UF (upstream connection failure): `1 << 5`.
pub const RESPONSE_FLAG_UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5;
/// UH (no healthy upstream) `1 << 1`: also "that address cannot be reached".
pub const RESPONSE_FLAG_NO_HEALTHY_UPSTREAM: u64 = 1 << 1;

/// Whether a response's flags say the upstream could not be connected to.
pub fn failed_to_connect(response_flags: u64) -> bool {
    response_flags & (RESPONSE_FLAG_UPSTREAM_CONNECTION_FAILURE | RESPONSE_FLAG_NO_HEALTHY_UPSTREAM)
        != 0
}

/// A `Set-Cookie` value that makes the client drop the session cookie (the bundle's cookie path
/// is `/`).
pub fn expiring_cookie(cookie_name: &str) -> String {
    format!("{cookie_name}=; Max-Age=0; Path=/; HttpOnly")
}

/// The cookie name and value a `set-cookie` header value sets.
pub fn set_cookie_pair(header: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = header.split(|&b| b == b';').next()?;
    let eq = first.iter().position(|&b| b == b'=')?;
    Some((codec::trim_ascii(&first[..eq]), &first[eq + 1..]))
}

/// The session cookie a response issues, from its `set-cookie` header values.
pub fn issued_cookie<'a, I>(set_cookie_headers: I, cookie_name: &str) -> Option<SessionCookie>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    set_cookie_headers.into_iter().find_map(|header| {
        let (name, value) = set_cookie_pair(header)?;
        (name == cookie_name.as_bytes())
            .then(|| codec::decode(value).ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_proto;

    const NOW: u64 = 1_800_000_000;

    fn config() -> Config {
        Config::default()
    }

    fn plan(headers: &[(&str, &str)], dead: bool) -> RequestPlan {
        plan_request(
            &config(),
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            NOW,
            |_| dead,
        )
    }

    fn cookie_for(addr: &str, expires: Option<u64>) -> String {
        format!(
            "kasi-session=\"{}\"",
            encode_proto(addr.parse().unwrap(), expires)
        )
    }

    #[test]
    fn a_valid_cookie_routes_to_its_address() {
        let c = cookie_for("10.0.0.7:8012", Some(NOW + 60));
        let p = plan(&[("cookie", "a=1"), ("cookie", &c)], false);
        assert!(!p.strip_header);
        assert_eq!(p.header_value(), Some("10.0.0.7:8012"));
        assert_eq!(p.cookie_rewrite, None);
    }

    #[test]
    fn the_incoming_header_is_always_stripped() {
        let p = plan(&[("X-Envoy-Original-Dst-Host", "127.0.0.1:15000")], false);
        assert!(p.strip_header);
        assert_eq!(p.verdict, Verdict::NoCookie);
        assert_eq!(p.header_value(), None);
    }

    #[test]
    fn rejections_remove_the_cookie_and_keep_the_others() {
        let cases = [
            (cookie_for("8.8.8.8:8012", None), "disallowed", false),
            (cookie_for("10.0.0.1:15000", None), "disallowed", false),
            (cookie_for("10.0.0.1:8012", Some(NOW - 1)), "expired", false),
            (cookie_for("10.0.0.1:8012", None), "dead", true),
            ("kasi-session=%%%".to_owned(), "malformed", false),
        ];
        for (cookie, reason, dead) in cases {
            let header = format!("a=1; {cookie}; b=2");
            let p = plan(&[("cookie", &header)], dead);
            match &p.verdict {
                Verdict::Rejected { rejection, .. } => assert_eq!(rejection.reason(), reason),
                other => panic!("{cookie}: {other:?}"),
            }
            assert_eq!(p.header_value(), None);
            assert_eq!(
                p.cookie_rewrite,
                Some(Some(b"a=1; b=2".to_vec())),
                "{cookie}"
            );
        }
    }

    #[test]
    fn monotonic_expiry_is_not_expired() {
        let c = cookie_for("10.0.0.1:8012", Some(86_000));
        assert_eq!(
            plan(&[("cookie", &c)], false).header_value(),
            Some("10.0.0.1:8012")
        );
    }

    #[test]
    fn mapped_ipv6_is_judged_and_sent_as_ipv4() {
        let c = cookie_for("[::ffff:10.0.0.1]:8012", None);
        assert_eq!(
            plan(&[("cookie", &c)], false).header_value(),
            Some("10.0.0.1:8012")
        );
        let c = cookie_for("[::ffff:127.0.0.1]:8012", None);
        assert_eq!(plan(&[("cookie", &c)], false).header_value(), None);
    }

    #[test]
    fn canonical_addresses_read_like_socket_addrs() {
        for text in [
            "0.0.0.0:1",
            "10.0.0.7:8012",
            "255.255.255.255:65535",
            "127.0.10.100:80",
            "[fd00::1]:8013",
            "[::1]:8012",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(canonical_address(&address), address.to_string());
        }
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:8012".parse().unwrap();
        assert_eq!(canonical_address(&mapped), "10.1.2.3:8012");
    }

    #[test]
    fn connect_failures_are_recognised_by_flag() {
        assert!(failed_to_connect(0x20));
        assert!(failed_to_connect(0x22));
        assert!(!failed_to_connect(0));
        assert!(!failed_to_connect(0x10)); // remote reset after connecting: the pod is alive
    }

    #[test]
    fn the_expiring_cookie_is_not_taken_for_an_issued_one() {
        let expire = expiring_cookie("kasi-session");
        assert_eq!(expire, "kasi-session=; Max-Age=0; Path=/; HttpOnly");
        assert!(issued_cookie([expire.as_bytes()], "kasi-session").is_none());
    }

    #[test]
    fn finds_the_issued_cookie() {
        let v = encode_proto("10.0.0.9:8012".parse().unwrap(), None);
        let headers = [
            b"other=1; Path=/".to_vec(),
            format!("kasi-session=\"{v}\"; Path=/; HttpOnly").into_bytes(),
        ];
        let c = issued_cookie(headers.iter().map(Vec::as_slice), "kasi-session").unwrap();
        assert_eq!(c.address, "10.0.0.9:8012".parse().unwrap());
        assert!(issued_cookie(headers.iter().map(Vec::as_slice), "x").is_none());
    }
}
