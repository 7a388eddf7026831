//! `kasi revert`: undoes an install from the record in the cluster. For objects that existed,
//! kasi first gives up every field it owns (an apply that sets nothing), then puts back each
//! recorded value, written under the manager that owned it before; maps kasi's fields created
//! are removed again. Objects kasi created are deleted, the record last.

use super::diff::{merge_patch, set_at, value_at};
use super::objects::{self, ApplyMode, ObjectRef};
use super::prereqs;
use super::record::{self, RecordedObject};
use super::render::{render, FilterSource, RenderOptions};
use super::{InstallError, Result};
use kube::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;

/// The manager restored values are written under when nobody owned them before.
pub const RESTORE_MANAGER: &str = "kasi-revert";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertOutcome {
    NothingInstalled,
    Declined,
    Reverted { restored: usize, deleted: usize },
}

/// The whole `kasi revert`; `confirm` as for apply.
pub async fn revert(
    client: &Client,
    system_namespace: &str,
    confirm: &mut dyn FnMut(&str) -> Result<bool>,
    out: &mut dyn Write,
) -> Result<RevertOutcome> {
    let ns = system_namespace;
    let Some(stored) = record::read(client, ns).await? else {
        let leftovers = present(client, &kasi_owned_objects(ns)).await?;
        if leftovers.is_empty() {
            say(out, "nothing to revert: kasi is not installed (no ConfigMap kasi-revert, none of kasi's objects)");
            return Ok(RevertOutcome::NothingInstalled);
        }
        let names: Vec<String> = leftovers.iter().map(ToString::to_string).collect();
        return Err(InstallError::Cluster(format!(
            "no revert record (ConfigMap {ns}/{}) but kasi's objects exist: {}; they were not installed by `kasi apply` (delete them with kubectl)",
            record::RECORD_CONFIGMAP,
            names.join(", ")
        )));
    };
    let pieces: Vec<_> = stored
        .record
        .objects
        .iter()
        .map(|o| {
            let mut p = o.target.skeleton();
            p["kind"] = Value::String(o.target.kind.clone());
            super::render::Piece {
                id: "recorded",
                title: "",
                object: p,
            }
        })
        .collect();
    let missing = prereqs::missing_rbac(client, &pieces, &prereqs::REVERT_VERBS).await?;
    if !missing.is_empty() {
        return Err(InstallError::Cluster(format!(
            "prerequisites missing: {}; nothing was changed",
            missing.join(", ")
        )));
    }

    let (restore, delete) = targets(&stored.record, ns);
    say(out, &format!("kasi revert in {ns}:"));
    for object in &restore {
        say(out, &format!("  restore   {}", object.target));
    }
    for target in delete.iter().rev() {
        say(out, &format!("  delete    {target}"));
    }
    say(
        out,
        &format!("  delete    {}  (the record, last)", record::record_ref(ns)),
    );
    let preview = super::dry_run::revert_preview(client, ns, &mut |_, _| {}).await?;
    let _ = write!(out, "{}", preview.to_text(false));
    if !confirm("Revert these objects?")? {
        say(out, "nothing was changed");
        return Ok(RevertOutcome::Declined);
    }

    // The reverse of apply's order: the ConfigMaps first (an activator reads
    // `mesh-compatibility-mode` when it starts, so the pods the rollout creates start with the
    // restored value), then the activator Deployment, waiting for its rollout — the new pods lack
    // the module label, so the Istio pieces select none of them — and only then are the Istio
    // pieces deleted: no running activator ever loses a config it is using.
    let (deployments, others): (Vec<&RecordedObject>, Vec<&RecordedObject>) = restore
        .iter()
        .rev()
        .partition(|o| o.target.kind == "Deployment");
    let mut restored = 0;
    for object in others.iter().chain(deployments.iter()) {
        restore_object(client, object).await?;
        restored += 1;
        say(out, &format!("restored {}", object.target));
    }
    if deployments
        .iter()
        .any(|o| o.target.name == super::rollout::ACTIVATOR)
    {
        super::rollout::wait(client, ns, out).await?;
    }
    let mut deleted = 0;
    for target in delete.iter().rev() {
        if objects::delete(client, target).await? {
            deleted += 1;
            say(out, &format!("deleted {target}"));
        }
    }
    objects::delete(client, &record::record_ref(ns)).await?;
    say(out, &format!("deleted {}", record::record_ref(ns)));
    Ok(RevertOutcome::Reverted { restored, deleted })
}

/// Gives up kasi's fields, then writes back what the record holds.
async fn restore_object(client: &Client, object: &RecordedObject) -> Result<()> {
    let target = &object.target;
    // An apply of nothing: the server drops every field only kasi owned.
    objects::apply(client, &target.skeleton(), ApplyMode::default())
        .await
        .map_err(|e| {
            InstallError::Cluster(format!(
                "releasing kasi's fields of {target}: {}",
                objects::describe(&e)
            ))
        })?;
    let Some(mut current) = objects::get(client, target).await? else {
        return Ok(());
    };
    // Writes grouped by the manager that owned each field before, so ownership goes back to it.
    let mut by_manager: BTreeMap<String, Vec<&record::RecordedField>> = BTreeMap::new();
    for field in &object.fields {
        let manager = field
            .managers
            .iter()
            .find(|m| m.as_str() != super::FIELD_MANAGER)
            .cloned()
            .unwrap_or_else(|| RESTORE_MANAGER.to_owned());
        by_manager.entry(manager).or_default().push(field);
    }
    for (manager, fields) in by_manager {
        let wanted = restored(&current, &fields);
        let Some(patch) = merge_patch(&current, &wanted) else {
            continue;
        };
        objects::merge_patch(client, target, &patch, &manager).await?;
        current = wanted;
    }
    Ok(())
}

/// What revert restores (objects that existed, in record order) and deletes (objects kasi
/// created, plus kasi's objects a later apply created that the record does not name), in the
/// order apply made them.
pub fn targets<'a>(
    record: &'a record::Record,
    ns: &str,
) -> (Vec<&'a RecordedObject>, Vec<ObjectRef>) {
    let restore: Vec<&RecordedObject> = record.objects.iter().filter(|o| o.existed).collect();
    let mut delete: Vec<ObjectRef> = record
        .objects
        .iter()
        .filter(|o| !o.existed)
        .map(|o| o.target.clone())
        .collect();
    // Pieces a later apply created that the record does not name (e.g. another --filter-source).
    for target in kasi_owned_objects(ns) {
        if !record.objects.iter().any(|o| o.target.same_object(&target)) {
            delete.push(target);
        }
    }
    (restore, delete)
}

/// `current` with every recorded field put back (removed where it was absent), and the maps that
/// only existed for kasi's fields removed again once empty.
pub fn restored(current: &Value, fields: &[&record::RecordedField]) -> Value {
    let mut wanted = current.clone();
    for field in fields {
        set_at(&mut wanted, &field.path, field.value.clone());
        if let (None, Some(from)) = (&field.value, field.absent_from) {
            for depth in (from + 1..field.path.len()).rev() {
                let prefix = &field.path[..depth];
                if value_at(&wanted, prefix)
                    .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
                {
                    set_at(&mut wanted, prefix, None);
                }
            }
        }
    }
    wanted
}

/// The objects only kasi creates (every bundle variant), in render order.
pub fn kasi_owned_objects(ns: &str) -> Vec<ObjectRef> {
    let mut options = RenderOptions::new(FilterSource::ConfigMap { wasm: Vec::new() });
    options.system_namespace = ns.to_owned();
    render(&options)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.object["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kasi")
        .map(|p| ObjectRef::of(&p.object))
        .collect()
}

async fn present(client: &Client, targets: &[ObjectRef]) -> Result<Vec<ObjectRef>> {
    let mut found = Vec::new();
    for target in targets {
        if objects::get(client, target).await?.is_some() {
            found.push(target.clone());
        }
    }
    Ok(found)
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
}
