//! Harness for the end-to-end tests: the activator's sidecar reproduced on loopback.
//!
//! - [`Pod`]: an HTTP/1.1 server standing in for a revision pod; it echoes what reached it.
//! - [`Envoy`]: a real Envoy with the bootstrap Istio builds for the activator's sidecar
//!   ([`EnvoyOptions`]), optionally with the compiled kasi filter in front of `stateful_session`.
//! - [`Client`] / [`Session`]: the activator emulator, which names the chosen pod as the
//!   connection's original destination with a PROXY protocol header, plus a one-cookie jar.

mod bootstrap;
mod client;
mod envoy;
mod http;
#[cfg(feature = "lab")]
pub mod lab_client;
mod locate;
mod pod;
mod scratch;
mod support;
pub mod tmux;

pub use bootstrap::{skipped_for_headers, EnvoyOptions};
pub use client::{admin_get, plain_get, plain_post, Client, McpSession, Response, Session};
pub use envoy::{Envoy, StartFailure};
pub use locate::{envoy_binary, envoy_version, filter_wasm, kasi_binary, run_kasi};
pub use pod::Pod;
pub use support::{assert_served_by, decision_lines, envoy_cookie, loopback};

/// The cookie name `stateful_session` writes and the filter reads by default.
pub const COOKIE_NAME: &str = "kasi-session";

/// The header MCP's Streamable HTTP transport carries its session in (as Envoy names headers).
pub const MCP_HEADER: &str = "mcp-session-id";

/// The header the tests' header-mode `stateful_session` uses.
pub const SESSION_HEADER: &str = "x-kasi-session";

/// The Host the activator keeps from the original request (it shows up as `authority` in logs).
pub const AUTHORITY: &str = "hello.default.example.com";
