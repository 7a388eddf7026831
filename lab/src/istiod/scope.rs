//! The `Sidecar` resource: which one applies to the proxy, which Services its `egress` lets into
//! the proxy's config, and what happens to traffic for anything else (istiod's
//! `pilot/pkg/model/push_context.go` `getSidecarScope`, `pilot/pkg/model/sidecar.go`
//! `convertToSidecarScope`, `hostClassification.Matches`).

use super::inputs::{labels_select, Service, Sidecar};
use super::names::ROOT_NAMESPACE;
use super::ProxyIdentity;
use std::collections::BTreeMap;

/// What the catch-all routes do with traffic no Service in scope claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboundMode {
    /// To `PassthroughCluster`: the original destination (Istio's default).
    AllowAny,
    /// To `BlackHoleCluster`.
    RegistryOnly,
}

/// The proxy's egress scope.
#[derive(Debug)]
pub(crate) struct Scope {
    /// `None` without a Sidecar: every Service in the mesh is in scope.
    hosts: Option<Vec<HostPattern>>,
    pub mode: OutboundMode,
}

/// One `egress[].hosts` entry, `namespace/dnsName`.
#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Entry {
        namespace: NamespacePattern,
        dns: DnsPattern,
    },
    /// `~/…`: matches nothing (used to trim all outbound config).
    Nothing,
}

#[derive(Debug, Clone, PartialEq)]
enum NamespacePattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
enum DnsPattern {
    Any,
    /// `*.example.com` matches hosts ending in `.example.com`.
    Suffix(String),
    Exact(String),
}

impl Scope {
    /// The scope of `proxy`: istiod's precedence is a Sidecar in the proxy's namespace whose
    /// `workloadSelector` selects it (oldest first), else the proxy namespace's Sidecar without a
    /// selector, else the root namespace's Sidecar without a selector (the mesh default).
    pub fn for_proxy(
        sidecars: &[Sidecar],
        proxy: &ProxyIdentity,
        warnings: &mut Vec<String>,
    ) -> Scope {
        fn selector_of(s: &Sidecar) -> Option<&BTreeMap<String, String>> {
            s.spec.workload_selector.as_ref().map(|w| &w.labels)
        }
        let in_namespace = |s: &&Sidecar| s.namespace == proxy.namespace;
        let selected = sidecars
            .iter()
            .filter(in_namespace)
            .find(|s| selector_of(s).is_some_and(|labels| labels_select(labels, &proxy.labels)))
            .or_else(|| {
                sidecars
                    .iter()
                    .filter(in_namespace)
                    .find(|s| selector_of(s).is_none())
            })
            .or_else(|| {
                sidecars
                    .iter()
                    .find(|s| s.namespace == ROOT_NAMESPACE && selector_of(s).is_none())
            });
        let Some(sidecar) = selected else {
            return Scope {
                hosts: None,
                mode: OutboundMode::AllowAny,
            };
        };

        let mut hosts = Vec::new();
        for egress in &sidecar.spec.egress {
            if egress.port.is_some() {
                warnings.push(format!(
                    "Sidecar {}: egress[].port is not modelled by the lab; its hosts apply to every port",
                    sidecar.key()
                ));
            }
            for host in &egress.hosts {
                match HostPattern::parse(host, &proxy.namespace) {
                    Some(pattern) => hosts.push(pattern),
                    None => warnings.push(format!(
                        "Sidecar {}: egress host {host:?} is not namespace/dnsName; ignored",
                        sidecar.key()
                    )),
                }
            }
        }
        let mode = match sidecar
            .spec
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode.as_deref())
        {
            Some("REGISTRY_ONLY") => OutboundMode::RegistryOnly,
            None | Some("ALLOW_ANY") => OutboundMode::AllowAny,
            Some(other) => {
                warnings.push(format!(
                    "Sidecar {}: unknown outboundTrafficPolicy.mode {other:?}; using ALLOW_ANY",
                    sidecar.key()
                ));
                OutboundMode::AllowAny
            }
        };
        Scope {
            hosts: Some(hosts),
            mode,
        }
    }

    pub fn includes(&self, service: &Service) -> bool {
        match &self.hosts {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(service)),
        }
    }
}

impl HostPattern {
    /// `.` is the proxy's own namespace, `*` any namespace, `~` none.
    fn parse(host: &str, proxy_namespace: &str) -> Option<HostPattern> {
        let (namespace, dns) = host.split_once('/')?;
        if dns.is_empty() || namespace.is_empty() {
            return None;
        }
        let namespace = match namespace {
            "~" => return Some(HostPattern::Nothing),
            "*" => NamespacePattern::Any,
            "." => NamespacePattern::Exact(proxy_namespace.to_string()),
            ns => NamespacePattern::Exact(ns.to_string()),
        };
        let dns = if dns == "*" {
            DnsPattern::Any
        } else if let Some(suffix) = dns.strip_prefix('*') {
            DnsPattern::Suffix(suffix.to_ascii_lowercase())
        } else {
            DnsPattern::Exact(dns.to_ascii_lowercase())
        };
        Some(HostPattern::Entry { namespace, dns })
    }

    fn matches(&self, service: &Service) -> bool {
        let HostPattern::Entry { namespace, dns } = self else {
            return false;
        };
        let namespace_ok = match namespace {
            NamespacePattern::Any => true,
            NamespacePattern::Exact(ns) => *ns == service.namespace,
        };
        namespace_ok
            && match dns {
                DnsPattern::Any => true,
                DnsPattern::Suffix(suffix) => service.fqdn.ends_with(suffix.as_str()),
                DnsPattern::Exact(host) => *host == service.fqdn,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::super::inputs::{
        OutboundTrafficPolicy, SidecarEgress, SidecarSpec, WorkloadSelector,
    };
    use super::*;
    use std::collections::BTreeMap;

    fn proxy() -> ProxyIdentity {
        ProxyIdentity {
            namespace: "knative-serving".into(),
            pod_name: "activator-1".into(),
            labels: BTreeMap::from([
                ("app".to_string(), "activator".to_string()),
                ("role".to_string(), "activator".to_string()),
            ]),
            pod_ip: "127.0.0.2".parse().unwrap(),
        }
    }

    fn service(namespace: &str, name: &str) -> Service {
        Service {
            namespace: namespace.into(),
            name: name.into(),
            fqdn: format!("{name}.{namespace}.svc.cluster.local"),
            cluster_ip: None,
            ports: vec![],
        }
    }

    fn sidecar(
        namespace: &str,
        selector: Option<&[(&str, &str)]>,
        hosts: &[&str],
        mode: Option<&str>,
    ) -> Sidecar {
        Sidecar {
            namespace: namespace.into(),
            name: "s".into(),
            created: String::new(),
            spec: SidecarSpec {
                workload_selector: selector.map(|labels| WorkloadSelector {
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }),
                egress: vec![SidecarEgress {
                    hosts: hosts.iter().map(|h| h.to_string()).collect(),
                    port: None,
                }],
                outbound_traffic_policy: mode.map(|m| OutboundTrafficPolicy {
                    mode: Some(m.into()),
                }),
            },
        }
    }

    fn scope_of(sidecars: &[Sidecar]) -> Scope {
        Scope::for_proxy(sidecars, &proxy(), &mut Vec::new())
    }

    #[test]
    fn without_a_sidecar_everything_is_in_scope() {
        let scope = scope_of(&[]);
        assert!(scope.includes(&service("default", "x")));
        assert_eq!(scope.mode, OutboundMode::AllowAny);
    }

    #[test]
    fn egress_hosts_follow_istio_host_syntax() {
        let scope = scope_of(&[sidecar(
            "knative-serving",
            Some(&[("app", "activator")]),
            &[
                "./kasi-activator-affinity.knative-serving.svc.cluster.local",
                "istio-system/*",
                "*/*.example.com",
            ],
            Some("REGISTRY_ONLY"),
        )]);
        assert!(scope.includes(&service("knative-serving", "kasi-activator-affinity")));
        assert!(!scope.includes(&service("knative-serving", "autoscaler")));
        assert!(scope.includes(&service("istio-system", "istiod")));
        assert!(!scope.includes(&service("default", "hello-00001-private")));
        assert_eq!(scope.mode, OutboundMode::RegistryOnly);
        let mut wildcard = service("shop", "cart");
        wildcard.fqdn = "cart.example.com".into();
        assert!(scope.includes(&wildcard));
    }

    #[test]
    fn sidecar_selection_precedence() {
        // A selector that does not select the proxy: not applied.
        let other = sidecar(
            "knative-serving",
            Some(&[("app", "autoscaler")]),
            &["~/*"],
            None,
        );
        assert!(scope_of(std::slice::from_ref(&other)).includes(&service("a", "b")));
        // Namespace default without selector applies.
        let ns_default = sidecar("knative-serving", None, &["./*"], None);
        let scope = scope_of(&[other.clone(), ns_default.clone()]);
        assert!(!scope.includes(&service("a", "b")));
        assert!(scope.includes(&service("knative-serving", "b")));
        // A selecting Sidecar wins over the namespace default.
        let selecting = sidecar(
            "knative-serving",
            Some(&[("app", "activator")]),
            &["a/*"],
            None,
        );
        let scope = scope_of(&[ns_default, selecting]);
        assert!(scope.includes(&service("a", "b")));
        // Root namespace default applies mesh-wide; `~/*` trims everything.
        let root = sidecar("istio-system", None, &["~/*"], None);
        assert!(!scope_of(&[root]).includes(&service("istio-system", "b")));
        // A Sidecar in another namespace never applies.
        let elsewhere = sidecar("default", Some(&[("app", "activator")]), &["~/*"], None);
        assert!(scope_of(&[elsewhere]).includes(&service("a", "b")));
    }

    #[test]
    fn malformed_hosts_warn() {
        let mut warnings = Vec::new();
        Scope::for_proxy(
            &[sidecar("knative-serving", None, &["no-slash"], None)],
            &proxy(),
            &mut warnings,
        );
        assert_eq!(warnings.len(), 1);
    }
}
