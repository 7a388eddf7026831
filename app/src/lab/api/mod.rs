//! A Kubernetes API server for the lab (see the module docs once written).
