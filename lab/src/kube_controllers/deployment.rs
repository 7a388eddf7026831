//! kube-controller-manager's Deployment controller, for the Deployments whose pods the lab runs
//! (the activator): a changed `spec.template` rolls the pods the way a `RollingUpdate` does, one
//! step at a time, and the Deployment's `status` says how far it got — what `kubectl rollout
//! status` and `kasi apply` wait on.
//!
//! Followed: `pkg/controller/deployment/rolling.go` (`rolloutRolling`: scale the new ReplicaSet up
//! within `maxSurge`, then the old ones down within `maxUnavailable`), `util/deployment_util.go`
//! (`ResolveFenceposts`: surge rounds up, unavailable rounds down, and both zero means one
//! unavailable), `pkg/apis/apps/v1/defaults.go` (`RollingUpdate` 25 % / 25 % when unset, so two
//! replicas roll one extra pod at a time and never drop below two), `pkg/controller/
//! controller_utils.go` `ComputeHash` (the `pod-template-hash` label: FNV-32a of the template,
//! written with `rand.SafeEncodeString`; the lab hashes the template's JSON, so the value differs
//! from a cluster's but changes exactly when the template does) and `sync.go`
//! `calculateStatus`. Pods are named `<deployment>-<hash>-<5 random>` as the ReplicaSet's
//! `generateName` makes them.

use serde_json::{json, Value};

/// `rand.SafeEncodeString`'s alphabet (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a Deployment's `spec.template`.
pub fn template_hash(template: &Value) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Five characters of a generated pod name.
pub fn random_suffix() -> String {
    (0..5)
        .map(|_| SAFE_ALPHABET[rand::random_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}

/// `spec.replicas` (default 1).
pub fn desired_replicas(deployment: &Value) -> usize {
    deployment["spec"]["replicas"]
        .as_u64()
        .map_or(1, |n| n as usize)
}

/// (maxSurge, maxUnavailable) as pod counts for `replicas`.
pub fn fenceposts(deployment: &Value, replicas: usize) -> (usize, usize) {
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    // `defaults.go`: an unset value is 25 %.
    let resolve = |value: &Value, round_up: bool| -> usize {
        if let Some(n) = value.as_u64() {
            return n as usize;
        }
        let percent: f64 = value
            .as_str()
            .and_then(|s| s.trim_end_matches('%').parse().ok())
            .unwrap_or(25.0);
        let exact = percent * replicas as f64 / 100.0;
        if round_up {
            exact.ceil() as usize
        } else {
            exact.floor() as usize
        }
    };
    let surge = resolve(&rolling["maxSurge"], true);
    let unavailable = resolve(&rolling["maxUnavailable"], false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// What the controller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create one pod from the current template.
    Create,
    /// Remove this pod (an old one once enough new ones are available, or an extra one).
    Remove(String),
    /// Nothing to do until something changes.
    Done,
}

/// One pod the controller owns: its name, whether it has the current template, and whether it is
/// available (ready).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPod {
    pub name: String,
    pub current: bool,
    pub available: bool,
}

/// The next step of a rolling update (`rolloutRolling`, one pod at a time as the lab starts
/// them): scale up the new pods within `replicas + surge`, then scale old pods down while at
/// least `replicas - unavailable` stay available; old pods go oldest first (the list's order).
pub fn next_step(replicas: usize, surge: usize, unavailable: usize, pods: &[OwnedPod]) -> Step {
    let new = pods.iter().filter(|p| p.current).count();
    let total = pods.len();
    if new < replicas && total < replicas + surge {
        return Step::Create;
    }
    let available = pods.iter().filter(|p| p.available).count();
    let min_available = replicas.saturating_sub(unavailable);
    if let Some(old) = pods.iter().find(|p| !p.current) {
        // An old pod that is not available can always go (`cleanupUnhealthyReplicas`).
        if !old.available || available > min_available {
            return Step::Remove(old.name.clone());
        }
        return Step::Done;
    }
    if new > replicas {
        if let Some(extra) = pods.iter().rev().find(|p| p.current) {
            return Step::Remove(extra.name.clone());
        }
    }
    Step::Done
}

/// The Deployment's `status` for these pods (`sync.go` `calculateStatus`), observing the
/// current generation.
pub fn status(deployment: &Value, pods: &[OwnedPod]) -> Value {
    let replicas = desired_replicas(deployment);
    let updated = pods.iter().filter(|p| p.current).count();
    let available = pods.iter().filter(|p| p.available).count();
    let total = pods.len();
    let done = updated == replicas && total == replicas && available == replicas;
    let now = crate::kube_api::store::now_rfc3339();
    let available_condition = if available
        >= replicas.saturating_sub(fenceposts(deployment, replicas).1)
    {
        json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
               "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
               "message": "Deployment does not have minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now})
    };
    let (reason, message) = if done {
        (
            "NewReplicaSetAvailable",
            "ReplicaSet has successfully progressed.",
        )
    } else {
        ("ReplicaSetUpdated", "ReplicaSet is progressing.")
    };
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"].as_i64().unwrap_or(1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [available_condition,
            {"type": "Progressing", "status": "True", "reason": reason, "message": message,
             "lastUpdateTime": now, "lastTransitionTime": now}],
    });
    if total > available {
        status["unavailableReplicas"] = json!(total - available);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, current: bool) -> OwnedPod {
        OwnedPod {
            name: name.into(),
            current,
            available: true,
        }
    }

    #[test]
    fn two_replicas_roll_one_extra_pod_at_a_time_and_never_drop_below_two() {
        let deployment = json!({"spec": {"replicas": 2}});
        let (surge, unavailable) = fenceposts(&deployment, 2);
        assert_eq!((surge, unavailable), (1, 0));
        let mut pods = vec![pod("old-a", false), pod("old-b", false)];
        let mut steps = Vec::new();
        loop {
            let step = next_step(2, surge, unavailable, &pods);
            steps.push(step.clone());
            match step {
                Step::Create => {
                    let n = pods.iter().filter(|p| p.current).count();
                    pods.push(pod(&format!("new-{n}"), true));
                }
                Step::Remove(name) => pods.retain(|p| p.name != name),
                Step::Done => break,
            }
            assert!(pods.iter().filter(|p| p.available).count() >= 2);
            assert!(pods.len() <= 3);
        }
        assert_eq!(
            steps,
            vec![
                Step::Create,
                Step::Remove("old-a".into()),
                Step::Create,
                Step::Remove("old-b".into()),
                Step::Done
            ]
        );
    }

    #[test]
    fn fenceposts_round_as_kubernetes_does() {
        let pct = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}}});
        assert_eq!(fenceposts(&pct, 3), (2, 1));
        let zero =
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(fenceposts(&zero, 2), (0, 1));
        assert_eq!(fenceposts(&json!({}), 4), (1, 1));
    }

    #[test]
    fn the_hash_changes_with_the_template_and_only_then() {
        let a = json!({"metadata": {"labels": {"app": "activator"}}});
        let mut b = a.clone();
        assert_eq!(template_hash(&a), template_hash(&b));
        b["metadata"]["annotations"] = json!({"x": "y"});
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(template_hash(&a)
            .bytes()
            .all(|c| SAFE_ALPHABET.contains(&c)));
    }

    #[test]
    fn status_reports_progress_until_every_pod_is_new() {
        let deployment = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2}});
        let rolling = status(&deployment, &[pod("old", false), pod("new", true)]);
        assert_eq!(rolling["observedGeneration"], 3);
        assert_eq!(rolling["updatedReplicas"], 1);
        assert_eq!(rolling["conditions"][1]["reason"], "ReplicaSetUpdated");
        let done = status(&deployment, &[pod("a", true), pod("b", true)]);
        assert_eq!(done["updatedReplicas"], 2);
        assert_eq!(done["availableReplicas"], 2);
        assert_eq!(done["conditions"][1]["reason"], "NewReplicaSetAvailable");
    }
}
