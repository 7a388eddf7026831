//! Decision log lines: `kasi_affinity ` then one JSON object. The app's session view parses these
//! from the sidecar's log, so the field names are a contract (DESIGN.md).

use crate::json::Json;

/// The prefix every decision line starts with (after Envoy's own log prefix).
pub const PREFIX: &str = "kasi_affinity ";

/// Longest `authority` a line carries: a DNS name is at most 253 bytes, and a line must not
/// carry (or cost) whatever a client puts in `Host`.
pub const MAX_AUTHORITY_LEN: usize = 253;

/// The part of `authority` a line carries: at most [`MAX_AUTHORITY_LEN`] bytes, cut on a
/// character boundary.
pub fn capped_authority(authority: &str) -> &str {
    if authority.len() <= MAX_AUTHORITY_LEN {
        return authority;
    }
    let mut end = MAX_AUTHORITY_LEN;
    while !authority.is_char_boundary(end) {
        end -= 1;
    }
    &authority[..end]
}

/// What happened to a session on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The cookie was honoured (logged with `log_decisions: all` only).
    Routed,
    /// A request without a cookie was given one: a new session.
    Pin,
    /// A cookie that was not honoured was replaced by a new one.
    Rebind,
    /// A cookie was not honoured and removed from the request.
    Rejected,
    /// A client-sent routing header was removed.
    Stripped,
    /// The cookie's address failed to connect and is quarantined.
    Dead,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Routed => "routed",
            Decision::Pin => "pin",
            Decision::Rebind => "rebind",
            Decision::Rejected => "rejected",
            Decision::Stripped => "stripped",
            Decision::Dead => "dead",
        }
    }
}

/// One log line. `address` and `authority` are `null` when unknown; `extra` adds fields such as
/// `previous` or `expires`.
pub fn line(
    decision: Decision,
    address: Option<&str>,
    authority: Option<&str>,
    reason: &str,
    carrier: &str,
    extra: &[(&str, Json)],
) -> String {
    let authority = authority.map(capped_authority);
    let text = |s: Option<&str>| s.map_or(Json::Null, |s| Json::String(s.to_owned()));
    let mut members = vec![
        ("decision".to_owned(), text(Some(decision.as_str()))),
        ("address".to_owned(), text(address)),
        ("authority".to_owned(), text(authority)),
        ("reason".to_owned(), text(Some(reason))),
        ("carrier".to_owned(), text(Some(carrier))),
    ];
    members.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    format!("{PREFIX}{}", Json::Object(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_prefix_and_one_json_object() {
        let l = line(
            Decision::Rejected,
            Some("10.0.0.1:8012"),
            Some("hello.default.example.com\"\n"),
            "dead",
            "cookie",
            &[("previous", Json::String("x".into()))],
        );
        let json = l.strip_prefix(PREFIX).unwrap();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["decision"], "rejected");
        assert_eq!(v["address"], "10.0.0.1:8012");
        assert_eq!(v["authority"], "hello.default.example.com\"\n");
        assert_eq!(v["reason"], "dead");
        assert_eq!(v["previous"], "x");
        assert_eq!(v["carrier"], "cookie");
    }

    #[test]
    fn authority_is_capped() {
        let long = "é".repeat(300);
        let l = line(
            Decision::Pin,
            None,
            Some(&long),
            "new_session",
            "cookie",
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(l.strip_prefix(PREFIX).unwrap()).unwrap();
        let carried = v["authority"].as_str().unwrap();
        assert!(carried.len() <= MAX_AUTHORITY_LEN && carried.len() >= MAX_AUTHORITY_LEN - 1);
        assert!(long.starts_with(carried));
    }
}
