//! Waiting for the activator's rollout, as `kubectl rollout status deployment/activator` does
//! (kubectl's `polymorphichelpers/rollout_status.go` `DeploymentStatusViewer.Status`): done when
//! the controller has observed the current generation, every replica runs the new template, no
//! old pod is left, and every updated pod is available. `kasi apply` and `kasi revert` return
//! only then, so a caller never sees "done" while old activators still serve.

use super::{InstallError, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use std::io::Write;
use std::time::{Duration, Instant};

/// Knative's activator Deployment.
pub const ACTIVATOR: &str = "activator";
/// The Deployment's own `progressDeadlineSeconds` default; kasi gives up at the same point.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(250);

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Still rolling: what `kubectl rollout status` would print.
    Waiting(String),
    /// The controller gave up (`ProgressDeadlineExceeded`).
    Failed(String),
}

/// Reads one Deployment's status the way kubectl does.
pub fn progress(deployment: &Deployment) -> Progress {
    let name = deployment.metadata.name.as_deref().unwrap_or(ACTIVATOR);
    let status = deployment.status.clone().unwrap_or_default();
    if deployment.metadata.generation > status.observed_generation {
        return Progress::Waiting(format!(
            "waiting for the deployment {name:?} spec update to be observed"
        ));
    }
    if let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
    {
        if condition.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return Progress::Failed(format!(
                "deployment {name:?} exceeded its progress deadline: {}",
                condition.message.as_deref().unwrap_or("")
            ));
        }
    }
    let want = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Progress::Waiting(format!("{updated} of {want} new activator pods updated"));
    }
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old activator pod(s) pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated activator pods available"
        ));
    }
    Progress::Done
}

/// Waits until the activator's rollout is done, printing each new state once.
pub async fn wait(client: &Client, namespace: &str, out: &mut dyn Write) -> Result<()> {
    wait_for(client, namespace, ACTIVATOR, ROLLOUT_TIMEOUT, out).await
}

pub async fn wait_for(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let Some(deployment) = deployments.get_opt(name).await? else {
            return Err(InstallError::Cluster(format!(
                "deployment {namespace}/{name} is gone; nothing to wait for"
            )));
        };
        match progress(&deployment) {
            Progress::Done => {
                let _ = writeln!(out, "rollout: deployment {namespace}/{name} rolled out");
                return Ok(());
            }
            Progress::Failed(why) => {
                return Err(InstallError::Cluster(format!(
                    "rollout: {why}; see `kubectl -n {namespace} describe deployment {name}`"
                )))
            }
            Progress::Waiting(what) => {
                if what != last {
                    let _ = writeln!(out, "rollout: {what}");
                    last = what;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(InstallError::Cluster(format!(
                "rollout: deployment {namespace}/{name} did not finish in {} s ({last}); check `kubectl -n {namespace} rollout status deployment/{name}`",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "activator", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn reads_a_rollout_as_kubectl_does() {
        let unobserved = deployment(
            3,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert!(matches!(progress(&unobserved), Progress::Waiting(w) if w.contains("observed")));
        let half = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        assert_eq!(
            progress(&half),
            Progress::Waiting("1 of 2 new activator pods updated".into())
        );
        let old_left = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}),
        );
        assert!(
            matches!(progress(&old_left), Progress::Waiting(w) if w.contains("pending termination"))
        );
        let done = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(progress(&done), Progress::Done);
        let stuck = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"activator-x\" has timed out progressing."}]}),
        );
        assert!(matches!(progress(&stuck), Progress::Failed(w) if w.contains("timed out")));
    }
}
