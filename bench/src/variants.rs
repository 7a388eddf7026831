//! The ways the benchmark runs Envoy, and the request each one is loaded with: the four
//! (no filter, the floor, kasi, Lua), four that explain them (kasi's request phase alone; the
//! Lua as it is usually written; kasi with a response phase that is called but reads nothing;
//! kasi without signing keys), and kasi steering an MCP session (the envelope) instead of a
//! cookie.
//!
//! Every variant is the activator sidecar's bootstrap from the e2e harness (the PROXY protocol
//! listener standing in for iptables, the bundle's two `stateful_session`s — the cookie one,
//! skipped for a request that carries `mcp-session-id`, then the envelope one —, the router)
//! with one worker and PassthroughCluster as kasi's bundle patches it: no `use_http_header`, and
//! `override_host_status: [DRAINING]` so that `stateful_session`'s override host is never
//! honoured. Only the first HTTP filter differs, and how it steers:
//!
//! - the wasm filters (the floor and every kasi build) steer as kasi does, through the filter
//!   state `envoy.network.transport_socket.original_dst_address` (Envoy's foreign function
//!   `set_envoy_filter_state`);
//! - the Lua filters cannot: Lua's `streamInfo():filterState()` is read-only, so they keep the
//!   old header steering (`x-envoy-original-dst-host`), and their PassthroughCluster alone has
//!   `use_http_header: true` — the open relay kasi no longer needs;
//! - the baseline has no filter: its requests go to their original destination, which is
//!   therefore the pod itself.
//!
//! Every filter variant's original destination is a decoy pod (the activator's choice): only
//! the filter's steering can send its requests to the pod, so every `200` from the pod proves
//! the variant did its job. Envoy's work does not depend on which address ORIGINAL_DST ends up
//! with (one lookup in its host map either way).
//!
//! All get the same `Host` and the same `Cookie` header (several ordinary cookies around a kasi
//! session cookie pinning the pod), so Envoy parses the same bytes in each, with one difference:
//! kasi with `session_keys` (as `kasi apply` installs it) gets the session signed for that Host
//! (`value.MAC`, 23 bytes more), and removes the MAC before `stateful_session` reads the cookie;
//! every other variant gets Envoy's plain value. So `stateful_session` reads a valid session for
//! the pod in every variant and issues no `Set-Cookie` (it would for a value it cannot decode).
//!
//! The MCP variant is the exception that proves it: its requests carry the same ordinary cookies
//! but no session cookie, and the session in `Mcp-Session-Id` instead — Envoy's envelope around a
//! server session id, signed as kasi issues it —, so the cookie `stateful_session` is skipped
//! and the envelope one restores the server's id. Its pod, like an MCP server after
//! `initialize`, sends no `Mcp-Session-Id` back, so nothing is re-issued.

use kasi_e2e::EnvoyOptions;
use kasi_filter::codec::encode_proto;
use kasi_filter::signing::{self, SessionKeys};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The Lua alternative, as a user who knows Lua would write it.
pub const LUA_SOURCE: &str = include_str!("cookie_to_header.lua");
/// The same, as it is usually written (the base64 decoder a search finds first).
pub const LUA_COMMON_SOURCE: &str = include_str!("cookie_to_header_common.lua");

/// The benchmark's session key (what `kasi apply` generates at random; fixed here so that runs
/// send the same bytes).
pub const SESSION_KEY: [u8; signing::KEY_LEN] = *b"kasi-bench-session-key-32-bytes!";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// (a) No filter: the request goes to its original destination, the pod.
    Baseline,
    /// (b) The cheapest proxy-wasm filter: reads the cookie header, sets the filter state.
    Floor,
    /// (c) kasi's filter, configured as `kasi apply` installs it (signed sessions).
    Kasi,
    /// (d) The same job (unsigned) in `envoy.filters.http.lua`, steering by header.
    Lua,
    /// (e) kasi's module built without its response phase (`request-phase-only`): what its
    /// request phase costs against the floor, and by difference what fail-over costs.
    KasiRequestPhase,
    /// (f) The Lua job with the base64 decoder most Lua code copies (steering by header).
    LuaCommon,
    /// (g) kasi's module built with a response phase that is called but reads and counts nothing
    /// (`empty-response-phase`): against (e), what Envoy's call into the VM for the response
    /// costs; against (c), what reading the response (and counting the hit) costs.
    KasiEmptyResponse,
    /// (h) kasi's filter without `session_keys` (unsigned sessions): against (c), what signing
    /// costs (verifying the MAC and rewriting the cookie header).
    KasiUnsigned,
    /// (i) kasi as installed, the session a signed MCP envelope in `Mcp-Session-Id` instead of a
    /// cookie, with the envelope `stateful_session` after the cookie one: against (c), what an MCP
    /// session costs next to a browser's.
    KasiMcp,
}

impl Variant {
    pub const ALL: [Variant; 9] = [
        Variant::Baseline,
        Variant::Floor,
        Variant::Kasi,
        Variant::Lua,
        Variant::KasiRequestPhase,
        Variant::LuaCommon,
        Variant::KasiEmptyResponse,
        Variant::KasiUnsigned,
        Variant::KasiMcp,
    ];

    /// Short name used in JSON and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Floor => "floor",
            Variant::Kasi => "kasi",
            Variant::Lua => "lua",
            Variant::KasiRequestPhase => "kasi-request-phase",
            Variant::LuaCommon => "lua-common",
            Variant::KasiEmptyResponse => "kasi-empty-response",
            Variant::KasiUnsigned => "kasi-unsigned",
            Variant::KasiMcp => "kasi-mcp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::Baseline => "(a) baseline: no filter, sent to the pod",
            Variant::Floor => "(b) floor: reads 1 header, writes it, sets filter state",
            Variant::Kasi => "(c) kasi filter: signed cookie among others",
            Variant::Lua => "(d) Lua, unsigned, steers by header",
            Variant::KasiRequestPhase => "(e) kasi, request phase only (no fail-over)",
            Variant::LuaCommon => "(f) Lua, base64 as usually copied, by header",
            Variant::KasiEmptyResponse => "(g) kasi, response phase reads nothing",
            Variant::KasiUnsigned => "(h) kasi unsigned: no session_keys",
            Variant::KasiMcp => "(i) kasi, signed MCP session (envelope)",
        }
    }

    /// A build of kasi's module (whose counters the benchmark checks).
    pub fn is_kasi(self) -> bool {
        matches!(
            self,
            Variant::Kasi
                | Variant::KasiRequestPhase
                | Variant::KasiEmptyResponse
                | Variant::KasiUnsigned
                | Variant::KasiMcp
        )
    }

    /// kasi with `session_keys`, loaded with a signed session cookie.
    pub fn is_signed(self) -> bool {
        self.is_kasi() && self != Variant::KasiUnsigned
    }

    /// The Lua filters: Lua cannot set Envoy filter state (`filterState()` is read-only), so they
    /// steer with `x-envoy-original-dst-host` and need `use_http_header: true`.
    pub fn steers_by_header(self) -> bool {
        matches!(self, Variant::Lua | Variant::LuaCommon)
    }

    /// Whether this build counts sticky hits: only the ones with the whole response phase.
    pub fn counts_sticky_hits(self) -> bool {
        matches!(
            self,
            Variant::Kasi | Variant::KasiUnsigned | Variant::KasiMcp
        )
    }

    /// The Envoy configuration of this variant for an upstream at `upstream`. `module` is the
    /// wasm module: required for the floor and kasi's benchmark builds, optional for kasi
    /// (default: the workspace's build).
    pub fn envoy_options(self, upstream: SocketAddr, module: Option<&Path>) -> EnvoyOptions {
        let mut options = if self.is_kasi() {
            EnvoyOptions {
                filter_wasm: module.map(Path::to_path_buf),
                ..EnvoyOptions::with_filter(&kasi_plugin_config(upstream, self.is_signed()))
            }
        } else {
            EnvoyOptions::default()
        };
        options.concurrency = 1;
        // PassthroughCluster as kasi's bundle patches it; the header only for the Lua filters.
        options.ignore_override_host = true;
        options.use_http_header = self.steers_by_header();
        // Every variant runs the chain `kasi apply` installs by default: the cookie
        // `stateful_session` (skipped for a request that carries `mcp-session-id`), then the
        // envelope one. A cookie request pays for the envelope one too, as on a cluster.
        options = options.with_envelope(kasi_e2e::MCP_HEADER);
        match self {
            Variant::Floor => options.extra_http_filters.push(json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "floor",
                        "root_id": "floor",
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": upstream.to_string(),
                        },
                        "vm_config": {
                            "vm_id": "floor",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {
                                "filename": module.map(|m| m.display().to_string()).unwrap_or_default(),
                            }},
                        },
                    },
                },
            })),
            Variant::Lua | Variant::LuaCommon => options.extra_http_filters.push(json!({
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": if self == Variant::Lua {
                        LUA_SOURCE
                    } else {
                        LUA_COMMON_SOURCE
                    }},
                },
            })),
            Variant::Baseline
            | Variant::Kasi
            | Variant::KasiRequestPhase
            | Variant::KasiEmptyResponse
            | Variant::KasiUnsigned
            | Variant::KasiMcp => {}
        }
        options
    }

    /// The request headers the load sends: the same for every variant but the session cookie's
    /// MAC, which only kasi with `session_keys` gets (see the module's comment).
    pub fn request_headers(self, upstream: SocketAddr) -> Vec<(String, String)> {
        if self == Variant::KasiMcp {
            return vec![
                ("Host".to_string(), kasi_e2e::AUTHORITY.to_string()),
                ("Cookie".to_string(), OTHER_COOKIES.join("; ")),
                (
                    "Mcp-Session-Id".to_string(),
                    signed_envelope(upstream, kasi_e2e::AUTHORITY),
                ),
            ];
        }
        let session = if self.is_signed() {
            signed_session(upstream, kasi_e2e::AUTHORITY)
        } else {
            encode_proto(upstream, None)
        };
        vec![
            ("Host".to_string(), kasi_e2e::AUTHORITY.to_string()),
            ("Cookie".to_string(), cookie_header(&session)),
        ]
    }

    /// The connection's original destination (the activator's choice): the pod for the
    /// baseline, which has nothing else to send it there; `decoy` for every filter, so that only
    /// its steering reaches the pod.
    pub fn original_dst(self, upstream: SocketAddr, decoy: SocketAddr) -> SocketAddr {
        if self == Variant::Baseline {
            upstream
        } else {
            decoy
        }
    }
}

/// One Envoy the benchmark loads: a variant, and for the wasm ones the module. Besides the standard
/// ones, other builds of the floor or of kasi can run alongside (`--extra-floor`,
/// `--extra-kasi`), e.g. to compare a change against the previous build in the same run.
#[derive(Debug, Clone)]
pub struct Setup {
    pub variant: Variant,
    pub key: String,
    pub label: String,
    pub module: Option<PathBuf>,
    /// One of the eight the figures and ratios are about (not an `--extra-*` build).
    pub standard: bool,
}

impl Setup {
    pub fn standard(variant: Variant, modules: &Modules) -> Setup {
        let module = match variant {
            Variant::Floor => Some(modules.floor.clone()),
            Variant::KasiRequestPhase => Some(modules.kasi_request_phase.clone()),
            Variant::KasiEmptyResponse => Some(modules.kasi_empty_response.clone()),
            Variant::Baseline
            | Variant::Kasi
            | Variant::Lua
            | Variant::LuaCommon
            | Variant::KasiUnsigned
            | Variant::KasiMcp => None,
        };
        Setup {
            variant,
            key: variant.key().to_string(),
            label: variant.label().to_string(),
            module,
            standard: true,
        }
    }

    /// Another build of the floor or of kasi, numbered `n` among the extras.
    pub fn extra(variant: Variant, module: &Path, n: usize) -> Setup {
        let file = module
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        Setup {
            variant,
            key: format!("{}-{}", variant.key(), n + 2),
            label: format!("({}) {} build {file}", n + 5, variant.key()),
            module: Some(module.to_path_buf()),
            standard: false,
        }
    }

    pub fn envoy_options(&self, upstream: SocketAddr) -> EnvoyOptions {
        self.variant.envoy_options(upstream, self.module.as_deref())
    }

    pub fn request_headers(&self, upstream: SocketAddr) -> Vec<(String, String)> {
        self.variant.request_headers(upstream)
    }

    pub fn original_dst(&self, upstream: SocketAddr, decoy: SocketAddr) -> SocketAddr {
        self.variant.original_dst(upstream, decoy)
    }
}

/// The wasm modules besides kasi's own (which the e2e harness finds, or `KASI_FILTER_WASM`).
#[derive(Debug, Clone)]
pub struct Modules {
    /// `bench/floor-filter`.
    pub floor: PathBuf,
    /// kasi's filter built with `--features request-phase-only`.
    pub kasi_request_phase: PathBuf,
    /// kasi's filter built with `--features empty-response-phase`.
    pub kasi_empty_response: PathBuf,
}

impl Modules {
    /// Where `./dev` builds them, or `KASI_FLOOR_WASM`, `KASI_REQUEST_PHASE_WASM` and
    /// `KASI_EMPTY_RESPONSE_WASM`.
    pub fn from_env() -> Modules {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let path = |var: &str, default: PathBuf| {
            std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
        };
        Modules {
            floor: path(
                "KASI_FLOOR_WASM",
                target.join("wasm32-wasip1/wasm/floor_filter.wasm"),
            ),
            kasi_request_phase: path(
                "KASI_REQUEST_PHASE_WASM",
                target.join("request-phase-only/wasm32-wasip1/wasm/kasi_filter.wasm"),
            ),
            kasi_empty_response: path(
                "KASI_EMPTY_RESPONSE_WASM",
                target.join("empty-response-phase/wasm32-wasip1/wasm/kasi_filter.wasm"),
            ),
        }
    }

    /// The first module that is not built, with the command that builds it.
    pub fn missing(&self) -> Option<String> {
        if !self.floor.is_file() {
            return Some(format!(
                "the floor module is not built at {}: run `cargo build -p kasi-floor-filter --target wasm32-wasip1 --profile wasm` (./dev bench and ./dev test do)",
                self.floor.display()
            ));
        }
        [
            (&self.kasi_request_phase, "request-phase-only"),
            (&self.kasi_empty_response, "empty-response-phase"),
        ]
        .into_iter()
        .find(|(module, _)| !module.is_file())
        .map(|(module, feature)| {
            format!(
                "kasi's {feature} module is not built at {}: run `cargo build -p kasi-filter --target wasm32-wasip1 --profile wasm --features {feature} --target-dir target/{feature}` (./dev bench and ./dev test do)",
                module.display()
            )
        })
    }
}

/// kasi's pluginConfig as `kasi apply` renders it (the bundle's `wasmplugin.yaml` plus the
/// session key), except that only the upstream's address and port are allowed (`kasi apply`
/// allows the pod network and ports 8012/8013; the loopback pod is in neither). `signed`: with
/// `session_keys`; without, the filter runs unsigned.
pub fn kasi_plugin_config(upstream: SocketAddr, signed: bool) -> String {
    let mut config = json!({
        "cookie_name": kasi_e2e::COOKIE_NAME,
        "cookie_path": "/",
        "allowed_cidrs": [format!("{}/32", upstream.ip())],
        "allowed_ports": [upstream.port()],
        "dead_host_ttl_s": 30,
        "log_decisions": "changes",
    });
    if signed {
        config["session_keys"] = json!([signing::key_text(&SESSION_KEY)]);
    }
    config.to_string()
}

/// The session cookie's value (without quotes) pinning `upstream`, signed with
/// [`SESSION_KEY`] for `authority`, as kasi issues it: Envoy's value (what Envoy 1.40 writes
/// without a TTL, `kasi apply`'s default: base64 of the protobuf), `.`, the MAC.
pub fn signed_session(upstream: SocketAddr, authority: &str) -> String {
    let value = encode_proto(upstream, None);
    let signed = SessionKeys::new([&SESSION_KEY])
        .sign(
            value.as_bytes(),
            authority.to_ascii_lowercase().as_bytes(),
            signing::COOKIE_SEPARATOR,
        )
        .expect("a key to sign with");
    String::from_utf8(signed).expect("base64 and a base64url MAC")
}

/// The cookies around the session: analytics, preferences and a CSRF token.
const OTHER_COOKIES: [&str; 5] = [
    "_ga=GA1.1.1543327129.1761900000",
    "_gid=GA1.1.906412273.1761900000",
    "theme=dark",
    "csrftoken=Hq8Xb2kQ6JZ1vNwq3oEeTq9m2Yl0cR4s",
    "lang=en-GB",
];

/// A browser's `Cookie` header on an app behind Knative: [`OTHER_COOKIES`] around the session
/// cookie (value `session`, quoted as Envoy writes it), which is neither first nor last.
pub fn cookie_header(session: &str) -> String {
    let session = format!("{}=\"{session}\"", kasi_e2e::COOKIE_NAME);
    let mut cookies: Vec<&str> = OTHER_COOKIES.to_vec();
    cookies.insert(4, &session);
    cookies.join("; ")
}

/// The server session id behind the MCP variant's envelope (rmcp issues UUIDs).
pub const MCP_SERVER_SESSION: &str = "0b7f3c1e-5a2d-4e8f-9c61-2f4a7d9e8b13";

/// `Mcp-Session-Id` as a client holds it after kasi's install: Envoy's envelope of `upstream`
/// around [`MCP_SERVER_SESSION`], `;K:`, the MAC for `authority`.
pub fn signed_envelope(upstream: SocketAddr, authority: &str) -> String {
    let value = kasi_filter::envelope::encode_envelope(
        &upstream.to_string(),
        MCP_SERVER_SESSION.as_bytes(),
    );
    let signed = SessionKeys::new([&SESSION_KEY])
        .sign(
            value.as_bytes(),
            authority.to_ascii_lowercase().as_bytes(),
            signing::ENVELOPE_SEPARATOR,
        )
        .expect("a key to sign with");
    String::from_utf8(signed).expect("base64 and a base64url MAC")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_of(variant: Variant, upstream: SocketAddr) -> (String, Vec<u8>) {
        let headers = variant.request_headers(upstream);
        let header = headers
            .iter()
            .find(|(n, _)| n == "Cookie")
            .unwrap()
            .1
            .clone();
        let value = kasi_filter::cookies::find([header.as_bytes()], b"kasi-session")
            .unwrap()
            .to_vec();
        (header, value)
    }

    #[test]
    fn every_variant_carries_a_session_for_the_pod_among_other_cookies() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        let keys = SessionKeys::new([&SESSION_KEY]);
        for variant in Variant::ALL {
            if variant == Variant::KasiMcp {
                continue;
            }
            let (header, value) = session_of(variant, upstream);
            assert!(header.starts_with("_ga=") && header.ends_with("lang=en-GB"));
            let (plain, mac) = signing::split(&value, signing::COOKIE_SEPARATOR);
            assert_eq!(mac.is_some(), variant.is_signed(), "{variant:?}");
            if let Some(mac) = mac {
                assert!(keys.verify(plain, kasi_e2e::AUTHORITY.as_bytes(), mac));
                assert!(!keys.verify(plain, b"other.example.com", mac));
            }
            let cookie = kasi_filter::codec::decode(plain).unwrap();
            assert_eq!(cookie.address, upstream, "{variant:?}");
            assert_eq!(cookie.expires, None);
        }
    }

    #[test]
    fn the_mcp_variant_carries_a_signed_envelope_for_the_pod_and_no_session_cookie() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        let headers = Variant::KasiMcp.request_headers(upstream);
        let get = |name: &str| &headers.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(kasi_filter::cookies::find([get("Cookie").as_bytes()], b"kasi-session").is_none());
        let value = get("Mcp-Session-Id").as_bytes();
        let (plain, mac) = signing::split(value, signing::ENVELOPE_SEPARATOR);
        let keys = SessionKeys::new([&SESSION_KEY]);
        assert!(keys.verify(plain, kasi_e2e::AUTHORITY.as_bytes(), mac.unwrap()));
        let envelope = kasi_filter::envelope::decode_envelope(plain).unwrap();
        assert_eq!(envelope.address, upstream);
        assert_eq!(envelope.original(), MCP_SERVER_SESSION.as_bytes());
        for variant in Variant::ALL {
            let options = variant.envoy_options(upstream, Some(Path::new("m.wasm")));
            assert_eq!(
                options.envelope_header.as_deref(),
                Some(kasi_e2e::MCP_HEADER),
                "{variant:?}: the bundle's chain"
            );
        }
    }

    #[test]
    fn no_variant_sends_the_routing_header_and_only_lua_steers_by_it() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        for variant in Variant::ALL {
            assert!(!variant
                .request_headers(upstream)
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("x-envoy-original-dst-host")));
            let options = variant.envoy_options(upstream, Some(Path::new("m.wasm")));
            assert_eq!(
                options.use_http_header,
                matches!(variant, Variant::Lua | Variant::LuaCommon),
                "{variant:?}"
            );
            assert!(options.ignore_override_host, "{variant:?}");
        }
    }

    #[test]
    fn kasi_is_configured_as_kasi_apply_renders_it() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        for signed in [true, false] {
            let text = kasi_plugin_config(upstream, signed);
            let config = kasi_filter::config::Config::parse(text.as_bytes()).unwrap();
            assert_eq!(config.session_keys.is_empty(), !signed, "{text}");
        }
    }
}
