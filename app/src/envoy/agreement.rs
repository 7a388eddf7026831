//! Do the activators agree? Each activator sidecar should run the same thing: the same module
//! (the `kasi.dev/filter-sha256` its pod was rolled with), the same pluginConfig, the same HTTP
//! filter chain on the revision ports, the same PassthroughCluster, the same Sidecar scope (its
//! cluster count) and the same `wasm` log level. When one replica misbehaves, a difference here is
//! the first thing to look for: each is named in one line with the sidecars it concerns.

use super::shape::{chain_text, ConfigShape};
use std::collections::BTreeMap;

/// What is known of one activator's sidecar (`None`: not read yet, or not there).
#[derive(Debug, Clone, Copy, Default)]
pub struct SidecarFacts<'a> {
    pub pod: &'a str,
    /// The pod's `kasi.dev/filter-sha256` label.
    pub module: Option<&'a str>,
    pub shape: Option<&'a ConfigShape>,
    /// Clusters in its config_dump: what its Sidecar scope lets in.
    pub clusters: Option<u64>,
    pub wasm_level: Option<&'a str>,
}

/// One line per difference between sidecars, then one per sidecar whose own chain or
/// PassthroughCluster is wrong. Empty: they agree (or there is one sidecar, and it is right).
pub fn disagreements(sidecars: &[SidecarFacts<'_>]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut compare = |aspect: &str, values: Vec<(&str, String)>| {
        if let Some(line) = differ(aspect, &values) {
            lines.push(line);
        }
    };
    compare(
        "module",
        known(sidecars, |s| s.module.map(|m| format!("{:.12}…", m))),
    );
    compare(
        "pluginConfig",
        known(sidecars, |s| s.shape?.plugin_config.clone()),
    );
    let ports: Vec<u16> = sidecars
        .iter()
        .filter_map(|s| s.shape)
        .flat_map(|s| s.chains.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for port in ports {
        compare(
            &format!(":{port} filter chain"),
            known(sidecars, |s| {
                let shape = s.shape?;
                Some(
                    shape
                        .chains
                        .get(&port)
                        .map_or("no listener".into(), |c| chain_text(c)),
                )
            }),
        );
    }
    compare(
        "PassthroughCluster",
        known(sidecars, |s| {
            Some(s.shape?.passthrough.as_ref()?.describe())
        }),
    );
    compare(
        "Sidecar scope",
        known(sidecars, |s| s.clusters.map(|c| format!("{c} clusters"))),
    );
    compare(
        "wasm log level",
        known(sidecars, |s| s.wasm_level.map(str::to_owned)),
    );
    for sidecar in sidecars {
        for problem in sidecar.shape.map(ConfigShape::problems).unwrap_or_default() {
            lines.push(format!("{}: {problem}", sidecar.pod));
        }
    }
    lines
}

fn known<'a>(
    sidecars: &[SidecarFacts<'a>],
    value: impl Fn(&SidecarFacts<'a>) -> Option<String>,
) -> Vec<(&'a str, String)> {
    sidecars
        .iter()
        .filter_map(|s| Some((s.pod, value(s)?)))
        .collect()
}

/// `aspect differs: a, b: X; c: Y` when the values are not all the same.
fn differ(aspect: &str, values: &[(&str, String)]) -> Option<String> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (pod, value) in values {
        groups.entry(value.as_str()).or_default().push(pod);
    }
    (groups.len() > 1).then(|| {
        let parts: Vec<String> = groups
            .iter()
            .map(|(value, pods)| format!("{}: {value}", pods.join(", ")))
            .collect();
        format!("{aspect} differs: {}", parts.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::shape::Passthrough;

    fn shape(chain: &[&str], config: &str) -> ConfigShape {
        ConfigShape {
            chains: [(8012, chain.iter().map(|s| s.to_string()).collect())].into(),
            passthrough: Some(Passthrough {
                override_host_statuses: vec!["DRAINING".into()],
                use_http_header: false,
            }),
            plugin_config: Some(config.into()),
        }
    }

    const CHAIN: [&str; 4] = ["kasi", "fault", "session:cookie", "router"];

    #[test]
    fn agreeing_sidecars_give_no_line() {
        let s = shape(&CHAIN, "1a2b3c4d");
        let facts = |pod| SidecarFacts {
            pod,
            module: Some("4f3a9c0d4f3a9c0d4f3a9c0d4f3a9c0d"),
            shape: Some(&s),
            clusters: Some(12),
            wasm_level: Some("warning"),
        };
        assert!(disagreements(&[facts("a"), facts("b")]).is_empty());
        // Not read yet is not a difference.
        let unknown = SidecarFacts {
            pod: "c",
            ..SidecarFacts::default()
        };
        assert!(disagreements(&[facts("a"), facts("b"), unknown]).is_empty());
    }

    #[test]
    fn each_difference_is_one_line_naming_its_sidecars() {
        let good = shape(&CHAIN, "1a2b3c4d");
        let old = shape(&["fault", "session:cookie", "router"], "99999999");
        let a = SidecarFacts {
            pod: "activator-a",
            module: Some("4f3a9c0d4f3a9c0d4f3a9c0d4f3a9c0d"),
            shape: Some(&good),
            clusters: Some(12),
            wasm_level: Some("warning"),
        };
        let b = SidecarFacts {
            pod: "activator-b",
            ..a
        };
        let c = SidecarFacts {
            pod: "activator-c",
            module: Some("1b2e00001b2e00001b2e00001b2e0000"),
            shape: Some(&old),
            clusters: Some(160),
            wasm_level: Some("info"),
        };
        assert_eq!(
            disagreements(&[a, b, c]),
            vec![
                "module differs: activator-c: 1b2e00001b2e…; activator-a, activator-b: 4f3a9c0d4f3a…",
                "pluginConfig differs: activator-a, activator-b: 1a2b3c4d; activator-c: 99999999",
                ":8012 filter chain differs: activator-a, activator-b: kasi → session:cookie → router; activator-c: session:cookie → router",
                "Sidecar scope differs: activator-a, activator-b: 12 clusters; activator-c: 160 clusters",
                "wasm log level differs: activator-c: info; activator-a, activator-b: warning",
                "activator-c: :8012 has stateful_session without kasi before it",
            ]
        );
    }
}
