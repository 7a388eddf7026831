//! `L` in Sessions: a time-boxed raise of activator sidecars' `wasm` logger to info (decision
//! lines are info; istio-proxy starts Envoy at `--log-level warning`), through each sidecar's
//! admin API. Each raise is a task that reports its steps as events and restores the level it
//! read first when its time is up, or as soon as the UI exits ([`Raises::restore_all`], bounded).

use super::event::Event;
use super::state::WasmLogChange;
use crate::envoy::admin::{logs_info, Sidecar, WASM_LOGGER};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How one raise ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to restore: the logger wrote info lines already, reading or raising it failed,
    /// or the UI was leaving before it was raised.
    Untouched,
    /// Back at `level`; `at_exit` when the UI's exit cut the raise short.
    Restored { level: String, at_exit: bool },
    /// Still at info: restoring `level` failed with `error`.
    NotRestored { level: String, error: String },
}

/// A raise [`Raises::restore_all`] waited for.
#[derive(Debug)]
pub struct Ended {
    pub namespace: String,
    pub pod: String,
    /// `Err`: it did not end within the time given (or its task failed).
    pub outcome: Result<Outcome, String>,
}

/// The raises the UI started. Dropping it without [`Raises::restore_all`] also ends them (their
/// tasks see the exit signal's sender gone), but nobody waits for the restores then.
pub struct Raises {
    exiting: watch::Sender<bool>,
    tasks: Vec<(String, String, JoinHandle<Outcome>)>,
}

impl Default for Raises {
    fn default() -> Self {
        Raises {
            exiting: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

impl Raises {
    /// Raises `sidecar`'s `wasm` logger for `hold`, reporting on `tx`.
    pub fn start(&mut self, sidecar: Sidecar, hold: Duration, tx: mpsc::Sender<Event>) {
        self.tasks.retain(|(_, _, task)| !task.is_finished());
        let (namespace, pod) = (sidecar.namespace.clone(), sidecar.pod.clone());
        let task = tokio::spawn(raise(sidecar, hold, tx, self.exiting.subscribe()));
        self.tasks.push((namespace, pod, task));
    }

    /// Sidecars whose raise has not ended yet (in flight or held).
    pub fn live(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|(_, _, task)| !task.is_finished())
            .map(|(_, pod, _)| pod.as_str())
            .collect()
    }

    /// Ends every raise now: each restores the level it read first, all in parallel, and this
    /// waits for them at most `timeout` in all. Raises that ended earlier are in the answer too
    /// (restored when their time was up, `at_exit` false).
    pub async fn restore_all(self, timeout: Duration) -> Vec<Ended> {
        let _ = self.exiting.send(true);
        let deadline = tokio::time::Instant::now() + timeout;
        let waits = self
            .tasks
            .into_iter()
            .map(|(namespace, pod, task)| async move {
                let outcome = match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(e)) => Err(format!("its task failed: {e}")),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                Ended {
                    namespace,
                    pod,
                    outcome,
                }
            });
        futures::future::join_all(waits).await
    }
}

/// Raises one sidecar's `wasm` logger to info for `hold`, then restores the level it had;
/// ends early, restoring, when `exiting` turns true (or its sender is dropped). Reads the level
/// first (`POST /logging`) and leaves a logger that writes info lines already alone.
pub async fn raise(
    sidecar: Sidecar,
    hold: Duration,
    tx: mpsc::Sender<Event>,
    mut exiting: watch::Receiver<bool>,
) -> Outcome {
    let event = |change| Event::WasmLog {
        sidecar: sidecar.pod.clone(),
        change,
    };
    let levels = sidecar.log_levels().await;
    let previous = match levels.as_ref().map(|levels| levels.get(WASM_LOGGER)) {
        Ok(Some(level)) => level.clone(),
        Ok(None) => {
            let error = "its admin API lists no wasm logger".to_owned();
            report(&tx, &mut exiting, event(WasmLogChange::Failed(error))).await;
            return Outcome::Untouched;
        }
        Err(e) => {
            let error = format!("reading its level: {e:#}");
            report(&tx, &mut exiting, event(WasmLogChange::Failed(error))).await;
            return Outcome::Untouched;
        }
    };
    if logs_info(&previous) == Some(true) {
        let unchanged = WasmLogChange::Unchanged { level: previous };
        report(&tx, &mut exiting, event(unchanged)).await;
        return Outcome::Untouched;
    }
    if *exiting.borrow() {
        return Outcome::Untouched;
    }
    if let Err(e) = sidecar.set_log_level(WASM_LOGGER, "info").await {
        let error = format!("raising to info: {e:#}");
        report(&tx, &mut exiting, event(WasmLogChange::Failed(error))).await;
        return Outcome::Untouched;
    }
    let raised = WasmLogChange::Raised {
        previous: previous.clone(),
        for_seconds: hold.as_secs_f64(),
    };
    report(&tx, &mut exiting, event(raised)).await;
    let at_exit = tokio::select! {
        _ = tokio::time::sleep(hold) => false,
        _ = exiting.wait_for(|exit| *exit) => true,
    };
    match sidecar.set_log_level(WASM_LOGGER, &previous).await {
        Ok(()) => {
            let restored = WasmLogChange::Restored {
                level: previous.clone(),
            };
            report(&tx, &mut exiting, event(restored)).await;
            Outcome::Restored {
                level: previous,
                at_exit,
            }
        }
        Err(e) => {
            let error = format!("{e:#}");
            let failed = WasmLogChange::Failed(format!("restoring {previous}: {error}"));
            report(&tx, &mut exiting, event(failed)).await;
            Outcome::NotRestored {
                level: previous,
                error,
            }
        }
    }
}

/// Sends a report to the UI; once the UI is leaving nobody reads the channel, so never wait on
/// it then.
async fn report(tx: &mpsc::Sender<Event>, exiting: &mut watch::Receiver<bool>, event: Event) {
    if *exiting.borrow() {
        let _ = tx.try_send(event);
        return;
    }
    tokio::select! {
        _ = tx.send(event) => {}
        _ = exiting.wait_for(|exit| *exit) => {}
    }
}

/// What the UI prints on the terminal after it left the alternate screen, one line per raise
/// its exit restored or could not: the user must know a sidecar may still log at info.
pub fn exit_lines(ended: &[Ended]) -> Vec<String> {
    let mut lines = Vec::new();
    for end in ended {
        let (namespace, pod) = (&end.namespace, &end.pod);
        let fix = |level: &str| {
            format!(
                "; to restore it: istioctl proxy-config log {pod}.{namespace} --level wasm:{level}"
            )
        };
        match &end.outcome {
            Ok(Outcome::Restored {
                level,
                at_exit: true,
            }) => lines.push(format!("kasi: wasm logger of {pod} back at {level}")),
            Ok(Outcome::NotRestored { level, error }) => lines.push(format!(
                "kasi: could not put the wasm logger of {pod} back at {level} ({error}){}",
                fix(level)
            )),
            Err(error) => lines.push(format!(
                "kasi: the wasm logger of {pod} may still be at info ({error}){}",
                fix("warning")
            )),
            Ok(_) => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_lines_name_what_was_restored_and_what_was_not() {
        let ended = |pod: &str, outcome| Ended {
            namespace: "knative-serving".into(),
            pod: pod.into(),
            outcome,
        };
        let lines = exit_lines(&[
            ended(
                "a",
                Ok(Outcome::Restored {
                    level: "warning".into(),
                    at_exit: true,
                }),
            ),
            // Restored earlier, when its time was up: nothing to say at exit.
            ended(
                "b",
                Ok(Outcome::Restored {
                    level: "warning".into(),
                    at_exit: false,
                }),
            ),
            ended("c", Ok(Outcome::Untouched)),
            ended(
                "d",
                Ok(Outcome::NotRestored {
                    level: "error".into(),
                    error: "503".into(),
                }),
            ),
            ended("e", Err("no answer within 5s".into())),
        ]);
        assert_eq!(
            lines,
            [
                "kasi: wasm logger of a back at warning",
                "kasi: could not put the wasm logger of d back at error (503); to restore it: istioctl proxy-config log d.knative-serving --level wasm:error",
                "kasi: the wasm logger of e may still be at info (no answer within 5s); to restore it: istioctl proxy-config log e.knative-serving --level wasm:warning",
            ]
        );
    }
}
