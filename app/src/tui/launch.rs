//! Starting the UI: `kasi` against the current kube context, `kasi demo` against a fresh lab.

use super::run::{run, Installer, TuiOptions};
use super::state::ClusterInfo;
use crate::cluster::client::{connect, ClusterTarget};
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

/// `kasi`: the UI on a cluster.
pub async fn inspect(
    target: ClusterTarget,
    system_namespace: String,
    installer: Option<Installer>,
) -> anyhow::Result<()> {
    let client = connect(&target).await?;
    let cluster = cluster_info(&target, server_of(&target), false);
    run(TuiOptions {
        client,
        cluster,
        system_namespace,
        lab: None,
        probe_url: None,
        installer,
        show_guide: false,
    })
    .await
}

/// `kasi demo`: a lab, and the UI on it with the demo guide open and the lab's ingress as the
/// probe's URL. The lab is stopped when the UI exits, whichever way it exits.
pub async fn demo(
    options: LabOptions,
    system_namespace: String,
    installer: impl Fn(ClusterTarget) -> Option<Installer>,
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
            probe_url: Some(lab.ingress_url().to_owned()),
            installer: installer(target.clone()),
            show_guide: true,
        })
        .await
    }
    .await;
    lab.shutdown().await;
    result
}
