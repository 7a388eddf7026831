//! What the probe found: per virtual user, and in all. The JSON field names are a contract
//! (`kasi probe --json`, the e2e tests): add fields, never rename one.

use serde::Serialize;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One virtual user.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SessionReport {
    pub pinned: Option<String>,
    /// The address the session's cookie (or MCP envelope) pins, decoded, when it has one.
    pub cookie_address: Option<String>,
    pub requests: u64,
    pub hits: u64,
    pub failures: u64,
    pub hit_rate: Option<f64>,
    /// MCP: calls the server answered 404 (it did not know the session), and `initialize`s made.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_found: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub initializations: u64,
    /// The HTTP version of the user's last answer ("HTTP/1.1", "HTTP/2.0").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Requests compared against a pin (answered or failed): a hit rate's denominator. The
    /// requests that set a pin — the first, and the first of each new session — are not.
    #[serde(skip)]
    pub(crate) counted: u64,
}

impl SessionReport {
    /// One answered request: the first one names the pin, a later one is a hit when it lands on
    /// the pinned pod (a request whose pod is unknown is no hit).
    pub(crate) fn served_by(&mut self, pod: Option<String>) {
        match (&self.pinned, pod) {
            (None, pod) => self.pinned = pod,
            (Some(pinned), pod) => {
                self.counted += 1;
                if pod.as_ref() == Some(pinned) {
                    self.hits += 1;
                }
            }
        }
    }

    /// A request that failed: a miss of the pin, if there is one.
    pub(crate) fn failed(&mut self) {
        self.failures += 1;
        if self.pinned.is_some() {
            self.counted += 1;
        }
    }

    /// A new session (a new cookie, a re-initialized MCP client): the next answer pins it.
    pub(crate) fn new_session(&mut self) {
        self.pinned = None;
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeReport {
    pub url: String,
    /// Cookie jars or MCP clients.
    pub kind: ProbeKind,
    pub sessions: Vec<SessionReport>,
    pub requests: u64,
    pub failures: u64,
    pub hit_rate: Option<f64>,
    /// The HTTP versions the answers came in, e.g. "HTTP/2.0".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    #[default]
    Cookie,
    Mcp,
}

impl ProbeReport {
    pub(crate) fn recompute(&mut self) {
        self.requests = self.sessions.iter().map(|s| s.requests).sum();
        self.failures = self.sessions.iter().map(|s| s.failures).sum();
        let hits: u64 = self.sessions.iter().map(|s| s.hits).sum();
        // The requests that establish a pin are not counted.
        let counted: u64 = self.sessions.iter().map(|s| s.counted).sum();
        self.hit_rate = (counted > 0).then(|| hits as f64 / counted as f64);
        for s in &mut self.sessions {
            s.hit_rate = (s.counted > 0).then(|| s.hits as f64 / s.counted as f64);
        }
        let mut protocols: Vec<&str> = self
            .sessions
            .iter()
            .filter_map(|s| s.protocol.as_deref())
            .collect();
        protocols.sort_unstable();
        protocols.dedup();
        self.protocol = (!protocols.is_empty()).then(|| protocols.join(", "));
    }

    /// MCP: 404 answers, and `initialize`s beyond each client's first.
    pub fn not_found(&self) -> u64 {
        self.sessions.iter().map(|s| s.not_found).sum()
    }

    pub fn reinitializations(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.initializations.saturating_sub(1))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_only_pins() {
        let mut report = ProbeReport {
            sessions: vec![
                SessionReport {
                    requests: 10,
                    hits: 9,
                    counted: 9,
                    protocol: Some("HTTP/1.1".into()),
                    ..Default::default()
                },
                SessionReport {
                    requests: 1,
                    protocol: Some("HTTP/1.1".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        report.recompute();
        assert_eq!(report.hit_rate, Some(1.0));
        assert_eq!(report.sessions[1].hit_rate, None);
        assert_eq!(report.protocol.as_deref(), Some("HTTP/1.1"));
    }

    #[test]
    fn a_hit_is_a_later_answer_from_the_pinned_pod() {
        let mut s = SessionReport::default();
        for pod in ["a", "a", "b", "a"] {
            s.served_by(Some(pod.into()));
        }
        s.served_by(None);
        s.failed();
        assert_eq!((s.pinned.as_deref(), s.hits, s.counted), (Some("a"), 2, 5));
        // A new session pins again, and that answer is not counted.
        s.new_session();
        s.served_by(Some("b".into()));
        s.served_by(Some("b".into()));
        assert_eq!((s.pinned.as_deref(), s.hits, s.counted), (Some("b"), 3, 6));
    }
}
