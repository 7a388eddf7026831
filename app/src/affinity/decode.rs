//! `kasi decode`: what a pasted cookie says, whatever shape it was pasted in, signed or not.

use kasi_filter::codec::{self, DecodeError, Expiry, SessionCookie};
use kasi_filter::config::DEFAULT_COOKIE_NAME;
use kasi_filter::signing::{self, COOKIE_SEPARATOR};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A decoded cookie with the time it was judged at.
pub struct Decoded {
    pub cookie: SessionCookie,
    /// Whether the value carried kasi's MAC (checked by the sidecar, which holds the key).
    pub signed: bool,
    pub now_unix_s: u64,
}

impl Decoded {
    /// `kasi decode --json`, fields in the order DESIGN.md documents them.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out {
            carrier: &'static str,
            format: &'static str,
            address: String,
            expires: Option<u64>,
            expired: bool,
            signed: bool,
        }
        let out = Out {
            carrier: "cookie",
            format: self.cookie.format.as_str(),
            address: self.cookie.address.to_string(),
            expires: self.cookie.expires,
            expired: self.cookie.is_expired(self.now_unix_s),
            signed: self.signed,
        };
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// The human-readable answer, aligned like `kubectl describe`.
    pub fn to_text(&self) -> String {
        let format = match self.cookie.format {
            codec::Format::Proto => "proto (Envoy ≥ 1.27)",
            codec::Format::Legacy => "legacy base64(\"ip:port\") (Envoy 1.21–1.26)",
        };
        let expires = match self.cookie.expiry(self.now_unix_s) {
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
        format!(
            "address  {}\nformat   {format}\nexpires  {expires}\nsigned   {signed}\n",
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

/// Decodes what the user pasted; the error is one line saying what is wrong.
pub fn decode(input: &str, cookie_name: Option<&str>) -> Result<Decoded, String> {
    let cookie_name = cookie_name.unwrap_or(DEFAULT_COOKIE_NAME);
    let found = find_value(input, cookie_name)?;
    let (cookie, signed) = decode_value(found.value).map_err(|e| match found.name {
        Some(name) => format!("cookie {name:?}: {e}"),
        None => e.to_string(),
    })?;
    let now_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Decoded {
        cookie,
        signed,
        now_unix_s,
    })
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
            format!("Set-Cookie: kasi-session=\"{V}\"; Max-Age=120; Path=/; HttpOnly"),
            format!("other={V}"),
            "MS4yLjMuNDo4MA==".to_owned(),
        ];
        for s in &shapes {
            let d = decode(s, None).unwrap_or_else(|e| panic!("{s}: {e}"));
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
            let e = decode(bad, None)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} decoded"));
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let d = decode(V, None).unwrap();
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
            let d = decode(s, None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(d.signed, "{s}");
            assert!(d.to_json().contains(r#""signed":true"#), "{s}");
            assert!(d.to_text().contains("signed   yes"), "{s}");
        }
        assert_eq!(
            decode(&value, None).unwrap().cookie.address.to_string(),
            "127.0.0.2:18012"
        );
        assert_eq!(
            decode(&legacy, None).unwrap().cookie.address.to_string(),
            "1.2.3.4:80"
        );
        // A MAC-shaped tail after something that is not a cookie is still bad input.
        let bad = format!("%%%.{}", "A".repeat(signing::MAC_TEXT_LEN));
        assert!(decode(&bad, None).is_err());
    }
}
