//! istiod for the lab: sidecar Envoy config from the cluster objects.
