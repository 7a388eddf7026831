//! What kasi keeps in the cluster so any machine can undo an install: before its first change,
//! the previous value (and owners) of every field kasi sets on every object, and which objects did
//! not exist. It lives in the ConfigMap `kasi-revert` in the system namespace, written once and
//! never overwritten (a later apply only adds objects the record does not know yet), so the
//! original values survive re-applies. The ConfigMap also holds the options of the last apply,
//! which `kasi status` renders against.

use super::diff::{kasi_fields, value_at, FieldPath};
use super::objects::{self, ApplyMode, ObjectRef};
use super::render::{FilterSource, RenderOptions};
use super::Result;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

pub const RECORD_CONFIGMAP: &str = "kasi-revert";
const RECORD_KEY: &str = "record.json";
const OPTIONS_KEY: &str = "options.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub objects: Vec<RecordedObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedObject {
    #[serde(flatten)]
    pub target: ObjectRef,
    /// Whether the object existed before kasi's first apply (if not, revert deletes it).
    pub existed: bool,
    pub fields: Vec<RecordedField>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedField {
    pub path: FieldPath,
    /// The previous value; `None` when the field was not there.
    pub value: Option<Value>,
    /// Managers that owned the field (from managedFields), to give ownership back on revert.
    #[serde(default)]
    pub managers: Vec<String>,
    /// When the field was absent: the index in `path` of the first map that did not exist either,
    /// so revert removes the empty maps kasi's field left behind.
    #[serde(default)]
    pub absent_from: Option<usize>,
}

/// The previous state of `live` (absent: `None`) for every field `rendered` sets.
pub fn capture(rendered: &Value, live: Option<&Value>) -> RecordedObject {
    let target = ObjectRef::of(rendered);
    let fields = match live {
        None => Vec::new(),
        Some(live) => kasi_fields(rendered)
            .into_iter()
            .map(|(path, _)| {
                let value = value_at(live, &path).cloned();
                let absent_from = value.is_none().then(|| {
                    (1..=path.len())
                        .find(|&n| value_at(live, &path[..n]).is_none())
                        .map_or(path.len() - 1, |n| n - 1)
                });
                RecordedField {
                    managers: owners(live, &path),
                    path,
                    value,
                    absent_from,
                }
            })
            .collect(),
    };
    RecordedObject {
        target,
        existed: live.is_some(),
        fields,
    }
}

/// The managers whose managedFields reach `path`.
fn owners(live: &Value, path: &[String]) -> Vec<String> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            let mut node = &entry["fieldsV1"];
            path.iter().all(|key| match node.get(format!("f:{key}")) {
                Some(next) => {
                    node = next;
                    true
                }
                None => false,
            })
        })
        .filter_map(|entry| entry["manager"].as_str().map(str::to_owned))
        .collect()
}

fn default_mcp_header() -> String {
    kasi_filter::config::DEFAULT_MCP_HEADER.to_owned()
}

/// The options an apply rendered with, stored so `status` compares against the same bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOptions {
    pub cookie_name: String,
    pub cookie_ttl_s: Option<u64>,
    pub cookie_path: String,
    /// Absent in records written before MCP sessions: the default header.
    #[serde(default = "default_mcp_header")]
    pub mcp_header: String,
    #[serde(default)]
    pub session_header: String,
    pub allowed_cidrs: Option<Vec<String>>,
    /// `None`: the embedded filter in a ConfigMap.
    pub filter_url: Option<String>,
    pub filter_sha256: Option<String>,
}

impl SavedOptions {
    pub fn of(options: &RenderOptions) -> SavedOptions {
        let (filter_url, filter_sha256) = match &options.filter {
            FilterSource::ConfigMap { .. } => (None, None),
            FilterSource::Url { url, sha256 } => (Some(url.clone()), Some(sha256.clone())),
        };
        SavedOptions {
            cookie_name: options.cookie_name.clone(),
            cookie_ttl_s: options.cookie_ttl.map(|d| d.as_secs()),
            cookie_path: options.cookie_path.clone(),
            mcp_header: options.mcp_header.clone(),
            session_header: options.session_header.clone(),
            allowed_cidrs: options.allowed_cidrs.clone(),
            filter_url,
            filter_sha256,
        }
    }

    pub fn to_render(&self, system_namespace: &str, wasm: &[u8]) -> RenderOptions {
        let filter = match (&self.filter_url, &self.filter_sha256) {
            (Some(url), Some(sha256)) => FilterSource::Url {
                url: url.clone(),
                sha256: sha256.clone(),
            },
            _ => FilterSource::ConfigMap {
                wasm: wasm.to_vec(),
            },
        };
        let mut options = RenderOptions::new(filter);
        options.system_namespace = system_namespace.to_owned();
        options.cookie_name = self.cookie_name.clone();
        options.cookie_ttl = self.cookie_ttl_s.map(Duration::from_secs);
        options.cookie_path = self.cookie_path.clone();
        options.mcp_header = self.mcp_header.clone();
        options.session_header = self.session_header.clone();
        options.allowed_cidrs = self.allowed_cidrs.clone();
        options
    }
}

/// The record ConfigMap as read from the cluster.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: Record,
    /// `record.json` exactly as stored, so re-writing the ConfigMap never changes it.
    raw_record: String,
    pub options: Option<SavedOptions>,
}

pub fn record_ref(system_namespace: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: system_namespace.to_owned(),
        name: RECORD_CONFIGMAP.into(),
    }
}

pub async fn read(client: &Client, system_namespace: &str) -> Result<Option<Stored>> {
    let Some(live) = objects::get(client, &record_ref(system_namespace)).await? else {
        return Ok(None);
    };
    let raw_record = live["data"][RECORD_KEY]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let record: Record = serde_json::from_str(&raw_record).map_err(|e| {
        super::InstallError::Cluster(format!(
            "ConfigMap {system_namespace}/{RECORD_CONFIGMAP} is not a kasi record ({e}); it was changed by hand"
        ))
    })?;
    let options = live["data"][OPTIONS_KEY]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok());
    Ok(Some(Stored {
        record,
        raw_record,
        options,
    }))
}

/// Makes sure the cluster holds a record covering `captured`: written whole when there is none,
/// otherwise only objects the stored record lacks are added (its entries are never replaced).
/// Returns the record now stored.
pub async fn ensure(
    client: &Client,
    system_namespace: &str,
    captured: Vec<RecordedObject>,
    options: &SavedOptions,
) -> Result<Record> {
    let stored = read(client, system_namespace).await?;
    let (record, raw) = match stored {
        None => {
            let record = Record {
                version: 1,
                objects: captured,
            };
            let raw = serde_json::to_string_pretty(&record).map_err(anyhow::Error::from)?;
            (record, raw)
        }
        Some(mut stored) => {
            let unknown: Vec<RecordedObject> = captured
                .into_iter()
                .filter(|c| !stored.record.objects.iter().any(|o| o.target == c.target))
                .collect();
            if !unknown.is_empty() {
                stored.record.objects.extend(unknown);
                stored.raw_record =
                    serde_json::to_string_pretty(&stored.record).map_err(anyhow::Error::from)?;
            }
            (stored.record, stored.raw_record)
        }
    };
    write(client, system_namespace, &raw, options).await?;
    Ok(record)
}

/// Updates the saved options alone (an apply that found nothing new to record).
pub async fn save_options(
    client: &Client,
    system_namespace: &str,
    options: &SavedOptions,
) -> Result<()> {
    if let Some(stored) = read(client, system_namespace).await? {
        if stored.options.as_ref() != Some(options) {
            write(client, system_namespace, &stored.raw_record, options).await?;
        }
    }
    Ok(())
}

async fn write(
    client: &Client,
    system_namespace: &str,
    raw_record: &str,
    options: &SavedOptions,
) -> Result<()> {
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": RECORD_CONFIGMAP,
            "namespace": system_namespace,
            "labels": {"app.kubernetes.io/managed-by": "kasi"},
            "annotations": {"kasi.dev/purpose": "what `kasi revert` restores; delete only after reverting"},
        },
        "data": {
            RECORD_KEY: raw_record,
            OPTIONS_KEY: serde_json::to_string(options).map_err(anyhow::Error::from)?,
        },
    });
    objects::apply(client, &object, ApplyMode::default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_previous_values_owners_and_missing_maps() {
        let rendered = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "activator", "namespace": "kn"},
            "spec": {"template": {"metadata": {
                "labels": {"sidecar.istio.io/inject": "true"},
                "annotations": {"a": "1"}}}}});
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "activator", "namespace": "kn", "managedFields": [
                {"manager": "helm", "fieldsV1": {"f:spec": {"f:template": {"f:metadata": {
                    "f:labels": {"f:sidecar.istio.io/inject": {}}}}}}}]},
            "spec": {"template": {"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}}}});
        let captured = capture(&rendered, Some(&live));
        assert!(captured.existed);
        assert_eq!(captured.target.name, "activator");
        let (annotation, label): (Vec<_>, Vec<_>) = captured
            .fields
            .iter()
            .partition(|f| f.path.contains(&"annotations".to_string()));
        assert_eq!(label[0].value, Some(json!("false")));
        assert_eq!(label[0].managers, ["helm"]);
        assert_eq!(annotation[0].value, None);
        assert_eq!(annotation[0].absent_from, Some(3));
        assert!(!capture(&rendered, None).existed);
    }

    #[test]
    fn saved_options_round_trip() {
        let mut options = RenderOptions::new(FilterSource::ConfigMap { wasm: vec![1] });
        options.cookie_ttl = Some(Duration::from_secs(60));
        options.allowed_cidrs = Some(vec!["10.1.0.0/16".into()]);
        let saved = SavedOptions::of(&options);
        let back = SavedOptions::of(&saved.to_render("knative-serving", &[1]));
        assert_eq!(saved, back);
        let text = serde_json::to_string(&saved).unwrap();
        assert_eq!(serde_json::from_str::<SavedOptions>(&text).unwrap(), saved);
    }
}
