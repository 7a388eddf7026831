//! Sessions that travel in a request header instead of a cookie, read exactly as Envoy reads them:
//! the MCP envelope (`envoy.http.stateful_session.envelope`, header mode) and Envoy's plain header
//! mode (`envoy.http.stateful_session.header`). One codec for the filter and the app.
//!
//! **Envelope** (`source/extensions/http/stateful_session/envelope/envelope.cc`, added in Envoy
//! 1.35 by envoyproxy/envoy#39004; `EnvelopeSessionStateFactory::parseAddress`, renamed
//! `parseAddressHeader` when the SSE mode arrived, with the same body; both versions read, and
//! the e2e tests hold Envoy 1.36 and 1.40 to it):
//! - response (`onUpdate` / `onUpdateHeader`): only when the response carries the header exactly
//!   once, its value becomes `Base64::encode(host address) + ";UV:" + Base64::encode(value)`;
//!   with no copy or several copies the response is left alone;
//! - request: `hdr[0]`, the *first* copy of the header, is split on `;` with empty pieces skipped
//!   (`absl::StrSplit(…, ';', absl::SkipEmpty())`). No piece: nothing happens. Piece 0 is the
//!   base64 of the address; among the pieces after it the first that starts with `UV:` carries
//!   the base64 of the original value (piece 0 is never taken for it, and a missing `UV:` piece
//!   means an empty value). If the original value does not decode to at least one byte, nothing
//!   happens: the header stays as it was and no host is set. Otherwise every copy of the header
//!   is replaced by the decoded original value (`setReferenceKey`), and the decoded address, if
//!   it is not empty, becomes the override host — as text, looked up byte for byte.
//!
//! **Header mode** (`source/extensions/http/stateful_session/header/header.h`, `parseAddress`):
//! the first copy of the header, `Base64::decode`d; not empty: the override host. The request
//! header is not changed. On the response (`header.cc`, `onUpdate(Header)`) Envoy sets the
//! header to `Base64::encode(host address)` only when the host differs from the request's.
//!
//! **Base64** is Envoy's `Base64::decode` (`source/common/common/base64.cc`): the standard
//! alphabet only, the length a multiple of 4, at most two `=` and only at the end, the bits past
//! the last whole byte zero; anything else (URL-safe, unpadded, whitespace, a stray `=`) decodes
//! to the empty string, which both modes treat as "absent". Envoy 1.36 has the hand-written
//! decoder transcribed in [`envoy_base64_transcription`]; newer Envoys wrap abseil's in checks
//! that keep the same results (envoyproxy/envoy#44915). The e2e tests hold both binaries to it.
//!
//! Any difference between this reading and Envoy's would let a request reach an address kasi did
//! not approve, so the port is held to a statement-by-statement transcription of the C++
//! ([`envoy_envelope_transcription`], [`envoy_header_transcription`]) under property tests and
//! the fuzzer.

use crate::codec::{self, DecodeError};
use std::fmt;
use std::net::SocketAddr;

/// Longer header values are refused before anything is decoded. An envelope is the address
/// (≤ 72 bytes of base64) and the server's session id in base64: MCP session ids are UUIDs,
/// hashes or JWTs, far below this; a forged 50 KB value must cost nothing.
pub const MAX_VALUE_LEN: usize = 8192;

/// An address text longer than this cannot be `ip:port` or `[ipv6]:port`.
const MAX_ADDRESS_TEXT: usize = 64;

/// The prefix of the piece that carries the original value (`OriginUpstreamValuePartFlag`).
pub const ORIGINAL_VALUE_FLAG: &[u8] = b"UV:";

/// Why a header value is not a session Envoy would honour. One printable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// No piece at all (an empty value, or only `;`).
    Empty,
    TooLong(usize),
    /// Envelope: no `UV:` piece, or one that is not Envoy base64 of at least one byte. Envoy
    /// leaves such a header as it is and sets no host.
    NoOriginalValue,
    /// The address part is not Envoy base64: Envoy sets no host.
    NotBase64,
    /// The address decodes, but not to `ip:port` / `[ipv6]:port`.
    Address(DecodeError),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Empty => write!(f, "the session header is empty"),
            HeaderError::TooLong(n) => write!(
                f,
                "the session header is {n} bytes long; at most {MAX_VALUE_LEN} are read"
            ),
            HeaderError::NoOriginalValue => write!(
                f,
                "the envelope has no \"UV:\" part holding base64 of the original value"
            ),
            HeaderError::NotBase64 => write!(
                f,
                "the session address is not base64 as Envoy decodes it (standard alphabet, padded)"
            ),
            HeaderError::Address(DecodeError::BadAddress(a)) => {
                write!(f, "the session address {a:?} is not ip:port or [ipv6]:port")
            }
            HeaderError::Address(DecodeError::NotUtf8Address) => {
                write!(f, "the session address is not text")
            }
            HeaderError::Address(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// An envelope as Envoy reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The pinned upstream.
    pub address: SocketAddr,
    /// The base64 of the server's own session id (after `UV:`), valid Envoy base64.
    pub original_base64: &'a [u8],
}

impl Envelope<'_> {
    /// The value Envoy hands the server in place of the envelope.
    pub fn original(&self) -> Vec<u8> {
        envoy_base64_decode(self.original_base64).unwrap_or_default()
    }

    /// [`session_hash`] of the server's session id.
    pub fn session_hash(&self) -> String {
        session_hash(&self.original())
    }
}

/// A short hash of an MCP server's own session id, the way kasi shows and logs one (never the id
/// itself, which lets whoever holds it act in the session): the first 4 bytes of SHA-256, in hex.
pub fn session_hash(original: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(original);
    let mut hex = String::with_capacity(8);
    for b in &digest[..4] {
        for nibble in [b >> 4, b & 0xf] {
            hex.push(char::from_digit(nibble.into(), 16).unwrap_or('0'));
        }
    }
    hex
}

/// The [`session_hash`] of the session in an envelope header value (signed or not), if Envoy would
/// read one there.
pub fn session_hash_of(value: &[u8]) -> Option<String> {
    let (plain, _) = crate::signing::split(value, crate::signing::ENVELOPE_SEPARATOR);
    decode_envelope(plain).ok().map(|e| e.session_hash())
}

/// Reads one envelope value (the first copy of the header) as Envoy does, and accepts it only if
/// Envoy would both restore the server's value and set an override host, and that host is an
/// address. A signed value (`…;K:<MAC>`) reads like the value under it: Envoy skips the `K:`
/// piece like any other piece that is not `UV:`.
pub fn decode_envelope(value: &[u8]) -> Result<Envelope<'_>, HeaderError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(HeaderError::TooLong(value.len()));
    }
    let mut parts = value.split(|&b| b == b';').filter(|p| !p.is_empty());
    let address = parts.next().ok_or(HeaderError::Empty)?;
    let original = parts
        .find_map(|p| p.strip_prefix(ORIGINAL_VALUE_FLAG))
        .unwrap_or_default();
    if envoy_base64_len(original).is_none() {
        return Err(HeaderError::NoOriginalValue);
    }
    Ok(Envelope {
        address: decode_address(address)?,
        original_base64: original,
    })
}

/// Reads one header-mode value (the first copy of the header) as Envoy does: Envoy base64 of the
/// address text. A signed value (`…​.<MAC>`) is *not* Envoy's: split it off first.
pub fn decode_header_value(value: &[u8]) -> Result<SocketAddr, HeaderError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(HeaderError::TooLong(value.len()));
    }
    if value.is_empty() {
        return Err(HeaderError::Empty);
    }
    decode_address(value)
}

/// Envoy base64 of an address text, to the address.
fn decode_address(base64: &[u8]) -> Result<SocketAddr, HeaderError> {
    let len = envoy_base64_len(base64).ok_or(HeaderError::NotBase64)?;
    if len > MAX_ADDRESS_TEXT {
        return Err(HeaderError::Address(DecodeError::BadAddress(format!(
            "<{len} bytes>"
        ))));
    }
    let mut buf = [0u8; MAX_ADDRESS_TEXT];
    let n = envoy_base64_decode_into(base64, &mut buf).ok_or(HeaderError::NotBase64)?;
    codec::parse_address(&buf[..n]).map_err(HeaderError::Address)
}

/// The value Envoy's envelope writes on a response: `base64(address) + ";UV:" + base64(value)`.
pub fn encode_envelope(address: &str, original: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{};UV:{}", b64.encode(address), b64.encode(original))
}

/// The value Envoy's header mode writes on a response: `base64(address)`.
pub fn encode_header_value(address: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(address)
}

// ---- Envoy's Base64::decode ----

/// A byte's value in the standard alphabet; 64 for anything else (`REVERSE_LOOKUP_TABLE`).
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 64,
    }
}

/// The data characters of `input` when Envoy's `Base64::decode` accepts it, `None` where it
/// returns the empty string: the length a non-zero multiple of 4, at most two trailing `=`, every
/// other character in the standard alphabet, the unused bits of the last one zero.
fn envoy_base64_data(input: &[u8]) -> Option<&[u8]> {
    if input.is_empty() || input.len() % 4 != 0 {
        return None;
    }
    let padding = input
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let data = &input[..input.len() - padding];
    if data.iter().any(|&c| sextet(c) == 64) {
        return None;
    }
    // With a length divisible by 4 and at most two `=` gone, 2 or 3 (or 0 mod 4) remain.
    let last = sextet(*data.last()?);
    match data.len() % 4 {
        2 if last & 0x0f != 0 => None,
        3 if last & 0x03 != 0 => None,
        1 => None,
        _ => Some(data),
    }
}

/// How many bytes Envoy's `Base64::decode` makes of `input`; `None` where it returns the empty
/// string (which it does for any input it refuses). Never `Some(0)`.
pub fn envoy_base64_len(input: &[u8]) -> Option<usize> {
    envoy_base64_data(input).map(|data| data.len() * 3 / 4)
}

/// Envoy's `Base64::decode` into `out`: the number of bytes written, `None` where Envoy returns
/// the empty string or `out` is too small.
pub fn envoy_base64_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let data = envoy_base64_data(input)?;
    let len = data.len() * 3 / 4;
    let out = out.get_mut(..len)?;
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for &c in data {
        acc = (acc << 6) | u32::from(sextet(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out[n] = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Some(n)
}

/// Envoy's `Base64::decode`; `None` where it returns the empty string.
pub fn envoy_base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; envoy_base64_len(input)?];
    let n = envoy_base64_decode_into(input, &mut out)?;
    out.truncate(n);
    Some(out)
}

// ---- Transcriptions of Envoy's C++: the oracles the port above is compared with ----

/// What Envoy's `stateful_session` makes of a request's session header: the override host it
/// sets, and the header's copies afterwards.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyReading {
    pub override_host: Option<Vec<u8>>,
    /// `Some(v)`: every copy replaced by the single value `v`; `None`: the header untouched.
    pub replaced_by: Option<Vec<u8>>,
}

#[doc(hidden)]
/// Envoy 1.36's `Base64::decode` (`source/common/common/base64.cc`, the hand-written decoder
/// before abseil's), statement by statement. Deliberately naive: an oracle, not filter code.
pub fn envoy_base64_transcription(input: &[u8]) -> Vec<u8> {
    // constexpr unsigned char REVERSE_LOOKUP_TABLE[256] = {…} (64: not in the alphabet)
    let table = |c: u8| -> u8 {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        ALPHABET
            .iter()
            .position(|&a| a == c)
            .map_or(64, |p| p as u8)
    };
    // inline bool decodeBase(const uint8_t cur_char, uint64_t pos, std::string& ret, …)
    let decode_base = |cur_char: u8, pos: usize, ret: &mut Vec<u8>| -> bool {
        let c = table(cur_char);
        if c == 64 {
            return false;
        }
        match pos % 4 {
            0 => ret.push(c << 2),
            1 => {
                *ret.last_mut().unwrap() |= c >> 4;
                ret.push(c << 4);
            }
            2 => {
                *ret.last_mut().unwrap() |= c >> 2;
                ret.push(c << 6);
            }
            _ => *ret.last_mut().unwrap() |= c,
        }
        true
    };
    // inline bool decodeLast(const uint8_t cur_char, uint64_t pos, std::string& ret, …)
    let decode_last = |cur_char: u8, pos: usize, ret: &mut Vec<u8>| -> bool {
        let c = table(cur_char);
        if c == 64 {
            return false;
        }
        match pos % 4 {
            0 => false,
            1 => {
                *ret.last_mut().unwrap() |= c >> 4;
                (c & 0b1111) == 0
            }
            2 => {
                *ret.last_mut().unwrap() |= c >> 2;
                (c & 0b11) == 0
            }
            _ => {
                *ret.last_mut().unwrap() |= c;
                true
            }
        }
    };
    // std::string Base64::decode(absl::string_view input) {
    //   if (input.length() % 4) { return EMPTY_STRING; }
    //   return decodeWithoutPadding(input); }
    if input.len() % 4 != 0 {
        return Vec::new();
    }
    // std::string Base64::decodeWithoutPadding(absl::string_view input) {
    //   if (input.empty()) { return EMPTY_STRING; }
    if input.is_empty() {
        return Vec::new();
    }
    //   size_t n = input.length();
    //   if (input[n - 1] == '=') { n--; if (n > 0 && input[n - 1] == '=') { n--; } }
    let mut n = input.len();
    if input[n - 1] == b'=' {
        n -= 1;
        if n > 0 && input[n - 1] == b'=' {
            n -= 1;
        }
    }
    //   uint64_t last = n - 1;
    let last = n - 1;
    //   for (uint64_t i = 0; i < last; ++i) {
    //     if (!decodeBase(input[i], i, ret, REVERSE_LOOKUP_TABLE)) { return EMPTY_STRING; } }
    let mut ret = Vec::new();
    for (i, &c) in input.iter().enumerate().take(last) {
        if !decode_base(c, i, &mut ret) {
            return Vec::new();
        }
    }
    //   if (!decodeLast(input[last], last, ret, REVERSE_LOOKUP_TABLE)) { return EMPTY_STRING; }
    if !decode_last(input[last], last, &mut ret) {
        return Vec::new();
    }
    //   return ret;
    ret
}

#[doc(hidden)]
/// `EnvelopeSessionStateFactory::parseAddressHeader` (earlier `parseAddress`), statement by
/// statement; `values` are the copies of the header in order.
pub fn envoy_envelope_transcription(values: &[&[u8]]) -> EnvoyReading {
    let nothing = EnvoyReading {
        override_host: None,
        replaced_by: None,
    };
    // const auto hdr = headers.get(header_name_);
    // if (hdr.empty()) { return absl::nullopt; }
    let Some(first) = values.first() else {
        return nothing;
    };
    // const absl::InlinedVector<absl::string_view, 2> parts =
    //     absl::StrSplit(hdr[0]->value().getStringView(), ';', absl::SkipEmpty());
    let parts: Vec<&[u8]> = first
        .split(|&b| b == b';')
        .filter(|p| !p.is_empty())
        .collect();
    // if (parts.empty()) { return absl::nullopt; }
    if parts.is_empty() {
        return nothing;
    }
    // std::string upstream_host = Base64::decode(parts[0]);
    let upstream_host = envoy_base64_transcription(parts[0]);
    // absl::string_view upstream_value;
    let mut upstream_value: &[u8] = &[];
    // const auto other_parts_view = absl::Span<const absl::string_view>(parts).subspan(1);
    // for (absl::string_view part : other_parts_view) {
    //   if (absl::StartsWith(part, OriginUpstreamValuePartFlag)) {
    //     upstream_value = part.substr(OriginUpstreamValuePartFlag.size()); break; } }
    for part in &parts[1..] {
        if part.starts_with(b"UV:") {
            upstream_value = &part[3..];
            break;
        }
    }
    // const std::string decoded = Envoy::Base64::decode(upstream_value);
    let decoded = envoy_base64_transcription(upstream_value);
    // if (decoded.empty()) { … return absl::nullopt; }
    if decoded.is_empty() {
        return nothing;
    }
    // headers.setReferenceKey(header_name_, decoded);
    // return !upstream_host.empty() ? absl::make_optional(std::move(upstream_host)) : absl::nullopt;
    EnvoyReading {
        override_host: (!upstream_host.is_empty()).then_some(upstream_host),
        replaced_by: Some(decoded),
    }
}

#[doc(hidden)]
/// `HeaderBasedSessionStateFactory::parseAddress`, statement by statement.
pub fn envoy_header_transcription(values: &[&[u8]]) -> Option<Vec<u8>> {
    // auto hdr = headers.get(Envoy::Http::LowerCaseString(name_));
    // if (hdr.empty()) { return absl::nullopt; }
    let first = values.first()?;
    // auto header_value = hdr[0]->value().getStringView();
    // std::string address = Envoy::Base64::decode(header_value);
    let address = envoy_base64_transcription(first);
    // return !address.empty() ? absl::make_optional(std::move(address)) : absl::nullopt;
    (!address.is_empty()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// What the port says Envoy does with the header's copies, in the oracle's terms.
    fn port_reading(values: &[&[u8]]) -> EnvoyReading {
        let Some(first) = values.first() else {
            return EnvoyReading {
                override_host: None,
                replaced_by: None,
            };
        };
        // The port answers for the values the filter would act on; the oracle for any.
        match decode_envelope(first) {
            Ok(envelope) => EnvoyReading {
                override_host: Some(envelope.address.to_string().into_bytes()),
                replaced_by: Some(envelope.original()),
            },
            Err(HeaderError::Empty | HeaderError::NoOriginalValue) => EnvoyReading {
                override_host: None,
                replaced_by: None,
            },
            Err(_) => EnvoyReading {
                override_host: Some(b"<not an address>".to_vec()),
                replaced_by: None,
            },
        }
    }

    #[test]
    fn envoys_own_envelope_round_trips() {
        let value = encode_envelope("10.0.0.7:8012", b"3f1c-session");
        assert_eq!(value, "MTAuMC4wLjc6ODAxMg==;UV:M2YxYy1zZXNzaW9u");
        let e = decode_envelope(value.as_bytes()).unwrap();
        assert_eq!(e.address, addr("10.0.0.7:8012"));
        assert_eq!(e.original(), b"3f1c-session");
        let v6 = encode_envelope("[fd00::1]:8013", b"x");
        assert_eq!(
            decode_envelope(v6.as_bytes()).unwrap().address,
            addr("[fd00::1]:8013")
        );
        assert_eq!(
            decode_header_value(encode_header_value("10.0.0.7:8012").as_bytes()),
            Ok(addr("10.0.0.7:8012"))
        );
    }

    #[test]
    fn the_grammar_edges_envoy_has() {
        let a = B64.encode("10.0.0.7:8012");
        let uv = B64.encode("sid");
        let cases: Vec<(String, Result<(), HeaderError>)> = vec![
            // Empty pieces are skipped, before and between.
            (format!(";;{a};;UV:{uv};"), Ok(())),
            // Any piece after the first may carry UV:, the first that does wins.
            (format!("{a};x;UV:{uv};UV:%%%%"), Ok(())),
            (
                format!("{a};UV:%%%%;UV:{uv}"),
                Err(HeaderError::NoOriginalValue),
            ),
            // The K: piece of a signed value is skipped like any other.
            (format!("{a};UV:{uv};K:AAAAAAAAAAAAAAAAAAAAAA"), Ok(())),
            // The address piece is never read as UV:.
            (format!("UV:{uv}"), Err(HeaderError::NoOriginalValue)),
            (format!("UV:{uv};UV:{uv}"), Err(HeaderError::NotBase64)),
            (a.clone(), Err(HeaderError::NoOriginalValue)),
            (format!("{a};UV:"), Err(HeaderError::NoOriginalValue)),
            (format!("{a}; UV:{uv}"), Err(HeaderError::NoOriginalValue)),
            (format!("{a};uv:{uv}"), Err(HeaderError::NoOriginalValue)),
            (String::new(), Err(HeaderError::Empty)),
            (";;;".into(), Err(HeaderError::Empty)),
            // Envoy base64 only: unpadded, URL-safe, spaced or stray `=` are not.
            (
                format!("{};UV:{uv}", a.trim_end_matches('=')),
                Err(HeaderError::NotBase64),
            ),
            (format!(" {a};UV:{uv}"), Err(HeaderError::NotBase64)),
            (format!("{a}=;UV:{uv}"), Err(HeaderError::NotBase64)),
            (
                format!("MTA=MC4wLjc6ODAxMg==;UV:{uv}"),
                Err(HeaderError::NotBase64),
            ),
            // Trailing bits must be zero ("MTAuMC4wLjc6ODAxMh==" decodes the same bytes).
            (
                format!("MTAuMC4wLjc6ODAxMh==;UV:{uv}"),
                Err(HeaderError::NotBase64),
            ),
            (format!("{a};UV:c2lk_"), Err(HeaderError::NoOriginalValue)),
        ];
        for (value, expected) in cases {
            let got = decode_envelope(value.as_bytes()).map(|e| {
                assert_eq!(e.address, addr("10.0.0.7:8012"), "{value}");
                assert_eq!(e.original(), b"sid", "{value}");
            });
            assert_eq!(got, expected, "{value:?}");
            assert_eq!(
                port_reading(&[value.as_bytes()]),
                normalize(envoy_envelope_transcription(&[value.as_bytes()])),
                "{value:?}"
            );
        }
        let url_safe = B64.encode([0xfb, 0xff]).replace('+', "-").replace('/', "_");
        assert_eq!(envoy_base64_decode(url_safe.as_bytes()), None);
        assert_eq!(envoy_base64_decode(b"+/8="), Some(vec![0xfb, 0xff]));
    }

    #[test]
    fn hostile_addresses_are_rejected_with_a_reason() {
        for (text, expected) in [
            ("example.com:80", "not ip:port"),
            ("10.0.0.1:0", "not ip:port"),
            ("10.0.0.01:8012", "not ip:port"),
            ("10.0.0.1:8012 ", "not ip:port"),
        ] {
            let value = encode_envelope(text, b"s");
            let e = decode_envelope(value.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
        let long = encode_envelope(&"1".repeat(100), b"s");
        assert!(matches!(
            decode_envelope(long.as_bytes()),
            Err(HeaderError::Address(_))
        ));
        let huge = "A".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(
            decode_envelope(huge.as_bytes()),
            Err(HeaderError::TooLong(MAX_VALUE_LEN + 1))
        );
        let bad = B64.encode([0xff, 0x0a, 0x07]);
        let e = decode_header_value(bad.as_bytes()).unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    /// The oracle's host as the port reports it: an address, or "not an address".
    fn normalize(reading: EnvoyReading) -> EnvoyReading {
        let host = reading.override_host.map(|host| {
            match codec::parse_address(&host) {
                // Only restored and addressed values are the port's `Ok`.
                Ok(a) if reading.replaced_by.is_some() => a.to_string().into_bytes(),
                _ => b"<not an address>".to_vec(),
            }
        });
        match (&host, &reading.replaced_by) {
            // Restored without a host: the port's NotBase64 (no address to name).
            (None, Some(_)) => EnvoyReading {
                override_host: Some(b"<not an address>".to_vec()),
                replaced_by: None,
            },
            (Some(h), Some(_)) if h == b"<not an address>" => EnvoyReading {
                override_host: host,
                replaced_by: None,
            },
            _ => EnvoyReading {
                override_host: host,
                replaced_by: reading.replaced_by,
            },
        }
    }

    /// Bytes that decide the grammar: separators, the flag, padding, both alphabets' extras.
    fn envelope_bytes() -> impl Strategy<Value = Vec<u8>> {
        let address = prop_oneof![
            Just(B64.encode("10.0.0.7:8012")),
            Just(B64.encode("[fd00::1]:8013")),
            Just(B64.encode("example:1")),
            Just("MTAuMC4wLjc6ODAxMg".to_string()),
            "[A-Za-z0-9+/=_-]{0,12}",
        ];
        let original = prop_oneof![
            Just(B64.encode("sid")),
            Just(B64.encode([0u8, 0xff])),
            "[A-Za-z0-9+/=_-]{0,9}",
        ];
        let piece = prop_oneof![
            address.clone(),
            original.clone().prop_map(|o| format!("UV:{o}")),
            Just(String::new()),
            Just("K:AAAAAAAAAAAAAAAAAAAAAA".to_string()),
            "[ ;:=UVK]{0,4}",
        ];
        (
            address,
            proptest::collection::vec(piece, 0..4),
            any::<bool>(),
        )
            .prop_map(|(first, rest, lead)| {
                let mut value = if lead { ";".to_string() } else { String::new() };
                value.push_str(&first);
                for p in rest {
                    value.push(';');
                    value.push_str(&p);
                }
                value.into_bytes()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn base64_is_envoys(input in prop_oneof![
            "[A-Za-z0-9+/=]{0,13}".prop_map(String::into_bytes),
            "[A-Za-z0-9+/= \t_.-]{0,13}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..13),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| B64.encode(b).into_bytes()),
        ]) {
            let envoy = envoy_base64_transcription(&input);
            let ours = envoy_base64_decode(&input).unwrap_or_default();
            prop_assert_eq!(&ours, &envoy, "{:?}", String::from_utf8_lossy(&input));
            prop_assert_eq!(envoy_base64_len(&input).unwrap_or(0), envoy.len());
            // The strict engine of the base64 crate agrees: canonical padding, no trailing bits.
            let strict = B64.decode(&input).unwrap_or_default();
            prop_assert_eq!(&strict, &envoy);
        }

        #[test]
        fn the_envelope_port_reads_every_request_as_envoy_does(
            values in proptest::collection::vec(envelope_bytes(), 0..3),
        ) {
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(
                port_reading(&slices),
                normalize(envoy_envelope_transcription(&slices)),
                "{:?}", values.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>()
            );
        }

        #[test]
        fn the_header_port_reads_every_request_as_envoy_does(
            values in proptest::collection::vec(prop_oneof![
                Just(B64.encode("10.0.0.7:8012").into_bytes()),
                "[A-Za-z0-9+/=._-]{0,24}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..24),
            ], 0..3),
        ) {
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let envoy = envoy_header_transcription(&slices);
            let ours = slices.first().map(|v| decode_header_value(v));
            match (ours, envoy) {
                (None, None) => {}
                (Some(Ok(a)), Some(host)) => prop_assert_eq!(a, codec::parse_address(&host).unwrap()),
                (Some(Err(HeaderError::Address(_))), Some(host)) => {
                    prop_assert!(codec::parse_address(&host).is_err())
                }
                (Some(Err(HeaderError::NotBase64 | HeaderError::Empty)), None) => {}
                (ours, envoy) => prop_assert!(false, "port {:?}, Envoy {:?}", ours, envoy),
            }
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_envelope(&bytes);
            let _ = decode_header_value(&bytes);
        }
    }
}
