//! Knative Serving: the activator, what it reads from the cluster (revisions' private Endpoints,
//! `config-network`, `config-autoscaler`), what Serving's reconcilers and Kubernetes' endpoints
//! controller do when a revision's pods come and go, and the objects a fresh cluster starts with.

pub mod activator;
pub mod revisions;
pub mod routing;
pub mod seed;
