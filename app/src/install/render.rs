//! Renders the bundle in `manifests/`: every piece as a Kubernetes object, flags applied field by
//! field (never by text substitution), in the order it is safe to apply.

use super::session_keys::{KeyRing, ROTATED_AT_ANNOTATION};
use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub use super::skip_filter::skipped_for_headers;

/// The activator's sidecar logs the `wasm` component at info (the filter's decision lines) and
/// everything else at Istio's defaults (`misc:error`, the proxy at warning).
pub const COMPONENT_LOG_LEVEL: &str = "misc:error,wasm:info";
pub const COMPONENT_LOG_LEVEL_ANNOTATION: &str = "sidecar.istio.io/componentLogLevel";

/// Envoy's session states beside the cookie one: MCP's envelope and header mode.
const ENVELOPE_STATE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState";
const HEADER_STATE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.http.stateful_session.header.v3.HeaderBasedSessionState";

/// Where the filter's mount puts the module inside istio-proxy.
pub const FILTER_MOUNT_PATH: &str = "/var/local/kasi";
pub const FILTER_FILE: &str = "kasi_filter.wasm";
pub const FILTER_CONFIGMAP: &str = "kasi-filter";
/// The WasmPlugin's name (manifests/wasmplugin.yaml): `kasi status` and the UI find the filter in a
/// sidecar's config_dump by it.
pub const WASM_PLUGIN: &str = "kasi-affinity";

/// The templates, embedded at build time.
const TEMPLATES: [(&str, &str, &str); 9] = [
    (
        "filter",
        "Filter module (ConfigMap)",
        include_str!("../../../manifests/filter-configmap.yaml"),
    ),
    (
        "placeholder",
        "Placeholder Service (HTTP on 8012/8013)",
        include_str!("../../../manifests/placeholder-service.yaml"),
    ),
    (
        "config-network",
        "config-network: mesh-compatibility-mode disabled",
        include_str!("../../../manifests/config-network.yaml"),
    ),
    (
        "config-autoscaler",
        "config-autoscaler: target-burst-capacity -1",
        include_str!("../../../manifests/config-autoscaler.yaml"),
    ),
    (
        "stateful-session",
        "EnvoyFilter: stateful_session (cookie, MCP)",
        include_str!("../../../manifests/envoyfilter-stateful-session.yaml"),
    ),
    (
        "passthrough",
        "EnvoyFilter: PassthroughCluster, no override host",
        include_str!("../../../manifests/envoyfilter-passthrough.yaml"),
    ),
    (
        "sidecar",
        "Sidecar (scoped activator egress)",
        include_str!("../../../manifests/sidecar.yaml"),
    ),
    (
        "wasmplugin",
        "WasmPlugin (signed cookie → filter state)",
        include_str!("../../../manifests/wasmplugin.yaml"),
    ),
    (
        "injection",
        "Sidecar injection + filter mount on the activator",
        include_str!("../../../manifests/activator-injection.yaml"),
    ),
];

/// How the filter module reaches the sidecar.
#[derive(Debug, Clone)]
pub enum FilterSource {
    /// In a ConfigMap mounted into istio-proxy: no registry needed.
    ConfigMap { wasm: Vec<u8> },
    /// Hosted by the user: `oci://` or `https://`, with its sha256.
    Url { url: String, sha256: String },
}

#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub system_namespace: String,
    pub cookie_name: String,
    /// `None`: a session cookie (no Max-Age).
    pub cookie_ttl: Option<Duration>,
    pub cookie_path: String,
    /// The header MCP sessions travel in (Envoy's envelope `stateful_session` wraps it, the filter
    /// reads it); `""`: no MCP sessions.
    pub mcp_header: String,
    /// The header of Envoy's header-mode sessions (`base64("ip:port")`); `""`: none.
    pub session_header: String,
    /// `None`: the filter's defaults (RFC 1918, CGNAT, ULA).
    pub allowed_cidrs: Option<Vec<String>>,
    pub filter: FilterSource,
    /// The keys that sign sessions; `None` renders no `session_keys` (the filter then runs
    /// unsigned). `kasi apply` fills it from the cluster, `kasi manifests` with a fresh key.
    pub session_keys: Option<KeyRing>,
}

impl RenderOptions {
    pub fn new(filter: FilterSource) -> RenderOptions {
        RenderOptions {
            system_namespace: "knative-serving".into(),
            cookie_name: kasi_filter::config::DEFAULT_COOKIE_NAME.into(),
            cookie_ttl: None,
            cookie_path: "/".into(),
            mcp_header: kasi_filter::config::DEFAULT_MCP_HEADER.into(),
            session_header: String::new(),
            allowed_cidrs: None,
            filter,
            session_keys: None,
        }
    }
}

/// One object of the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Short stable id (`sidecar`, `wasmplugin`, …).
    pub id: &'static str,
    pub title: &'static str,
    pub object: Value,
}

impl Piece {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The pod-template label that gates every Istio piece: the WasmPlugin, both EnvoyFilters and
/// the Sidecar select only activator pods carrying it, and only the injection piece puts it on
/// the template — so only pods created after the mount exists (a pod's volumes are fixed at
/// creation) ever receive the filter, and a new module version rolls the activators. Its value is
/// the module's sha256, cut to the 63 characters a label value may have (32 hex digits: 128 bits).
pub const MODULE_LABEL: &str = "kasi.dev/filter-sha256";

/// The gate label's value for a module.
pub fn module_label_value(sha256: &str) -> String {
    sha256.chars().take(32).collect()
}

/// The bundle, in apply order, so that no request fails on the way in:
/// 1. the module's ConfigMap and the placeholder Service (HTTP listeners on 8012/8013);
/// 2. `config-network` and `config-autoscaler` — the activator reads `mesh-compatibility-mode`
///    only when it starts, so the pods the rollout creates send to pod IPs from their first
///    request, while the old ones keep their ClusterIP routes;
/// 3. both EnvoyFilters, the Sidecar and the WasmPlugin, gated on [`MODULE_LABEL`]: they select
///    no pod yet, so no running sidecar gets a module it cannot load or a scope that drops its
///    routes. On an upgrade (a new module, so a new label) the old pods lose each piece as it is
///    applied: `stateful_session` first and the filter last, so no old pod ever runs
///    `stateful_session` without kasi (it would re-issue unsigned cookies and move sessions);
/// 4. the activator Deployment last: its template gains the mount, the log level and the label,
///    and the rollout brings pods that have everything from their first request.
///
/// `kasi revert` goes the other way (see `revert`).
pub fn render(options: &RenderOptions) -> anyhow::Result<Vec<Piece>> {
    validate(options)?;
    let mut pieces = Vec::new();
    for (id, title, text) in TEMPLATES {
        let mut object: Value =
            serde_yaml_ng::from_str(text).with_context(|| format!("template {id}"))?;
        object["metadata"]["namespace"] = json!(options.system_namespace);
        match id {
            "filter" => match &options.filter {
                FilterSource::ConfigMap { wasm } => {
                    object["binaryData"] = json!({FILTER_FILE: base64::engine::general_purpose::STANDARD.encode(wasm)});
                    object["metadata"]["annotations"] =
                        json!({"kasi.dev/sha256": sha256_hex(wasm)});
                }
                FilterSource::Url { .. } => continue,
            },
            "injection" => {
                // A hosted module needs no mount; the log level stays either way.
                if let FilterSource::Url { .. } = options.filter {
                    if let Some(annotations) =
                        object["spec"]["template"]["metadata"]["annotations"].as_object_mut()
                    {
                        annotations.remove("sidecar.istio.io/userVolume");
                        annotations.remove("sidecar.istio.io/userVolumeMount");
                    }
                }
            }
            "wasmplugin" => {
                let spec = &mut object["spec"];
                match &options.filter {
                    FilterSource::ConfigMap { wasm } => {
                        spec["url"] = json!(format!("file://{FILTER_MOUNT_PATH}/{FILTER_FILE}"));
                        spec["sha256"] = json!(sha256_hex(wasm));
                    }
                    FilterSource::Url { url, sha256 } => {
                        spec["url"] = json!(url);
                        spec["sha256"] = json!(sha256);
                    }
                }
                fill_plugin_config(&mut spec["pluginConfig"], options);
                // The filter's own parser: a bad flag fails here, not in the sidecar.
                let config = spec["pluginConfig"].to_string();
                if let Err(e) = kasi_filter::config::Config::parse(config.as_bytes()) {
                    bail!("{e}");
                }
                if let Some(rotated_at) = options
                    .session_keys
                    .as_ref()
                    .and_then(KeyRing::rotated_at_text)
                {
                    object["metadata"]["annotations"][ROTATED_AT_ANNOTATION] = json!(rotated_at);
                }
            }
            "stateful-session" => {
                let cookie_patches: Vec<Value> = object["spec"]["configPatches"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mut patches = Vec::new();
                // Per port: the cookie, then the MCP envelope, then header mode, each inserted
                // before the router in turn, so the chain reads kasi → cookie → envelope →
                // header → router. Each `stateful_session` reads and writes only its carrier.
                for mut patch in cookie_patches {
                    let state = &mut patch["patch"]["value"]["typed_config"]["session_state"];
                    let cookie = &mut state["typed_config"]["cookie"];
                    cookie["name"] = json!(options.cookie_name);
                    cookie["path"] = json!(options.cookie_path);
                    if let Some(ttl) = options.cookie_ttl {
                        cookie["ttl"] = json!(format!("{}s", ttl.as_secs()));
                    }
                    let with_state = |name: &str, typed_config: Value| {
                        let mut other = patch.clone();
                        other["patch"]["value"]["typed_config"]["session_state"] =
                            json!({"name": name, "typed_config": typed_config});
                        other
                    };
                    let envelope = (!options.mcp_header.is_empty()).then(|| {
                        with_state(
                            "envoy.http.stateful_session.envelope",
                            json!({"@type": ENVELOPE_STATE_TYPE, "header": {"name": options.mcp_header}}),
                        )
                    });
                    let header = (!options.session_header.is_empty()).then(|| {
                        with_state(
                            "envoy.http.stateful_session.header",
                            json!({"@type": HEADER_STATE_TYPE, "name": options.session_header}),
                        )
                    });
                    // `--cookie-name ""`: no cookie sessions, no cookie `stateful_session`.
                    if !options.cookie_name.is_empty() {
                        let headers: Vec<&str> = [&options.mcp_header, &options.session_header]
                            .into_iter()
                            .filter(|h| !h.is_empty())
                            .map(String::as_str)
                            .collect();
                        let value = patch["patch"]["value"].take();
                        patch["patch"]["value"] = skipped_for_headers(value, &headers);
                        patches.push(patch);
                    }
                    patches.extend(envelope);
                    patches.extend(header);
                }
                object["spec"]["configPatches"] = json!(patches);
            }
            _ => {}
        }
        gate(
            id,
            &mut object,
            &module_label_value(&module_sha256(&options.filter)),
        );
        pieces.push(Piece { id, title, object });
    }
    Ok(pieces)
}

/// The `session_state` of a `stateful_session` filter's JSON, wrapped by
/// [`skipped_for_headers`] or not.
pub fn session_state_of(filter: &Value) -> &Value {
    let config = &filter["typed_config"];
    match config.get("extension_config") {
        Some(inner) => &inner["typed_config"]["session_state"],
        None => &config["session_state"],
    }
}

fn module_sha256(filter: &FilterSource) -> String {
    match filter {
        FilterSource::ConfigMap { wasm } => sha256_hex(wasm),
        FilterSource::Url { sha256, .. } => sha256.clone(),
    }
}

/// Puts [`MODULE_LABEL`] on the activator's template and in the selector of every Istio piece.
fn gate(id: &str, object: &mut Value, value: &str) {
    let labels = match id {
        "injection" => &mut object["spec"]["template"]["metadata"]["labels"],
        "wasmplugin" => &mut object["spec"]["selector"]["matchLabels"],
        "stateful-session" | "passthrough" | "sidecar" => {
            &mut object["spec"]["workloadSelector"]["labels"]
        }
        _ => return,
    };
    labels[MODULE_LABEL] = json!(value);
}

/// The WasmPlugin's `pluginConfig` over the template's values: cookie name and path from the same
/// options that render `stateful_session`'s cookie (one source, so the filter reads the cookie
/// Envoy writes and drops a dead session's cookie on the path it was set on), and the keys.
fn fill_plugin_config(config: &mut Value, options: &RenderOptions) {
    config["cookie_name"] = json!(options.cookie_name);
    config["cookie_path"] = json!(options.cookie_path);
    config["mcp_header"] = json!(options.mcp_header);
    config["session_header"] = json!(options.session_header);
    if let Some(cidrs) = &options.allowed_cidrs {
        config["allowed_cidrs"] = json!(cidrs);
    }
    if let Some(keys) = &options.session_keys {
        config["session_keys"] = json!(keys.texts());
    }
}

/// The flags the filter's parser does not see (the filter source), and the cookie path's most
/// common mistake said plainly; the pluginConfig itself is checked by that parser once rendered.
fn validate(options: &RenderOptions) -> anyhow::Result<()> {
    if let FilterSource::Url { url, sha256 } = &options.filter {
        if !(url.starts_with("oci://") || url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("--filter-url {url:?} must start with oci:// or https://");
        }
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            bail!("the filter's sha256 must be 64 lower-case hex digits, got {sha256:?}");
        }
    }
    if options.cookie_name.is_empty()
        && options.mcp_header.is_empty()
        && options.session_header.is_empty()
    {
        bail!("every session carrier is off: keep --cookie-name, --mcp-header or give --session-header");
    }
    if !options.cookie_path.starts_with('/') {
        bail!(
            "the cookie path must start with '/', got {:?}",
            options.cookie_path
        );
    }
    Ok(())
}

/// Multi-document YAML, as `kasi manifests` prints it.
pub fn to_yaml(pieces: &[Piece]) -> anyhow::Result<String> {
    let mut out = String::new();
    for piece in pieces {
        out.push_str(&format!("---\n# {}\n", piece.title));
        out.push_str(&serde_yaml_ng::to_string(&piece.object)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece<'a>(pieces: &'a [Piece], id: &str) -> &'a Value {
        &pieces.iter().find(|p| p.id == id).unwrap().object
    }

    fn options() -> RenderOptions {
        RenderOptions::new(FilterSource::ConfigMap {
            wasm: b"\0asm fake".to_vec(),
        })
    }

    #[test]
    fn renders_every_piece_in_a_safe_order() {
        let pieces = render(&options()).unwrap();
        let ids: Vec<&str> = pieces.iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [
                "filter",
                "placeholder",
                "config-network",
                "config-autoscaler",
                "stateful-session",
                "passthrough",
                "sidecar",
                "wasmplugin",
                "injection",
            ]
        );
        let wasm = &piece(&pieces, "wasmplugin");
        assert_eq!(pieces[7].name(), WASM_PLUGIN);
        assert_eq!(wasm["spec"]["phase"], "AUTHN");
        assert_eq!(
            wasm["spec"]["url"],
            "file:///var/local/kasi/kasi_filter.wasm"
        );
        assert_eq!(wasm["spec"]["sha256"], sha256_hex(b"\0asm fake"));
        assert_eq!(
            piece(&pieces, "filter")["binaryData"][FILTER_FILE],
            "AGFzbSBmYWtl"
        );
    }

    #[test]
    fn every_istio_piece_selects_only_pods_the_injection_piece_labels() {
        let pieces = render(&options()).unwrap();
        let value = module_label_value(&sha256_hex(b"\0asm fake"));
        assert_eq!(value.len(), 32);
        let template = &piece(&pieces, "injection")["spec"]["template"]["metadata"]["labels"];
        assert_eq!(template[MODULE_LABEL], value.as_str());
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["selector"]["matchLabels"][MODULE_LABEL],
            value.as_str()
        );
        for id in ["stateful-session", "passthrough", "sidecar"] {
            assert_eq!(
                piece(&pieces, id)["spec"]["workloadSelector"]["labels"][MODULE_LABEL],
                value.as_str(),
                "{id}"
            );
        }
        // A new module is a new label: the activators roll.
        let other = render(&RenderOptions::new(FilterSource::ConfigMap {
            wasm: b"\0asm other".to_vec(),
        }))
        .unwrap();
        assert_ne!(
            piece(&other, "injection")["spec"]["template"]["metadata"]["labels"][MODULE_LABEL],
            value.as_str()
        );
    }

    /// The cookie `stateful_session` is skipped for a request that carries a header session
    /// (MCP's, or header mode's when named), keeping its name in the chain; with no header
    /// carrier it is the plain filter.
    #[test]
    fn the_cookie_session_is_skipped_for_requests_with_a_header_session() {
        let cookie_patch = |o: &RenderOptions| -> Value {
            piece(&render(o).unwrap(), "stateful-session")["spec"]["configPatches"][0]["patch"]
                ["value"]
                .clone()
        };
        let skipped_for = |filter: &Value| -> Vec<String> {
            filter["typed_config"]["xds_matcher"]["matcher_list"]["matchers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    assert_eq!(
                        m["on_match"]["action"]["typed_config"]["@type"],
                        "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
                    );
                    let input = &m["predicate"]["single_predicate"]["input"]["typed_config"];
                    input["header_name"].as_str().unwrap().to_owned()
                })
                .collect()
        };
        let filter = cookie_patch(&options());
        assert_eq!(filter["name"], "envoy.filters.http.stateful_session");
        assert_eq!(skipped_for(&filter), ["mcp-session-id"]);
        assert_eq!(
            session_state_of(&filter)["name"],
            "envoy.http.stateful_session.cookie"
        );

        let mut o = options();
        o.session_header = "x-session".into();
        assert_eq!(
            skipped_for(&cookie_patch(&o)),
            ["mcp-session-id", "x-session"]
        );

        o.mcp_header = String::new();
        o.session_header = String::new();
        let plain = cookie_patch(&o);
        assert_eq!(
            plain["typed_config"]["@type"],
            "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession"
        );
        assert_eq!(
            session_state_of(&plain)["name"],
            "envoy.http.stateful_session.cookie"
        );
    }

    /// Per port, kasi's chain reads cookie → MCP envelope (→ header mode) → router, and the
    /// filter is told the same headers.
    #[test]
    fn mcp_and_header_sessions_get_their_stateful_session() {
        let states = |pieces: &[Piece]| -> Vec<(u64, String, String)> {
            piece(pieces, "stateful-session")["spec"]["configPatches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let state = session_state_of(&p["patch"]["value"]);
                    let header = state["typed_config"]["header"]["name"]
                        .as_str()
                        .or(state["typed_config"]["name"].as_str())
                        .or(state["typed_config"]["cookie"]["name"].as_str())
                        .unwrap_or_default();
                    (
                        p["match"]["listener"]["portNumber"].as_u64().unwrap(),
                        state["name"].as_str().unwrap().to_owned(),
                        header.to_owned(),
                    )
                })
                .collect()
        };
        let pieces = render(&options()).unwrap();
        let cookie = "envoy.http.stateful_session.cookie".to_owned();
        let envelope = "envoy.http.stateful_session.envelope".to_owned();
        assert_eq!(
            states(&pieces),
            vec![
                (8012, cookie.clone(), "kasi-session".into()),
                (8012, envelope.clone(), "mcp-session-id".into()),
                (8013, cookie.clone(), "kasi-session".into()),
                (8013, envelope.clone(), "mcp-session-id".into()),
            ]
        );
        let config = &piece(&pieces, "wasmplugin")["spec"]["pluginConfig"];
        assert_eq!(config["mcp_header"], "mcp-session-id");
        assert_eq!(config["session_header"], "");

        let mut o = options();
        o.mcp_header = String::new();
        o.session_header = "x-session".into();
        let pieces = render(&o).unwrap();
        let header = "envoy.http.stateful_session.header".to_owned();
        assert_eq!(
            states(&pieces),
            vec![
                (8012, cookie.clone(), "kasi-session".into()),
                (8012, header.clone(), "x-session".into()),
                (8013, cookie, "kasi-session".into()),
                (8013, header, "x-session".into()),
            ]
        );
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["pluginConfig"]["session_header"],
            "x-session"
        );
        // The filter's own checks: one header cannot carry two kinds of session.
        o.mcp_header = "x-session".into();
        assert!(render(&o).is_err());

        // MCP only: no cookie `stateful_session`, and the filter reads no cookie.
        let mut o = options();
        o.cookie_name = String::new();
        let pieces = render(&o).unwrap();
        assert_eq!(
            states(&pieces),
            vec![
                (8012, envelope.clone(), "mcp-session-id".into()),
                (8013, envelope, "mcp-session-id".into()),
            ]
        );
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["pluginConfig"]["cookie_name"],
            ""
        );
        o.mcp_header = String::new();
        let error = render(&o).unwrap_err().to_string();
        assert!(error.contains("every session carrier is off"), "{error}");
    }

    #[test]
    fn passthrough_ignores_override_hosts_and_honours_no_header() {
        let pieces = render(&options()).unwrap();
        let passthrough = pieces.iter().find(|p| p.id == "passthrough").unwrap();
        assert_eq!(passthrough.name(), "kasi-passthrough-original-dst");
        let patch = &passthrough.object["spec"]["configPatches"][0];
        assert_eq!(patch["match"]["cluster"]["name"], "PassthroughCluster");
        assert_eq!(patch["patch"]["operation"], "MERGE");
        assert_eq!(
            patch["patch"]["value"],
            json!({"common_lb_config": {"override_host_status": {"statuses": ["DRAINING"]}}})
        );
        let yaml = to_yaml(&pieces).unwrap();
        assert!(!yaml.contains("use_http_header"), "{yaml}");
        assert!(!yaml.contains("x-envoy-original-dst-host"), "{yaml}");
    }

    #[test]
    fn plugin_config_follows_the_filter_contract() {
        let mut o = options();
        let pieces = render(&o).unwrap();
        let config = &piece(&pieces, "wasmplugin")["spec"]["pluginConfig"];
        assert!(config.get("header").is_none(), "{config}");
        assert!(
            config.get("session_keys").is_none(),
            "no keys given: {config}"
        );
        assert_eq!(config["cookie_path"], "/");

        let (keys, _) = crate::install::session_keys::next(
            Some(KeyRing::generate()),
            true,
            Duration::from_secs(60),
            std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        o.session_keys = Some(keys.clone());
        let pieces = render(&o).unwrap();
        let plugin = &piece(&pieces, "wasmplugin");
        assert_eq!(
            plugin["spec"]["pluginConfig"]["session_keys"],
            json!(keys.texts())
        );
        assert_eq!(
            plugin["metadata"]["annotations"][ROTATED_AT_ANNOTATION],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            plugin["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kasi"
        );
        // What kasi renders is a pluginConfig the filter accepts, with the keys kasi rendered.
        let parsed = kasi_filter::config::Config::parse(
            plugin["spec"]["pluginConfig"].to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(parsed.session_keys.len(), 2);
        assert_eq!(parsed.cookie_path, "/");
    }

    #[test]
    fn flags_reach_their_fields() {
        let mut o = options();
        o.cookie_name = "sticky".into();
        o.cookie_path = "/app".into();
        o.cookie_ttl = Some(Duration::from_secs(3600));
        o.allowed_cidrs = Some(vec!["10.244.0.0/16".into()]);
        o.system_namespace = "kn".into();
        let pieces = render(&o).unwrap();
        let session =
            &piece(&pieces, "stateful-session")["spec"]["configPatches"][0]["patch"]["value"];
        let cookie = &session_state_of(session)["typed_config"]["cookie"];
        assert_eq!(cookie["name"], "sticky");
        assert_eq!(cookie["path"], "/app");
        assert_eq!(cookie["ttl"], "3600s");
        // One source: the filter reads the cookie stateful_session writes, on the same path.
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["pluginConfig"]["cookie_name"],
            "sticky"
        );
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["pluginConfig"]["cookie_path"],
            "/app"
        );
        assert_eq!(
            piece(&pieces, "wasmplugin")["spec"]["pluginConfig"]["allowed_cidrs"][0],
            "10.244.0.0/16"
        );
        assert!(pieces.iter().all(|p| p.namespace() == Some("kn")));
    }

    #[test]
    fn the_sidecar_scopes_the_activator_to_what_it_needs() {
        let mut o = options();
        o.system_namespace = "kn".into();
        let pieces = render(&o).unwrap();
        let sidecar = pieces.iter().find(|p| p.id == "sidecar").unwrap();
        assert_eq!(sidecar.namespace(), Some("kn"));
        assert_eq!(
            sidecar.object["spec"]["egress"],
            json!([{"hosts": ["./*", "istio-system/*"]}])
        );
        assert_eq!(
            sidecar.object["spec"]["workloadSelector"]["labels"]["app"],
            "activator"
        );
        // Nothing assumes the cluster domain.
        for piece in &pieces {
            assert!(
                !piece.object.to_string().contains("cluster.local"),
                "{} names cluster.local",
                piece.id
            );
        }
    }

    #[test]
    fn the_activator_sidecar_logs_wasm_at_info_only() {
        for filter in [
            FilterSource::ConfigMap {
                wasm: b"\0asm".to_vec(),
            },
            FilterSource::Url {
                url: "oci://ghcr.io/x/kasi:1".into(),
                sha256: "a".repeat(64),
            },
        ] {
            let pieces = render(&RenderOptions::new(filter)).unwrap();
            let injection = pieces.iter().find(|p| p.id == "injection").unwrap();
            let annotations = &injection.object["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations[COMPONENT_LOG_LEVEL_ANNOTATION],
                COMPONENT_LOG_LEVEL
            );
            // Istio's default for every other component stays.
            assert!(COMPONENT_LOG_LEVEL.starts_with("misc:error,"));
        }
    }

    #[test]
    fn url_source_has_no_configmap_and_no_mount() {
        let o = RenderOptions::new(FilterSource::Url {
            url: "oci://ghcr.io/x/kasi:1".into(),
            sha256: "a".repeat(64),
        });
        let pieces = render(&o).unwrap();
        assert!(pieces.iter().all(|p| p.id != "filter"));
        let injection = pieces.iter().find(|p| p.id == "injection").unwrap();
        let annotations = injection.object["spec"]["template"]["metadata"]["annotations"]
            .as_object()
            .unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [COMPONENT_LOG_LEVEL_ANNOTATION]
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let mut o = options();
        o.allowed_cidrs = Some(vec!["10.0.0.0/33".into()]);
        assert!(render(&o)
            .unwrap_err()
            .to_string()
            .contains("allowed_cidrs"));
        let o = RenderOptions::new(FilterSource::Url {
            url: "ftp://x".into(),
            sha256: "a".repeat(64),
        });
        assert!(render(&o).unwrap_err().to_string().contains("oci://"));
        let mut o = options();
        o.cookie_path = "/a;b".into();
        assert!(render(&o).unwrap_err().to_string().contains("cookie_path"));
    }

    #[test]
    fn yaml_is_multi_document_and_parses_back() {
        let yaml = to_yaml(&render(&options()).unwrap()).unwrap();
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 9);
    }
}
