//! kasi's session-affinity filter for the Knative activator's istio-proxy.
//!
//! Everything here but [`wasm`] is plain Rust that builds and tests natively and is shared with
//! the `kasi` app (one codec): [`codec`] reads and writes Envoy's session cookie, [`envelope`]
//! the sessions Envoy carries in headers (MCP's envelope, header mode), [`policy`] decides each
//! request, [`config`] parses `pluginConfig`. The `wasm` module is the thin
//! proxy-wasm layer Envoy loads.

pub mod codec;
pub mod config;
pub mod cookies;
pub mod dead_hosts;
pub mod decision_log;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod header_map;
pub mod json;
pub mod metrics;
pub mod pending;
pub mod policy;
pub mod signing;

#[cfg(target_arch = "wasm32")]
mod wasm;
