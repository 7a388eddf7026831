//! What the filter does with one request and its response, as pure functions of their headers.
//! The proxy-wasm glue only reads headers in and applies the plan out.

use crate::codec::{self, DecodeError, Expiry, Format, SessionCookie};
use crate::config::{canonical_ip, Config, ROUTING_HEADER};
use crate::cookies;
use crate::envelope::{self, HeaderError};
use crate::signing::{self, SessionKeys, VerifiedSessions};
use std::net::{IpAddr, SocketAddr};

/// Where a session travels. Decision lines name it (`carrier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The cookie of `stateful_session`'s cookie mode (browsers).
    Cookie,
    /// Envoy's envelope in `mcp_header` (MCP clients).
    Envelope,
    /// `base64("ip:port")` in `session_header` (Envoy's header mode).
    Header,
}

impl Carrier {
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Cookie => "cookie",
            Carrier::Envelope => "envelope",
            Carrier::Header => "header",
        }
    }

    /// What separates Envoy's value from kasi's MAC (DESIGN.md, "Signed sessions").
    pub fn mac_separator(self) -> &'static [u8] {
        match self {
            Carrier::Envelope => signing::ENVELOPE_SEPARATOR,
            Carrier::Cookie | Carrier::Header => signing::COOKIE_SEPARATOR,
        }
    }
}

/// Why a session was not honoured; each has its own counter (`bad_signature` counts as
/// malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A cookie that is not one of Envoy's.
    Malformed(DecodeError),
    /// An envelope or header-mode value Envoy would not honour, or not as an address.
    MalformedHeader(HeaderError),
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
            Rejection::Malformed(_) | Rejection::MalformedHeader(_) => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired(_) => "expired",
            Rejection::Disallowed => "disallowed",
            Rejection::Dead => "dead",
        }
    }

    /// The same rejection without the text of the client's bytes a decode error may quote: what
    /// may be kept until the response.
    pub fn without_client_bytes(self) -> Rejection {
        match self {
            Rejection::Malformed(_) => Rejection::Malformed(DecodeError::Empty),
            Rejection::MalformedHeader(_) => Rejection::MalformedHeader(HeaderError::Empty),
            other => other,
        }
    }
}

/// What the request's session amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No session in any carrier: a new session; `stateful_session` will pin it.
    NoCookie,
    /// Honoured: the request goes to `address` (canonical `ip:port`, the filter-state value).
    /// Envelope and header-mode sessions read as a legacy cookie (`base64("ip:port")`, no
    /// expiry).
    Routed {
        cookie: SessionCookie,
        address: String,
    },
    /// Not honoured: removed from the request, or (an envelope) answered with MCP's 404.
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
    /// The carrier `verdict` is about (`Cookie` when the request carried no session). With
    /// sessions in several carriers, the first honoured one in the order envelope, header,
    /// cookie steers (the most specific session), else the first rejected one.
    pub carrier: Carrier,
    pub verdict: Verdict,
    /// Sessions in the request's other carriers that are not honoured (removed all the same):
    /// logged, not counted (counters count requests).
    pub also_rejected: Vec<(Carrier, Rejection, Option<String>)>,
    /// The `cookie` headers' replacement (one joined value, or `None` to remove them all), when
    /// they must change: a rejected session is removed; a signed one that is honoured is put
    /// back as the plain value `stateful_session` wrote, so that it reads exactly the address
    /// kasi approved and does not issue the cookie again.
    pub cookie_rewrite: Option<Option<Vec<u8>>>,
    /// How many `cookie` headers the request carried.
    pub cookie_headers: usize,
    /// The value to put in place of every copy of `mcp_header`: a signed envelope that is
    /// honoured, restored to the envelope Envoy wrote (which Envoy then restores to the
    /// server's own session id).
    pub envelope_rewrite: Option<Vec<u8>>,
    /// `session_header`'s replacement, as for cookies: `Some(None)` removes every copy,
    /// `Some(Some(v))` puts the plain value Envoy wrote in place of every copy.
    pub header_rewrite: Option<Option<Vec<u8>>>,
    /// Answer with MCP's 404 "Session not found" instead of passing the request on: its
    /// envelope is not honoured, and the client must start a new session.
    pub not_found: bool,
}

impl RequestPlan {
    /// The address to steer to, if any.
    pub fn steer_to(&self) -> Option<&str> {
        match (&self.verdict, self.not_found) {
            (Verdict::Routed { address, .. }, false) => Some(address),
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
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    plan_request_verified(config, headers, now, is_dead, None)
}

fn is_cookie_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"cookie")
}

/// Whether header `name` is the configured `wanted` one (empty: that carrier is off).
fn is_header(name: &[u8], wanted: &str) -> bool {
    !wanted.is_empty() && name.eq_ignore_ascii_case(wanted.as_bytes())
}

/// [`plan_request`], remembering verified sessions in `verified` (the filter keeps one table per
/// VM) so that a session's later requests skip the HMAC.
///
/// Every carrier is read the way its `stateful_session` mode reads it (the first copy of a
/// session header, the first matching cookie across `cookie` headers), and each one present is
/// judged: none that is not honoured reaches `stateful_session` in a form it would follow.
pub fn plan_request_verified<N, D>(
    config: &Config,
    headers: &[(&[u8], &[u8])],
    mut now: N,
    mut is_dead: D,
    mut verified: Option<&mut VerifiedSessions>,
) -> RequestPlan
where
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    let mut strip_header = false;
    // Nearly every request has one `cookie` header: it is kept as a one-element list, and the
    // list is only collected (allocated) when there are several.
    let mut cookie_count = 0usize;
    let mut first_cookie: &[u8] = b"";
    // The first copy of each session header: the one Envoy reads (`hdr[0]`).
    let mut envelope: Option<&[u8]> = None;
    let mut header: Option<&[u8]> = None;
    for &(name, value) in headers {
        if is_cookie_header(name) {
            if cookie_count == 0 {
                first_cookie = value;
            }
            cookie_count += 1;
        } else if name.eq_ignore_ascii_case(ROUTING_HEADER.as_bytes()) {
            strip_header = true;
        } else if is_header(name, &config.mcp_header) {
            envelope.get_or_insert(value);
        } else if is_header(name, &config.session_header) {
            header.get_or_insert(value);
        }
    }
    let authority = authority(headers);
    let mut plan = RequestPlan {
        strip_header,
        carrier: Carrier::Cookie,
        verdict: Verdict::NoCookie,
        also_rejected: Vec::new(),
        cookie_rewrite: None,
        cookie_headers: cookie_count,
        envelope_rewrite: None,
        header_rewrite: None,
        not_found: false,
    };
    // Honoured and rejected sessions, one slot per carrier in the order they take precedence.
    let mut judged: [Option<(Carrier, Verdict)>; 3] = [None, None, None];

    if let Some(value) = envelope {
        let (verdict, plain) = judge_carrier(
            config,
            Carrier::Envelope,
            value,
            authority,
            &mut now,
            &mut is_dead,
            verified.as_deref_mut(),
        );
        if let Verdict::Rejected { .. } = verdict {
            // Answered here: nothing of this request reaches `stateful_session` or a pod.
            plan.carrier = Carrier::Envelope;
            plan.verdict = verdict;
            plan.not_found = true;
            return plan;
        }
        if plain.len() != value.len() {
            plan.envelope_rewrite = Some(plain.to_vec());
        }
        judged[0] = Some((Carrier::Envelope, verdict));
    }

    if let Some(value) = header {
        let (verdict, plain) = judge_carrier(
            config,
            Carrier::Header,
            value,
            authority,
            &mut now,
            &mut is_dead,
            verified.as_deref_mut(),
        );
        plan.header_rewrite = match &verdict {
            Verdict::Rejected { .. } => Some(None),
            Verdict::Routed { .. } if plain.len() != value.len() => Some(Some(plain.to_vec())),
            _ => None,
        };
        judged[1] = Some((Carrier::Header, verdict));
    }

    let name = config.cookie_name.as_bytes();
    let cookie_values = || {
        headers
            .iter()
            .filter(|(n, _)| is_cookie_header(n))
            .map(|&(_, v)| v)
    };
    let found = (!name.is_empty() && cookie_count > 0)
        .then(|| cookies::locate(cookie_values(), name))
        .flatten();
    if let Some(found) = found {
        let value = found.value;
        let (verdict, plain) = judge_carrier(
            config,
            Carrier::Cookie,
            value,
            authority,
            &mut now,
            &mut is_dead,
            verified,
        );
        let restore = (plain.len() != value.len()).then_some(plain);
        let restored = match &verdict {
            Verdict::Rejected { .. } => Some(None),
            Verdict::Routed { .. } if restore.is_some() => Some(restore),
            _ => None,
        };
        plan.cookie_rewrite = restored.map(|restored| {
            if cookie_count == 1 {
                cookies::rewrite_found(&[first_cookie], &found, name, restored)
            } else {
                let all: Vec<&[u8]> = cookie_values().collect();
                cookies::rewrite_found(&all, &found, name, restored)
            }
        });
        judged[2] = Some((Carrier::Cookie, verdict));
    }

    let primary = judged
        .iter()
        .position(|j| matches!(j, Some((_, Verdict::Routed { .. }))))
        .or_else(|| judged.iter().position(Option::is_some));
    if let Some((carrier, verdict)) = primary.and_then(|p| judged[p].take()) {
        plan.carrier = carrier;
        plan.verdict = verdict;
    }
    plan.also_rejected = judged
        .into_iter()
        .flatten()
        .filter_map(|(carrier, verdict)| match verdict {
            Verdict::Rejected { rejection, address } => Some((carrier, rejection, address)),
            _ => None,
        })
        .collect();
    plan
}

/// The verdict on one session value as Envoy reads it (a cookie's quotes removed), and the
/// plain value under its signature (the value itself when unsigned). With `session_keys`, only
/// a value kasi signed for this `authority` is considered at all.
pub fn judge_session<'v, N, D>(
    config: &Config,
    value: &'v [u8],
    authority: &[u8],
    mut now: N,
    mut is_dead: D,
) -> (Verdict, &'v [u8])
where
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    judge_carrier(
        config,
        Carrier::Cookie,
        value,
        authority,
        &mut now,
        &mut is_dead,
        None,
    )
}

/// [`judge_session`] for a value of any carrier.
pub fn judge_carrier<'v, N, D>(
    config: &Config,
    carrier: Carrier,
    value: &'v [u8],
    authority: &[u8],
    now: &mut N,
    is_dead: &mut D,
    verified: Option<&mut VerifiedSessions>,
) -> (Verdict, &'v [u8])
where
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    if config.session_keys.is_empty() {
        return (
            judge_decoded(config, decode(carrier, value), now, is_dead),
            value,
        );
    }
    let checked = match signing::split(value, carrier.mac_separator()) {
        (plain, Some(mac)) => {
            let valid = match verified {
                Some(table) => table.verify(&config.session_keys, plain, authority, mac),
                None => config.session_keys.verify(plain, authority, mac),
            };
            if valid {
                Ok(plain)
            } else {
                Err(plain)
            }
        }
        (plain, None) => Err(plain),
    };
    match checked {
        Ok(plain) => (
            judge_decoded(config, decode(carrier, plain), now, is_dead),
            plain,
        ),
        Err(plain) => {
            let address = decode(carrier, plain).ok().map(|(_, address)| address);
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

/// Decodes a plain session value of `carrier`: the session, and its address as the filter state
/// spells it.
pub fn decode(carrier: Carrier, value: &[u8]) -> Result<(SessionCookie, String), Rejection> {
    let address = match carrier {
        Carrier::Cookie => return decode_session(value).map_err(Rejection::Malformed),
        Carrier::Envelope => envelope::decode_envelope(value).map(|e| e.address),
        Carrier::Header => envelope::decode_header_value(value),
    }
    .map_err(Rejection::MalformedHeader)?;
    let session = SessionCookie {
        format: Format::Legacy,
        address,
        expires: None,
    };
    Ok((session, canonical_address(&address)))
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

/// The verdict on one plain cookie value. `now` (Unix seconds) is only asked for when the
/// cookie carries a Unix-time `expires`; `is_dead` only for a cookie that passed every other
/// check.
pub fn judge<N, D>(config: &Config, value: &[u8], mut now: N, mut is_dead: D) -> Verdict
where
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    judge_decoded(
        config,
        decode(Carrier::Cookie, value),
        &mut now,
        &mut is_dead,
    )
}

/// The verdict on a decoded session (or the reason it did not decode).
fn judge_decoded<N, D>(
    config: &Config,
    decoded: Result<(SessionCookie, String), Rejection>,
    now: &mut N,
    is_dead: &mut D,
) -> Verdict
where
    N: FnMut() -> u64,
    D: FnMut(&str) -> bool,
{
    let (cookie, address) = match decoded {
        Ok(decoded) => decoded,
        Err(rejection) => {
            return Verdict::Rejected {
                rejection,
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
    if cookie_name.is_empty() {
        return None;
    }
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

/// The status and body kasi answers a request whose MCP envelope it does not honour with: what
/// MCP servers answer for a session they do not know (Streamable HTTP: "the server MUST respond
/// … with HTTP 404 Not Found", the client then starts a new session; the body is the JSON-RPC
/// error the reference TypeScript SDK's `validateSession` sends), so the client re-initializes
/// exactly as it would after a server restart.
pub const MCP_NOT_FOUND_STATUS: u32 = 404;
pub const MCP_NOT_FOUND_BODY: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;
pub const MCP_NOT_FOUND_CONTENT_TYPE: &str = "application/json";

/// The session a response's envelope or header-mode header issues: its only copy (Envoy writes
/// one, and rewrites an envelope only when the server sent exactly one), read back as Envoy
/// would read it on the next request, naming `upstream` — the host this response came from.
/// `None` for anything else: a value Envoy did not write is never signed (a pod cannot mint a
/// session for another address), and an envelope already signed is not signed again.
pub fn issued_in_header(
    carrier: Carrier,
    values: &[&[u8]],
    upstream: &[u8],
) -> Option<SessionCookie> {
    let [value] = values else {
        return None;
    };
    let address = match carrier {
        Carrier::Envelope => {
            if signing::split(value, signing::ENVELOPE_SEPARATOR)
                .1
                .is_some()
            {
                return None;
            }
            envelope::decode_envelope(value).ok()?.address
        }
        Carrier::Header => envelope::decode_header_value(value).ok()?,
        Carrier::Cookie => return None,
    };
    let upstream: SocketAddr = std::str::from_utf8(upstream).ok()?.parse().ok()?;
    (address == upstream).then_some(SessionCookie {
        format: Format::Legacy,
        address,
        expires: None,
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

    fn envelope_for(addr: &str) -> String {
        crate::envelope::encode_envelope(addr, b"sid-1")
    }

    fn sign(value: &str, authority: &str, carrier: Carrier) -> String {
        let signed = SessionKeys::new([&KEY])
            .sign(
                value.as_bytes(),
                authority.as_bytes(),
                carrier.mac_separator(),
            )
            .unwrap();
        String::from_utf8(signed).unwrap()
    }

    fn header_config(signed: bool) -> Config {
        Config {
            session_header: "x-session".into(),
            ..if signed { signed_config() } else { config() }
        }
    }

    #[test]
    fn a_signed_envelope_routes_and_is_restored_for_stateful_session() {
        let plain = envelope_for("10.0.0.7:8012");
        let signed = sign(&plain, "h.example.com", Carrier::Envelope);
        let p = plan_with(
            &signed_config(),
            &[(":authority", "H.example.com"), ("mcp-session-id", &signed)],
            false,
        );
        assert_eq!(
            (p.carrier, p.steer_to()),
            (Carrier::Envelope, Some("10.0.0.7:8012"))
        );
        assert_eq!(p.envelope_rewrite, Some(plain.into_bytes()));
        assert!(!p.not_found);
        // Unsigned sessions: Envoy's value as it is, nothing to rewrite.
        let p = plan(&[("mcp-session-id", &envelope_for("10.0.0.7:8012"))], false);
        assert_eq!(p.steer_to(), Some("10.0.0.7:8012"));
        assert_eq!(p.envelope_rewrite, None);
    }

    #[test]
    fn a_rejected_envelope_is_answered_and_nothing_else_is_touched() {
        let valid_cookie = cookie_for("10.0.0.9:8012", None);
        for (value, reason, dead) in [
            (envelope_for("8.8.8.8:8012"), "disallowed", false),
            (envelope_for("10.0.0.1:15000"), "disallowed", false),
            (envelope_for("10.0.0.1:8012"), "dead", true),
            ("MTAuMC4wLjE6ODAxMg".to_string(), "malformed", false),
            (String::new(), "malformed", false),
            (";;".to_string(), "malformed", false),
        ] {
            let p = plan(
                &[("mcp-session-id", &value), ("cookie", &valid_cookie)],
                dead,
            );
            assert!(p.not_found, "{value}");
            assert_eq!(p.carrier, Carrier::Envelope);
            assert_eq!(p.steer_to(), None, "{value}");
            match &p.verdict {
                Verdict::Rejected { rejection, .. } => assert_eq!(rejection.reason(), reason),
                other => panic!("{value}: {other:?}"),
            }
            assert_eq!(
                (&p.cookie_rewrite, &p.envelope_rewrite, &p.header_rewrite),
                (&None, &None, &None)
            );
        }
        let unsigned = envelope_for("10.0.0.7:8012");
        let p = plan_with(&signed_config(), &[("mcp-session-id", &unsigned)], false);
        assert!(p.not_found);
        assert_eq!(
            p.verdict,
            Verdict::Rejected {
                rejection: Rejection::BadSignature,
                address: Some("10.0.0.7:8012".into())
            }
        );
    }

    #[test]
    fn the_first_copy_of_a_session_header_is_the_one_judged() {
        let allowed = envelope_for("10.0.0.7:8012");
        let outside = envelope_for("127.0.0.1:15000");
        let p = plan(
            &[("mcp-session-id", &allowed), ("mcp-session-id", &outside)],
            false,
        );
        assert_eq!(p.steer_to(), Some("10.0.0.7:8012"));
        let p = plan(
            &[("mcp-session-id", &outside), ("mcp-session-id", &allowed)],
            false,
        );
        assert!(p.not_found);
        // Signed: every copy gives way to the one restored value.
        let signed = sign(&allowed, "", Carrier::Envelope);
        let p = plan_with(
            &signed_config(),
            &[("mcp-session-id", &signed), ("mcp-session-id", &outside)],
            false,
        );
        assert_eq!(p.envelope_rewrite, Some(allowed.clone().into_bytes()));
    }

    #[test]
    fn header_mode_removes_what_it_rejects_and_restores_what_it_routes() {
        let plain = crate::envelope::encode_header_value("10.0.0.7:8012");
        let signed = sign(&plain, "h", Carrier::Header);
        let p = plan_with(
            &header_config(true),
            &[(":authority", "h"), ("x-session", &signed)],
            false,
        );
        assert_eq!(
            (p.carrier, p.steer_to()),
            (Carrier::Header, Some("10.0.0.7:8012"))
        );
        assert_eq!(p.header_rewrite, Some(Some(plain.clone().into_bytes())));
        for (config, value) in [
            (header_config(true), plain.clone()),
            (header_config(false), format!("{plain}.x")),
            (
                header_config(false),
                crate::envelope::encode_header_value("8.8.8.8:8012"),
            ),
        ] {
            let p = plan_with(&config, &[("x-session", &value), ("cookie", "a=1")], false);
            assert_eq!(p.carrier, Carrier::Header, "{value}");
            assert!(!p.not_found && p.steer_to().is_none(), "{value}");
            assert_eq!(p.header_rewrite, Some(None), "{value}");
            assert_eq!(p.cookie_rewrite, None);
        }
        // Off by default: the header is not a carrier.
        let p = plan(&[("x-session", &plain)], false);
        assert_eq!((p.verdict, p.header_rewrite), (Verdict::NoCookie, None));
    }

    #[test]
    fn the_most_specific_honoured_session_steers_and_every_carrier_is_judged() {
        let config = header_config(false);
        let envelope = envelope_for("10.0.0.1:8012");
        let header = crate::envelope::encode_header_value("10.0.0.2:8012");
        let cookie = cookie_for("10.0.0.3:8012", None);
        let forged_cookie = cookie_for("8.8.8.8:8012", None);
        let forged_header = crate::envelope::encode_header_value("8.8.8.8:8012");
        let cases = [
            (
                vec![
                    ("mcp-session-id", &envelope),
                    ("x-session", &header),
                    ("cookie", &cookie),
                ],
                Carrier::Envelope,
                Some("10.0.0.1:8012"),
                0,
            ),
            (
                vec![("x-session", &header), ("cookie", &cookie)],
                Carrier::Header,
                Some("10.0.0.2:8012"),
                0,
            ),
            (
                vec![("x-session", &forged_header), ("cookie", &cookie)],
                Carrier::Cookie,
                Some("10.0.0.3:8012"),
                1,
            ),
            (
                vec![("mcp-session-id", &envelope), ("cookie", &forged_cookie)],
                Carrier::Envelope,
                Some("10.0.0.1:8012"),
                1,
            ),
            (
                vec![("x-session", &forged_header), ("cookie", &forged_cookie)],
                Carrier::Header,
                None,
                1,
            ),
        ];
        for (headers, carrier, steer, also) in cases {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let p = plan_with(&config, &headers, false);
            assert_eq!((p.carrier, p.steer_to()), (carrier, steer), "{headers:?}");
            assert_eq!(p.also_rejected.len(), also, "{headers:?}");
        }
        let p = plan_with(
            &config,
            &[("mcp-session-id", &envelope), ("cookie", &forged_cookie)],
            false,
        );
        assert_eq!(p.cookie_rewrite, Some(None), "the forged cookie is removed");
    }

    #[test]
    fn mcp_header_off_leaves_the_header_alone() {
        let config = Config {
            mcp_header: String::new(),
            ..config()
        };
        let p = plan_with(&config, &[("mcp-session-id", "garbage")], false);
        assert_eq!((p.verdict, p.not_found), (Verdict::NoCookie, false));
    }

    #[test]
    fn cookie_sessions_off_leave_every_cookie_alone() {
        let config = Config {
            cookie_name: String::new(),
            ..config()
        };
        let session = encode_proto("10.0.0.7:8012".parse().unwrap(), None);
        for cookie in [
            cookie_for("10.0.0.7:8012", None),
            format!("={session}"),
            cookie_for("8.8.8.8:8012", None),
            "kasi-session=%%%".to_owned(),
        ] {
            let p = plan_with(&config, &[("cookie", &cookie)], false);
            assert_eq!(p.verdict, Verdict::NoCookie, "{cookie}");
            assert_eq!(p.cookie_rewrite, None, "{cookie}");
        }
        let set_cookie = format!("={session}; Path=/");
        assert_eq!(issued_cookie([set_cookie.as_bytes()], ""), None);
        // The other carriers still work.
        let envelope = envelope_for("10.0.0.7:8012");
        let p = plan_with(&config, &[("mcp-session-id", &envelope)], false);
        assert_eq!(p.steer_to(), Some("10.0.0.7:8012"));
    }

    #[test]
    fn only_what_envoy_wrote_for_the_upstream_is_issued() {
        let upstream = b"10.0.0.7:8012";
        let envelope = envelope_for("10.0.0.7:8012");
        let issued = issued_in_header(Carrier::Envelope, &[envelope.as_bytes()], upstream);
        assert_eq!(
            issued.map(|s| s.address),
            Some("10.0.0.7:8012".parse().unwrap())
        );
        for (carrier, values) in [
            // Another pod's address: a pod cannot mint a session for someone else.
            (Carrier::Envelope, vec![envelope_for("10.0.0.8:8012")]),
            // Two copies: Envoy leaves those alone, so they are the server's own.
            (Carrier::Envelope, vec![envelope.clone(), envelope.clone()]),
            (Carrier::Envelope, vec!["sid-1".to_string()]),
            (
                Carrier::Envelope,
                vec![sign(&envelope, "h", Carrier::Envelope)],
            ),
            (
                Carrier::Header,
                vec![sign(
                    &crate::envelope::encode_header_value("10.0.0.7:8012"),
                    "h",
                    Carrier::Header,
                )],
            ),
            (Carrier::Cookie, vec![envelope.clone()]),
        ] {
            let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            assert_eq!(
                issued_in_header(carrier, &slices, upstream),
                None,
                "{values:?}"
            );
        }
        let header = crate::envelope::encode_header_value("10.0.0.7:8012");
        assert!(issued_in_header(Carrier::Header, &[header.as_bytes()], upstream).is_some());
        assert_eq!(
            issued_in_header(Carrier::Header, &[header.as_bytes()], b"garbage"),
            None
        );
    }

    #[test]
    fn the_mcp_answer_is_the_sdks() {
        let body: serde_json::Value = serde_json::from_str(MCP_NOT_FOUND_BODY).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"jsonrpc": "2.0", "error": {"code": -32001, "message": "Session not found"}, "id": null})
        );
        assert_eq!(
            (MCP_NOT_FOUND_STATUS, MCP_NOT_FOUND_CONTENT_TYPE),
            (404, "application/json")
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
