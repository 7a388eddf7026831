//! The lab: a local stand-in for a Kubernetes cluster running Knative Serving behind Istio, with
//! the activator's sidecar where kasi's filter runs. It is built from real parts where they exist
//! (real Envoy, the real compiled filter, real HTTP pods, a Kubernetes API real clients use) and
//! emulates the rest after the upstream source it names. Fidelity is the point: where the lab is
//! kinder than a cluster, kasi's tests pass and a real install fails.
//!
//! Modules, by what each stands in for:
//!
//! - [`kube_api`]: the Kubernetes API server (kube-apiserver) — discovery, list/watch,
//!   create/update/patch/delete, server-side apply with managedFields, Table output — and the
//!   kubelet's `pods/log` and `pods/portforward`.
//! - [`istiod`]: istiod's config for one sidecar (listeners, routes, clusters, `Sidecar` scoping,
//!   EnvoyFilter patches, WasmPlugins) and its push to the proxy ([`istiod::push`]).
//! - [`knative`]: Knative Serving — the activator ([`knative::activator`]); what it routes by,
//!   from the revisions' private Endpoints, `config-network` and `config-autoscaler`
//!   ([`knative::routing`]); what Serving's reconcilers and Kubernetes' endpoints controller do to
//!   a revision's pods and Endpoints ([`knative::revisions`]); a fresh cluster's objects, Knative's
//!   own manifests among them ([`knative::seed`]).
//! - [`data_plane`]: what carries requests — the pods ([`data_plane::pods`]; the `mcp` revision's
//!   MCP server, [`data_plane::mcp_pod`]), the ingress gateway
//!   ([`data_plane::ingress`]), kube-proxy ([`data_plane::kube_proxy`]), the istio-proxy Envoy
//!   processes ([`data_plane::envoy`]), iptables' redirect into the sidecar as a PROXY header
//!   ([`data_plane::forward`]), and the pod network on loopback ([`data_plane::layout`]).
//! - [`kube_controllers`]: kube-controller-manager's Deployment controller — a template change
//!   rolls the activator pods as a `RollingUpdate` does ([`kube_controllers::deployment`]); the
//!   pods themselves are started and stopped like a kubelet would by
//!   [`data_plane::activator_pods`], with istiod's injector ([`istiod::injector`]) and
//!   pilot-agent's Envoy flags ([`data_plane::pilot_agent`]).
//! - [`runtime`]: one running lab ([`Lab`]), which starts, wires and stops all of the above.
//!
//! Each emulated behaviour that matters to kasi names the upstream source it follows (file and
//! function) where it is implemented, and says so where the lab knowingly differs.

pub mod data_plane;
pub mod istiod;
pub mod knative;
pub mod kube_api;
pub mod kube_controllers;
pub mod runtime;

pub use runtime::{Lab, LabOptions};
