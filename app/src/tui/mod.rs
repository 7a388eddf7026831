//! The terminal UI: sources → events on a channel → one [`state::AppState`] → draw.
//! Views never fetch; keys become [`action::Action`]s; work that needs the outside world
//! comes back from [`update::update`] as [`action::Effect`]s for the runtime to carry out.

pub mod action;
pub mod event;
pub mod fixture;
pub mod installer;
pub mod keys;
pub mod launch;
pub mod probe;
pub mod run;
pub mod sources;
pub mod state;
pub mod tour;
pub mod update;
pub mod view;
pub mod views;
pub mod wasm_log;
