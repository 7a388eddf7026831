//! Asking the API server what apply and revert would do: each object's live state against the
//! server's answer to the same write sent with `dryRun=All` (same field manager, same force
//! flag), made into a [`Preview`]. Nothing is changed.

use super::objects::{self, ApplyMode, ObjectRef};
use super::preview::{self, ObjectPreview, Preview, PreviewKind};
use super::record;
use super::render::Piece;
use super::revert;
use super::Result;
use kube::Client;

/// What `kasi apply` would do with `pieces` (rendered with the options the apply resolves).
/// `progress` hears (done, total) after each object.
pub async fn apply_preview(
    client: &Client,
    pieces: &[Piece],
    force_conflicts: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Preview> {
    let mode = ApplyMode {
        dry_run: true,
        force: force_conflicts,
    };
    let mut found = Preview {
        kind: PreviewKind::Apply,
        ..Preview::default()
    };
    for (index, piece) in pieces.iter().enumerate() {
        let target = ObjectRef::of(&piece.object);
        let live = objects::get(client, &target).await?;
        let object = match objects::apply(client, &piece.object, mode).await {
            Ok(after) => {
                if found.rollout.is_none() {
                    found.rollout = preview::rollout(live.as_ref(), Some(&after));
                }
                ObjectPreview::of(piece.id, target, live.as_ref(), Some(&after))
            }
            Err(error) => ObjectPreview::refused(piece.id, target, objects::describe(&error)),
        };
        found.objects.push(object);
        progress(index + 1, pieces.len());
    }
    Ok(found)
}

/// What `kasi revert` would do: for each object that existed, the server's dry run of giving up
/// kasi's fields with the recorded values put back on top (what revert writes next); for each
/// object kasi created, its deletion; the record last.
pub async fn revert_preview(
    client: &Client,
    ns: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Preview> {
    let mut found = Preview {
        kind: PreviewKind::Revert,
        ..Preview::default()
    };
    let Some(stored) = record::read(client, ns).await? else {
        found.note = Some(format!(
            "nothing to revert: no ConfigMap {ns}/{} (kasi was not applied here)",
            record::RECORD_CONFIGMAP
        ));
        return Ok(found);
    };
    let (restore, delete) = revert::targets(&stored.record, ns);
    let total = restore.len() + delete.len() + 1;
    let mut done = 0;
    let release = ApplyMode {
        dry_run: true,
        force: false,
    };
    for object in restore {
        let target = object.target.clone();
        let Some(live) = objects::get(client, &target).await? else {
            continue;
        };
        let piece = piece_of(&target);
        let preview = match objects::apply(client, &target.skeleton(), release).await {
            Ok(released) => {
                let fields: Vec<&record::RecordedField> = object.fields.iter().collect();
                let after = revert::restored(&released, &fields);
                if found.rollout.is_none() {
                    found.rollout = preview::rollout(Some(&live), Some(&after));
                }
                ObjectPreview::of(&piece, target, Some(&live), Some(&after))
            }
            Err(error) => ObjectPreview::refused(&piece, target, objects::describe(&error)),
        };
        found.objects.push(preview);
        done += 1;
        progress(done, total);
    }
    for target in delete
        .iter()
        .rev()
        .chain(std::iter::once(&record::record_ref(ns)))
    {
        if let Some(live) = objects::get(client, target).await? {
            found.objects.push(ObjectPreview::of(
                &piece_of(target),
                target.clone(),
                Some(&live),
                None,
            ));
        }
        done += 1;
        progress(done, total);
    }
    Ok(found)
}

/// The bundle piece an object is, by kind and name (empty for the record).
fn piece_of(target: &ObjectRef) -> String {
    let mut options =
        super::render::RenderOptions::new(super::render::FilterSource::ConfigMap { wasm: vec![] });
    options.system_namespace = target.namespace.clone();
    super::render::render(&options)
        .unwrap_or_default()
        .iter()
        .find(|p| ObjectRef::of(&p.object).same_object(target))
        .map_or(String::new(), |p| p.id.to_owned())
}
