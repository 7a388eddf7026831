//! `kasi decode`: what a pasted session says, whatever carrier it travels in (a cookie, the MCP
//! envelope, Envoy's header mode) and whatever shape it was pasted in, signed or not. The
//! grammar of each carrier is the filter's own codec (`kasi_filter::codec` for cookies,
//! `kasi_filter::envelope` for the envelope and header mode): one implementation.
//!
//! Which carrier a pasted text is:
//! - a `Cookie:` / `Set-Cookie:` line, `name=value`, or a bare value: a cookie;
//! - a value holding `;UV:` (Envoy's envelope), or an `Mcp-Session-Id:` line: an envelope;
//! - any other `Header-Name: value` line: header mode (`session_header`);
//! - `--carrier` (or [`decode`]'s `carrier`) overrides the guess for the value.
//!
//! A bare base64 value is a cookie, never header mode: Envoy's legacy cookie and a header-mode
//! value are the very same bytes (`base64("ip:port")`), so only the header's name (or
//! `--carrier header`) can say it is header mode.

use kasi_filter::codec::{self, DecodeError, Expiry, Format, SessionCookie};
use kasi_filter::config::DEFAULT_COOKIE_NAME;
use kasi_filter::envelope::{self, HeaderError};
use kasi_filter::signing::{self, COOKIE_SEPARATOR, ENVELOPE_SEPARATOR};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a session travels in (DESIGN.md: decision lines' `carrier`, `kasi decode --json`): the
/// filter's own type, one definition.
pub use kasi_filter::policy::Carrier;

/// The header MCP clients carry the envelope in (the filter's default `mcp_header`).
pub const MCP_HEADER: &str = "mcp-session-id";

/// The filter's hash of an MCP server's session id (never the id itself, which lets whoever holds
/// it act in the session): what its decision lines log, one definition.
pub use kasi_filter::envelope::session_hash;

/// A session identity as the UI may show it: a short hex hash is shown as it is; anything else
/// (a raw id) is hashed first, so no raw session id is ever drawn.
pub fn shown_session(id: &str) -> String {
    let is_short_hash = (8..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_short_hash {
        id.to_owned()
    } else {
        session_hash(id.as_bytes())
    }
}

/// A cookie value found in what the user pasted, and the name it was under (if any).
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub name: Option<&'a str>,
    pub value: &'a str,
}

/// Finds the session cookie in a raw value, `name=value`, or a `Cookie:` / `Set-Cookie:` line.
/// Among several cookies the one called `cookie_name` wins; otherwise a lone cookie is taken.
pub fn find_value<'a>(input: &'a str, cookie_name: &str) -> Result<Found<'a>, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err(
            "nothing to decode: pass a cookie value, name=value, or a Cookie:/Set-Cookie: line"
                .into(),
        );
    }
    let (is_set_cookie, rest) = match input.split_once(':') {
        Some((h, rest)) if h.trim().eq_ignore_ascii_case("set-cookie") => (true, rest),
        Some((h, rest)) if h.trim().eq_ignore_ascii_case("cookie") => (false, rest),
        _ => (false, input),
    };
    // Set-Cookie carries one cookie; what follows its first ';' are attributes (Path, HttpOnly).
    let pairs: Vec<&str> = if is_set_cookie {
        rest.split(';').take(1).collect()
    } else {
        rest.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    };
    let parsed: Vec<Found> = pairs
        .iter()
        .map(|p| match p.split_once('=') {
            // A bare base64 value ends in '=' padding: that is not `name=value`.
            Some((n, v)) if !looks_like_base64(p) && is_cookie_name(n.trim()) => Found {
                name: Some(n.trim()),
                value: v.trim(),
            },
            _ => Found {
                name: None,
                value: p.trim(),
            },
        })
        .collect();
    if let Some(found) = parsed.iter().find(|f| f.name == Some(cookie_name)) {
        return Ok(Found { ..*found });
    }
    match parsed.as_slice() {
        [one] => Ok(Found { ..*one }),
        [] => Err("no cookie found in the input".into()),
        many => Err(format!(
            "{} cookies and none is called {cookie_name:?}: pass --cookie-name or just the value",
            many.len()
        )),
    }
}

fn is_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A bare base64 value such as `MS4yLjMuNDo4MA==` (or a signed one, `MS4yLjMuNDo4MA==.<MAC>`):
/// its only '=' are the padding at the end of Envoy's value.
fn looks_like_base64(s: &str) -> bool {
    let (value, _) = split_signed(s);
    !value.trim_end_matches('=').contains('=')
}

/// A cookie value without its quotes, split into Envoy's value and kasi's MAC (DESIGN.md, "Signed
/// sessions": `value + "." + MAC`), the way the filter splits it.
pub fn split_signed(value: &str) -> (&str, Option<&str>) {
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let (envoy_value, mac) = signing::split(value.as_bytes(), COOKIE_SEPARATOR);
    // `split` cuts at a byte offset of ASCII separators, so both halves are still UTF-8.
    let mac = mac.map(|_| &value[envoy_value.len() + COOKIE_SEPARATOR.len()..]);
    (&value[..envoy_value.len()], mac)
}

/// Decodes a session cookie's value, signed or not: the session, and whether it carried a MAC.
pub fn decode_value(value: &str) -> Result<(SessionCookie, bool), DecodeError> {
    let (envoy_value, mac) = split_signed(value);
    Ok((codec::decode(envoy_value.as_bytes())?, mac.is_some()))
}

/// A decoded session with the time it was judged at.
pub struct Decoded {
    pub carrier: Carrier,
    /// The address (and for a cookie its format and `expires`). An envelope or a header-mode
    /// value is `base64("ip:port")`, the legacy format, without `expires`.
    pub cookie: SessionCookie,
    /// Whether the value carried kasi's MAC (checked by the sidecar, which holds the key).
    pub signed: bool,
    /// An envelope's server session id, as [`session_hash`] shows it.
    pub session: Option<String>,
    pub now_unix_s: u64,
}

impl Decoded {
    /// `kasi decode --json`, fields in the order DESIGN.md documents them (then `signed`, and
    /// `session` for an envelope).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            carrier: &'static str,
            format: &'static str,
            address: String,
            expires: Option<u64>,
            expired: bool,
            signed: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            session: Option<&'a str>,
        }
        let out = Out {
            carrier: self.carrier.as_str(),
            format: self.cookie.format.as_str(),
            address: self.cookie.address.to_string(),
            expires: self.cookie.expires,
            expired: self.cookie.is_expired(self.now_unix_s),
            signed: self.signed,
            session: self.session.as_deref(),
        };
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// The human-readable answer, aligned like `kubectl describe`; `address` comes first (the
    /// paste box reads it).
    pub fn to_text(&self) -> String {
        let carrier = match self.carrier {
            Carrier::Cookie => "cookie (Envoy's stateful_session cookie)",
            Carrier::Envelope => {
                "envelope (MCP's Mcp-Session-Id, Envoy's stateful_session envelope)"
            }
            Carrier::Header => "header (Envoy's stateful_session header mode)",
        };
        let format = match (self.carrier, self.cookie.format) {
            (Carrier::Cookie, Format::Proto) => "proto (Envoy ≥ 1.27)",
            (Carrier::Cookie, Format::Legacy) => "legacy base64(\"ip:port\") (Envoy 1.21–1.26)",
            (_, _) => "base64(\"ip:port\")",
        };
        let expires = match self.cookie.expiry(self.now_unix_s) {
            Expiry::Never if self.carrier != Carrier::Cookie => {
                "never (this carrier has no expiry; the server ends the session)".to_owned()
            }
            Expiry::Never => "never (a session cookie: no TTL)".to_owned(),
            Expiry::At(t) => format!("{} (in {})", rfc3339(t), span(t - self.now_unix_s)),
            Expiry::Expired(t) => {
                format!("{} (EXPIRED {} ago)", rfc3339(t), span(self.now_unix_s - t))
            }
            Expiry::Unknown(t) => format!(
                "unknown: {t} is Envoy's monotonic clock, not a Unix time (envoyproxy/envoy#44111)"
            ),
        };
        let signed = if self.signed {
            "yes (kasi's MAC for one host; only the sidecar's key can check it)"
        } else {
            "no (a filter with session_keys rejects it: bad_signature)"
        };
        let session = match &self.session {
            Some(hash) => {
                format!("session  {hash} (hash of the server's session id, not the id)\n")
            }
            None => String::new(),
        };
        format!(
            "address  {}\ncarrier  {carrier}\n{session}format   {format}\nexpires  {expires}\nsigned   {signed}\n",
            self.cookie.address
        )
    }
}

fn rfc3339(unix_s: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_s)).to_string()
}

fn span(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// A `Header-Name: value` line: the header's name and its value. `None` for anything else (a
/// cookie's `name=value` is not one: `=` is not allowed in a header name, and base64 has no `:`).
fn header_line(input: &str) -> Option<(&str, &str)> {
    let (name, value) = input.split_once(':')?;
    let name = name.trim();
    is_cookie_name(name).then_some((name, value.trim()))
}

/// Which carrier `input` is, and the text to decode as that carrier (see the module's doc).
fn carrier_of(input: &str, carrier: Option<Carrier>) -> (Carrier, &str) {
    match header_line(input) {
        Some((name, _))
            if name.eq_ignore_ascii_case("cookie") || name.eq_ignore_ascii_case("set-cookie") =>
        {
            (carrier.unwrap_or(Carrier::Cookie), input)
        }
        Some((name, value)) => {
            let guess = if name.eq_ignore_ascii_case(MCP_HEADER) || is_envelope(value) {
                Carrier::Envelope
            } else {
                Carrier::Header
            };
            (carrier.unwrap_or(guess), value)
        }
        None if is_envelope(input) => (carrier.unwrap_or(Carrier::Envelope), input),
        None => (carrier.unwrap_or(Carrier::Cookie), input),
    }
}

fn is_envelope(value: &str) -> bool {
    value.contains(";UV:")
}

/// Decodes what the user pasted (`carrier` forces how the value is read); the error is one line
/// saying what is wrong.
pub fn decode(
    input: &str,
    cookie_name: Option<&str>,
    carrier: Option<Carrier>,
) -> Result<Decoded, String> {
    // `curl -v` marks request and response headers with `> ` and `< `; base64 has neither.
    let input = input.trim().trim_start_matches(['<', '>']).trim();
    if input.is_empty() {
        return Err(
            "nothing to decode: pass a cookie value, name=value, a Cookie:/Set-Cookie: \
             line, an envelope or Mcp-Session-Id: line, or a Header-Name: value line"
                .into(),
        );
    }
    let (carrier, text) = carrier_of(input, carrier);
    let (cookie, signed, session) = match carrier {
        Carrier::Cookie => {
            let cookie_name = cookie_name.unwrap_or(DEFAULT_COOKIE_NAME);
            let found = find_value(text, cookie_name)?;
            let (cookie, signed) = decode_value(found.value).map_err(|e| match found.name {
                Some(name) => format!("cookie {name:?}: {e}"),
                None => e.to_string(),
            })?;
            (cookie, signed, None)
        }
        Carrier::Envelope => {
            let (value, mac) = signing::split(text.as_bytes(), ENVELOPE_SEPARATOR);
            let envelope = envelope::decode_envelope(value)
                .map_err(|e| format!("envelope: {}", one_line(&e)))?;
            let session = session_hash(&envelope.original());
            (legacy(envelope.address), mac.is_some(), Some(session))
        }
        Carrier::Header => {
            let (value, mac) = signing::split(text.as_bytes(), COOKIE_SEPARATOR);
            let address = envelope::decode_header_value(value)
                .map_err(|e| format!("header-mode value: {}", one_line(&e)))?;
            (legacy(address), mac.is_some(), None)
        }
    };
    let now_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Decoded {
        carrier,
        cookie,
        signed,
        session,
        now_unix_s,
    })
}

/// An envelope's or header-mode value's address: `base64("ip:port")`, no `expires`.
fn legacy(address: std::net::SocketAddr) -> SessionCookie {
    SessionCookie {
        format: Format::Legacy,
        address,
        expires: None,
    }
}

fn one_line(e: &HeaderError) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "Cg8xMjcuMC4wLjI6MTgwMTI=";

    #[test]
    fn finds_the_value_in_every_shape() {
        let shapes = [
            V.to_owned(),
            format!("\"{V}\""),
            format!("kasi-session={V}"),
            format!("kasi-session=\"{V}\""),
            format!("Cookie: a=1; kasi-session=\"{V}\"; b=2"),
            format!("cookie:kasi-session={V}"),
            format!("> Cookie: kasi-session={V}"),
            format!("Set-Cookie: kasi-session=\"{V}\"; Max-Age=120; Path=/; HttpOnly"),
            format!("other={V}"),
            "MS4yLjMuNDo4MA==".to_owned(),
        ];
        for s in &shapes {
            let d = decode(s, None, None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(
                d.cookie.address.ip().is_loopback() || d.cookie.address.port() == 80,
                "{s}"
            );
        }
    }

    #[test]
    fn bad_input_is_one_line() {
        for bad in [
            "",
            "Cookie: a=1; b=2",
            "kasi-session=%%%",
            "Set-Cookie: kasi-session=\"\"",
            "a=1; b=2",
        ] {
            let e = decode(bad, None, None)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} decoded"));
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let d = decode(V, None, None).unwrap();
        assert_eq!(
            d.to_json(),
            r#"{"carrier":"cookie","format":"proto","address":"127.0.0.2:18012","expires":null,"expired":false,"signed":false}"#
        );
        assert!(d.to_text().contains("signed   no"), "{}", d.to_text());
    }

    /// What the filter puts on the wire: `"<Envoy's value>.<MAC>"`, signed by the filter's code.
    fn signed(value: &str) -> String {
        let keys = signing::SessionKeys::new([&[7u8; 32]]);
        let signed = keys
            .sign(
                value.as_bytes(),
                b"hello.default.example.com",
                COOKIE_SEPARATOR,
            )
            .unwrap();
        String::from_utf8(signed).unwrap()
    }

    #[test]
    fn signed_values_decode_in_every_shape_and_say_so() {
        let value = signed(V);
        let legacy = signed("MS4yLjMuNDo4MA==");
        let shapes = [
            value.clone(),
            format!("\"{value}\""),
            format!("kasi-session=\"{value}\""),
            format!("Cookie: a=1; kasi-session=\"{value}\"; b=2"),
            format!("Set-Cookie: kasi-session=\"{value}\"; Max-Age=120; Path=/; HttpOnly"),
            legacy.clone(),
            format!("\"{legacy}\""),
        ];
        for s in &shapes {
            let d = decode(s, None, None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(d.signed, "{s}");
            assert!(d.to_json().contains(r#""signed":true"#), "{s}");
            assert!(d.to_text().contains("signed   yes"), "{s}");
        }
        assert_eq!(
            decode(&value, None, None)
                .unwrap()
                .cookie
                .address
                .to_string(),
            "127.0.0.2:18012"
        );
        assert_eq!(
            decode(&legacy, None, None)
                .unwrap()
                .cookie
                .address
                .to_string(),
            "1.2.3.4:80"
        );
        // A MAC-shaped tail after something that is not a cookie is still bad input.
        let bad = format!("%%%.{}", "A".repeat(signing::MAC_TEXT_LEN));
        assert!(decode(&bad, None, None).is_err());
    }

    /// An MCP server's session id, and the envelope Envoy wraps it in for `10.4.0.17:8012`.
    const MCP_ID: &str = "7f9c2ba4-e88f-4f2b-9c1d-0a3b5c7d9e11";

    fn envelope_for(address: &str) -> String {
        envelope::encode_envelope(address, MCP_ID.as_bytes())
    }

    #[test]
    fn envelopes_decode_in_every_shape_signed_or_not() {
        let value = envelope_for("10.4.0.17:8012");
        let keys = signing::SessionKeys::new([&[7u8; 32]]);
        let signed = String::from_utf8(
            keys.sign(value.as_bytes(), b"mcp.example.com", ENVELOPE_SEPARATOR)
                .unwrap(),
        )
        .unwrap();
        let shapes = [
            (value.clone(), false),
            (format!("Mcp-Session-Id: {value}"), false),
            (format!("mcp-session-id:{value}"), false),
            // As `curl -v` prints a response header.
            (format!("< mcp-session-id: {value}"), false),
            // Another name for the header (`mcp_header`): the `;UV:` says it is an envelope.
            (format!("X-Session: {value}"), false),
            (signed.clone(), true),
            (format!("Mcp-Session-Id: {signed}"), true),
        ];
        for (s, is_signed) in &shapes {
            let d = decode(s, None, None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(d.carrier, Carrier::Envelope, "{s}");
            assert_eq!(d.cookie.address.to_string(), "10.4.0.17:8012", "{s}");
            assert_eq!(d.signed, *is_signed, "{s}");
            assert_eq!(
                d.session.as_deref(),
                Some(session_hash(MCP_ID.as_bytes()).as_str())
            );
            let text = d.to_text();
            assert!(
                text.starts_with("address  10.4.0.17:8012\ncarrier  envelope"),
                "{text}"
            );
            // The server's session id is never shown, in any output.
            assert!(
                !text.contains(MCP_ID) && !d.to_json().contains(MCP_ID),
                "{text}"
            );
        }
        let d = decode(&value, None, None).unwrap();
        assert_eq!(
            d.to_json(),
            format!(
                r#"{{"carrier":"envelope","format":"legacy","address":"10.4.0.17:8012","expires":null,"expired":false,"signed":false,"session":"{}"}}"#,
                session_hash(MCP_ID.as_bytes())
            )
        );
        // IPv6 pods too.
        let v6 = decode(&envelope_for("[fd00::7]:8012"), None, None).unwrap();
        assert_eq!(v6.cookie.address.to_string(), "[fd00::7]:8012");
    }

    #[test]
    fn header_mode_needs_the_header_name_or_the_flag() {
        let value = envelope::encode_header_value("10.4.0.17:8012");
        let keys = signing::SessionKeys::new([&[7u8; 32]]);
        let signed =
            String::from_utf8(keys.sign(value.as_bytes(), b"h", COOKIE_SEPARATOR).unwrap())
                .unwrap();
        for (s, carrier, is_signed) in [
            (format!("X-Kasi-Session: {value}"), None, false),
            (format!("x-kasi-session:{signed}"), None, true),
            (value.clone(), Some(Carrier::Header), false),
            (signed.clone(), Some(Carrier::Header), true),
        ] {
            let d = decode(&s, None, carrier).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(d.carrier, Carrier::Header, "{s}");
            assert_eq!(d.cookie.address.to_string(), "10.4.0.17:8012", "{s}");
            assert_eq!(d.signed, is_signed, "{s}");
            assert_eq!(d.session, None);
            assert!(d.to_text().contains("carrier  header"), "{}", d.to_text());
        }
        assert_eq!(
            decode(&value, None, Some(Carrier::Header))
                .unwrap()
                .to_json(),
            r#"{"carrier":"header","format":"legacy","address":"10.4.0.17:8012","expires":null,"expired":false,"signed":false}"#
        );
        // The same bytes bare are a (legacy) cookie: the documented rule.
        let bare = decode(&value, None, None).unwrap();
        assert_eq!(bare.carrier, Carrier::Cookie);
        assert_eq!(bare.cookie.format, Format::Legacy);
        // And --carrier wins over the shape.
        let forced = decode(&envelope_for("10.4.0.17:8012"), None, Some(Carrier::Cookie));
        assert!(forced.is_err());
    }

    #[test]
    fn malformed_envelopes_and_header_values_are_one_line() {
        let address = envelope::encode_header_value("10.4.0.17:8012");
        for (bad, carrier, says) in [
            // No `UV:` part: Envoy leaves such a header alone.
            (format!("Mcp-Session-Id: {address}"), None, "envelope: "),
            (format!("{address};UV:%%%"), None, "envelope: "),
            (format!("{address};UV:"), None, "envelope: "),
            ("Mcp-Session-Id: ;UV:YWJj".to_owned(), None, "envelope: "),
            ("Mcp-Session-Id:".to_owned(), None, "envelope: "),
            // Not Envoy base64 (URL-safe / unpadded are refused by Envoy in these modes).
            ("bm90IGFuIGFkZHJlc3M;UV:YWJj".to_owned(), None, "envelope: "),
            // Base64 of something that is not an address.
            ("Zm9vYmFy;UV:YWJj".to_owned(), None, "envelope: "),
            (
                "X-Session: Zm9vYmFy".to_owned(),
                None,
                "header-mode value: ",
            ),
            ("X-Session: %%%".to_owned(), None, "header-mode value: "),
            ("X-Session:".to_owned(), None, "header-mode value: "),
            (
                "MTAuNC4wLjE3OjgwMTI".to_owned(),
                Some(Carrier::Header),
                "header-mode value: ",
            ),
            (
                format!("X-Session: {}", "QUFB".repeat(3000)),
                None,
                "header-mode value: ",
            ),
        ] {
            let e = decode(&bad, None, carrier)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} decoded"));
            assert!(!e.contains('\n'), "{e}");
            assert!(e.starts_with(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn shown_sessions_are_never_raw_ids() {
        let hash = session_hash(MCP_ID.as_bytes());
        assert_eq!(hash.len(), 8);
        assert_eq!(shown_session(&hash), hash);
        assert_eq!(shown_session(MCP_ID), hash);
        assert_eq!(shown_session("ABCDEF12").len(), 8);
        assert_ne!(shown_session("ABCDEF12"), "ABCDEF12");
    }
}
