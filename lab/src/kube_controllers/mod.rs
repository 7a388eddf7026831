//! kube-controller-manager's controllers the lab needs: the Deployment controller's rolling update
//! for the activator ([`deployment`]).

pub mod deployment;
