//! The value of the session cookie that Envoy's `stateful_session` filter writes.
//!
//! Envoy ≥ 1.27 writes `base64(protobuf envoy.Cookie{address = 1: string, expires = 2: uint64})`;
//! Envoy 1.21–1.26 wrote `base64("ip:port")`. Envoy decodes by trying protobuf first and falling
//! back to the legacy text, so this codec does the same: a value both parse as must mean the same
//! thing to kasi and to Envoy, or kasi would honour a cookie that Envoy reads differently.
//!
//! The protobuf reader is hand-written: two fields do not justify prost and its code size in a
//! module that must stay under 200 KB, and a reader that never allocates and never panics on
//! hostile bytes is easier to prove here than through generated code.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Longer cookie values are refused before decoding: a real one is under 80 bytes, and a 10 KB
/// forged value must cost nothing.
pub const MAX_ENCODED_LEN: usize = 256;

/// `expires` values below this are not Unix times (2020-09-13): Envoy 1.27+ wrote its monotonic
/// clock there (envoyproxy/envoy#44111), which no other process can compare against.
pub const PLAUSIBLE_UNIX_TIME: u64 = 1_600_000_000;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Which of Envoy's two cookie encodings a value used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `base64(protobuf)`, Envoy ≥ 1.27.
    Proto,
    /// `base64("ip:port")`, Envoy 1.21–1.26.
    Legacy,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Proto => "proto",
            Format::Legacy => "legacy",
        }
    }
}

/// A decoded session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCookie {
    pub format: Format,
    pub address: SocketAddr,
    /// The raw `expires` field; `None` when absent or 0 (a cookie without TTL).
    pub expires: Option<u64>,
}

/// Whether a cookie's `expires` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No `expires`: a session cookie.
    Never,
    /// A plausible Unix time still in the future.
    At(u64),
    /// A plausible Unix time in the past.
    Expired(u64),
    /// A non-zero value too small to be a Unix time (Envoy's monotonic clock): unknown.
    Unknown(u64),
}

impl SessionCookie {
    pub fn expiry(&self, now_unix_s: u64) -> Expiry {
        match self.expires {
            None => Expiry::Never,
            Some(t) if t < PLAUSIBLE_UNIX_TIME => Expiry::Unknown(t),
            Some(t) if t < now_unix_s => Expiry::Expired(t),
            Some(t) => Expiry::At(t),
        }
    }

    pub fn is_expired(&self, now_unix_s: u64) -> bool {
        matches!(self.expiry(now_unix_s), Expiry::Expired(_))
    }
}

/// Why a value is not a session cookie. The text is one line, fit for a CLI error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    TooLong(usize),
    NotBase64,
    EmptyAddress,
    NotUtf8Address,
    BadAddress(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "the cookie value is empty"),
            DecodeError::TooLong(n) => write!(
                f,
                "the cookie value is {n} bytes long; Envoy's are under {MAX_ENCODED_LEN}"
            ),
            DecodeError::NotBase64 => write!(f, "the cookie value is not base64"),
            DecodeError::EmptyAddress => write!(f, "the cookie's protobuf has no address"),
            DecodeError::NotUtf8Address => write!(f, "the cookie's address is not text"),
            DecodeError::BadAddress(a) => {
                write!(
                    f,
                    "the cookie's address {a:?} is not ip:port or [ipv6]:port"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a cookie value: standard or URL-safe base64, padded or not, quoted or bare, signed
/// (`value.MAC`, the MAC ignored: checking it is the filter's job) or not.
pub fn decode(value: &[u8]) -> Result<SessionCookie, DecodeError> {
    let value = unsigned(strip_quotes(trim_ascii(value)));
    if value.is_empty() {
        return Err(DecodeError::Empty);
    }
    if value.len() > MAX_ENCODED_LEN {
        return Err(DecodeError::TooLong(value.len()));
    }
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let n = decode_base64(value, &mut buf)?;
    decode_bytes(&buf[..n])
}

/// Decodes the bytes under the base64, as Envoy does: protobuf first, then legacy text.
pub fn decode_bytes(bytes: &[u8]) -> Result<SessionCookie, DecodeError> {
    match parse_proto(bytes) {
        Some(proto) => {
            if proto.address.is_empty() {
                return Err(DecodeError::EmptyAddress);
            }
            let address = parse_address(proto.address)?;
            Ok(SessionCookie {
                format: Format::Proto,
                address,
                expires: (proto.expires != 0).then_some(proto.expires),
            })
        }
        None => Ok(SessionCookie {
            format: Format::Legacy,
            address: parse_address(bytes)?,
            expires: None,
        }),
    }
}

/// A cookie naming an IPv4 address in its canonical text, read by [`decode_ipv4`] without
/// allocating: what nearly every request a session sends carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cookie<'a> {
    pub format: Format,
    pub address: SocketAddrV4,
    /// The address as the cookie spells it, which is how `SocketAddr` prints it.
    pub text: &'a str,
    /// As in [`SessionCookie`].
    pub expires: Option<u64>,
}

impl Ipv4Cookie<'_> {
    pub fn session_cookie(&self) -> SessionCookie {
        SessionCookie {
            format: self.format,
            address: SocketAddr::V4(self.address),
            expires: self.expires,
        }
    }
}

/// [`decode`] for the common case, in one pass and without allocating: base64 in one alphabet
/// with canonical or no padding, of Envoy's protobuf or of the legacy text, naming an IPv4
/// address written canonically (no leading zeros). `None` for anything else — IPv6, unusual
/// text, malformed values — for which [`decode`] gives the answer. When it returns a cookie,
/// [`decode`] returns the same one (a property test checks it).
pub fn decode_ipv4<'b>(value: &[u8], buf: &'b mut [u8; MAX_ENCODED_LEN]) -> Option<Ipv4Cookie<'b>> {
    let value = unsigned(strip_quotes(trim_ascii(value)));
    if value.is_empty() || value.len() > MAX_ENCODED_LEN {
        return None;
    }
    let n = decode_base64_plain(value, buf)?;
    let bytes = &buf[..n];
    let (format, text, expires) = match parse_proto(bytes) {
        Some(proto) => (
            Format::Proto,
            proto.address,
            (proto.expires != 0).then_some(proto.expires),
        ),
        None => (Format::Legacy, bytes, None),
    };
    let address = parse_canonical_ipv4(text)?;
    Some(Ipv4Cookie {
        format,
        address,
        // Only ASCII digits, dots and a colon got through.
        text: std::str::from_utf8(text).ok()?,
        expires,
    })
}

/// Base64 in the standard or the URL-safe alphabet (not both), with no padding or the
/// canonical padding, into `out`; the bits past the last whole byte are ignored. `None` for
/// anything else (the `base64` crate is then asked, and decides).
fn decode_base64_plain(value: &[u8], out: &mut [u8]) -> Option<usize> {
    let padding = value.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 || (padding > 0 && value.len() % 4 != 0) {
        return None;
    }
    let data = &value[..value.len() - padding];
    if data.len() % 4 == 1 || (padding > 0 && (data.len() + padding) % 4 != 0) {
        return None;
    }
    let url_safe = data.iter().any(|&b| b == b'-' || b == b'_');
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' if !url_safe => 62,
            b'/' if !url_safe => 63,
            b'-' if url_safe => 62,
            b'_' if url_safe => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Some(n)
}

/// `a.b.c.d:port` exactly as `SocketAddr` prints it (no leading zeros, port 1–65535).
fn parse_canonical_ipv4(text: &[u8]) -> Option<SocketAddrV4> {
    fn number(digits: &[u8], max: u32) -> Option<u32> {
        if digits.is_empty() || digits.len() > 5 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        let mut n = 0u32;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(d - b'0');
        }
        (n <= max).then_some(n)
    }
    let colon = text.iter().position(|&b| b == b':')?;
    let (ip, port) = (&text[..colon], &text[colon + 1..]);
    let port = number(port, 65_535).filter(|&p| p != 0)?;
    let mut octets = [0u8; 4];
    let mut parts = ip.split(|&b| b == b'.');
    for octet in &mut octets {
        *octet = number(parts.next()?, 255)? as u8;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(SocketAddrV4::new(Ipv4Addr::from(octets), port as u16))
}

/// Encodes the way Envoy ≥ 1.30 does: standard padded base64 of the protobuf, `expires` omitted
/// when `None`.
pub fn encode_proto(address: SocketAddr, expires: Option<u64>) -> String {
    let address = address.to_string();
    let mut bytes = Vec::with_capacity(address.len() + 16);
    bytes.push(0x0a);
    push_varint(&mut bytes, address.len() as u64);
    bytes.extend_from_slice(address.as_bytes());
    if let Some(expires) = expires.filter(|&e| e != 0) {
        bytes.push(0x10);
        push_varint(&mut bytes, expires);
    }
    STANDARD.encode(bytes)
}

/// Encodes the way Envoy 1.21–1.26 did: `base64("ip:port")`.
pub fn encode_legacy(address: SocketAddr) -> String {
    STANDARD.encode(address.to_string())
}

fn decode_base64(value: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let url_safe = value.iter().any(|&b| b == b'-' || b == b'_');
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine
        .decode_slice(value, out)
        .map_err(|_| DecodeError::NotBase64)
}

/// Parses `ip:port` or `[ipv6]:port` strictly; port 0 is not an address anything listens on.
pub fn parse_address(bytes: &[u8]) -> Result<SocketAddr, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8Address)?;
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(DecodeError::BadAddress(printable(text))),
    }
}

fn printable(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

struct ProtoCookie<'a> {
    address: &'a [u8],
    expires: u64,
}

/// Reads protobuf wire format like protobuf's own parser: unknown fields are skipped, the last
/// occurrence of a field wins, and anything that does not parse to the end returns `None`.
fn parse_proto(mut bytes: &[u8]) -> Option<ProtoCookie<'_>> {
    let mut cookie = ProtoCookie {
        address: &[],
        expires: 0,
    };
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let field = key >> 3;
        if field == 0 {
            return None;
        }
        match (field, key & 7) {
            (1, 2) => cookie.address = read_len_delimited(&mut bytes)?,
            (2, 0) => cookie.expires = read_varint(&mut bytes)?,
            (_, 0) => {
                read_varint(&mut bytes)?;
            }
            (_, 1) => bytes = bytes.get(8..)?,
            (_, 2) => {
                read_len_delimited(&mut bytes)?;
            }
            (_, 5) => bytes = bytes.get(4..)?,
            // Groups (3, 4) and unknown wire types: not a cookie Envoy would write.
            _ => return None,
        }
    }
    Some(cookie)
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn read_len_delimited<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(bytes)?).ok()?;
    if len > bytes.len() {
        return None;
    }
    let (field, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(field)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The value under a signed session's MAC (the value itself when unsigned).
fn unsigned(value: &[u8]) -> &[u8] {
    crate::signing::split(value, crate::signing::COOKIE_SEPARATOR).0
}

fn strip_quotes(bytes: &[u8]) -> &[u8] {
    match bytes {
        [b'"', inner @ .., b'"'] => inner,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_signed_value_decodes_to_the_session_under_its_mac() {
        let plain = encode_proto(addr("10.0.0.7:8012"), None);
        let signed = format!("\"{plain}.AAAAAAAAAAAAAAAAAAAAAA\"");
        assert_eq!(decode(signed.as_bytes()), decode(plain.as_bytes()));
        let mut buf = [0u8; MAX_ENCODED_LEN];
        assert_eq!(
            decode_ipv4(signed.as_bytes(), &mut buf).map(|c| c.session_cookie()),
            decode(plain.as_bytes()).ok()
        );
    }

    #[test]
    fn decodes_a_cookie_envoy_1_40_wrote() {
        // Set-Cookie from Envoy 1.40 with ttl 0 for 127.0.0.2:18012.
        let value = encode_proto(addr("127.0.0.2:18012"), None);
        assert_eq!(value, "Cg8xMjcuMC4wLjI6MTgwMTI=");
        let cookie = decode(b"\"Cg8xMjcuMC4wLjI6MTgwMTI=\"").unwrap();
        assert_eq!(cookie.format, Format::Proto);
        assert_eq!(cookie.address, addr("127.0.0.2:18012"));
        assert_eq!(cookie.expires, None);
    }

    #[test]
    fn decodes_legacy_cookies() {
        // The example from Envoy's cookie.proto documentation.
        let cookie = decode(b"MS4yLjMuNDo4MA==").unwrap();
        assert_eq!(cookie.format, Format::Legacy);
        assert_eq!(cookie.address, addr("1.2.3.4:80"));
        let v6 = decode(encode_legacy(addr("[fd00::1]:8012")).as_bytes()).unwrap();
        assert_eq!(v6.address, addr("[fd00::1]:8012"));
    }

    #[test]
    fn accepts_unpadded_and_url_safe_base64() {
        let a = addr("[fd00::abcd:ef]:8013");
        let std_padded = encode_proto(a, Some(1_900_000_000));
        let unpadded = std_padded.trim_end_matches('=');
        let url_safe = unpadded.replace('+', "-").replace('/', "_");
        for v in [std_padded.as_str(), unpadded, url_safe.as_str()] {
            let c = decode(v.as_bytes()).unwrap();
            assert_eq!((c.address, c.expires), (a, Some(1_900_000_000)), "{v}");
        }
    }

    #[test]
    fn expiry_counts_only_plausible_unix_times() {
        let c = |e| SessionCookie {
            format: Format::Proto,
            address: addr("10.0.0.1:8012"),
            expires: e,
        };
        let now = 1_800_000_000;
        assert_eq!(c(None).expiry(now), Expiry::Never);
        assert_eq!(c(Some(12_345)).expiry(now), Expiry::Unknown(12_345));
        assert!(!c(Some(12_345)).is_expired(now));
        assert!(c(Some(now - 1)).is_expired(now));
        assert!(!c(Some(now)).is_expired(now));
        assert_eq!(c(Some(now + 60)).expiry(now), Expiry::At(now + 60));
    }

    #[test]
    fn rejects_bad_values_with_a_reason() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"\"\""), Err(DecodeError::Empty));
        assert_eq!(decode(b"!!!"), Err(DecodeError::NotBase64));
        assert!(matches!(
            decode(&[b'A'; 10_000]),
            Err(DecodeError::TooLong(10_000))
        ));
        // Truncated protobuf: length says 15, 3 bytes follow; not legacy text either.
        let truncated = STANDARD.encode([0x0a, 15, b'1', b'2', b'7']);
        assert!(matches!(
            decode(truncated.as_bytes()),
            Err(DecodeError::BadAddress(_))
        ));
        // Valid protobuf without the address field.
        let no_address = STANDARD.encode([0x10, 0x01]);
        assert_eq!(
            decode(no_address.as_bytes()),
            Err(DecodeError::EmptyAddress)
        );
        let port_zero = encode_proto(addr("10.0.0.1:0"), None);
        assert!(matches!(
            decode(port_zero.as_bytes()),
            Err(DecodeError::BadAddress(_))
        ));
        let hostname = STANDARD.encode("example.com:80");
        assert!(matches!(
            decode(hostname.as_bytes()),
            Err(DecodeError::BadAddress(_))
        ));
    }

    #[test]
    fn skips_unknown_protobuf_fields_like_protobuf_does() {
        let mut bytes = vec![0x18, 0x05, 0x22, 0x01, b'x'];
        bytes.extend([0x0a, 13]);
        bytes.extend(b"10.1.2.3:8012");
        let c = decode(STANDARD.encode(&bytes).as_bytes()).unwrap();
        assert_eq!(c.address, addr("10.1.2.3:8012"));
    }

    #[test]
    fn the_fast_decoder_reads_what_envoy_writes() {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let a = addr("10.1.2.3:8012");
        for (value, format, expires) in [
            (
                format!("\"{}\"", encode_proto(a, None)),
                Format::Proto,
                None,
            ),
            (encode_proto(a, Some(86_000)), Format::Proto, Some(86_000)),
            (encode_legacy(a), Format::Legacy, None),
            (
                encode_proto(a, None).trim_end_matches('=').to_string(),
                Format::Proto,
                None,
            ),
        ] {
            let c = decode_ipv4(value.as_bytes(), &mut buf).unwrap_or_else(|| panic!("{value}"));
            assert_eq!(
                (c.format, c.text, c.expires),
                (format, "10.1.2.3:8012", expires)
            );
            assert_eq!(c.session_cookie(), decode(value.as_bytes()).unwrap());
        }
        // Left to the general decoder.
        for value in [
            encode_proto(addr("[fd00::1]:8012"), None),
            STANDARD.encode("010.1.2.3:8012"),
            STANDARD.encode("10.1.2.3:08012"),
            STANDARD.encode("10.1.2.3:0"),
            STANDARD.encode("10.1.2.256:1"),
            "Cg8xMjcuMC4wLjI6MTgwMTI=x".to_string(),
            "Cg8xMjcuMC4wLjI6MTgwMTI".to_string() + "===",
            String::new(),
        ] {
            assert_eq!(decode_ipv4(value.as_bytes(), &mut buf), None, "{value}");
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_base64_agrees_with_the_crate(text in "[A-Za-z0-9+/_=-]{0,24}") {
            let mut ours = [0u8; MAX_ENCODED_LEN];
            if let Some(n) = decode_base64_plain(text.as_bytes(), &mut ours) {
                let mut theirs = [0u8; MAX_ENCODED_LEN];
                let m = decode_base64(text.as_bytes(), &mut theirs);
                proptest::prop_assert_eq!(Ok(&ours[..n]), m.map(|m| &theirs[..m]), "{}", text);
            }
        }

        #[test]
        fn plain_base64_reads_what_encoders_write(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let padded = STANDARD.encode(&bytes);
            let url_safe = URL_SAFE.encode(&bytes);
            for text in [padded.as_str(), padded.trim_end_matches('='), url_safe.as_str()] {
                let mut out = [0u8; MAX_ENCODED_LEN];
                let n = decode_base64_plain(text.as_bytes(), &mut out);
                proptest::prop_assert_eq!(n.map(|n| &out[..n]), Some(&bytes[..]), "{}", text);
            }
        }
    }

    #[test]
    fn canonical_ipv4_is_what_socket_addr_prints() {
        for text in ["0.0.0.0:1", "255.255.255.255:65535", "10.0.0.7:8012"] {
            let parsed = parse_canonical_ipv4(text.as_bytes()).unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        for text in [
            "1.2.3:4",
            "1.2.3.4.5:6",
            "1.2.3.4",
            "1.2.3.4:65536",
            "01.2.3.4:5",
            "1.2.3.4:",
            ":1",
            "1..3.4:5",
            "1.2.3.4:+5",
        ] {
            assert_eq!(parse_canonical_ipv4(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn errors_are_one_printable_line() {
        let e = decode(STANDARD.encode("bad\naddr\u{7}").as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.contains('\u{7}'), "{text}");
    }
}
