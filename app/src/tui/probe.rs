//! The Stickiness view's probe: the `:probe` command's words, and the probe the runtime keeps
//! going until it is stopped, its progress turned into [`ProbeState`] events.

use super::event::Event;
use super::state::{ProbeKind, ProbeState, ProbeTarget};
use crate::probe::{self, ProbeOptions, ProbeReport};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The UI's probe: 20 users, one request each per second, until stopped.
const SESSIONS: usize = 20;
const PAUSE: Duration = Duration::from_secs(1);

/// `:probe [--mcp] [--resolve HOST:PORT:ADDR]… URL`.
pub fn parse_command(argument: &str) -> Result<ProbeTarget, String> {
    let mut target = ProbeTarget::default();
    let mut words = argument.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "--mcp" => target.kind = ProbeKind::Mcp,
            "--resolve" => match words.next() {
                Some(entry) => target.resolve.push(entry.to_owned()),
                None => return Err("--resolve needs HOST:PORT:ADDR".into()),
            },
            flag if flag.starts_with("--") => {
                return Err(format!("unknown flag {flag}: try :probe [--mcp] URL"))
            }
            url if target.url.is_empty() => target.url = url.to_owned(),
            extra => return Err(format!("one URL only ({extra:?} is a second)")),
        }
    }
    if target.url.is_empty() {
        return Err("no URL: try :probe URL or :probe --mcp URL".into());
    }
    Ok(target)
}

/// What the view shows of a report.
pub fn probe_state(target: &ProbeTarget, report: &ProbeReport, running: bool) -> ProbeState {
    ProbeState {
        target: target.clone(),
        running,
        sessions: report.sessions.len(),
        requests: report.requests,
        failures: report.failures,
        hit_rate: report.hit_rate,
        hits: report.sessions.iter().map(|s| s.hits).sum(),
        counted: report.sessions.iter().map(|s| s.counted).sum(),
        not_found: report.not_found(),
        reinitializations: report.reinitializations(),
        pins: report
            .sessions
            .iter()
            .filter_map(|s| Some((s.cookie_address.clone()?, s.hit_rate)))
            .collect(),
    }
}

/// How long a stopped probe's users get to finish their request in flight (and an MCP client
/// its `DELETE`) before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The probe the runtime keeps going, and the switch that stops it.
pub struct RunningProbe {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl RunningProbe {
    pub fn start(target: ProbeTarget, tx: mpsc::Sender<Event>) -> RunningProbe {
        let (stop, stopped) = watch::channel(false);
        RunningProbe {
            task: tokio::spawn(run_probe(target, tx, stopped)),
            stop,
        }
    }

    /// Tells the users to stop (MCP clients end their sessions), and aborts whatever is still
    /// running after [`STOP_GRACE`]. The returned task ends when the probe has.
    pub fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        let mut task = self.task;
        tokio::spawn(async move {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        })
    }
}

/// Runs until stopped (or until the UI is gone); the last report stays, marked stopped.
async fn run_probe(target: ProbeTarget, tx: mpsc::Sender<Event>, stop: watch::Receiver<bool>) {
    let options = ProbeOptions {
        url: target.url.clone(),
        sessions: SESSIONS,
        requests_per_session: usize::MAX / 2,
        pause: PAUSE,
        mcp: target.kind == ProbeKind::Mcp,
        resolve: target.resolve.clone(),
        stop: Some(stop),
        ..ProbeOptions::default()
    };
    let (progress_tx, mut progress_rx) = mpsc::channel::<ProbeReport>(16);
    // Forwarding runs in this task, not a task of its own: aborting the probe stops both, so no
    // report still queued can mark a stopped probe running again.
    let forward = async {
        let mut last = None;
        while let Some(report) = progress_rx.recv().await {
            if tx
                .send(Event::Probe(probe_state(&target, &report, true)))
                .await
                .is_err()
            {
                break;
            }
            last = Some(report);
        }
        last
    };
    let (result, last) = tokio::join!(probe::run(&options, Some(progress_tx)), forward);
    let last = match result {
        Ok(report) => Some(report),
        Err(e) => {
            let _ = tx.send(Event::Message(format!("probe: {e:#}"))).await;
            last
        }
    };
    let state = match last {
        Some(report) => probe_state(&target, &report, false),
        None => ProbeState {
            target,
            ..ProbeState::default()
        },
    };
    let _ = tx.send(Event::Probe(state)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_commands_name_the_kind_the_url_and_resolves() {
        assert_eq!(
            parse_command("http://127.0.0.1:8080/"),
            Ok(ProbeTarget {
                kind: ProbeKind::Cookie,
                url: "http://127.0.0.1:8080/".into(),
                resolve: vec![],
            })
        );
        assert_eq!(
            parse_command(
                "--mcp --resolve mcp.example.com:80:127.0.0.1 http://mcp.example.com/mcp"
            ),
            Ok(ProbeTarget {
                kind: ProbeKind::Mcp,
                url: "http://mcp.example.com/mcp".into(),
                resolve: vec!["mcp.example.com:80:127.0.0.1".into()],
            })
        );
        assert!(parse_command("--mcp").unwrap_err().contains("no URL"));
        assert!(parse_command("--resolve")
            .unwrap_err()
            .contains("HOST:PORT:ADDR"));
        assert!(parse_command("--h2 http://x/")
            .unwrap_err()
            .contains("unknown flag"));
        assert!(parse_command("http://a/ http://b/")
            .unwrap_err()
            .contains("one URL"));
    }
}
