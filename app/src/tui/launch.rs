//! Starting the UI: `kasi` against the current kube context, `kasi demo` against a fresh lab.

use super::run::{run, Connected, Contexts, Installer, TuiOptions};
use super::state::{ClusterInfo, ProbeKind, ProbeTarget, ProbeTargets};
use super::tour::Tour;
use crate::cluster::client::{connect, connect_for_ui, ClusterTarget};
use kasi_lab::{Lab, LabOptions};
use std::sync::Arc;

/// What the Overview says about the cluster before the watchers report.
fn cluster_info(target: &ClusterTarget, server: String, lab: bool) -> ClusterInfo {
    let context = target.context.clone().unwrap_or_else(|| {
        if lab {
            "kasi-lab".into()
        } else {
            current_context(target).unwrap_or_else(|| "(current context)".into())
        }
    });
    ClusterInfo {
        context,
        server,
        istio: None,
        knative: None,
        lab,
    }
}

fn current_context(target: &ClusterTarget) -> Option<String> {
    kubeconfig(target)?.current_context
}

fn kubeconfig(target: &ClusterTarget) -> Option<kube::config::Kubeconfig> {
    match &target.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    }
}

/// The API server URL of the context kasi uses, for the Overview.
fn server_of(target: &ClusterTarget) -> String {
    let Some(config) = kubeconfig(target) else {
        return String::new();
    };
    let context_name = target
        .context
        .clone()
        .or(config.current_context.clone())
        .unwrap_or_default();
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster.as_ref())
        .and_then(|c| c.cluster.as_ref()?.server.clone())
        .unwrap_or_default()
}

/// The lab's probes: cookie jars on the ingress (its default route is `hello`), and MCP clients
/// on the `mcp` service, whose Host the ingress routes by while the connection goes to the
/// ingress's own address (`--resolve`, as `kasi probe --mcp` takes it).
fn lab_probes(ingress_url: &str) -> ProbeTargets {
    use kasi_lab::knative::seed::{MCP_HOST, MCP_PATH};
    let cookie = ProbeTarget {
        kind: ProbeKind::Cookie,
        url: ingress_url.to_owned(),
        resolve: Vec::new(),
    };
    let ingress: Option<std::net::SocketAddr> = ingress_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .ok();
    let mcp = ingress.map(|ingress| ProbeTarget {
        kind: ProbeKind::Mcp,
        url: format!("http://{MCP_HOST}:{}{MCP_PATH}", ingress.port()),
        resolve: vec![format!("{MCP_HOST}:{}:{}", ingress.port(), ingress.ip())],
    });
    ProbeTargets {
        cookie: Some(cookie),
        mcp,
    }
}

/// `kasi`: the UI on a cluster; `:ctx` switches to another of the kubeconfig's contexts.
pub async fn inspect(
    target: ClusterTarget,
    system_namespace: String,
    installer: impl Fn(ClusterTarget) -> Option<Installer> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let client = connect_for_ui(&target).await?;
    let cluster = cluster_info(&target, server_of(&target), false);
    let installer = Arc::new(installer);
    run(TuiOptions {
        client,
        cluster,
        system_namespace,
        lab: None,
        probes: ProbeTargets::default(),
        installer: installer(target.clone()),
        show_guide: false,
        contexts: Some(contexts(target, installer)),
        tour: None,
    })
    .await
}

/// The kubeconfig's contexts, and how to connect to one of them from the UI.
fn contexts(
    target: ClusterTarget,
    installer: Arc<impl Fn(ClusterTarget) -> Option<Installer> + Send + Sync + 'static>,
) -> Contexts {
    let names = kubeconfig(&target)
        .map(|config| config.contexts.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    Contexts {
        names,
        ready: Arc::default(),
        connect: Arc::new(move |name: String| {
            let target = ClusterTarget {
                context: Some(name.clone()),
                ..target.clone()
            };
            let installer = installer.clone();
            Box::pin(async move {
                let client = connect_for_ui(&target)
                    .await
                    .map_err(|e| format!("context {name}: {e:#}"))?;
                // Reachable before the old sources stop: a typo'd server keeps the old view.
                client.apiserver_version().await.map_err(
                    |e| match crate::cluster::exec::describe(&e) {
                        Some(line) => format!("context {name}: {line}"),
                        None => format!("context {name}: the API server does not answer: {e}"),
                    },
                )?;
                Ok(Connected {
                    cluster: cluster_info(&target, server_of(&target), false),
                    installer: installer(target),
                    client,
                })
            })
        }),
    }
}

/// `kasi demo`: a lab, and the UI on it with the demo guide open and the lab's ingress as the
/// probe's URL. The lab is stopped when the UI exits, whichever way it exits.
/// With `tour`, the story plays step by step (`kasi demo --tour`) in place of the guide.
pub async fn demo(
    options: LabOptions,
    system_namespace: String,
    installer: impl Fn(ClusterTarget) -> Option<Installer>,
    tour: Option<Tour>,
) -> anyhow::Result<()> {
    eprintln!(
        "starting the lab (real Envoy sidecars, {} services)…",
        options.services
    );
    let lab = Arc::new(Lab::start(options).await?);
    let target = ClusterTarget::kubeconfig(lab.kubeconfig_path());
    let result = async {
        let client = connect(&target).await?;
        let cluster = cluster_info(&target, lab.api_url().to_owned(), true);
        run(TuiOptions {
            client,
            cluster,
            system_namespace,
            lab: Some(Arc::clone(&lab)),
            probes: lab_probes(lab.ingress_url()),
            installer: installer(target.clone()),
            show_guide: tour.is_none(),
            contexts: None,
            tour,
        })
        .await
    }
    .await;
    lab.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labs_mcp_probe_goes_to_the_ingress_by_the_mcp_host() {
        let probes = lab_probes("http://127.42.0.1:41877");
        assert_eq!(probes.cookie.unwrap().url, "http://127.42.0.1:41877");
        let mcp = probes.mcp.unwrap();
        assert_eq!(mcp.kind, ProbeKind::Mcp);
        assert_eq!(mcp.url, "http://mcp.default.example.com:41877/mcp");
        assert_eq!(mcp.resolve, ["mcp.default.example.com:41877:127.42.0.1"]);
    }
}
