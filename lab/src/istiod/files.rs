//! Getting a [`SidecarConfig`] into a running Envoy without restarts: a bootstrap whose LDS and
//! CDS come from files in a watched directory, one RDS file per route config, and atomic
//! writes (write in a staging directory, then rename into the watched one: Envoy reloads on the
//! rename, never sees a half-written file).
//!
//! Layout of `config_dir`: `lds.json`, `cds.json`, `rds/<route config name>.json` (Envoy's
//! filesystem RDS subscription takes exactly one resource per file), `ecds/<extension>@<listener>.json`
//! (likewise, one per ECDS name and listener), `.staging/`.
//!
//! Each listener reads its own copy of an ECDS resource. Envoy shares one subscription between
//! the listeners that name the same resource from the same source, and a file source delivers at
//! once: a second listener created after the first one's resource was refused would be refused
//! itself (Envoy instantiates the stored config for it), where over ADS both listeners are
//! created before the resource arrives and both end up without it. Separate files keep the ADS
//! outcome.

use super::names::HCM;
use super::SidecarConfig;
use serde_json::{json, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const EXTENSION_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

fn lds_path(config_dir: &Path) -> PathBuf {
    config_dir.join("lds.json")
}

fn cds_path(config_dir: &Path) -> PathBuf {
    config_dir.join("cds.json")
}

fn rds_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("rds")
}

fn ecds_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("ecds")
}

fn staging_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".staging")
}

/// The file of route config `name`.
fn rds_path(config_dir: &Path, name: &str) -> PathBuf {
    rds_dir(config_dir).join(file_name(name))
}

/// The file listener `listener` reads ECDS resource `name` from.
fn ecds_path(config_dir: &Path, name: &str, listener: &str) -> PathBuf {
    ecds_dir(config_dir).join(file_name(&format!("{name}@{listener}")))
}

/// Resource names become file names: anything but `[A-Za-z0-9._-]` is replaced.
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}

/// A config source that reads `path` and re-reads it whenever a file is renamed into `watch`.
fn path_source(path: &Path, watch: &Path) -> Value {
    json!({
        "path_config_source": {
            "path": path.display().to_string(),
            "watched_directory": {"path": watch.display().to_string()},
        },
        "resource_api_version": "V3",
    })
}

/// The static bootstrap of a lab sidecar: admin on `admin` (port 0 lets the OS choose; pass
/// `--admin-address-path` to learn it), LDS and CDS from files in `config_dir`. Call
/// [`write_files`] before starting Envoy so the files exist.
///
/// Start Envoy with a short drain time (`--drain-time-s 1 --drain-strategy immediate`):
/// a listener removed by an update stays in `/config_dump`, with the route config it uses,
/// until it has drained (600 s by Envoy's default, 45 s in istio-proxy), so without it a
/// Sidecar's shrink shows only minutes later (measured on 1.40: 3.07 MB → 1.13 MB after 10 s
/// with the default, → 124 kB within a second with `--drain-time-s 1`).
pub fn bootstrap(config_dir: &Path, admin: SocketAddr, node_id: &str) -> Value {
    json!({
        "node": {"id": node_id, "cluster": "kasi-lab"},
        "admin": {"address": socket_address(admin)},
        "dynamic_resources": {
            "lds_config": path_source(&lds_path(config_dir), config_dir),
            "cds_config": path_source(&cds_path(config_dir), config_dir),
        },
        "layered_runtime": runtime(),
    })
}

/// The same config in one self-contained bootstrap (static listeners with inline route
/// configs): for `envoy --mode validate` and for one-shot runs that need no reloads.
pub fn static_bootstrap(config: &SidecarConfig, admin: SocketAddr, node_id: &str) -> Value {
    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .map(|listener| {
            let mut listener = listener.clone();
            for_each_rds(&mut listener, |hcm, name| {
                let route_config = config
                    .route_configs
                    .iter()
                    .find(|rc| rc["name"] == name)
                    .cloned()
                    .unwrap_or_else(|| json!({"name": name}));
                if let Some(hcm) = hcm.as_object_mut() {
                    hcm.remove("rds");
                    hcm.insert("route_config".into(), route_config);
                }
            });
            for_each_discovered_filter(&mut listener, |filter, name| {
                let found = config.extension_configs.iter().find(|e| e["name"] == name);
                if let (Some(found), Some(filter)) = (found, filter.as_object_mut()) {
                    filter.remove("config_discovery");
                    filter.insert("typed_config".into(), found["typed_config"].clone());
                }
            });
            listener
        })
        .collect();
    json!({
        "node": {"id": node_id, "cluster": "kasi-lab"},
        "admin": {"address": socket_address(admin)},
        "static_resources": {"listeners": listeners, "clusters": config.clusters},
        "layered_runtime": runtime(),
    })
}

/// Writes `config` for an Envoy started with [`bootstrap`]`(config_dir, …)`, atomically and in
/// an order that never leaves a listener pointing at a route config Envoy cannot read: route
/// configs first, then clusters, then listeners; stale route config files go last.
pub fn write_files(config_dir: &Path, config: &SidecarConfig) -> io::Result<()> {
    std::fs::create_dir_all(rds_dir(config_dir))?;
    std::fs::create_dir_all(staging_dir(config_dir))?;

    let mut route_files = Vec::new();
    for route_config in &config.route_configs {
        let name = route_config["name"].as_str().unwrap_or_default();
        let path = rds_path(config_dir, name);
        write_atomically(
            config_dir,
            &path,
            &discovery_response(ROUTE_TYPE, std::slice::from_ref(route_config)),
        )?;
        route_files.push(path);
    }
    write_atomically(
        config_dir,
        &cds_path(config_dir),
        &discovery_response(CLUSTER_TYPE, &config.clusters),
    )?;
    std::fs::create_dir_all(ecds_dir(config_dir))?;
    let rds_dir = rds_dir(config_dir);
    let ecds_dir = ecds_dir(config_dir);
    // Each listener's sources point at its files; its ECDS files are written before the
    // listeners that read them.
    let mut extension_files = Vec::new();
    let mut listeners: Vec<Value> = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let listener_name = listener["name"].as_str().unwrap_or_default().to_owned();
        let mut listener = listener.clone();
        for_each_rds(&mut listener, |hcm, name| {
            hcm["rds"]["config_source"] = path_source(&rds_path(config_dir, name), &rds_dir);
        });
        let mut discovered = Vec::new();
        for_each_discovered_filter(&mut listener, |filter, name| {
            let path = ecds_path(config_dir, name, &listener_name);
            let source = &mut filter["config_discovery"]["config_source"];
            *source = path_source(&path, &ecds_dir);
            // As istiod's: wait for the resource however long it takes.
            source["initial_fetch_timeout"] = json!("0s");
            discovered.push((name.to_owned(), path));
        });
        for (name, path) in discovered {
            let Some(extension) = config.extension_configs.iter().find(|e| e["name"] == name)
            else {
                continue;
            };
            write_atomically(
                config_dir,
                &path,
                &discovery_response(EXTENSION_TYPE, std::slice::from_ref(extension)),
            )?;
            extension_files.push(path);
        }
        listeners.push(listener);
    }
    write_atomically(
        config_dir,
        &lds_path(config_dir),
        &discovery_response(LISTENER_TYPE, &listeners),
    )?;

    for (dir, kept) in [(&rds_dir, &route_files), (&ecds_dir, &extension_files)] {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !kept.contains(&path) {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// A file subscription reads an xDS `DiscoveryResponse`. The version is a content hash, so
/// `/config_dump` shows whether two Envoys run the same config.
fn discovery_response(type_url: &str, resources: &[Value]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|resource| {
            let mut typed = json!({"@type": type_url});
            if let (Some(target), Some(fields)) = (typed.as_object_mut(), resource.as_object()) {
                target.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            typed
        })
        .collect();
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&resources)
        .unwrap_or_default()
        .hash(&mut hasher);
    json!({"version_info": format!("{:016x}", hasher.finish()), "resources": resources})
}

fn write_atomically(config_dir: &Path, path: &Path, content: &Value) -> io::Result<()> {
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let staged = staging_dir(config_dir).join(format!("{file_name}.{}", std::process::id()));
    std::fs::write(&staged, serde_json::to_vec_pretty(content)?)?;
    std::fs::rename(&staged, path)
}

/// Calls `f(hcm_typed_config, route_config_name)` for every HCM of `listener` that uses RDS.
fn for_each_rds(listener: &mut Value, mut f: impl FnMut(&mut Value, &str)) {
    let mut chains: Vec<&mut Value> = Vec::new();
    if let Some(list) = listener
        .get_mut("filter_chains")
        .and_then(Value::as_array_mut)
    {
        chains.extend(list.iter_mut());
    }
    for chain in chains {
        let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
            continue;
        };
        for filter in filters.iter_mut().filter(|f| f["name"] == HCM) {
            let typed_config = &mut filter["typed_config"];
            let Some(name) = typed_config["rds"]["route_config_name"]
                .as_str()
                .map(str::to_string)
            else {
                continue;
            };
            f(typed_config, &name);
        }
    }
}

/// Calls `f(http_filter, ecds_name)` for every HTTP filter of `listener` whose config comes
/// through ECDS (`config_discovery`).
fn for_each_discovered_filter(listener: &mut Value, mut f: impl FnMut(&mut Value, &str)) {
    let Some(chains) = listener
        .get_mut("filter_chains")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for chain in chains {
        let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
            continue;
        };
        for hcm in filters.iter_mut().filter(|f| f["name"] == HCM) {
            let Some(http_filters) = hcm["typed_config"]
                .get_mut("http_filters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for filter in http_filters
                .iter_mut()
                .filter(|f| f.get("config_discovery").is_some())
            {
                let name = filter["name"].as_str().unwrap_or_default().to_owned();
                f(filter, &name);
            }
        }
    }
}

fn socket_address(address: SocketAddr) -> Value {
    json!({"socket_address": {"address": address.ip().to_string(), "port_value": address.port()}})
}

/// A lab Envoy serves few connections; the explicit limit silences Envoy's startup warning
/// about running without one.
fn runtime() -> Value {
    json!({"layers": [{
        "name": "static",
        "static_layer": {"overload": {"global_downstream_max_connections": 50000}},
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SidecarConfig {
        SidecarConfig {
            listeners: vec![json!({
                "name": "0.0.0.0_8012",
                "filter_chains": [{"filters": [{"name": HCM, "typed_config": {
                    "rds": {"route_config_name": "8012", "config_source": {"ads": {}}},
                    "http_filters": [
                        {"name": PLUGIN, "config_discovery": {
                            "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"],
                        }},
                        {"name": "envoy.filters.http.router"},
                    ],
                }}]}],
            })],
            clusters: vec![json!({"name": "PassthroughCluster"})],
            route_configs: vec![json!({"name": "8012", "virtual_hosts": []})],
            extension_configs: vec![json!({"name": PLUGIN, "typed_config": {"@type": "w"}})],
            warnings: vec![],
        }
    }

    const PLUGIN: &str = "extensions.istio.io/wasmplugin/ns.p";

    #[test]
    fn files_hold_one_route_config_each_and_listeners_point_at_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rds")).unwrap();
        std::fs::write(dir.path().join("rds/9090.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("ecds")).unwrap();
        std::fs::write(dir.path().join("ecds/gone.json"), "{}").unwrap();
        write_files(dir.path(), &config()).unwrap();

        let read = |p: &str| -> Value {
            serde_json::from_slice(&std::fs::read(dir.path().join(p)).unwrap()).unwrap()
        };
        let rds = read("rds/8012.json");
        assert_eq!(rds["resources"].as_array().unwrap().len(), 1);
        assert_eq!(rds["resources"][0]["@type"], ROUTE_TYPE);
        assert!(
            !dir.path().join("rds/9090.json").exists(),
            "stale route config removed"
        );
        let lds = read("lds.json");
        let source = &lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]["rds"]
            ["config_source"];
        assert_eq!(
            source["path_config_source"]["path"],
            dir.path().join("rds/8012.json").display().to_string()
        );
        assert_eq!(
            read("cds.json")["resources"][0]["name"],
            "PassthroughCluster"
        );
        // The wasm filter's ECDS resource has its own file, and the filter reads it from there.
        let ecds = read("ecds/extensions.istio.io_wasmplugin_ns.p_0.0.0.0_8012.json");
        assert_eq!(ecds["resources"][0]["@type"], EXTENSION_TYPE);
        assert_eq!(ecds["resources"][0]["name"], PLUGIN);
        assert!(!dir.path().join("ecds/gone.json").exists());
        let plugin = &lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"][0]["config_discovery"]["config_source"];
        assert_eq!(
            plugin["path_config_source"]["path"],
            dir.path()
                .join("ecds/extensions.istio.io_wasmplugin_ns.p_0.0.0.0_8012.json")
                .display()
                .to_string()
        );
        assert_eq!(plugin["initial_fetch_timeout"], "0s");
        assert_eq!(
            std::fs::read_dir(dir.path().join(".staging"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn static_bootstrap_inlines_route_configs() {
        let bootstrap = static_bootstrap(&config(), "127.0.0.1:0".parse().unwrap(), "n");
        let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert!(hcm.get("rds").is_none());
        assert_eq!(hcm["route_config"]["name"], "8012");
        let plugin = &hcm["http_filters"][0];
        assert!(plugin.get("config_discovery").is_none());
        assert_eq!(plugin["typed_config"]["@type"], "w");
    }
}
