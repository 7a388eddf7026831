//! Installing kasi: render the bundle, diff, apply, verify, revert.

pub mod render;

/// The filter module, compiled to wasm32-wasip1 and embedded at build time (see build.rs).
pub const FILTER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kasi_filter.wasm"));
