//! pilot-agent, istio-proxy's entrypoint: it starts Envoy with flags from the container's args
//! (`pkg/envoy/proxy.go` `envoy.args`; `pilot/cmd/pilot-agent/app/cmd.go` reads
//! `--proxyLogLevel` / `--proxyComponentLogLevel`, which the injector filled from the pod's
//! `sidecar.istio.io/logLevel` / `componentLogLevel` annotations; `--concurrency` from the proxy
//! config, 2 unless set). So what a sidecar logs is fixed when its pod is created.

use crate::istiod::injector::{
    proxy_container, DEFAULT_PROXY_COMPONENT_LOG_LEVEL, DEFAULT_PROXY_LOG_LEVEL,
};
use serde_json::Value;

/// ProxyConfig's default `concurrency` for sidecars.
pub const DEFAULT_CONCURRENCY: &str = "2";
/// Istio's Envoy log line (`pkg/envoy/proxy.go`): time, level, `envoy <logger>`, message.
pub const LOG_FORMAT: &str = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n\t%v";

/// The Envoy flags pilot-agent would pass for this pod (config path and admin aside).
pub fn envoy_flags(pod: &Value) -> Vec<String> {
    let args: Vec<&str> = proxy_container(pod)
        .and_then(|c| c["args"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let flag = |name: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
                .or_else(|| (*a == name).then(|| args.get(i + 1).map(|v| (*v).to_owned()))?)
        })
    };
    let level = flag("--proxyLogLevel").unwrap_or_else(|| DEFAULT_PROXY_LOG_LEVEL.into());
    let components = flag("--proxyComponentLogLevel")
        .unwrap_or_else(|| DEFAULT_PROXY_COMPONENT_LOG_LEVEL.into());
    let concurrency = flag("--concurrency").unwrap_or_else(|| DEFAULT_CONCURRENCY.into());
    let mut flags: Vec<String> = vec![
        "--drain-strategy".into(),
        "immediate".into(),
        "--file-flush-interval-msec".into(),
        "1000".into(),
        "--disable-hot-restart".into(),
        "--log-format".into(),
        LOG_FORMAT.into(),
        "-l".into(),
        level,
    ];
    if !components.is_empty() {
        flags.push("--component-log-level".into());
        flags.push(components);
    }
    flags.push("--concurrency".into());
    flags.push(concurrency);
    // istio-proxy drains for 45 s (`--drain-time-s` from `drainDuration`); the lab drains in 1 s
    // because removed listeners leave config_dump only once drained, and a Sidecar's shrink
    // would stay invisible for that long.
    flags.push("--drain-time-s".into());
    flags.push("1".into());
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istiod::injector::inject;
    use serde_json::json;

    #[test]
    fn flags_follow_the_pod_annotations_and_istio_defaults() {
        let mut pod = json!({"metadata": {"annotations": {}}, "spec": {"containers": []}});
        inject(&mut pod, true);
        let flags = envoy_flags(&pod).join(" ");
        assert!(flags.contains("-l warning"), "{flags}");
        assert!(
            flags.contains("--component-log-level misc:error "),
            "{flags}"
        );
        assert!(flags.contains("--concurrency 2"), "{flags}");

        let mut pod = json!({"metadata": {"annotations": {
            "sidecar.istio.io/logLevel": "debug",
            "sidecar.istio.io/componentLogLevel": "misc:error,wasm:info"}},
            "spec": {"containers": []}});
        inject(&mut pod, false);
        let flags = envoy_flags(&pod).join(" ");
        assert!(flags.contains("-l debug"), "{flags}");
        assert!(
            flags.contains("--component-log-level misc:error,wasm:info"),
            "{flags}"
        );
    }
}
