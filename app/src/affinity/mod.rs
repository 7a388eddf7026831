//! Session affinity as kasi shows it: decoding sessions (cookies, MCP envelopes, header mode) (with the filter's own codec), sessions
//! and hit rates.

pub mod decisions;
pub mod decode;
pub mod story;
