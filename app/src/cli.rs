//! The command line, as DESIGN.md's CLI contract names it.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kasi",
    version,
    about = "Session affinity for Knative Serving behind Istio: inspect, demo, install",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every command shares.
#[derive(Debug, Args)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of Knative Serving's system components.
    #[arg(
        long,
        global = true,
        value_name = "NS",
        default_value = "knative-serving"
    )]
    pub system_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the local lab and open the terminal UI on it.
    Demo(DemoArgs),
    /// Start the local lab (Kubernetes API, activators with real Envoy sidecars, pods, ingress)
    /// and run until Ctrl-C; prints its kubeconfig path and ingress URL.
    Lab(LabArgs),
    /// Print the install bundle as multi-document YAML.
    Manifests {
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Sign sessions with this key (base64 of 32 bytes) instead of a freshly generated one.
        /// It is visible in the process list; `kasi apply` generates and keeps keys by itself.
        #[arg(long, value_name = "BASE64")]
        session_key: Option<String>,
    },
    /// Check prerequisites, show the diff against the cluster, ask, then server-side apply the bundle.
    Apply(ApplyArgs),
    /// Restore what `kasi apply` changed and delete what it created.
    Revert {
        /// Do not ask before changing the cluster.
        #[arg(long)]
        yes: bool,
    },
    /// Each piece present / missing / drifted, activator sidecars, config size, hit rate.
    Status {
        /// Print the status as JSON (fields documented in `kasi::install::status`).
        #[arg(long)]
        json: bool,
        /// Exit 0 only when every piece is present as kasi renders it (none missing or drifted),
        /// every activator has the filter loaded and no finding is an error; else exit 1 and say
        /// why on stderr, one line each (for scripts and CI; the report itself is unchanged).
        #[arg(long)]
        exit_code: bool,
    },
    /// Concurrent virtual users against URL (cookie jars, or MCP clients with --mcp): each
    /// session's pinned pod and hit rate.
    Probe(ProbeArgs),
    /// Decode a session, signed or not, from any carrier: a cookie (a raw value, name=value, or
    /// a whole Cookie:/Set-Cookie: line), an MCP envelope (a value holding ";UV:", or a whole
    /// Mcp-Session-Id: line), or a header-mode value (a whole "Header-Name: value" line, or a
    /// bare value with --carrier header).
    ///
    /// A bare base64 value is read as a cookie: Envoy's legacy cookie and a header-mode value
    /// are the same bytes, base64("ip:port"), so header mode needs the header's name or
    /// --carrier header. An envelope's server session id is shown as a short hash, never as is.
    Decode {
        /// The session, as copied from a browser, curl -v, an MCP client or an Envoy log.
        value: String,
        /// Print {"carrier","format","address","expires","expired","signed"} as JSON (and
        /// "session", the hash of the server's session id, for an envelope).
        #[arg(long)]
        json: bool,
        /// The cookie's name, when the line holds several cookies.
        #[arg(long, value_name = "NAME")]
        cookie_name: Option<String>,
        /// Read the value as this carrier instead of guessing from its shape.
        #[arg(long, value_enum, value_name = "CARRIER")]
        carrier: Option<CarrierArg>,
    },
}

/// `--carrier`: the filter's session carriers as clap values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarrierArg {
    /// The `stateful_session` cookie (browsers).
    Cookie,
    /// Envoy's envelope in `Mcp-Session-Id` (MCP clients): `base64("ip:port");UV:base64(id)`.
    Envelope,
    /// Envoy's header mode (`session_header`): `base64("ip:port")`.
    Header,
}

impl From<CarrierArg> for kasi_filter::policy::Carrier {
    fn from(arg: CarrierArg) -> Self {
        match arg {
            CarrierArg::Cookie => Self::Cookie,
            CarrierArg::Envelope => Self::Envelope,
            CarrierArg::Header => Self::Header,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Send every object with the API's dry run (dryRun=All): validate, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print each object's unified YAML diff, live → what the server answered.
    #[arg(long, requires = "dry_run")]
    pub diff: bool,
    /// Do not ask before changing the cluster (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Take over fields other field managers own instead of stopping.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Apply even while a finding of severity error holds (see `kasi status`).
    #[arg(long)]
    pub force: bool,
    /// Sign sessions with a new key; the cluster's current keys keep verifying for one cookie TTL
    /// (one day for cookies without a TTL), then a later apply drops them.
    #[arg(long)]
    pub rotate_key: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LabArgs {
    /// How many other Knative services the lab holds (they make the unscoped sidecar config big).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(0..=2000))]
    pub services: u32,
    /// Keep the lab's state (kubeconfig, Envoy config and logs) in DIR instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The Envoy binary (default: $KASI_ENVOY, then envoy on PATH).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Start without Istio's CRDs, like a cluster without Istio.
    #[arg(long)]
    pub without_istio: bool,
    /// Inject istio-proxy into the activators' containers, as Istio before 1.27 does (default: a
    /// native sidecar among the init containers, as Istio ≥ 1.27 on Kubernetes ≥ 1.33 does).
    #[arg(long)]
    pub classic_sidecars: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// Play the story for an audience, one step per space: affinity broken, the diff, install,
    /// the config shrink, a pod stopped, a forged cookie refused, the measured numbers.
    #[arg(long)]
    pub tour: bool,
    /// With --tour: go to the next step every SECONDS by itself.
    #[arg(long, value_name = "SECONDS", requires = "tour", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub auto: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterSourceArg {
    /// The filter embedded in kasi, shipped in a ConfigMap mounted into istio-proxy.
    Configmap,
    /// A module you host (oci:// or https://), given with --filter-url and --filter-sha256.
    Url,
}

#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// Name of the session cookie (browsers' sessions); "" turns cookie sessions off.
    #[arg(long, default_value = "kasi-session", value_name = "NAME")]
    pub cookie_name: String,
    /// Cookie lifetime, e.g. 30m or 12h (default: a session cookie, no Max-Age).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub cookie_ttl: Option<std::time::Duration>,
    /// Cookie path.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub cookie_path: String,
    /// Header MCP sessions travel in (Streamable HTTP's session id); "" turns MCP sessions off.
    #[arg(long, default_value = "mcp-session-id", value_name = "NAME")]
    pub mcp_header: String,
    /// Header of Envoy's header-mode sessions (clients without cookie jars, e.g. HTTP/2 SDKs);
    /// off unless given.
    #[arg(long, default_value = "", value_name = "NAME")]
    pub session_header: String,
    /// CIDRs the filter may route to (repeat or comma-separate). Default for `manifests`: RFC 1918,
    /// CGNAT, ULA; for `apply`: the /16s of the cluster's revision and activator pod IPs.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub allowed_cidrs: Vec<String>,
    #[arg(long, value_enum, default_value_t = FilterSourceArg::Configmap)]
    pub filter_source: FilterSourceArg,
    /// Where the filter is hosted (with --filter-source url).
    #[arg(long, value_name = "URL", required_if_eq("filter_source", "url"))]
    pub filter_url: Option<String>,
    /// sha256 of the hosted module (with --filter-source url; default: the embedded module's).
    #[arg(long, value_name = "HEX")]
    pub filter_sha256: Option<String>,
}

/// `kasi probe`: virtual users against a URL, as DESIGN.md's CLI table names them.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// http:// or https:// URL, an IP address or a DNS name: the lab's ingress, a gateway.
    pub url: String,
    /// How many concurrent virtual users (each its own cookie jar and connections).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sessions: u32,
    /// Requests per user.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub requests: u32,
    /// Each user's pause between its requests, e.g. 500ms or 1s.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub pause: std::time::Duration,
    /// Name of the session cookie.
    #[arg(long, default_value = "kasi-session", value_name = "NAME")]
    pub cookie_name: String,
    /// MCP clients on Streamable HTTP instead of cookie jars: each initializes, calls a tool
    /// once per request (re-initializing after a 404) and ends its session with DELETE.
    #[arg(long)]
    pub mcp: bool,
    /// Connect to ADDR for HOST:PORT (repeatable), as curl's --resolve: the URL's host stays
    /// the Host header (and the TLS name), so an ingress routes by it.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// A header added to every request (repeatable), as curl's --header.
    #[arg(long, short = 'H', value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// HTTP/2: prior knowledge (h2c) on http://, ALPN h2 on https://.
    #[arg(long)]
    pub http2: bool,
    /// Accept any TLS certificate (a gateway's self-signed one).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
