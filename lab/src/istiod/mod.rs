//! istiod for the lab: one sidecar's Envoy config from the cluster objects, pushed on every change
//! ([`push`]).
//!
//! [`build`] is a pure function from the objects a Kubernetes API returns (Services, Endpoints,
//! Sidecars, EnvoyFilters, WasmPlugins, as `serde_json::Value`) to the outbound Envoy config istiod
//! would push to one proxy, with istiod's names (`virtualOutbound`, `0.0.0.0_8012`, route `8012`,
//! vhost `allow_any`, `PassthroughCluster`, `outbound|8012||<fqdn>`). [`bootstrap`] and
//! [`write_files`] make a running Envoy pick the config up from files, live, without restarts.
//!
//! The steps, one module each, in the order istiod takes them:
//! 1. [`inputs`]: typed views of the objects; anything malformed is skipped with a warning.
//! 2. [`scope`]: which `Sidecar` applies to the proxy and which Services it lets in.
//! 3. [`clusters`], [`routes`], [`listeners`] (with [`wasm_plugins`] in the HTTP filter chain).
//! 4. [`envoy_filter`]: the EnvoyFilter `configPatches`, with Istio's match and operation
//!    semantics ([`proto_merge`] is the MERGE); a patch that matches nothing only warns.
//!
//! Deliberate simplifications (a lab, not istiod): only outbound config (no inbound listeners);
//! every HTTP listener has one filter chain (no protocol sniffing: a port whose protocol is not
//! declared HTTP gets no listener, its traffic takes virtualOutbound's TCP passthrough); service
//! clusters are `STATIC` with their endpoints inline instead of `EDS` (Envoy opens one inotify
//! instance per file subscription, and the default limit of 128 per user would not fit one EDS
//! file per cluster); no mTLS; EnvoyFilter patches with `match.proxy` (Istio version or node
//! metadata) never match, since the lab proxy has no Istio version. WasmPlugin `failStrategy`
//! becomes `failure_policy` (Envoy 1.40 deprecates `fail_open`, as current istiod does).

mod clusters;
mod envoy_filter;
mod files;
pub mod injector;
mod inputs;
mod listeners;
mod proto_merge;
pub mod push;
mod routes;
mod scope;
mod wasm_plugins;

pub use files::{bootstrap, static_bootstrap, write_files};

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Names istiod gives the config it generates (`pilot/pkg/networking/util/util.go`).
pub mod names {
    pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
    pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
    pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
    pub const ALLOW_ANY: &str = "allow_any";
    pub const BLOCK_ALL: &str = "block_all";
    /// Istio's root namespace: its Sidecars, EnvoyFilters and WasmPlugins apply mesh-wide.
    pub const ROOT_NAMESPACE: &str = "istio-system";
    pub const HCM: &str = "envoy.filters.network.http_connection_manager";
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    pub const ROUTER: &str = "envoy.filters.http.router";

    /// `outbound|<port>||<fqdn>`, the name of a service port's cluster.
    pub fn outbound_cluster(port: u16, fqdn: &str) -> String {
        format!("outbound|{port}||{fqdn}")
    }

    /// `0.0.0.0_<port>`, the outbound listener of an HTTP port.
    pub fn http_listener(port: u16) -> String {
        format!("0.0.0.0_{port}")
    }
}

/// The workload whose sidecar is being configured.
#[derive(Debug, Clone)]
pub struct ProxyIdentity {
    pub namespace: String,
    pub pod_name: String,
    pub labels: BTreeMap<String, String>,
    pub pod_ip: IpAddr,
}

/// Everything istiod would know when it builds the proxy's config.
pub struct MeshInputs<'a> {
    /// Every Service, Endpoints, Sidecar, EnvoyFilter, WasmPlugin and ConfigMap in the cluster,
    /// as the API returns them (with `apiVersion` and `kind`); other kinds are ignored.
    pub objects: &'a [Value],
    pub proxy: &'a ProxyIdentity,
    /// Envoy's `virtualOutbound` listener: where the lab's stand-in for iptables (the activator
    /// emulator, with a PROXY header) sends the proxied workload's outbound connections.
    pub outbound_listener: SocketAddr,
    /// Maps a WasmPlugin `url` (such as `file:///var/local/wasm/kasi.wasm`) to a local file.
    /// `None` for a `file://` URL means the pod has no such file: the plugin is delivered anyway
    /// and Envoy refuses it, as in a cluster. `None` for another scheme skips the plugin.
    pub resolve_wasm: &'a dyn Fn(&str) -> Option<PathBuf>,
    /// The cluster's DNS domain, normally `cluster.local`.
    pub cluster_domain: &'a str,
}

/// One sidecar's outbound config, as istiod would push it over xDS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SidecarConfig {
    /// LDS resources (`envoy.config.listener.v3.Listener` JSON). HTTP listeners point at their
    /// route config through `rds` with an `ads` config source, as istiod's do; [`write_files`]
    /// and [`static_bootstrap`] rewrite that source.
    pub listeners: Vec<Value>,
    /// CDS resources (`envoy.config.cluster.v3.Cluster` JSON).
    pub clusters: Vec<Value>,
    /// RDS resources (`envoy.config.route.v3.RouteConfiguration` JSON), one per HTTP port.
    pub route_configs: Vec<Value>,
    /// ECDS resources (`envoy.config.core.v3.TypedExtensionConfig` JSON): the WasmPlugins' filter
    /// configs, which HTTP filters name through `config_discovery` as istiod's do.
    pub extension_configs: Vec<Value>,
    /// What istiod would log: skipped objects, unfetchable wasm modules, EnvoyFilter patches
    /// whose match found nothing.
    pub warnings: Vec<String>,
}

/// Why no config could be built at all (a bad object only ever produces a warning).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    #[error("cluster domain {0:?} is not a DNS name")]
    InvalidClusterDomain(String),
    #[error(
        "the outbound listener address {0} has port 0; Envoy's virtualOutbound needs a fixed port"
    )]
    OutboundListenerPortZero(SocketAddr),
}

/// Builds the proxy's outbound config the way istiod does; see the module documentation.
pub fn build(inputs: &MeshInputs) -> Result<SidecarConfig, MeshError> {
    let domain = inputs.cluster_domain;
    if domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(MeshError::InvalidClusterDomain(domain.to_string()));
    }
    if inputs.outbound_listener.port() == 0 {
        return Err(MeshError::OutboundListenerPortZero(
            inputs.outbound_listener,
        ));
    }

    let mut warnings = Vec::new();
    let objects = inputs::Objects::parse(inputs.objects, domain, &mut warnings);
    let scope = scope::Scope::for_proxy(&objects.sidecars, inputs.proxy, &mut warnings);
    let services: Vec<&inputs::Service> = objects
        .services
        .iter()
        .filter(|service| scope.includes(service))
        .collect();

    let clusters = clusters::build(&services, &objects.endpoints);
    let route_configs = routes::build(&services, inputs.proxy, scope.mode);
    let plugins = wasm_plugins::for_proxy(
        &objects.wasm_plugins,
        inputs.proxy,
        inputs.resolve_wasm,
        &mut warnings,
    );
    let listeners = listeners::build(
        &services,
        inputs.outbound_listener,
        scope.mode,
        &plugins,
        &mut warnings,
    );

    let mut extension_configs: Vec<Value> = Vec::new();
    for plugin in &plugins {
        if !extension_configs
            .iter()
            .any(|c| c["name"] == plugin.extension_config["name"])
        {
            extension_configs.push(plugin.extension_config.clone());
        }
    }
    let mut config = SidecarConfig {
        listeners,
        clusters,
        route_configs,
        extension_configs,
        warnings,
    };
    let patches =
        envoy_filter::patches_for_proxy(&objects.envoy_filters, inputs.proxy, &mut config.warnings);
    envoy_filter::apply(&patches, &mut config);
    Ok(config)
}
