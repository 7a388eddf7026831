//! The Install view's `a` and `r`: the same apply and revert as the CLI, with their progress
//! lines turned into events instead of printed; and the dry runs behind its "would" column and
//! `d`, sent as preview events.

use super::event::Event;
use super::run::{InstallTask, Installer};
use crate::cluster::client::{connect, ClusterTarget};
use crate::install::apply::{self, ApplyOptions, ApplyOutcome};
use crate::install::dry_run;
use crate::install::preview::PreviewKind;
use crate::install::render::{render, Piece, RenderOptions};
use crate::install::revert::{self, RevertOutcome};
use crate::install::InstallError;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Lines written by apply/revert, sent as progress events; `[3/9] …` lines also move the gauge.
struct EventWriter {
    tx: mpsc::Sender<Event>,
    pending: Vec<u8>,
    done: usize,
    total: usize,
    /// The activators' rollout counts as one more step, done when it has rolled out.
    rolling: bool,
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[..end])
                .trim_end()
                .to_owned();
            self.pending.drain(..=end);
            if let Some((done, total)) = progress(&line) {
                (self.done, self.total) = (done, total);
            } else if line.starts_with(ROLLOUT_PREFIX) {
                if !self.rolling {
                    self.rolling = true;
                    self.total += 1;
                }
                if line.ends_with(ROLLED_OUT) {
                    self.done = self.total;
                }
            }
            if !line.is_empty() {
                // The UI drains its channel continuously; a full channel only drops a log line.
                let _ = self.tx.try_send(Event::InstallProgress {
                    done: self.done,
                    total: self.total,
                    what: line,
                });
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How `install::rollout` reports (its lines are the rollout's progress).
const ROLLOUT_PREFIX: &str = "rollout: ";
const ROLLED_OUT: &str = "rolled out";

/// `[3/9] applied …` → (3, 9).
fn progress(line: &str) -> Option<(usize, usize)> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    let (done, total) = inner.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// The dry runs of apply (rendered as the apply would: detected CIDRs, the cluster's keys) and
/// of revert, each sent as an event as soon as it is made; objects done move the progress.
async fn preview(
    client: &kube::Client,
    render: &RenderOptions,
    tx: &mpsc::Sender<Event>,
) -> Result<String, String> {
    let mut options = apply_options(render);
    let progress = |done, total| {
        let _ = tx.try_send(Event::PreviewProgress { done, total });
    };
    let apply_result = async {
        let skeleton = render_pieces(&options.render)?;
        apply::resolve(client, &mut options, &skeleton, &mut std::io::sink()).await?;
        let pieces = render_pieces(&options.render)?;
        dry_run::apply_preview(client, &pieces, false, &mut { progress }).await
    }
    .await
    .map_err(|e| e.to_string());
    let _ = tx
        .send(Event::Preview {
            kind: PreviewKind::Apply,
            result: apply_result,
        })
        .await;
    let revert_result =
        dry_run::revert_preview(client, &render.system_namespace, &mut { progress })
            .await
            .map_err(|e| e.to_string());
    let _ = tx
        .send(Event::Preview {
            kind: PreviewKind::Revert,
            result: revert_result,
        })
        .await;
    Ok("previewed".into())
}

fn render_pieces(options: &RenderOptions) -> crate::install::Result<Vec<Piece>> {
    render(options).map_err(|e| InstallError::BadInput(format!("{e:#}")))
}

/// The options the UI's apply runs with: the CLI's defaults.
fn apply_options(render: &RenderOptions) -> ApplyOptions {
    ApplyOptions {
        render: render.clone(),
        detect_cidrs: true,
        dry_run: false,
        show_diff: false,
        force_conflicts: false,
        force: false,
        rotate_key: false,
    }
}

pub fn installer(target: ClusterTarget, render: RenderOptions) -> Installer {
    Arc::new(move |task: InstallTask, tx: mpsc::Sender<Event>| {
        let (target, render) = (target.clone(), render.clone());
        Box::pin(async move {
            let client = connect(&target).await.map_err(|e| format!("{e:#}"))?;
            if task == InstallTask::Preview {
                return preview(&client, &render, &tx).await;
            }
            let mut out = EventWriter {
                tx,
                pending: Vec::new(),
                done: 0,
                total: 0,
                rolling: false,
            };
            // The UI asked y/n already.
            let mut yes = |_: &str| Ok(true);
            if task == InstallTask::Apply {
                let options = apply_options(&render);
                match apply::apply(&client, options, &mut yes, &mut out)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    ApplyOutcome::Applied { changed } => Ok(format!("applied {changed} objects")),
                    ApplyOutcome::UpToDate => Ok("nothing to change: already installed".into()),
                    other => Ok(format!("{other:?}")),
                }
            } else {
                match revert::revert(&client, &render.system_namespace, &mut yes, &mut out)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    RevertOutcome::Reverted { restored, deleted } => {
                        Ok(format!("reverted: restored {restored}, deleted {deleted}"))
                    }
                    RevertOutcome::NothingInstalled => Ok("nothing to revert".into()),
                    RevertOutcome::Declined => Ok("revert declined".into()),
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_move_the_gauge() {
        assert_eq!(
            progress("[3/9] applied WasmPlugin knative-serving/kasi-affinity"),
            Some((3, 9))
        );
        assert_eq!(progress("kasi bundle against knative-serving:"), None);
        let (tx, mut rx) = mpsc::channel(8);
        let mut w = EventWriter {
            tx,
            pending: Vec::new(),
            done: 0,
            total: 0,
            rolling: false,
        };
        write!(w, "[1/2] applied a\n[2/2] app").unwrap();
        writeln!(w, "lied b").unwrap();
        let mut seen = Vec::new();
        while let Ok(Event::InstallProgress { done, total, what }) = rx.try_recv() {
            seen.push((done, total, what));
        }
        assert_eq!(
            seen,
            vec![
                (1, 2, "[1/2] applied a".into()),
                (2, 2, "[2/2] applied b".into())
            ]
        );
        // The rollout is one more step, finished only once it has rolled out.
        writeln!(w, "rollout: 1 of 2 new activator pods updated").unwrap();
        writeln!(
            w,
            "rollout: deployment knative-serving/activator rolled out"
        )
        .unwrap();
        let mut steps = Vec::new();
        while let Ok(Event::InstallProgress { done, total, .. }) = rx.try_recv() {
            steps.push((done, total));
        }
        assert_eq!(steps, vec![(2, 3), (3, 3)]);
    }
}
