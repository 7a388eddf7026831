//! The probe: virtual users, each with its own HTTP client and cookie jar, measuring stickiness
//! from the client side. A session's pinned pod is the one that served its first request; its hit
//! rate is the share of later requests served by that pod (DESIGN.md). Pods are told apart by
//! `x-kasi-pod` when they send it (the lab's do), else by the address in the session cookie (or
//! the MCP envelope).
//!
//! Users run concurrently, one task each, pausing between their own requests, so each pod serves
//! many sessions at once, as with real users.

mod board;
mod client;
mod cookie;
mod mcp;
pub mod output;
mod report;

pub use report::{ProbeKind, ProbeReport, SessionReport};

use anyhow::bail;
use board::Board;
use client::ClientPlan;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub const DEFAULT_COOKIE: &str = "kasi-session";

/// How often, at most, the report so far goes to `progress`: smooth enough to watch, cheap for
/// thousands of users.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `http://` or `https://`, an IP address or a DNS name.
    pub url: String,
    pub sessions: usize,
    pub requests_per_session: usize,
    pub cookie_name: String,
    /// Each user's pause between its requests, to look like users thinking.
    pub pause: Duration,
    /// MCP clients (Streamable HTTP sessions) instead of cookie jars.
    pub mcp: bool,
    /// `HOST:PORT:ADDR` overrides, as curl's `--resolve`: requests to HOST:PORT connect to ADDR
    /// (the URL's host stays the `Host` header and the TLS name, so an ingress routes by it).
    pub resolve: Vec<String>,
    /// `Name: value` headers added to every request, as curl's `--header`.
    pub headers: Vec<String>,
    /// HTTP/2: prior knowledge on http:// (h2c), ALPN `h2` on https://.
    pub http2: bool,
    /// Accept any certificate (a gateway's self-signed one).
    pub insecure: bool,
    /// Turns true to stop the users early (the UI's `s`/`m`): each ends after its request in
    /// flight — an MCP client with its `DELETE` —, unlike an abort, which leaves MCP sessions
    /// open on the server until they time out.
    pub stop: Option<watch::Receiver<bool>>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            sessions: 20,
            requests_per_session: 10,
            cookie_name: DEFAULT_COOKIE.into(),
            pause: Duration::ZERO,
            mcp: false,
            resolve: Vec::new(),
            headers: Vec::new(),
            http2: false,
            insecure: false,
            stop: None,
        }
    }
}

impl ProbeOptions {
    /// Before a user's request number `request`: its pause (none before the first), cut short
    /// when the probe is told to stop. Whether to send it.
    async fn go_on(&self, request: usize) -> bool {
        let mut stop = self.stop.clone();
        if stop.as_ref().is_some_and(|s| *s.borrow()) {
            return false;
        }
        if request == 0 || self.pause.is_zero() {
            return true;
        }
        match &mut stop {
            None => {
                tokio::time::sleep(self.pause).await;
                true
            }
            // A dropped sender (the UI gone) stops too.
            Some(stop) => {
                let slept = tokio::select! {
                    _ = tokio::time::sleep(self.pause) => true,
                    _ = stop.wait_for(|stopped| *stopped) => false,
                };
                slept && !*stop.borrow()
            }
        }
    }

    pub fn kind(&self) -> ProbeKind {
        if self.mcp {
            ProbeKind::Mcp
        } else {
            ProbeKind::Cookie
        }
    }
}

/// Runs the probe. The report so far goes to `progress` (if given) at most every
/// [`PROGRESS_EVERY`], and the final one at the end; a closed `progress` stops the probe. Bad
/// input (the URL, `--resolve`, `--header`) fails before any request, with a one-line reason.
pub async fn run(
    options: &ProbeOptions,
    progress: Option<mpsc::Sender<ProbeReport>>,
) -> anyhow::Result<ProbeReport> {
    if options.sessions == 0 || options.requests_per_session == 0 {
        bail!("--sessions and --requests must be at least 1");
    }
    let plan = ClientPlan::new(options)?;
    let board = Board::new(options.url.clone(), options.kind(), options.sessions);
    let shared = Arc::new(options.clone());
    // Dropping the set aborts the users: a stopped probe (the TUI aborts its task) leaves none
    // running.
    let mut users = JoinSet::new();
    for index in 0..options.sessions {
        let client = plan.build()?;
        let (url, options, slot) = (plan.url.clone(), Arc::clone(&shared), board.slot(index));
        if options.mcp {
            users.spawn(mcp::user(client, url, options, slot));
        } else {
            users.spawn(cookie::user(client, url, options, slot));
        }
    }
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            joined = users.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            _ = tick.tick(), if progress.is_some() => {
                let Some(progress) = &progress else { continue };
                if board.take_changed() {
                    match progress.try_send(board.report()) {
                        Ok(()) => {}
                        // The reader is behind: it gets a fresher report next tick.
                        Err(mpsc::error::TrySendError::Full(_)) => board.mark_changed(),
                        Err(mpsc::error::TrySendError::Closed(_)) => return Ok(board.report()),
                    }
                }
            }
        }
    }
    let report = board.report();
    if let Some(progress) = progress {
        let _ = progress.send(report.clone()).await;
    }
    Ok(report)
}
