//! The lab: a local stand-in for "Knative + Istio + the activator's sidecar", built from real
//! parts: a Kubernetes API real clients use ([`api`]), real Envoy configured the way istiod would
//! ([`mesh`]), the real compiled filter, real HTTP pods.

pub mod activator;
pub mod api;
pub mod controller;
pub mod envoy;
pub mod forward;
pub mod ingress;
pub mod kube_proxy;
pub mod layout;
pub mod mesh;
pub mod objects;
pub mod pods;
pub mod routing;
pub mod runtime;
pub mod seed;
pub mod serve;

pub use runtime::{Lab, LabOptions};
