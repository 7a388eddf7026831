//! The ways the benchmark runs Envoy, and the request each one is loaded with: the four
//! (no filter, the floor, kasi, Lua) and three that explain them (kasi's request phase alone; the
//! Lua as it is usually written; kasi with a response phase that is called but reads nothing).
//!
//! Every variant is the activator sidecar's bootstrap from the e2e harness (the PROXY protocol
//! listener standing in for iptables, `stateful_session`, the router, PassthroughCluster with
//! `use_http_header: true`) with one worker; only the first HTTP filter differs. All of them get
//! the same request: the same `Host`, the same `Cookie` header (several ordinary cookies and a
//! valid kasi session cookie pinning the upstream pod), so Envoy parses the same bytes in each,
//! and the same original destination, a decoy pod, as the activator's choice. Only the routing
//! header can send a request to the pod rather than the decoy: the baseline's client sets it,
//! the three filters write it.

use kasi_e2e::EnvoyOptions;
use kasi_filter::codec::encode_proto;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The Lua alternative, as a user who knows Lua would write it.
pub const LUA_SOURCE: &str = include_str!("cookie_to_header.lua");
/// The same, as it is usually written (the base64 decoder a search finds first).
pub const LUA_COMMON_SOURCE: &str = include_str!("cookie_to_header_common.lua");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// (a) No filter: the client sets `x-envoy-original-dst-host` itself.
    Baseline,
    /// (b) The cheapest proxy-wasm filter: reads the cookie header, writes the routing header.
    Floor,
    /// (c) kasi's filter, configured as `kasi apply` installs it.
    Kasi,
    /// (d) The same job in `envoy.filters.http.lua`.
    Lua,
    /// (e) kasi's module built without its response phase (`request-phase-only`): what its
    /// request phase costs against the floor, and by difference what fail-over costs.
    KasiRequestPhase,
    /// (f) The Lua job with the base64 decoder most Lua code copies.
    LuaCommon,
    /// (g) kasi's module built with a response phase that is called but reads and counts nothing
    /// (`empty-response-phase`): against (e), what Envoy's call into the VM for the response
    /// costs; against (c), what reading the response (and counting the hit) costs.
    KasiEmptyResponse,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::Baseline,
        Variant::Floor,
        Variant::Kasi,
        Variant::Lua,
        Variant::KasiRequestPhase,
        Variant::LuaCommon,
        Variant::KasiEmptyResponse,
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
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::Baseline => "(a) baseline: client sets the header, no filter",
            Variant::Floor => "(b) floor: wasm reads 1 header, writes 1",
            Variant::Kasi => "(c) kasi filter: cookie among others",
            Variant::Lua => "(d) Lua filter: same job in Lua",
            Variant::KasiRequestPhase => "(e) kasi, request phase only (no fail-over)",
            Variant::LuaCommon => "(f) Lua, base64 as usually copied",
            Variant::KasiEmptyResponse => "(g) kasi, response phase reads nothing",
        }
    }

    /// A build of kasi's module (whose counters the benchmark checks).
    pub fn is_kasi(self) -> bool {
        matches!(
            self,
            Variant::Kasi | Variant::KasiRequestPhase | Variant::KasiEmptyResponse
        )
    }

    /// Whether this build counts sticky hits: only the one with the whole response phase.
    pub fn counts_sticky_hits(self) -> bool {
        self == Variant::Kasi
    }

    /// The Envoy configuration of this variant for an upstream at `upstream`. `module` is the
    /// wasm module: required for the floor and kasi's benchmark builds, optional for kasi
    /// (default: the workspace's build).
    pub fn envoy_options(self, upstream: SocketAddr, module: Option<&Path>) -> EnvoyOptions {
        let mut options = if self.is_kasi() {
            EnvoyOptions {
                filter_wasm: module.map(Path::to_path_buf),
                ..EnvoyOptions::with_filter(&kasi_plugin_config(upstream))
            }
        } else {
            EnvoyOptions::default()
        };
        options.concurrency = 1;
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
            | Variant::KasiEmptyResponse => {}
        }
        options
    }

    /// The request headers the load sends.
    pub fn request_headers(self, upstream: SocketAddr) -> Vec<(String, String)> {
        let mut headers = vec![
            ("Host".to_string(), kasi_e2e::AUTHORITY.to_string()),
            ("Cookie".to_string(), cookie_header(upstream)),
        ];
        if self == Variant::Baseline {
            headers.push((
                "x-envoy-original-dst-host".to_string(),
                upstream.to_string(),
            ));
        }
        headers
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
    /// One of the seven the figures and ratios are about (not an `--extra-*` build).
    pub standard: bool,
}

impl Setup {
    pub fn standard(variant: Variant, modules: &Modules) -> Setup {
        let module = match variant {
            Variant::Floor => Some(modules.floor.clone()),
            Variant::KasiRequestPhase => Some(modules.kasi_request_phase.clone()),
            Variant::KasiEmptyResponse => Some(modules.kasi_empty_response.clone()),
            _ => None,
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

/// kasi's pluginConfig: only the upstream's address range and port are allowed (as `kasi apply`
/// allows the pods' CIDRs and ports 8012/8013); decision logging at its default, `changes`.
pub fn kasi_plugin_config(upstream: SocketAddr) -> String {
    json!({
        "allowed_cidrs": [format!("{}/32", upstream.ip())],
        "allowed_ports": [upstream.port()],
    })
    .to_string()
}

/// A browser's `Cookie` header on an app behind Knative: analytics, preferences and a CSRF token
/// around the session cookie, which is neither first nor last. The session cookie is what
/// Envoy 1.40 writes without a TTL (`kasi apply`'s default): quoted base64 of the protobuf.
pub fn cookie_header(upstream: SocketAddr) -> String {
    format!(
        "_ga=GA1.1.1543327129.1761900000; _gid=GA1.1.906412273.1761900000; theme=dark; \
         csrftoken=Hq8Xb2kQ6JZ1vNwq3oEeTq9m2Yl0cR4s; {}=\"{}\"; lang=en-GB",
        kasi_e2e::COOKIE_NAME,
        encode_proto(upstream, None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_header_carries_a_valid_session_cookie_among_others() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        let header = cookie_header(upstream);
        let value = kasi_filter::cookies::find([header.as_bytes()], b"kasi-session").unwrap();
        let cookie = kasi_filter::codec::decode(value).unwrap();
        assert_eq!(cookie.address, upstream);
        assert_eq!(cookie.expires, None);
        assert!(header.starts_with("_ga=") && header.ends_with("lang=en-GB"));
    }

    #[test]
    fn only_the_baseline_sends_the_routing_header() {
        let upstream: SocketAddr = "127.0.0.2:18012".parse().unwrap();
        for variant in Variant::ALL {
            let sends = variant
                .request_headers(upstream)
                .iter()
                .any(|(n, _)| n == "x-envoy-original-dst-host");
            assert_eq!(sends, variant == Variant::Baseline, "{variant:?}");
        }
    }
}
