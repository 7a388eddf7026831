//! What the filter does with one request and its response, as pure functions of their headers.
//! The proxy-wasm glue only reads headers in and applies the plan out.

use crate::codec::{self, DecodeError, Expiry, SessionCookie};
use crate::config::{canonical_ip, Config, ROUTING_HEADER};
use crate::cookies;
use crate::signing::{self, SessionKeys, VerifiedSessions};
use std::net::{IpAddr, SocketAddr};

/// Why a session was not honoured; each has its own counter (`bad_signature` counts as
/// malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(DecodeError),
    /// Signed sessions are on and this one is unsigned, or signed for another host or key.
    BadSignature,
    Expired(u64),
    Disallowed,
    Dead,
}

impl Rejection {
    /// The `reason` of the decision log line.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired(_) => "expired",
            Rejection::Disallowed => "disallowed",
            Rejection::Dead => "dead",
        }
    }
}

/// What the request's session amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No session cookie: a new session; `stateful_session` will pin it.
    NoCookie,
    /// Honoured: the request goes to `address` (canonical `ip:port`, the filter-state value).
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
    /// The client sent `x-envoy-original-dst-host`: remove every copy.
    pub strip_header: bool,
    pub verdict: Verdict,
    /// The `cookie` headers' replacement (one joined value, or `None` to remove them all), when
    /// they must change: a rejected session is removed; a signed one that is honoured is put
    /// back as the plain value `stateful_session` wrote, so that it reads exactly the address
    /// kasi approved and does not issue the cookie again.
    pub cookie_rewrite: Option<Option<Vec<u8>>>,
    /// How many `cookie` headers the request carried.
    pub cookie_headers: usize,
}

impl RequestPlan {
    /// The address to steer to, if any.
    pub fn steer_to(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Routed { address, .. } => Some(address),
            _ => None,
        }
    }
}

/// The address as the filter state and the dead-host list spell it (`SocketAddr`'s own text,
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

/// The request's `:authority` (empty when it has none).
pub fn authority<'a>(headers: &[(&'a [u8], &'a [u8])]) -> &'a [u8] {
    headers
        .iter()
        .find(|(name, _)| *name == b":authority")
        .map_or(&b""[..], |(_, value)| *value)
}

/// Decides one request from all its headers (names lower-case, as Envoy hands them over), the
/// wall clock (asked only for a Unix-time expiry) and the dead-host memory.
pub fn plan_request<N, D>(
    config: &Config,
    headers: &[(&[u8], &[u8])],
    now: N,
    is_dead: D,
) -> RequestPlan
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    plan_request_verified(config, headers, now, is_dead, None)
}

/// [`plan_request`], remembering verified sessions in `verified` (the filter keeps one table per
/// VM) so that a session's later requests skip the HMAC.
pub fn plan_request_verified<N, D>(
    config: &Config,
    headers: &[(&[u8], &[u8])],
    now: N,
    is_dead: D,
    verified: Option<&mut VerifiedSessions>,
) -> RequestPlan
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    let mut strip_header = false;
    let mut cookie_headers: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"cookie") {
            cookie_headers.push(value);
        } else if name.eq_ignore_ascii_case(ROUTING_HEADER.as_bytes()) {
            strip_header = true;
        }
    }
    let name = config.cookie_name.as_bytes();
    let Some(found) = cookies::locate(cookie_headers.iter().copied(), name) else {
        return RequestPlan {
            strip_header,
            verdict: Verdict::NoCookie,
            cookie_rewrite: None,
            cookie_headers: cookie_headers.len(),
        };
    };
    let value = found.value;
    let (verdict, plain) =
        judge_session_verified(config, value, authority(headers), now, is_dead, verified);
    let restore = (plain.len() != value.len()).then_some(plain);
    let cookie_rewrite = match &verdict {
        Verdict::Rejected { .. } => {
            Some(cookies::rewrite_found(&cookie_headers, &found, name, None))
        }
        Verdict::Routed { .. } if restore.is_some() => Some(cookies::rewrite_found(
            &cookie_headers,
            &found,
            name,
            restore,
        )),
        _ => None,
    };
    RequestPlan {
        strip_header,
        verdict,
        cookie_rewrite,
        cookie_headers: cookie_headers.len(),
    }
}

/// The verdict on one session value as Envoy reads it (quotes removed), and the plain value
/// under its signature (the value itself when unsigned). With `session_keys`, only a value kasi
/// signed for this `authority` is considered at all.
pub fn judge_session<'v, N, D>(
    config: &Config,
    value: &'v [u8],
    authority: &[u8],
    now: N,
    is_dead: D,
) -> (Verdict, &'v [u8])
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    judge_session_verified(config, value, authority, now, is_dead, None)
}

fn judge_session_verified<'v, N, D>(
    config: &Config,
    value: &'v [u8],
    authority: &[u8],
    now: N,
    is_dead: D,
    verified: Option<&mut VerifiedSessions>,
) -> (Verdict, &'v [u8])
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    if config.session_keys.is_empty() {
        return (judge(config, value, now, is_dead), value);
    }
    let checked = match verified {
        Some(table) => match signing::split(value, signing::COOKIE_SEPARATOR) {
            (plain, Some(mac)) if table.verify(&config.session_keys, plain, authority, mac) => {
                Ok(plain)
            }
            (plain, _) => Err(plain),
        },
        None => verify(&config.session_keys, value, authority),
    };
    match checked {
        Ok(plain) => (judge(config, plain, now, is_dead), plain),
        Err(plain) => {
            let address = decode_session(plain).ok().map(|(_, address)| address);
            let verdict = Verdict::Rejected {
                rejection: Rejection::BadSignature,
                address,
            };
            (verdict, plain)
        }
    }
}

/// The plain value if `value` carries a valid MAC for `authority`; `Err(plain part)` otherwise.
pub fn verify<'v>(
    keys: &SessionKeys,
    value: &'v [u8],
    authority: &[u8],
) -> Result<&'v [u8], &'v [u8]> {
    match signing::split(value, signing::COOKIE_SEPARATOR) {
        (plain, Some(mac)) if keys.verify(plain, authority, mac) => Ok(plain),
        (plain, _) => Err(plain),
    }
}

/// Decodes a session value, through the allocation-free IPv4 reader when it can (nearly every
/// session), else the general one; with the address as the filter state spells it.
pub fn decode_session(value: &[u8]) -> Result<(SessionCookie, String), DecodeError> {
    let mut buf = [0u8; codec::MAX_ENCODED_LEN];
    if let Some(cookie) = codec::decode_ipv4(value, &mut buf) {
        return Ok((cookie.session_cookie(), cookie.text.to_owned()));
    }
    let cookie = codec::decode(value)?;
    let address = canonical_address(&cookie.address);
    Ok((cookie, address))
}

/// The verdict on one plain session value. `now` (Unix seconds) is only asked for when the
/// cookie carries a Unix-time `expires`; `is_dead` only for a cookie that passed every other
/// check.
pub fn judge<N, D>(config: &Config, value: &[u8], now: N, is_dead: D) -> Verdict
where
    N: FnOnce() -> u64,
    D: FnOnce(&str) -> bool,
{
    let (cookie, address) = match decode_session(value) {
        Ok(decoded) => decoded,
        Err(e) => {
            return Verdict::Rejected {
                rejection: Rejection::Malformed(e),
                address: None,
            }
        }
    };
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

/// The filter state that steers PassthroughCluster (an ORIGINAL_DST cluster reads it before
/// anything else: `OriginalDstCluster::LoadBalancer::filterStateOverrideHost`).
pub const ORIGINAL_DST_FILTER_STATE: &str = "envoy.network.transport_socket.original_dst_address";
/// `StreamInfo::FilterState::LifeSpan::DownstreamRequest` in `SetEnvoyFilterStateArguments`:
/// the request only (`DownstreamConnection` would stick to a keep-alive connection's later
/// requests).
pub const LIFE_SPAN_DOWNSTREAM_REQUEST: u8 = 1;

/// The argument of Envoy's foreign function `set_envoy_filter_state`: the serialized
/// `envoy.source.extensions.common.wasm.SetEnvoyFilterStateArguments {string path = 1;
/// string value = 2; LifeSpan span = 3}` (`source/extensions/common/wasm/ext/
/// set_envoy_filter_state.proto`).
pub fn set_filter_state_arguments(path: &str, value: &str, span: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + value.len() + 8);
    for (tag, text) in [(0x0a, path), (0x12, value)] {
        out.push(tag);
        push_varint(&mut out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    if span != 0 {
        out.push(0x18);
        out.push(span);
    }
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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

/// A `Set-Cookie` value that makes the client drop the session cookie: same name and path as
/// the one `stateful_session` wrote, or the browser keeps that one.
pub fn expiring_cookie(cookie_name: &str, cookie_path: &str) -> String {
    format!("{cookie_name}=; Max-Age=0; Path={cookie_path}; HttpOnly")
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

/// A `set-cookie` header that issues session cookie `cookie_name`, with the MAC for
/// `authority` appended to its value (inside the quotes Envoy writes); `None` when the header
/// sets another cookie, an empty value (kasi's own expiring cookie) or one already signed.
pub fn sign_set_cookie(
    header: &[u8],
    cookie_name: &str,
    keys: &SessionKeys,
    authority: &[u8],
) -> Option<Vec<u8>> {
    let first_end = header
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(header.len());
    let eq = header[..first_end].iter().position(|&b| b == b'=')?;
    if codec::trim_ascii(&header[..eq]) != cookie_name.as_bytes() {
        return None;
    }
    let (start, end) = (eq + 1, first_end);
    let value = &header[start..end];
    let (plain, quoted) = match value {
        [b'"', inner @ .., b'"'] => (inner, true),
        _ => (value, false),
    };
    if plain.is_empty() || signing::split(plain, signing::COOKIE_SEPARATOR).1.is_some() {
        return None;
    }
    let signed = keys.sign(plain, authority, signing::COOKIE_SEPARATOR)?;
    let mut out = Vec::with_capacity(header.len() + signing::MAC_TEXT_LEN + 1);
    out.extend_from_slice(&header[..start]);
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(&signed);
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(&header[end..]);
    Some(out)
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
        plan_with(&config(), headers, dead)
    }

    fn plan_with(config: &Config, headers: &[(&str, &str)], dead: bool) -> RequestPlan {
        let headers: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        plan_request(config, &headers, || NOW, |_| dead)
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
        assert_eq!(p.steer_to(), Some("10.0.0.7:8012"));
        assert_eq!(p.cookie_rewrite, None);
    }

    #[test]
    fn the_incoming_header_is_always_stripped() {
        let p = plan(&[("x-envoy-original-dst-host", "127.0.0.1:15000")], false);
        assert!(p.strip_header);
        assert_eq!(p.verdict, Verdict::NoCookie);
        assert_eq!(p.steer_to(), None);
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
            assert_eq!(p.steer_to(), None);
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
            plan(&[("cookie", &c)], false).steer_to(),
            Some("10.0.0.1:8012")
        );
    }

    #[test]
    fn mapped_ipv6_is_judged_and_sent_as_ipv4() {
        let c = cookie_for("[::ffff:10.0.0.1]:8012", None);
        assert_eq!(
            plan(&[("cookie", &c)], false).steer_to(),
            Some("10.0.0.1:8012")
        );
        let c = cookie_for("[::ffff:127.0.0.1]:8012", None);
        assert_eq!(plan(&[("cookie", &c)], false).steer_to(), None);
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
        let expire = expiring_cookie("kasi-session", "/app");
        assert_eq!(expire, "kasi-session=; Max-Age=0; Path=/app; HttpOnly");
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

    const KEY: [u8; 32] = [3u8; 32];

    fn signed_config() -> Config {
        Config {
            session_keys: SessionKeys::new([&KEY]),
            ..Config::default()
        }
    }

    fn signed_cookie(addr: &str, authority: &str) -> (String, String) {
        let plain = encode_proto(addr.parse().unwrap(), None);
        let signed = SessionKeys::new([&KEY])
            .sign(
                plain.as_bytes(),
                authority.as_bytes(),
                signing::COOKIE_SEPARATOR,
            )
            .unwrap();
        (plain, String::from_utf8(signed).unwrap())
    }

    #[test]
    fn a_signed_session_is_restored_for_stateful_session_and_routed() {
        let (plain, signed) = signed_cookie("10.0.0.7:8012", "hello.example.com");
        let header = format!("a=1; kasi-session=\"{signed}\"; kasi-session=evil");
        let p = plan_with(
            &signed_config(),
            &[
                (":authority", "Hello.Example.com"),
                ("cookie", &header),
                ("cookie", "b=2"),
            ],
            false,
        );
        assert_eq!(p.steer_to(), Some("10.0.0.7:8012"));
        let rewritten = format!("a=1; kasi-session=\"{plain}\"; b=2");
        assert_eq!(p.cookie_rewrite, Some(Some(rewritten.into_bytes())));
        assert_eq!(p.cookie_headers, 2);
    }

    #[test]
    fn the_verified_table_routes_exactly_as_the_hmac_does() {
        let (_, signed) = signed_cookie("10.0.0.7:8012", "hello.example.com");
        let mut table = VerifiedSessions::new(8);
        for authority in [
            "hello.example.com",
            "other.example.com",
            "hello.example.com",
        ] {
            let header = format!("kasi-session=\"{signed}\"");
            let headers: Vec<(&[u8], &[u8])> = vec![
                (b":authority", authority.as_bytes()),
                (b"cookie", header.as_bytes()),
            ];
            let config = signed_config();
            let plain = plan_request(&config, &headers, || NOW, |_| false);
            let cached =
                plan_request_verified(&config, &headers, || NOW, |_| false, Some(&mut table));
            assert_eq!(plain, cached, "{authority}");
        }
    }

    #[test]
    fn unsigned_forged_and_replayed_sessions_are_bad_signatures() {
        let (plain, signed) = signed_cookie("10.0.0.7:8012", "hello.example.com");
        for (authority, value) in [
            ("hello.example.com", plain.as_str()),
            ("other.example.com", signed.as_str()),
            (
                "hello.example.com",
                &format!("{plain}.AAAAAAAAAAAAAAAAAAAAAA"),
            ),
        ] {
            let header = format!("kasi-session=\"{value}\"; a=1");
            let p = plan_with(
                &signed_config(),
                &[(":authority", authority), ("cookie", &header)],
                false,
            );
            assert_eq!(
                p.verdict,
                Verdict::Rejected {
                    rejection: Rejection::BadSignature,
                    address: Some("10.0.0.7:8012".into())
                },
                "{authority} {value}"
            );
            assert_eq!(p.cookie_rewrite, Some(Some(b"a=1".to_vec())));
        }
    }

    #[test]
    fn the_session_envoy_reads_is_the_one_judged() {
        // A space before `=` is part of the name for Envoy: that piece is not the session.
        let allowed = cookie_for("10.0.0.7:8012", None);
        let outside = encode_proto("127.0.0.1:15000".parse().unwrap(), None);
        let header = format!(
            "kasi-session =\"{}\"; kasi-session=\"{outside}\"",
            &allowed[14..allowed.len() - 1]
        );
        let p = plan(&[("cookie", &header)], false);
        assert_eq!(p.steer_to(), None);
        assert!(matches!(
            p.verdict,
            Verdict::Rejected {
                rejection: Rejection::Disallowed,
                ..
            }
        ));
    }

    #[test]
    fn issued_cookies_are_signed_inside_their_quotes() {
        let keys = SessionKeys::new([&KEY]);
        let v = encode_proto("10.0.0.9:8012".parse().unwrap(), None);
        let header = format!("kasi-session=\"{v}\"; Max-Age=60; Path=/; HttpOnly");
        let signed =
            sign_set_cookie(header.as_bytes(), "kasi-session", &keys, b"h.example.com").unwrap();
        let mac = keys.mac(v.as_bytes(), b"h.example.com").unwrap();
        let expected = format!(
            "kasi-session=\"{v}.{}\"; Max-Age=60; Path=/; HttpOnly",
            std::str::from_utf8(&mac).unwrap()
        );
        assert_eq!(String::from_utf8(signed.clone()).unwrap(), expected);
        assert_eq!(
            sign_set_cookie(&signed, "kasi-session", &keys, b"h.example.com"),
            None
        );
        let expire = expiring_cookie("kasi-session", "/");
        assert_eq!(
            sign_set_cookie(expire.as_bytes(), "kasi-session", &keys, b"h"),
            None
        );
        assert_eq!(
            sign_set_cookie(b"other=1", "kasi-session", &keys, b"h"),
            None
        );
        assert_eq!(
            sign_set_cookie(
                header.as_bytes(),
                "kasi-session",
                &SessionKeys::default(),
                b"h"
            ),
            None
        );
    }

    #[test]
    fn the_filter_state_argument_is_envoys_protobuf() {
        let args = set_filter_state_arguments(ORIGINAL_DST_FILTER_STATE, "10.0.0.7:8012", 1);
        let mut expected = vec![0x0a, 51];
        expected.extend_from_slice(ORIGINAL_DST_FILTER_STATE.as_bytes());
        expected.extend_from_slice(&[0x12, 13]);
        expected.extend_from_slice(b"10.0.0.7:8012");
        expected.extend_from_slice(&[0x18, 1]);
        assert_eq!(args, expected);
    }
}
