//! kasi: session affinity for Knative Serving behind Istio, made to work, visible and installable.
//!
//! The binary's parts, by responsibility: [`affinity`] (cookies, sessions, hit rates) and
//! [`cli`] (the command line). The cookie codec is the filter's own (`kasi_filter::codec`).

pub mod affinity;
pub mod cli;
pub mod cluster;
pub mod envoy;
pub mod install;
pub mod logging;
pub mod probe;
pub mod tui;
