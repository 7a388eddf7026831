//! Request paths: which document or which resource (namespace, name, subresource) a URL names.

use super::resources::{find_served_path, ResourceType};

/// A path below `/api/v1` or `/apis/{group}/{version}` naming resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` form of the path.
    pub watch_path: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    GroupVersion(String, String),
    Resource(ResourcePath),
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`
    OpenApiRoot,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`
    OpenApiGroupVersion(String, String),
    Unknown,
}

pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::GroupVersion(String::new(), version.to_string()),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", version] => {
            Route::OpenApiGroupVersion(String::new(), version.to_string())
        }
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiGroupVersion(group.to_string(), version.to_string())
        }
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::GroupVersion(group.to_string(), version.to_string()),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let namespaced = match rest {
        ["namespaces", namespace, plural, tail @ ..] if tail.len() <= 2 => {
            find_served_path(group, version, plural)
                .filter(|rt| rt.namespaced)
                .map(|rt| (rt, Some(namespace.to_string()), tail))
        }
        _ => None,
    };
    let found = namespaced.or_else(|| match rest {
        [plural, tail @ ..] if tail.len() <= 2 => {
            find_served_path(group, version, plural).map(|rt| (rt, None, tail))
        }
        _ => None,
    });
    match found {
        Some((rt, namespace, tail)) => Route::Resource(ResourcePath {
            rt,
            namespace,
            name: tail.first().map(|s| s.to_string()),
            subresource: tail.get(1).map(|s| s.to_string()),
            watch_path,
        }),
        None => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let Route::Resource(p) = route("/api/v1/namespaces/ns/pods/p/log") else {
            panic!()
        };
        assert_eq!(
            (p.rt.kind, p.namespace.as_deref(), p.name.as_deref()),
            ("Pod", Some("ns"), Some("p"))
        );
        assert_eq!(p.subresource.as_deref(), Some("log"));
        let Route::Resource(p) = route("/api/v1/namespaces/ns") else {
            panic!()
        };
        assert_eq!((p.rt.kind, p.name.as_deref()), ("Namespace", Some("ns")));
        let Route::Resource(p) = route("/api/v1/watch/pods") else {
            panic!()
        };
        assert!(p.watch_path && p.namespace.is_none());
        let Route::Resource(p) =
            route("/apis/networking.istio.io/v1alpha3/namespaces/x/envoyfilters")
        else {
            panic!()
        };
        assert_eq!(p.rt.kind, "EnvoyFilter");
        assert_eq!(route("/api/v1/nothing"), Route::Unknown);
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
    }
}
