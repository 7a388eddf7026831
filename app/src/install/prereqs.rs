//! What must be in the cluster before kasi changes anything: Istio's CRDs, Knative Serving's
//! activator, and RBAC for every verb kasi will use. Each missing one is named, so the user fixes
//! them all at once.

use super::objects::ObjectRef;
use super::render::Piece;
use super::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use std::collections::BTreeSet;

/// The CustomResourceDefinitions the bundle's Istio objects need.
pub const ISTIO_CRDS: [&str; 3] = [
    "sidecars.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "wasmplugins.extensions.istio.io",
];

/// Verbs `apply` uses on each resource (server-side apply is a patch; the diff reads first).
pub const APPLY_VERBS: [&str; 2] = ["get", "patch"];
/// Verbs `revert` adds.
pub const REVERT_VERBS: [&str; 3] = ["get", "patch", "delete"];

/// Every missing prerequisite, as one readable phrase each; empty when all are there.
pub async fn missing(
    client: &Client,
    system_namespace: &str,
    pieces: &[Piece],
    verbs: &[&str],
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for crd in ISTIO_CRDS {
        if crds.get_opt(crd).await?.is_none() {
            missing.push(format!("Istio CRD {crd}"));
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), system_namespace);
    if deployments.get_opt("activator").await?.is_none() {
        missing.push(format!(
            "Knative Serving (Deployment activator in namespace {system_namespace})"
        ));
    }
    missing.extend(missing_rbac(client, pieces, verbs).await?);
    Ok(missing)
}

/// Each verb on each piece's resource that a SelfSubjectAccessReview does not allow.
pub async fn missing_rbac(
    client: &Client,
    pieces: &[Piece],
    verbs: &[&str],
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut asked = BTreeSet::new();
    for piece in pieces {
        let target = ObjectRef::of(&piece.object);
        for verb in verbs {
            let key = (target.group().to_owned(), target.plural(), verb.to_string());
            if !asked.insert(key) {
                continue;
            }
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(target.group().to_owned()),
                        resource: Some(target.plural()),
                        verb: Some(verb.to_string()),
                        namespace: Some(target.namespace.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await?;
            if !answer.status.is_some_and(|s| s.allowed) {
                let resource = match target.group() {
                    "" => target.plural(),
                    group => format!("{}.{group}", target.plural()),
                };
                missing.push(format!(
                    "RBAC: {verb} {resource} in namespace {}",
                    target.namespace
                ));
            }
        }
    }
    Ok(missing)
}
