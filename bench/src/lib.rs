//! kasi's benchmarks on real Envoy (`./dev bench`): the filter's overhead against no filter, the
//! cheapest wasm filter and the same job in Lua ([`filter_bench`]), and Envoy's memory with and
//! without the filter, and under streams clients abandon with huge `Host`s ([`memory`],
//! [`abandoned`]). They reuse the e2e harness (`kasi-e2e`) to run Envoy.

pub mod abandoned;
pub mod filter_bench;
pub mod load;
pub mod memory;
pub mod plot;
pub mod stats;
pub mod system;
pub mod upstream;
pub mod variants;
