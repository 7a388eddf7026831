//! Session affinity as kasi shows it: decoding cookies (with the filter's own codec), sessions
//! and hit rates.

pub mod decisions;
pub mod decode;
