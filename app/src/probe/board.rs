//! Where concurrent users post their reports after every request, and where the runner reads the
//! whole probe from, as often as it reports progress (not once per request).

use super::report::{ProbeKind, ProbeReport, SessionReport};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone)]
pub struct Board(Arc<Inner>);

struct Inner {
    url: String,
    kind: ProbeKind,
    sessions: Mutex<Vec<SessionReport>>,
    changed: AtomicBool,
}

/// One user's place on the board.
pub struct Slot {
    board: Board,
    index: usize,
}

impl Board {
    pub fn new(url: String, kind: ProbeKind, sessions: usize) -> Self {
        Self(Arc::new(Inner {
            url,
            kind,
            sessions: Mutex::new(vec![SessionReport::default(); sessions]),
            changed: AtomicBool::new(false),
        }))
    }

    pub fn slot(&self, index: usize) -> Slot {
        Slot {
            board: self.clone(),
            index,
        }
    }

    /// The probe so far, totals and rates computed.
    pub fn report(&self) -> ProbeReport {
        let sessions = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut report = ProbeReport {
            url: self.0.url.clone(),
            kind: self.0.kind,
            sessions,
            ..ProbeReport::default()
        };
        report.recompute();
        report
    }

    /// Whether a user posted since the last call.
    pub fn take_changed(&self) -> bool {
        self.0.changed.swap(false, Ordering::AcqRel)
    }

    pub fn mark_changed(&self) {
        self.0.changed.store(true, Ordering::Release);
    }
}

impl Slot {
    pub fn post(&self, report: &SessionReport) {
        let mut sessions = self
            .board
            .0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions[self.index] = report.clone();
        drop(sessions);
        self.board.mark_changed();
    }
}
