//! Reading an Envoy sidecar's admin API: config_dump sizes by section, whether the kasi filter is
//! loaded, and the kasi counters. Parsing is pure (`config_dump`, `stats`); `admin` fetches through
//! a port-forward so the status command and the TUI share one path.

pub mod admin;
pub mod agreement;
pub mod config_dump;
pub mod shape;
pub mod stats;

/// The sidecar's admin port in every Istio-injected pod.
pub const ADMIN_PORT: u16 = 15000;
