//! Reading and writing the bundle's objects as untyped JSON: kasi only ever touches the fields it
//! renders, so it never needs (or risks dropping fields through) typed structs.

use super::{Result, FIELD_MANAGER};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use std::fmt;

/// Which object: enough to find it in the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of(object: &Value) -> ObjectRef {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        ObjectRef {
            api_version: text("/apiVersion"),
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }

    /// Same object, whatever version it is named by.
    pub fn same_object(&self, other: &ObjectRef) -> bool {
        self.kind == other.kind
            && self.group() == other.group()
            && self.namespace == other.namespace
            && self.name == other.name
    }

    /// The plural resource name, for the kinds kasi installs (no discovery round trip needed).
    pub fn plural(&self) -> String {
        match self.kind.as_str() {
            "Endpoints" => "endpoints".into(),
            kind => format!("{}s", kind.to_ascii_lowercase()),
        }
    }

    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn api_resource(&self) -> ApiResource {
        let (group, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &self.api_version));
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &self.kind),
            &self.plural(),
        )
    }

    pub fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.api_resource())
    }

    /// Just the identity: what an apply that owns nothing sends.
    pub fn skeleton(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind,
               "metadata": {"name": self.name, "namespace": self.namespace}})
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The live object, `None` when it does not exist.
pub async fn get(client: &Client, object: &ObjectRef) -> Result<Option<Value>> {
    let found = object.api(client).get_opt(&object.name).await?;
    Ok(match found {
        Some(live) => Some(serde_json::to_value(live).map_err(anyhow::Error::from)?),
        None => None,
    })
}

/// How a server-side apply is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyMode {
    pub dry_run: bool,
    pub force: bool,
}

/// Server-side apply of `object` by kasi's field manager; returns the object the server answered.
pub async fn apply(
    client: &Client,
    object: &Value,
    mode: ApplyMode,
) -> std::result::Result<Value, kube::Error> {
    let target = ObjectRef::of(object);
    let params = PatchParams {
        dry_run: mode.dry_run,
        force: mode.force,
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let applied = target
        .api(client)
        .patch(&target.name, &params, &Patch::Apply(object))
        .await?;
    Ok(serde_json::to_value(applied).unwrap_or(Value::Null))
}

/// JSON merge patch of `object` written by `manager` (an Update: the manager owns what it changes).
pub async fn merge_patch(
    client: &Client,
    object: &ObjectRef,
    patch: &Value,
    manager: &str,
) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    object
        .api(client)
        .patch(&object.name, &params, &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Deletes the object; `false` when it was already gone.
pub async fn delete(client: &Client, object: &ObjectRef) -> Result<bool> {
    match object
        .api(client)
        .delete(&object.name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// One line for a kube error: the API's own message, or what failed in reaching it.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!(
                "the API server refused: {} ({})",
                status.message, status.code
            )
        }
        kube::Error::Api(status) => format!("the API server answered {}", status.code),
        other => format!(
            "cannot reach the Kubernetes API: {}",
            one_line(&format!("{other}"))
        ),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A field another manager owns, from a 409 of a server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    pub object: String,
    pub manager: String,
    pub field: String,
}

/// The conflicts of a failed apply, if it failed because of conflicts.
pub fn conflicts(object: &ObjectRef, error: &kube::Error) -> Option<Vec<FieldConflict>> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    if status.code != 409 {
        return None;
    }
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let found: Vec<FieldConflict> = causes
        .iter()
        .filter(|c| c.reason == "FieldManagerConflict")
        .map(|c| FieldConflict {
            object: object.to_string(),
            manager: c
                .message
                .split('"')
                .nth(1)
                .unwrap_or("another manager")
                .to_owned(),
            field: c.field.clone(),
        })
        .collect();
    if found.is_empty() {
        // No causes: keep the server's message rather than lose the conflict.
        return Some(vec![FieldConflict {
            object: object.to_string(),
            manager: "another manager".into(),
            field: status.message.clone(),
        }]);
    }
    Some(found)
}
