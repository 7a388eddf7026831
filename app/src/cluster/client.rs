//! A kube client from `--kubeconfig` / `--context`, else `$KUBECONFIG`, else `~/.kube/config`,
//! else the in-cluster service account: the order kubectl uses, so kasi talks to the cluster the
//! user's kubectl talks to.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::PathBuf;

/// Which cluster to talk to, as the global flags name it.
#[derive(Debug, Clone, Default)]
pub struct ClusterTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl ClusterTarget {
    /// A target that reads exactly this kubeconfig file (tests, the lab).
    pub fn kubeconfig(path: impl Into<PathBuf>) -> ClusterTarget {
        ClusterTarget {
            kubeconfig: Some(path.into()),
            context: None,
        }
    }
}

const HOW_TO_POINT: &str =
    "pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config (`kasi lab` prints one for the local lab)";

/// Builds a client; every failure is one line that says what to do about it.
pub async fn connect(target: &ClusterTarget) -> anyhow::Result<Client> {
    connect_with(target, false).await
}

/// [`connect`] for the full-screen UI: exec credential plugins never get the terminal
/// ([`super::exec`]).
pub async fn connect_for_ui(target: &ClusterTarget) -> anyhow::Result<Client> {
    connect_with(target, true).await
}

async fn connect_with(target: &ClusterTarget, for_ui: bool) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kubeconfig =
        match &target.kubeconfig {
            Some(path) => {
                if !path.is_file() {
                    anyhow::bail!(
                        "kubeconfig {} does not exist; {HOW_TO_POINT}",
                        path.display()
                    );
                }
                Some(Kubeconfig::read_from(path).map_err(|e| {
                    anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display())
                })?)
            }
            None => match Kubeconfig::from_env() {
                Ok(Some(config)) => Some(config),
                Ok(None) => default_kubeconfig()?,
                Err(e) => anyhow::bail!("cannot read $KUBECONFIG: {e}; {HOW_TO_POINT}"),
            },
        };
    let kubeconfig = kubeconfig.map(|mut k| {
        if for_ui {
            super::exec::never_interactive(&mut k);
        }
        k
    });
    let config = match kubeconfig {
        Some(kubeconfig) => Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| match super::exec::describe(&e) {
                Some(line) => anyhow::anyhow!(line),
                None => anyhow::anyhow!("the kubeconfig cannot be used: {e}"),
            })?,
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => Config::incluster()
            .map_err(|e| anyhow::anyhow!("in-cluster configuration failed: {e}"))?,
        None => anyhow::bail!("no kubeconfig found; {HOW_TO_POINT}"),
    };
    // kube-rs runs an exec plugin here already, for the first token: its failure is one line.
    Client::try_from(config).map_err(|e| match super::exec::describe(&e) {
        Some(line) => anyhow::anyhow!(line),
        None => anyhow::anyhow!("cannot build a Kubernetes client: {e}"),
    })
}

/// `~/.kube/config` when it exists; `None` when there is none (not an error yet: in-cluster may work).
fn default_kubeconfig() -> anyhow::Result<Option<Kubeconfig>> {
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    let path = PathBuf::from(home).join(".kube").join("config");
    if !path.is_file() {
        return Ok(None);
    }
    Kubeconfig::read_from(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_says_how_to_point_at_one() {
        let target = ClusterTarget::kubeconfig("/nonexistent/kasi/kubeconfig");
        let Err(error) = connect(&target).await else {
            panic!("connected without a kubeconfig");
        };
        let error = error.to_string();
        assert!(error.contains("--kubeconfig"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
