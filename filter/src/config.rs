//! The plugin's `pluginConfig`: JSON, every key optional, anything unknown or mistyped refused
//! with a message that names the key (a typo in `allowed_cidrs` must not silently mean "default").

use crate::json::Json;
use crate::signing::{self, SessionKeys};
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub const DEFAULT_COOKIE_NAME: &str = "kasi-session";
pub const DEFAULT_COOKIE_PATH: &str = "/";
/// The header MCP's Streamable HTTP transport carries its session in, and that Envoy's envelope
/// `stateful_session` wraps (`Mcp-Session-Id`, as Envoy stores names: lower-case).
pub const DEFAULT_MCP_HEADER: &str = "mcp-session-id";
/// The header PassthroughCluster would obey with `use_http_header`: the bundle does not enable
/// that, but a client-sent copy is still removed (and counted) — the pod never needs it.
pub const ROUTING_HEADER: &str = "x-envoy-original-dst-host";
pub const DEFAULT_ALLOWED_CIDRS: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];
pub const DEFAULT_ALLOWED_PORTS: [u16; 2] = [8012, 8013];
pub const DEFAULT_DEAD_HOST_TTL_S: u64 = 30;

/// Which decisions become log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecisions {
    Off,
    /// New pins, rebinds, rejects, stripped headers and dead hosts: what changes a session.
    Changes,
    /// Also every request the cookie routed unchanged.
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The session cookie `stateful_session` writes; empty: cookie sessions off.
    pub cookie_name: String,
    pub cookie_path: String,
    /// The header carrying Envoy's envelope (MCP sessions), lower-case; empty: MCP sessions off.
    pub mcp_header: String,
    /// The header of Envoy's header mode (`base64("ip:port")`), lower-case; empty: off.
    pub session_header: String,
    pub allowed_cidrs: Vec<IpNet>,
    pub allowed_ports: Vec<u16>,
    pub dead_host_ttl_s: u64,
    pub log_decisions: LogDecisions,
    /// Empty: sessions are neither signed nor verified (the plugin warns once).
    pub session_keys: SessionKeys,
    /// The obsolete `header` key was given: accepted, ignored, logged once.
    pub deprecated_header: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            cookie_path: DEFAULT_COOKIE_PATH.to_owned(),
            mcp_header: DEFAULT_MCP_HEADER.to_owned(),
            session_header: String::new(),
            allowed_cidrs: DEFAULT_ALLOWED_CIDRS
                .iter()
                .map(|c| c.parse().expect("default CIDRs are valid"))
                .collect(),
            allowed_ports: DEFAULT_ALLOWED_PORTS.to_vec(),
            dead_host_ttl_s: DEFAULT_DEAD_HOST_TTL_S,
            log_decisions: LogDecisions::Changes,
            session_keys: SessionKeys::default(),
            deprecated_header: false,
        }
    }
}

/// A pluginConfig the plugin refuses, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "pluginConfig key {key:?}: {}", self.problem),
            None => write!(f, "pluginConfig: {}", self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: Some(key.to_owned()),
        problem: problem.into(),
    }
}

impl Config {
    /// Parses the pluginConfig bytes; empty bytes (no pluginConfig) mean all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(config);
        }
        let value = Json::parse(bytes).map_err(|e| ConfigError {
            key: None,
            problem: format!("not valid JSON ({e})"),
        })?;
        let object = match value {
            Json::Object(object) => object,
            Json::Null => Vec::new(),
            other => {
                return Err(ConfigError {
                    key: None,
                    problem: format!("expected a JSON object, got {}", other.kind()),
                })
            }
        };
        for (i, (key, value)) in object.iter().enumerate() {
            if object[..i].iter().any(|(k, _)| k == key) {
                return Err(bad(key, "given twice"));
            }
            match key.as_str() {
                "cookie_name" => config.cookie_name = cookie_name(key, value)?,
                "cookie_path" => config.cookie_path = cookie_path(key, value)?,
                "mcp_header" => config.mcp_header = session_header_name(key, value)?,
                "session_header" => config.session_header = session_header_name(key, value)?,
                "session_keys" => config.session_keys = session_keys(key, value)?,
                // Obsolete since steering moved to filter state: a bundle rendered by an older
                // kasi still loads.
                "header" => {
                    header_name(key, value)?;
                    config.deprecated_header = true;
                }
                "allowed_cidrs" => config.allowed_cidrs = cidrs(key, value)?,
                "allowed_ports" => config.allowed_ports = ports(key, value)?,
                "dead_host_ttl_s" => {
                    config.dead_host_ttl_s =
                        value.as_u64().filter(|&s| s <= 86_400).ok_or_else(|| {
                            bad(
                                key,
                                format!("expected whole seconds 0..=86400, got {value}"),
                            )
                        })?
                }
                "log_decisions" => {
                    config.log_decisions = match value.as_str() {
                        Some("off") => LogDecisions::Off,
                        Some("changes") => LogDecisions::Changes,
                        Some("all") => LogDecisions::All,
                        _ => {
                            return Err(bad(
                                key,
                                format!("expected \"off\", \"changes\" or \"all\", got {value}"),
                            ))
                        }
                    }
                }
                _ => {
                    // The text is pinned by the app's tests (app/src/tui/state.rs), which this
                    // change may not touch: listing mcp_header and session_header here is the
                    // app's follow-up.
                    return Err(bad(
                        key,
                        "unknown key; known keys are cookie_name, cookie_path, mcp_header, session_header, allowed_cidrs, allowed_ports, dead_host_ttl_s, log_decisions, session_keys",
                    ));
                }
            }
        }
        if !config.mcp_header.is_empty() && config.mcp_header == config.session_header {
            // One header cannot be both an envelope and a plain address: each mode would read
            // the other's value as malformed.
            return Err(bad(
                "session_header",
                format!(
                    "{:?} is also mcp_header; use another header",
                    config.session_header
                ),
            ));
        }
        Ok(config)
    }

    /// Whether a cookie may send traffic to `address`.
    pub fn allows(&self, address: &SocketAddr) -> bool {
        let ip = canonical_ip(address.ip());
        self.allowed_ports.contains(&address.port())
            && self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// `::ffff:10.0.0.1` is 10.0.0.1 on the wire; judge it as such.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// RFC 6265 cookie-name: an HTTP token, or `""` for off.
fn cookie_name(key: &str, value: &Json) -> Result<String, ConfigError> {
    let name = value
        .as_str()
        .ok_or_else(|| bad(key, format!("expected a string, got {}", value.kind())))?;
    if !name.bytes().all(is_token_char) {
        return Err(bad(key, format!("{name:?} is not a valid cookie name")));
    }
    Ok(name.to_owned())
}

/// Envoy stores header names lower-case; a name that is not a lower-case token would never match.
fn header_name(key: &str, value: &Json) -> Result<String, ConfigError> {
    let name = value
        .as_str()
        .ok_or_else(|| bad(key, format!("expected a string, got {}", value.kind())))?;
    if name.is_empty() || name.starts_with(':') || !name.bytes().all(is_token_char) {
        return Err(bad(key, format!("{name:?} is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// `mcp_header` / `session_header`: a header name as [`header_name`] takes it, or `""` for off.
/// Headers kasi reads or rewrites for other reasons cannot carry a session: `cookie` (the cookie
/// carrier), the routing header (always removed), `:`-pseudo-headers and `host`.
fn session_header_name(key: &str, value: &Json) -> Result<String, ConfigError> {
    if value.as_str() == Some("") {
        return Ok(String::new());
    }
    let name = header_name(key, value)?;
    if ["cookie", "host", ROUTING_HEADER].contains(&name.as_str()) {
        return Err(bad(
            key,
            format!("{name:?} cannot carry sessions; use a header of its own"),
        ));
    }
    Ok(name)
}

/// A cookie path as `stateful_session` takes it: starts with `/`, and nothing that would end or
/// split the Set-Cookie attribute it is written into.
fn cookie_path(key: &str, value: &Json) -> Result<String, ConfigError> {
    let path = value
        .as_str()
        .ok_or_else(|| bad(key, format!("expected a string, got {}", value.kind())))?;
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b == b';' || !(0x21..0x7f).contains(&b))
    {
        return Err(bad(
            key,
            format!("{path:?} is not a cookie path such as \"/\""),
        ));
    }
    Ok(path.to_owned())
}

fn session_keys(key: &str, value: &Json) -> Result<SessionKeys, ConfigError> {
    let keys = array(key, value, "base64 keys")?
        .iter()
        .map(|item| {
            item.as_str().and_then(signing::parse_key).ok_or_else(|| {
                bad(
                    key,
                    "an entry is not base64 of 32 bytes (the value is not repeated here)",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(bad(key, "an empty list; leave the key out to run unsigned"));
    }
    Ok(SessionKeys::new(keys.iter()))
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn array<'a>(key: &str, value: &'a Json, of: &str) -> Result<&'a Vec<Json>, ConfigError> {
    value.as_array().ok_or_else(|| {
        bad(
            key,
            format!("expected an array of {of}, got {}", value.kind()),
        )
    })
}

fn cidrs(key: &str, value: &Json) -> Result<Vec<IpNet>, ConfigError> {
    array(key, value, "CIDR strings")?
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|s| s.parse::<IpNet>().ok())
                .map(|net| net.trunc())
                .ok_or_else(|| bad(key, format!("{item} is not a CIDR such as \"10.0.0.0/8\"")))
        })
        .collect()
}

fn ports(key: &str, value: &Json) -> Result<Vec<u16>, ConfigError> {
    array(key, value, "port numbers")?
        .iter()
        .map(|item| {
            item.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(key, format!("{item} is not a port number 1..=65535")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_config_means_the_documented_defaults() {
        for empty in [&b""[..], b"  ", b"{}", b"null"] {
            let c = Config::parse(empty).unwrap();
            assert_eq!(c, Config::default());
        }
        let c = Config::default();
        assert_eq!(c.cookie_name, "kasi-session");
        assert_eq!(c.cookie_path, "/");
        assert_eq!(c.mcp_header, "mcp-session-id");
        assert_eq!(c.session_header, "");
        assert!(c.session_keys.is_empty());
        assert_eq!(c.allowed_ports, vec![8012, 8013]);
        assert_eq!(c.dead_host_ttl_s, 30);
        assert_eq!(c.log_decisions, LogDecisions::Changes);
        assert!(c.allows(&"10.1.2.3:8012".parse().unwrap()));
        assert!(c.allows(&"[fd00::1]:8013".parse().unwrap()));
        assert!(c.allows(&"[::ffff:192.168.1.1]:8012".parse().unwrap()));
        assert!(!c.allows(&"127.0.0.1:8012".parse().unwrap()));
        assert!(!c.allows(&"10.1.2.3:15000".parse().unwrap()));
        assert!(!c.allows(&"[::1]:8012".parse().unwrap()));
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse(
            br#"{"cookie_name":"sess","header":"X-Dst","allowed_cidrs":["127.0.0.0/29","::1/128"],
                "allowed_ports":[18012],"dead_host_ttl_s":5,"log_decisions":"all",
                "cookie_path":"/app","mcp_header":"X-MCP-Session","session_header":"x-kasi-session",
                "session_keys":["BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="]}"#,
        )
        .unwrap();
        assert_eq!(c.cookie_name, "sess");
        assert!(c.deprecated_header);
        assert_eq!(c.cookie_path, "/app");
        assert_eq!(c.mcp_header, "x-mcp-session");
        assert_eq!(c.session_header, "x-kasi-session");
        assert_eq!(c.session_keys.len(), 2);
        assert_eq!(c.allowed_ports, vec![18012]);
        assert_eq!(c.dead_host_ttl_s, 5);
        assert_eq!(c.log_decisions, LogDecisions::All);
        assert!(c.allows(&"127.0.0.7:18012".parse().unwrap()));
        assert!(!c.allows(&"127.0.0.8:18012".parse().unwrap()));
    }

    #[test]
    fn an_empty_session_header_name_turns_the_carrier_off() {
        let c = Config::parse(br#"{"mcp_header":"","session_header":""}"#).unwrap();
        assert_eq!((c.mcp_header.as_str(), c.session_header.as_str()), ("", ""));
        let c = Config::parse(br#"{"mcp_header":"","session_header":"mcp-session-id"}"#).unwrap();
        assert_eq!(c.session_header, "mcp-session-id");
        let c = Config::parse(br#"{"cookie_name":""}"#).unwrap();
        assert_eq!(c.cookie_name, "");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: [(&[u8], Option<&str>); 21] = [
            (br#"{"mcp_header":7}"#, Some("mcp_header")),
            (br#"{"mcp_header":"a b"}"#, Some("mcp_header")),
            (br#"{"mcp_header":"cookie"}"#, Some("mcp_header")),
            (
                br#"{"session_header":":authority"}"#,
                Some("session_header"),
            ),
            (
                br#"{"session_header":"X-Envoy-Original-Dst-Host"}"#,
                Some("session_header"),
            ),
            (br#"{"session_header":null}"#, Some("session_header")),
            (
                br#"{"session_header":"Mcp-Session-Id"}"#,
                Some("session_header"),
            ),
            (br#"{"cookie_path":"app"}"#, Some("cookie_path")),
            (br#"{"cookie_path":"/a;b"}"#, Some("cookie_path")),
            (br#"{"session_keys":["c2hvcnQ="]}"#, Some("session_keys")),
            (br#"{"session_keys":[]}"#, Some("session_keys")),
            (br#"{"cookie_nme":"x"}"#, Some("cookie_nme")),
            (br#"{"cookie_name":7}"#, Some("cookie_name")),
            (br#"{"cookie_name":"a b"}"#, Some("cookie_name")),
            (br#"{"header":""}"#, Some("header")),
            (br#"{"allowed_cidrs":"10.0.0.0/8"}"#, Some("allowed_cidrs")),
            (
                br#"{"allowed_cidrs":["10.0.0.0/33"]}"#,
                Some("allowed_cidrs"),
            ),
            (br#"{"allowed_ports":[0]}"#, Some("allowed_ports")),
            (br#"{"dead_host_ttl_s":-1}"#, Some("dead_host_ttl_s")),
            (br#"{"log_decisions":"some"}"#, Some("log_decisions")),
            (br#"[1]"#, None),
        ];
        for (json, key) in cases {
            let e = Config::parse(json).unwrap_err();
            assert_eq!(e.key.as_deref(), key, "{}", e);
            if let Some(key) = key {
                assert!(e.to_string().contains(key), "{e}");
            }
        }
        assert!(Config::parse(b"{")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }
}
