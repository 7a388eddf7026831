//! Installing kasi: render the bundle, check prerequisites, diff, apply, verify, revert.
//!
//! Data flows one way: [`render`] makes the objects, [`diff`] compares them with the live ones
//! (pure), [`apply`] checks [`prereqs`], records what it will overwrite ([`record`]) and applies;
//! [`revert`] reads the record back; [`status`] compares the live cluster with the bundle and reads
//! the sidecars through [`crate::envoy`]; [`findings`] names what in the cluster defeats kasi;
//! [`dry_run`] asks the server what apply or revert would do, exactly, as a [`preview`].

pub mod apply;
pub mod detect;
pub mod diff;
pub mod dry_run;
pub mod findings;
pub mod objects;
pub mod prereqs;
pub mod preview;
pub mod record;
pub mod render;
pub mod revert;
pub mod rollout;
pub mod session_keys;
pub mod skip_filter;
pub mod status;

/// The filter module, compiled to wasm32-wasip1 and embedded at build time (see build.rs).
pub const FILTER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kasi_filter.wasm"));

/// The field manager kasi applies with (DESIGN.md's CLI contract).
pub const FIELD_MANAGER: &str = "kasi";

/// Why an install command failed; each maps to the exit code the CLI contract gives it.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Flags or input kasi cannot use (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The cluster lacks something, refused a change or could not be reached (exit 1).
    #[error("{0}")]
    Cluster(String),
    /// RBAC refused a read or a change (exit 1); the message names verb, resource and namespace.
    #[error("{0}")]
    Forbidden(String),
    /// `kasi status --exit-code`: the install is not whole (exit 1), one line per reason.
    #[error("{0}")]
    NotReady(String),
}

impl InstallError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InstallError::BadInput(_) => 2,
            InstallError::Cluster(_) | InstallError::Forbidden(_) | InstallError::NotReady(_) => 1,
        }
    }
}

impl From<kube::Error> for InstallError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.is_forbidden() => {
                InstallError::Forbidden(objects::describe(&error))
            }
            _ => InstallError::Cluster(objects::describe(&error)),
        }
    }
}

impl From<anyhow::Error> for InstallError {
    fn from(error: anyhow::Error) -> Self {
        InstallError::Cluster(format!("{error:#}"))
    }
}

pub type Result<T> = std::result::Result<T, InstallError>;
