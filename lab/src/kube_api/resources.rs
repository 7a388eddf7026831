//! The resource types the lab serves, with the names, scope, verbs and categories the real
//! API server (or the real CRD) gives them, so discovery, kubectl short names and kube-rs all
//! resolve them exactly as in a cluster.

/// One served group/version/resource.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served below `{plural}/{name}/`, e.g. `status`, `log`, `portforward`.
    pub subresources: &'static [&'static str],
    /// The CustomResourceDefinition that must exist for this type to be served (`None` for
    /// built-in types, which are always served).
    pub crd_name: Option<&'static str>,
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `plural` or `plural.group`: how error messages name the resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Whether `other` is the same resource served at another version (same storage).
    pub fn same_resource(&self, other: &ResourceType) -> bool {
        self.group == other.group && self.plural == other.plural
    }

    pub fn can(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const ISTIO_CATEGORIES: &[&str] = &["istio-io", "networking-istio-io"];
const KNATIVE_CATEGORIES: &[&str] = &["all", "knative", "serving"];

const fn builtin(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        crd_name: None,
    }
}

/// CRD-backed kinds (Istio's, the Knative Operator's): served only while their CRD exists.
const fn istio(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    crd_name: &'static str,
    categories: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version,
        kind,
        plural,
        singular,
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        categories,
        subresources: &["status"],
        crd_name: Some(crd_name),
    }
}

const fn knative(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "serving.knative.dev",
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced: true,
        verbs: ALL_VERBS,
        categories: KNATIVE_CATEGORIES,
        subresources: &["status"],
        crd_name: None,
    }
}

/// Every served type. Within a group, versions are listed in the order discovery prefers them.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        subresources: &["status"],
        ..builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            &["ns"],
            false,
        )
    },
    ResourceType {
        categories: &["all"],
        subresources: &["status", "log", "portforward"],
        ..builtin("", "v1", "Pod", "pods", "pod", &["po"], true)
    },
    ResourceType {
        categories: &["all"],
        subresources: &["status"],
        ..builtin("", "v1", "Service", "services", "service", &["svc"], true)
    },
    builtin(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
    ),
    builtin(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
    ),
    builtin("", "v1", "Event", "events", "event", &["ev"], true),
    builtin("", "v1", "Secret", "secrets", "secret", &[], true),
    builtin(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        &[],
        false,
    ),
    builtin(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
    ),
    ResourceType {
        categories: &["all"],
        subresources: &["status"],
        ..builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            &["deploy"],
            true,
        )
    },
    ResourceType {
        categories: &["all"],
        subresources: &["status"],
        ..builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            &["rs"],
            true,
        )
    },
    builtin(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        true,
    ),
    ResourceType {
        subresources: &["status"],
        ..builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            &["crd", "crds"],
            false,
        )
    },
    ResourceType {
        verbs: &["create"],
        ..builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "",
            &[],
            false,
        )
    },
    istio(
        "networking.istio.io",
        "v1",
        "Sidecar",
        "sidecars",
        "sidecar",
        "sidecars.networking.istio.io",
        ISTIO_CATEGORIES,
    ),
    istio(
        "networking.istio.io",
        "v1beta1",
        "Sidecar",
        "sidecars",
        "sidecar",
        "sidecars.networking.istio.io",
        ISTIO_CATEGORIES,
    ),
    istio(
        "networking.istio.io",
        "v1alpha3",
        "Sidecar",
        "sidecars",
        "sidecar",
        "sidecars.networking.istio.io",
        ISTIO_CATEGORIES,
    ),
    istio(
        "networking.istio.io",
        "v1alpha3",
        "EnvoyFilter",
        "envoyfilters",
        "envoyfilter",
        "envoyfilters.networking.istio.io",
        ISTIO_CATEGORIES,
    ),
    istio(
        "extensions.istio.io",
        "v1alpha1",
        "WasmPlugin",
        "wasmplugins",
        "wasmplugin",
        "wasmplugins.extensions.istio.io",
        &["istio-io", "extensions-istio-io"],
    ),
    istio(
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        "peerauthentication",
        "peerauthentications.security.istio.io",
        &["istio-io", "security-istio-io"],
    ),
    istio(
        "security.istio.io",
        "v1beta1",
        "PeerAuthentication",
        "peerauthentications",
        "peerauthentication",
        "peerauthentications.security.istio.io",
        &["istio-io", "security-istio-io"],
    ),
    // The Knative Operator's kind: served only once its CRD is created (the lab has no operator).
    istio(
        "operator.knative.dev",
        "v1beta1",
        "KnativeServing",
        "knativeservings",
        "knativeserving",
        "knativeservings.operator.knative.dev",
        &[],
    ),
    knative("Service", "services", "service", &["kservice", "ksvc"]),
    knative("Revision", "revisions", "revision", &["rev"]),
    knative(
        "Configuration",
        "configurations",
        "configuration",
        &["config", "cfg"],
    ),
    knative("Route", "routes", "route", &["rt"]),
];

/// The type of objects with this `apiVersion` and `kind` (`v1` / `Pod`, `apps/v1` /
/// `Deployment`).
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|rt| rt.group == group && rt.version == version && rt.kind == kind)
}

/// The preferred (first listed) version of `plural` in `group`.
pub fn find_by_plural(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|rt| rt.group == group && rt.plural == plural)
}

/// The type served at `group/version/plural`.
pub fn find_served_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
}

/// Groups in discovery order, each with its versions in preference order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for rt in RESOURCES {
        match groups.iter_mut().find(|(group, _)| *group == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => versions.push(rt.version),
            Some(_) => {}
            None => groups.push((rt.group, vec![rt.version])),
        }
    }
    groups
}

/// All types sharing one CRD (e.g. the three served versions of Sidecar).
pub fn types_of_crd(crd_name: &str) -> impl Iterator<Item = &'static ResourceType> + '_ {
    RESOURCES
        .iter()
        .filter(move |rt| rt.crd_name == Some(crd_name))
}

/// The names of Istio's CustomResourceDefinitions the lab knows.
pub const ISTIO_CRD_NAMES: &[&str] = &[
    "sidecars.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "wasmplugins.extensions.istio.io",
];
