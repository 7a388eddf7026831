//! EnvoyFilter (networking.istio.io/v1alpha3) `configPatches`, applied to the generated config
//! with istiod's semantics (`pilot/pkg/networking/core/envoyfilter/*_patch.go`): which filters
//! select the proxy and in which order, what each `match` field means, and what each operation
//! does at each level. A patch that ends up changing nothing is reported in the warnings, as
//! istiod's `pilot_envoy_filter_status{status="not_applied"}` metric would show it.

use super::inputs::{labels_select, string_map, Resource};
use super::names::{HCM, ROOT_NAMESPACE, VIRTUAL_OUTBOUND};
use super::proto_merge::{merge, to_proto_field_names};
use super::{ProxyIdentity, SidecarConfig};
use serde::Deserialize;
use serde_json::Value;

/// One `configPatches[]` entry that applies to the proxy, value already in proto field names.
#[derive(Debug)]
pub(crate) struct Patch {
    /// `namespace/name#index`, for warnings.
    origin: String,
    apply_to: ApplyTo,
    operation: Operation,
    matcher: Match,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyTo {
    Listener,
    NetworkFilter,
    HttpFilter,
    RouteConfiguration,
    VirtualHost,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Merge,
    Add,
    Remove,
    InsertBefore,
    InsertAfter,
    InsertFirst,
    Replace,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    proxy: Option<Value>,
    #[serde(default)]
    listener: Option<ListenerMatch>,
    #[serde(default)]
    route_configuration: Option<RouteConfigurationMatch>,
    #[serde(default)]
    cluster: Option<ClusterMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListenerMatch {
    #[serde(default)]
    port_number: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    filter_chain: Option<FilterChainMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterChainMatch {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sni: String,
    #[serde(default)]
    transport_protocol: String,
    #[serde(default)]
    application_protocols: String,
    #[serde(default)]
    destination_port: u32,
    #[serde(default)]
    filter: Option<FilterMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterMatch {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sub_filter: Option<SubFilterMatch>,
}

#[derive(Debug, Default, Deserialize)]
struct SubFilterMatch {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteConfigurationMatch {
    #[serde(default)]
    port_number: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    vhost: Option<VirtualHostMatch>,
}

#[derive(Debug, Default, Deserialize)]
struct VirtualHostMatch {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterMatch {
    #[serde(default)]
    port_number: u32,
    #[serde(default)]
    service: String,
    #[serde(default)]
    subset: String,
    #[serde(default)]
    name: String,
}

/// The patches of every EnvoyFilter that selects `proxy` (its own namespace or the root
/// namespace; `workloadSelector.labels` ⊆ the proxy's labels), in istiod's order: priority,
/// then creation time, then `name.namespace`; within a filter, in `configPatches` order.
pub(crate) fn patches_for_proxy(
    filters: &[Resource<Value>],
    proxy: &ProxyIdentity,
    warnings: &mut Vec<String>,
) -> Vec<Patch> {
    let mut selected: Vec<&Resource<Value>> = filters
        .iter()
        .filter(|f| f.namespace == proxy.namespace || f.namespace == ROOT_NAMESPACE)
        .filter(|f| selects(f, proxy, warnings))
        .collect();
    selected.sort_by_key(|f| {
        (
            f.spec["priority"].as_i64().unwrap_or(0),
            f.created.clone(),
            format!("{}.{}", f.name, f.namespace),
        )
    });
    let mut patches = Vec::new();
    for filter in selected {
        let entries = filter.spec["configPatches"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (index, entry) in entries.iter().enumerate() {
            let origin = format!("{}#configPatches[{index}]", filter.key());
            match parse_patch(entry, origin.clone()) {
                Ok(patch) => patches.push(patch),
                Err(why) => warnings.push(format!("EnvoyFilter {origin}: {why}; not applied")),
            }
        }
    }
    patches
}

fn selects(filter: &Resource<Value>, proxy: &ProxyIdentity, warnings: &mut Vec<String>) -> bool {
    if filter.spec.get("targetRefs").is_some() {
        // targetRefs select Gateways and waypoints, never a sidecar.
        return false;
    }
    match string_map(
        filter
            .spec
            .get("workloadSelector")
            .and_then(|s| s.get("labels")),
    ) {
        Some(selector) => labels_select(&selector, &proxy.labels),
        None => {
            warnings.push(format!(
                "EnvoyFilter {}: workloadSelector.labels is not a map of strings; ignored",
                filter.key()
            ));
            false
        }
    }
}

fn parse_patch(entry: &Value, origin: String) -> Result<Patch, String> {
    let apply_to = match entry["applyTo"].as_str().unwrap_or("INVALID") {
        "LISTENER" => ApplyTo::Listener,
        "NETWORK_FILTER" => ApplyTo::NetworkFilter,
        "HTTP_FILTER" => ApplyTo::HttpFilter,
        "ROUTE_CONFIGURATION" => ApplyTo::RouteConfiguration,
        "VIRTUAL_HOST" => ApplyTo::VirtualHost,
        "CLUSTER" => ApplyTo::Cluster,
        other => return Err(format!("applyTo {other} is not modelled by the lab")),
    };
    let operation = match entry["patch"]["operation"].as_str().unwrap_or("INVALID") {
        "MERGE" => Operation::Merge,
        "ADD" => Operation::Add,
        "REMOVE" => Operation::Remove,
        "INSERT_BEFORE" => Operation::InsertBefore,
        "INSERT_AFTER" => Operation::InsertAfter,
        "INSERT_FIRST" => Operation::InsertFirst,
        "REPLACE" => Operation::Replace,
        other => return Err(format!("operation {other} is not modelled by the lab")),
    };
    let valid = match apply_to {
        ApplyTo::Cluster | ApplyTo::Listener | ApplyTo::VirtualHost => {
            matches!(
                operation,
                Operation::Add | Operation::Merge | Operation::Remove
            )
        }
        ApplyTo::RouteConfiguration => operation == Operation::Merge,
        ApplyTo::NetworkFilter | ApplyTo::HttpFilter => true,
    };
    if !valid {
        return Err(format!(
            "{operation:?} is not a valid operation for {apply_to:?}"
        ));
    }
    let matcher = match entry.get("match") {
        None | Some(Value::Null) => Match::default(),
        Some(m) => Match::deserialize(m).map_err(|e| format!("bad match: {e}"))?,
    };
    let value = to_proto_field_names(&entry["patch"]["value"]);
    if operation != Operation::Remove && !value.is_object() {
        return Err("patch.value must be an object".into());
    }
    Ok(Patch {
        origin,
        apply_to,
        operation,
        matcher,
        value,
    })
}

/// Applies `patches` to the generated outbound config; every patch that changed nothing adds a
/// warning to `config.warnings`.
pub(crate) fn apply(patches: &[Patch], config: &mut SidecarConfig) {
    let mut applied = vec![false; patches.len()];
    // Everything the lab generates is sidecar outbound config.
    let in_context: Vec<(usize, &Patch)> = patches
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            matches!(
                p.matcher.context.as_deref(),
                None | Some("ANY") | Some("SIDECAR_OUTBOUND")
            ) && p.matcher.proxy.is_none()
        })
        .collect();
    let of = |kind: ApplyTo| -> Vec<(usize, &Patch)> {
        in_context
            .iter()
            .filter(|(_, p)| p.apply_to == kind)
            .copied()
            .collect()
    };

    patch_clusters(&of(ApplyTo::Cluster), &mut config.clusters, &mut applied);
    let listener_patches = ListenerPatches {
        listener: of(ApplyTo::Listener),
        network_filter: of(ApplyTo::NetworkFilter),
        http_filter: of(ApplyTo::HttpFilter),
    };
    patch_listeners(&listener_patches, &mut config.listeners, &mut applied);
    patch_route_configs(
        &of(ApplyTo::RouteConfiguration),
        &of(ApplyTo::VirtualHost),
        &mut config.route_configs,
        &mut applied,
    );

    for (patch, applied) in patches.iter().zip(applied) {
        if !applied {
            config.warnings.push(format!(
                "EnvoyFilter {}: {:?} {:?} matched nothing in the sidecar's outbound config; not applied",
                patch.origin, patch.apply_to, patch.operation
            ));
        }
    }
}

// ---- clusters -------------------------------------------------------------------------------

/// MERGE and REMOVE apply to the generated clusters; ADD appends (ignoring `match.cluster`).
/// MERGE into `object` every patch of `patches` that `selects` it, in order; `false` when a
/// REMOVE among them drops it (the patches after it do not apply). Records what applied.
fn merge_or_remove(
    object: &mut Value,
    patches: &[(usize, &Patch)],
    applied: &mut [bool],
    selects: impl Fn(&Value, &Patch) -> bool,
) -> bool {
    for (i, patch) in patches {
        if !selects(object, patch) {
            continue;
        }
        match patch.operation {
            Operation::Merge => {
                merge(object, &patch.value);
                applied[*i] = true;
            }
            Operation::Remove => {
                applied[*i] = true;
                return false;
            }
            _ => {}
        }
    }
    true
}

fn patch_clusters(patches: &[(usize, &Patch)], clusters: &mut Vec<Value>, applied: &mut [bool]) {
    clusters.retain_mut(|cluster| {
        if !merge_or_remove(cluster, patches, applied, |c, p| {
            cluster_matches(c, p.matcher.cluster.as_ref())
        }) {
            return false;
        }
        true
    });
    for (i, patch) in patches {
        if patch.operation == Operation::Add {
            clusters.push(patch.value.clone());
            applied[*i] = true;
        }
    }
}

/// `name` alone decides when set (that is how PassthroughCluster is matched); otherwise
/// subset, service (with `*.` wildcards) and port are read from `outbound|port|subset|host`.
fn cluster_matches(cluster: &Value, matcher: Option<&ClusterMatch>) -> bool {
    let Some(m) = matcher else {
        return true;
    };
    let name = cluster["name"].as_str().unwrap_or_default();
    if !m.name.is_empty() {
        return m.name == name;
    }
    let (port, subset, host) = match name.split('|').collect::<Vec<_>>()[..] {
        [_, port, subset, host] => (port.parse::<u32>().unwrap_or(0), subset, host),
        _ => (0, "", ""),
    };
    (m.subset.is_empty() || m.subset == subset)
        && (m.service.is_empty() || host_matches(&m.service, host))
        && (m.port_number == 0 || m.port_number == port)
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => !host.is_empty() && host.ends_with(suffix),
        None => pattern == host,
    }
}

// ---- listeners, network filters, HTTP filters ------------------------------------------------

struct ListenerPatches<'a> {
    listener: Vec<(usize, &'a Patch)>,
    network_filter: Vec<(usize, &'a Patch)>,
    http_filter: Vec<(usize, &'a Patch)>,
}

fn patch_listeners(patches: &ListenerPatches, listeners: &mut Vec<Value>, applied: &mut [bool]) {
    for (i, patch) in &patches.listener {
        if patch.operation == Operation::Add {
            listeners.push(patch.value.clone());
            applied[*i] = true;
        }
    }
    listeners.retain_mut(|listener| {
        if !merge_or_remove(listener, &patches.listener, applied, listener_matches) {
            return false;
        }
        // Matching reads the listener's name and port while its chains are being changed.
        let listener_snapshot = listener.clone();
        if let Some(chains) = listener
            .get_mut("filter_chains")
            .and_then(Value::as_array_mut)
        {
            for chain in chains {
                patch_filter_chain(patches, &listener_snapshot, chain, applied);
            }
        }
        if let Some(chain) = listener
            .get_mut("default_filter_chain")
            .filter(|c| c.is_object())
        {
            patch_filter_chain(patches, &listener_snapshot, chain, applied);
        }
        true
    });
}

/// `name` and `portNumber`. For patches below the listener level, the virtual listeners skip the
/// port check (their port lives in the filter chain match), as istiod does.
fn listener_matches(listener: &Value, patch: &Patch) -> bool {
    let Some(m) = &patch.matcher.listener else {
        return true;
    };
    let name = listener["name"].as_str().unwrap_or_default();
    if !m.name.is_empty() && m.name != name {
        return false;
    }
    if patch.apply_to != ApplyTo::Listener && name == VIRTUAL_OUTBOUND {
        return true;
    }
    m.port_number == 0
        || Some(u64::from(m.port_number))
            == listener["address"]["socket_address"]["port_value"].as_u64()
}

fn filter_chain_matches(listener: &Value, chain: &Value, patch: &Patch) -> bool {
    let Some(m) = &patch.matcher.listener else {
        return true;
    };
    let chain_match = &chain["filter_chain_match"];
    let destination_port = chain_match["destination_port"].as_u64().unwrap_or(0);
    if listener["name"] == VIRTUAL_OUTBOUND
        && m.port_number > 0
        && destination_port != u64::from(m.port_number)
    {
        return false;
    }
    let Some(fc) = &m.filter_chain else {
        return true;
    };
    let contains = |field: &str, wanted: &str| {
        chain_match[field]
            .as_array()
            .is_some_and(|values| values.iter().any(|v| v == wanted))
    };
    (fc.name.is_empty() || chain["name"] == fc.name.as_str())
        && (fc.sni.is_empty() || contains("server_names", &fc.sni))
        && (fc.transport_protocol.is_empty()
            || chain_match["transport_protocol"] == fc.transport_protocol.as_str())
        && (fc.application_protocols.is_empty()
            || fc
                .application_protocols
                .split(',')
                .all(|p| contains("application_protocols", p.trim())))
        && (fc.destination_port == 0 || destination_port == u64::from(fc.destination_port))
}

fn filter_match(patch: &Patch) -> Option<&FilterMatch> {
    patch
        .matcher
        .listener
        .as_ref()?
        .filter_chain
        .as_ref()?
        .filter
        .as_ref()
}

/// `match.listener.filterChain.filter.name`, if set.
fn network_filter_name(patch: &Patch) -> Option<&str> {
    filter_match(patch)
        .map(|f| f.name.as_str())
        .filter(|n| !n.is_empty())
}

/// `match.listener.filterChain.filter.subFilter.name`, if set.
fn http_filter_name(patch: &Patch) -> Option<&str> {
    filter_match(patch)?
        .sub_filter
        .as_ref()
        .map(|s| s.name.as_str())
        .filter(|n| !n.is_empty())
}

fn patch_filter_chain(
    patches: &ListenerPatches,
    listener: &Value,
    chain: &mut Value,
    applied: &mut [bool],
) {
    let network = patches_for_chain(&patches.network_filter, listener, chain);
    let http = patches_for_chain(&patches.http_filter, listener, chain);
    let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
        return;
    };
    patch_filter_list(&network, filters, network_filter_name, applied);

    // HTTP_FILTER patches reach the HTTP filters of the (matched) HCM.
    for filter in filters.iter_mut() {
        if filter["name"] != HCM {
            continue;
        }
        let for_this_filter: Vec<(usize, &Patch)> = http
            .iter()
            .filter(|(_, p)| network_filter_name(p).is_none_or(|n| n == HCM))
            .copied()
            .collect();
        if let Some(http_filters) = filter
            .get_mut("typed_config")
            .and_then(|c| c.get_mut("http_filters"))
            .and_then(Value::as_array_mut)
        {
            patch_filter_list(&for_this_filter, http_filters, http_filter_name, applied);
        }
    }
}

fn patches_for_chain<'a>(
    patches: &[(usize, &'a Patch)],
    listener: &Value,
    chain: &Value,
) -> Vec<(usize, &'a Patch)> {
    patches
        .iter()
        .filter(|(_, p)| listener_matches(listener, p) && filter_chain_matches(listener, chain, p))
        .copied()
        .collect()
}

/// Istio's operations on an ordered filter list (network filters of a chain, HTTP filters of an
/// HCM): first the inserting operations in patch order, then MERGE and REMOVE on each filter.
/// `target` is the name the patch's match names at this level, if any.
fn patch_filter_list(
    patches: &[(usize, &Patch)],
    filters: &mut Vec<Value>,
    target: fn(&Patch) -> Option<&str>,
    applied: &mut [bool],
) {
    let position = |filters: &[Value], name: &str| filters.iter().position(|f| f["name"] == name);
    for (i, patch) in patches {
        let value = patch.value.clone();
        let done = match (patch.operation, target(patch)) {
            (Operation::Add, _) | (Operation::InsertAfter, None) => {
                filters.push(value);
                true
            }
            (Operation::InsertFirst, _) | (Operation::InsertBefore, None) => {
                filters.insert(0, value);
                true
            }
            (Operation::InsertBefore, Some(name)) => position(filters, name)
                .map(|at| filters.insert(at, value))
                .is_some(),
            (Operation::InsertAfter, Some(name)) => position(filters, name)
                .map(|at| filters.insert(at + 1, value))
                .is_some(),
            (Operation::Replace, Some(name)) => position(filters, name)
                .map(|at| filters[at] = value)
                .is_some(),
            _ => false,
        };
        applied[*i] |= done;
    }
    filters.retain_mut(|filter| {
        if !merge_or_remove(filter, patches, applied, |f, p| {
            target(p).is_none_or(|name| f["name"] == name)
        }) {
            return false;
        }
        true
    });
}

// ---- route configurations and virtual hosts --------------------------------------------------

fn patch_route_configs(
    route_patches: &[(usize, &Patch)],
    vhost_patches: &[(usize, &Patch)],
    route_configs: &mut [Value],
    applied: &mut [bool],
) {
    for config in route_configs {
        for (i, patch) in route_patches {
            if route_config_matches(config, patch) {
                merge(config, &patch.value);
                applied[*i] = true;
            }
        }
        let matching: Vec<(usize, &Patch)> = vhost_patches
            .iter()
            .filter(|(_, p)| route_config_matches(config, p))
            .copied()
            .collect();
        if let Some(vhosts) = config
            .get_mut("virtual_hosts")
            .and_then(Value::as_array_mut)
        {
            vhosts.retain_mut(|vhost| {
                if !merge_or_remove(vhost, &matching, applied, vhost_matches) {
                    return false;
                }
                true
            });
            for (i, patch) in &matching {
                if patch.operation == Operation::Add {
                    vhosts.push(patch.value.clone());
                    applied[*i] = true;
                }
            }
        }
    }
}

/// Sidecar route configs are named after their port, which is what `portNumber` compares with.
fn route_config_matches(config: &Value, patch: &Patch) -> bool {
    let Some(m) = &patch.matcher.route_configuration else {
        return true;
    };
    let name = config["name"].as_str().unwrap_or_default();
    (m.port_number == 0 || name.parse::<u32>().ok() == Some(m.port_number))
        && (m.name.is_empty() || m.name == name)
}

fn vhost_matches(vhost: &Value, patch: &Patch) -> bool {
    let wanted = patch
        .matcher
        .route_configuration
        .as_ref()
        .and_then(|m| m.vhost.as_ref())
        .map(|v| v.name.as_str())
        .unwrap_or_default();
    wanted.is_empty() || vhost["name"] == wanted
}

#[cfg(test)]
#[path = "envoy_filter_tests.rs"]
mod tests;
