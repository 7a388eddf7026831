//! `kasi decode`: what a pasted cookie says, whatever shape it was pasted in.

use kasi_filter::codec::{self, Expiry, SessionCookie};
use kasi_filter::config::DEFAULT_COOKIE_NAME;
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

/// A bare base64 value such as `MS4yLjMuNDo4MA==`: its only '=' are trailing padding.
fn looks_like_base64(s: &str) -> bool {
    let body = s.trim().trim_matches('"').trim_end_matches('=');
    !body.contains('=')
}

/// A decoded cookie with the time it was judged at.
pub struct Decoded {
    pub cookie: SessionCookie,
    pub now_unix_s: u64,
}

impl Decoded {
    /// `kasi decode --json`, fields in the order DESIGN.md documents them.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out {
            format: &'static str,
            address: String,
            expires: Option<u64>,
            expired: bool,
        }
        let out = Out {
            format: self.cookie.format.as_str(),
            address: self.cookie.address.to_string(),
            expires: self.cookie.expires,
            expired: self.cookie.is_expired(self.now_unix_s),
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
        format!(
            "address  {}\nformat   {format}\nexpires  {expires}\n",
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
    let cookie = codec::decode(found.value.as_bytes()).map_err(|e| match found.name {
        Some(name) => format!("cookie {name:?}: {e}"),
        None => e.to_string(),
    })?;
    let now_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Decoded { cookie, now_unix_s })
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
            r#"{"format":"proto","address":"127.0.0.2:18012","expires":null,"expired":false}"#
        );
    }
}
