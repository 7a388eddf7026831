//! `kasi apply`: prerequisites → options (detected CIDRs) → per-object diff → server dry run (which
//! also finds field-manager conflicts, so a conflict stops everything before the first change) →
//! the user's yes → record of previous values → server-side apply in render order, with progress.

use super::detect;
use super::diff::{diff, Change};
use super::dry_run;
use super::findings;
use super::objects::{self, ApplyMode, FieldConflict, ObjectRef};
use super::prereqs;
use super::record::{self, SavedOptions};
use super::render::{render, Piece, RenderOptions};
use super::rollout;
use super::session_keys::{self, KeyRing};
use super::{InstallError, Result};
use kube::Client;
use serde_json::Value;
use std::io::Write;
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// What to render; `allowed_cidrs: None` means "detect from the cluster" (see `detect_cidrs`).
    /// `session_keys` is replaced by the cluster's keys (see [`session_keys`]): an apply never
    /// changes the key live sessions were signed with unless `rotate_key` asks.
    pub render: RenderOptions,
    /// Put a new session key first; the old ones keep verifying for one cookie TTL.
    pub rotate_key: bool,
    /// Detect `allowed_cidrs` from the pod IPs when `render.allowed_cidrs` is `None`.
    pub detect_cidrs: bool,
    /// Send every object with `dryRun=All`; change nothing.
    pub dry_run: bool,
    /// With `dry_run`: print each object's unified YAML diff under its line (`--diff`).
    pub show_diff: bool,
    /// Take fields other managers own (`--force-conflicts`).
    pub force_conflicts: bool,
    /// Apply even while an `error` finding holds (`--force`).
    pub force: bool,
}

/// One piece of the bundle against the live cluster.
#[derive(Debug, Clone)]
pub struct PlannedPiece {
    pub piece: Piece,
    pub target: ObjectRef,
    pub live: Option<Value>,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub pieces: Vec<PlannedPiece>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| p.change != Change::Unchanged)
            .count()
    }

    /// The diff as the user reads it: one line per object, one indented line per changed field.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self
            .pieces
            .iter()
            .map(|p| p.target.to_string().len())
            .max()
            .unwrap_or(0);
        for planned in &self.pieces {
            out.push_str(&format!(
                "  {:<9} {:<width$}  {}\n",
                planned.change.word(),
                planned.target.to_string(),
                planned.piece.title
            ));
            if let Change::Update(fields) = &planned.change {
                for field in fields {
                    out.push_str(&format!("              {}\n", field.describe()));
                }
            }
        }
        out
    }
}

/// How an apply ended (errors aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Everything already as rendered; nothing was sent.
    UpToDate,
    /// `--dry-run`: the server accepted every change; nothing changed.
    DryRun {
        changes: usize,
    },
    /// The user said no.
    Declined,
    Applied {
        changed: usize,
    },
}

/// Reads every piece's live object and diffs it.
pub async fn plan(client: &Client, pieces: Vec<Piece>) -> Result<Plan> {
    let mut planned = Vec::new();
    for piece in pieces {
        let target = ObjectRef::of(&piece.object);
        let live = objects::get(client, &target).await?;
        let change = diff(&piece.object, live.as_ref());
        planned.push(PlannedPiece {
            piece,
            target,
            live,
            change,
        });
    }
    Ok(Plan { pieces: planned })
}

/// The whole `kasi apply`. `confirm` gets the question and answers it (the CLI asks on the
/// terminal; tests answer yes); it is not called for a dry run or when nothing would change.
pub async fn apply(
    client: &Client,
    mut options: ApplyOptions,
    confirm: &mut dyn FnMut(&str) -> Result<bool>,
    out: &mut dyn Write,
) -> Result<ApplyOutcome> {
    let ns = options.render.system_namespace.clone();
    // Rendering first: bad flags are the user's to fix and need no cluster.
    let skeleton = render(&options.render).map_err(|e| InstallError::BadInput(format!("{e:#}")))?;
    let missing = prereqs::missing(client, &ns, &skeleton, &prereqs::APPLY_VERBS).await?;
    if !missing.is_empty() {
        return Err(InstallError::Cluster(format!(
            "prerequisites missing: {}; nothing was changed",
            missing.join(", ")
        )));
    }
    // What in the cluster defeats kasi, before the diff; an error stops a real apply.
    let found = findings::collect(client, &ns).await;
    let _ = write!(out, "{}", found.to_text());
    let errors: Vec<String> = found.errors().map(|f| f.to_line()).collect();
    if !errors.is_empty() && !options.dry_run && !options.force {
        let what = if errors.len() == 1 {
            "this condition holds"
        } else {
            "these conditions hold"
        };
        return Err(InstallError::Cluster(format!(
            "{}\nrefusing to apply while {what} (pass --force to apply anyway); nothing was changed",
            errors.join("\n")
        )));
    }
    let key_change = resolve(client, &mut options, &skeleton, out).await?;
    let pieces = render(&options.render).map_err(|e| InstallError::BadInput(format!("{e:#}")))?;
    let plan = plan(client, pieces).await?;
    say(out, &format!("kasi bundle against {ns}:"));
    say(out, &filter_line(&options.render.filter));
    say(out, &key_change.describe());
    let _ = write!(out, "{}", plan.to_text());

    if plan.changes() == 0 {
        say(
            out,
            "nothing to change: every piece is already as kasi renders it",
        );
        if !options.dry_run {
            record::save_options(client, &ns, &SavedOptions::of(&options.render)).await?;
        }
        return Ok(ApplyOutcome::UpToDate);
    }

    // The server's dry run of every changing piece: validation and conflicts before any change.
    let mode = ApplyMode {
        dry_run: true,
        force: options.force_conflicts,
    };
    let mut conflicts: Vec<FieldConflict> = Vec::new();
    for planned in plan.pieces.iter().filter(|p| p.change != Change::Unchanged) {
        if let Err(error) = objects::apply(client, &planned.piece.object, mode).await {
            match objects::conflicts(&planned.target, &error) {
                Some(found) => conflicts.extend(found),
                None => {
                    return Err(InstallError::Cluster(format!(
                        "{} would be refused: {}; nothing was changed",
                        planned.target,
                        objects::describe(&error)
                    )))
                }
            }
        }
    }
    if !conflicts.is_empty() {
        let list: Vec<String> = conflicts
            .iter()
            .map(|c| format!("{} field {} is owned by {:?}", c.object, c.field, c.manager))
            .collect();
        return Err(InstallError::Cluster(format!(
            "conflicts with other field managers: {}; nothing was changed (pass --force-conflicts to take these fields over)",
            list.join("; ")
        )));
    }
    if options.dry_run {
        let preview = dry_run::apply_preview(
            client,
            &plan
                .pieces
                .iter()
                .map(|p| p.piece.clone())
                .collect::<Vec<_>>(),
            options.force_conflicts,
            &mut |_, _| {},
        )
        .await?;
        let _ = write!(out, "{}", preview.to_text(options.show_diff));
        say(
            out,
            &format!(
                "dry run: the API server accepted all {} changes; nothing was changed",
                plan.changes()
            ),
        );
        return Ok(ApplyOutcome::DryRun {
            changes: plan.changes(),
        });
    }
    if !confirm(&format!("Apply these {} changes?", plan.changes()))? {
        say(out, "nothing was changed");
        return Ok(ApplyOutcome::Declined);
    }

    // Previous values first: if anything below fails, revert still knows what was there.
    let captured = plan
        .pieces
        .iter()
        .map(|p| record::capture(&p.piece.object, p.live.as_ref()))
        .collect();
    record::ensure(client, &ns, captured, &SavedOptions::of(&options.render)).await?;

    let total = plan.pieces.len();
    let mode = ApplyMode {
        dry_run: false,
        force: options.force_conflicts,
    };
    let mut changed = 0;
    for (index, planned) in plan.pieces.iter().enumerate() {
        let applied = objects::apply(client, &planned.piece.object, mode)
            .await
            .map_err(|e| {
                InstallError::Cluster(format!(
                    "[{}/{total}] {} failed: {}; `kasi revert` undoes what was applied",
                    index + 1,
                    planned.target,
                    objects::describe(&e)
                ))
            })?;
        let before = planned.live.as_ref().and_then(objects::resource_version);
        let word = if before.is_some() && before == objects::resource_version(&applied) {
            "unchanged"
        } else {
            changed += 1;
            "applied"
        };
        say(
            out,
            &format!("[{}/{total}] {word} {}", index + 1, planned.target),
        );
    }
    // The activators roll onto the new template (mount, log level, the module label every Istio
    // piece selects); done means every activator serving runs the bundle.
    rollout::wait(client, &ns, out).await?;
    Ok(ApplyOutcome::Applied { changed })
}

/// Fills in what an apply renders with but the flags leave open: `allowed_cidrs` detected from
/// the pods (said on `out`) and the session keys the cluster has (or a new one).
pub async fn resolve(
    client: &Client,
    options: &mut ApplyOptions,
    skeleton: &[Piece],
    out: &mut dyn Write,
) -> Result<session_keys::KeyChange> {
    let ns = options.render.system_namespace.clone();
    if options.detect_cidrs && options.render.allowed_cidrs.is_none() {
        let detected = detect::allowed_cidrs(client, &ns).await?;
        say(out, &detected.describe());
        options.render.allowed_cidrs = detected.as_option();
    }
    let (keys, key_change) = session_keys::next(
        live_keys(client, skeleton).await?,
        options.rotate_key,
        session_keys::retention(options.render.cookie_ttl),
        SystemTime::now(),
    );
    options.render.session_keys = Some(keys);
    Ok(key_change)
}

/// The session keys the live WasmPlugin carries (`None`: no WasmPlugin, or one without keys).
pub async fn live_keys(client: &Client, pieces: &[Piece]) -> Result<Option<KeyRing>> {
    let Some(plugin) = pieces.iter().find(|p| p.id == "wasmplugin") else {
        return Ok(None);
    };
    match objects::get(client, &ObjectRef::of(&plugin.object)).await? {
        Some(live) => KeyRing::from_wasm_plugin(&live).map_err(InstallError::Cluster),
        None => Ok(None),
    }
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

/// Which filter module the WasmPlugin will load, and its sha256, so the user can check it.
fn filter_line(filter: &super::render::FilterSource) -> String {
    match filter {
        super::render::FilterSource::ConfigMap { wasm } => format!(
            "filter: embedded module, {} bytes, sha256 {} (ConfigMap {}, mounted into istio-proxy)",
            wasm.len(),
            super::render::sha256_hex(wasm),
            super::render::FILTER_CONFIGMAP
        ),
        super::render::FilterSource::Url { url, sha256 } => {
            format!("filter: {url}, sha256 {sha256}")
        }
    }
}
