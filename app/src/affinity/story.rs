//! A session's story: what happened to one session, merged from every activator's decision
//! lines and the endpoint watch, and one sentence saying why it is where it is now.
//!
//! Plain data in, plain data out: [`Histories`] keeps what was seen (bounded), [`story`] turns one
//! [`History`] into a timeline and a headline. The UI only draws the result.
//!
//! Identity. An MCP session names itself on its lines (`session`, a short hash of the server's
//! session id), so its history follows it. A cookie line names no session: cookie sessions are
//! told apart by (host, carrier, pinned address) — every cookie session on one pod shares one
//! story — and followed across a rebind by the rebind's `previous` address: the rebound session
//! starts its own history at its new pod with a copy of the old pod's past.

use super::decisions::DecisionLine;
use super::decode::shown_session;
use std::collections::VecDeque;

/// Seconds since the UI started (the app's clock).
pub type Seconds = f64;

/// Memory stays bounded whatever the traffic: at most [`MAX_SESSIONS`] histories (the one seen
/// longest ago is evicted first), each with at most [`EVENTS_PER_SESSION`] happenings (its oldest
/// evicted first). Consecutive `routed` lines of one activator to one address fold into one
/// happening with a count, so a busy session does not push its pin out.
pub const EVENTS_PER_SESSION: usize = 64;
pub const MAX_SESSIONS: usize = 512;

/// What the source of an endpoint happening is called in a story.
pub const ENDPOINTS: &str = "endpoints";

/// A pod as it was when a happening was recorded (pods leave; their stories keep their names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A decision line from an activator's sidecar.
    Decision(Box<DecisionLine>),
    /// The endpoint watch: the session's pod left its revision's Endpoints.
    EndpointRemoved,
    /// The endpoint watch: the session's pod is in the Endpoints but no longer ready.
    EndpointNotReady,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Happening {
    pub at: Seconds,
    /// Which activator's sidecar logged it, or [`ENDPOINTS`].
    pub source: String,
    pub seen: Seen,
    /// The pod the happening's address belonged to when it was recorded.
    pub pod: Option<PodRef>,
    /// For a rebind: the pod its `previous` address belonged to.
    pub previous_pod: Option<PodRef>,
    /// How many identical `routed` lines this one stands for, the last at `until`.
    pub count: u64,
    pub until: Seconds,
}

/// One session's (or, for cookies, one pod's sessions') bounded history.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub authority: String,
    pub carrier: String,
    /// The shown (hashed) session identity, when the lines name one.
    pub session: Option<String>,
    /// `ip:port` the session is pinned to now (`""` when the lines named none, e.g. malformed).
    pub address: String,
    pub happenings: VecDeque<Happening>,
    pub last_at: Seconds,
}

impl History {
    fn push(&mut self, happening: Happening) {
        self.last_at = self.last_at.max(happening.until);
        if let (Some(last), Seen::Decision(line)) = (self.happenings.back_mut(), &happening.seen) {
            if let Seen::Decision(previous) = &last.seen {
                if line.decision == "routed"
                    && previous.decision == "routed"
                    && previous.address == line.address
                    && last.source == happening.source
                {
                    last.count += 1;
                    last.until = happening.at;
                    return;
                }
            }
        }
        if self.happenings.len() == EVENTS_PER_SESSION {
            self.happenings.pop_front();
        }
        self.happenings.push_back(happening);
    }

    /// When the session last sent a request kasi logged (a pin or a routed line).
    fn last_request(&self) -> Seconds {
        self.happenings
            .iter()
            .filter_map(|h| match &h.seen {
                Seen::Decision(l) if l.decision == "pin" || l.decision == "routed" => Some(h.until),
                _ => None,
            })
            .fold(Seconds::MIN, Seconds::max)
    }

    fn answered_not_found(&self) -> bool {
        self.happenings.iter().any(|h| match &h.seen {
            Seen::Decision(line) => line.answer == Some(404),
            _ => false,
        })
    }
}

/// Every session's history, bounded (see [`MAX_SESSIONS`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    histories: Vec<History>,
}

impl Histories {
    pub fn len(&self) -> usize {
        self.histories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }

    /// Folds one decision line, seen at `at` by `activator`'s sidecar. `pod_of` names the pod an
    /// address belongs to now.
    pub fn record_decision(
        &mut self,
        at: Seconds,
        activator: &str,
        line: DecisionLine,
        pod_of: impl Fn(&str) -> Option<PodRef>,
    ) {
        let carrier = line.carrier.clone().unwrap_or_else(|| "cookie".into());
        let authority = line.authority.clone().unwrap_or_default();
        let session = line.session.as_deref().map(shown_session);
        let address = line.address.clone().unwrap_or_default();
        let happening = Happening {
            at,
            source: activator.to_owned(),
            pod: pod_of(&address).or_else(|| self.known_pod(&address)),
            // A pod that left the Endpoints is no longer known: the stories remember it.
            previous_pod: line
                .previous
                .as_deref()
                .and_then(|previous| pod_of(previous).or_else(|| self.known_pod(previous))),
            seen: Seen::Decision(Box::new(line.clone())),
            count: 1,
            until: at,
        };
        match line.decision.as_str() {
            // An address stopped answering: every session pinned there hears of it (a dead
            // line of a routed cookie carries no host).
            "dead" => {
                for history in &mut self.histories {
                    let host = line.authority.is_none() || history.authority == authority;
                    if history.address == address && host {
                        history.push(happening.clone());
                    }
                }
            }
            "pin" | "routed" => {
                let index = self.find_or_create(&authority, &carrier, &session, &address, at);
                self.histories[index].address = address;
                self.histories[index].push(happening);
            }
            "rejected" => {
                // MCP's 404 for a request routed when its pod died names no session: it goes to
                // the MCP session on that pod seen last (the one in flight), unless it was
                // answered already.
                let in_flight = session.is_none() && carrier == "envelope";
                let found = in_flight
                    .then(|| {
                        self.histories
                            .iter()
                            .enumerate()
                            .filter(|(_, h)| {
                                h.carrier == carrier
                                    && h.authority == authority
                                    && h.address == address
                                    && !h.answered_not_found()
                            })
                            .max_by(|(_, a), (_, b)| a.last_request().total_cmp(&b.last_request()))
                            .map(|(i, _)| i)
                    })
                    .flatten();
                let index = match found {
                    Some(i) => i,
                    None => self.find_or_create(&authority, &carrier, &session, &address, at),
                };
                self.histories[index].push(happening);
            }
            "rebind" => {
                let index = match &session {
                    Some(_) => {
                        let i = self.find_or_create(&authority, &carrier, &session, &address, at);
                        self.histories[i].address = address;
                        i
                    }
                    None => self.rebind_cookie(&authority, &carrier, &line, at),
                };
                self.histories[index].push(happening);
            }
            // `stripped` is about a header, not a session.
            _ => {}
        }
    }

    /// The pod a story recorded at `address`.
    fn known_pod(&self, address: &str) -> Option<PodRef> {
        self.histories
            .iter()
            .filter(|h| h.address == address)
            .flat_map(|h| h.happenings.iter().rev())
            .find_map(|h| h.pod.clone())
    }

    /// The endpoint watch saw `address` (`pod`) leave its Endpoints (`removed`) or turn unready.
    pub fn record_endpoint(&mut self, at: Seconds, address: &str, pod: PodRef, removed: bool) {
        for history in &mut self.histories {
            if history.address == address {
                history.push(Happening {
                    at,
                    source: ENDPOINTS.into(),
                    seen: if removed {
                        Seen::EndpointRemoved
                    } else {
                        Seen::EndpointNotReady
                    },
                    pod: Some(pod.clone()),
                    previous_pod: None,
                    count: 1,
                    until: at,
                });
            }
        }
    }

    /// The history a session table row shows: by its identity when it has one, else by host,
    /// carrier and address.
    pub fn find(
        &self,
        authority: &str,
        carrier: &str,
        session: Option<&str>,
        address: &str,
    ) -> Option<&History> {
        self.histories.iter().find(|h| {
            h.authority == authority
                && h.carrier == carrier
                && h.session.as_deref() == session
                && (session.is_some() || h.address == address)
        })
    }

    /// A cookie session rebound from `previous` to the line's address: the history at the new
    /// address gets the rebind; a new one starts with a copy of the old address's past.
    fn rebind_cookie(
        &mut self,
        authority: &str,
        carrier: &str,
        line: &DecisionLine,
        at: Seconds,
    ) -> usize {
        let address = line.address.clone().unwrap_or_default();
        if let Some(i) = self.position(authority, carrier, &None, &address) {
            return i;
        }
        let past = line
            .previous
            .as_deref()
            .and_then(|previous| self.position(authority, carrier, &None, previous))
            .map(|i| self.histories[i].happenings.clone())
            .unwrap_or_default();
        let i = self.create(authority, carrier, &None, &address, at);
        self.histories[i].happenings = past;
        i
    }

    fn position(
        &self,
        authority: &str,
        carrier: &str,
        session: &Option<String>,
        address: &str,
    ) -> Option<usize> {
        self.histories.iter().position(|h| {
            h.authority == authority
                && h.carrier == carrier
                && h.session == *session
                && (session.is_some() || h.address == address)
        })
    }

    fn find_or_create(
        &mut self,
        authority: &str,
        carrier: &str,
        session: &Option<String>,
        address: &str,
        at: Seconds,
    ) -> usize {
        match self.position(authority, carrier, session, address) {
            Some(i) => i,
            None => self.create(authority, carrier, session, address, at),
        }
    }

    fn create(
        &mut self,
        authority: &str,
        carrier: &str,
        session: &Option<String>,
        address: &str,
        at: Seconds,
    ) -> usize {
        if self.histories.len() == MAX_SESSIONS {
            let oldest = self
                .histories
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.last_at.total_cmp(&b.last_at))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.histories.swap_remove(oldest);
        }
        self.histories.push(History {
            authority: authority.to_owned(),
            carrier: carrier.to_owned(),
            session: session.clone(),
            address: address.to_owned(),
            happenings: VecDeque::new(),
            last_at: at,
        });
        self.histories.len() - 1
    }
}

/// How the headline reads: the session sticks, is in trouble, or does not stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Sticking,
    Moved,
    NotSticking,
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Seconds,
    pub source: String,
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Story {
    pub headline: String,
    pub tone: Tone,
    /// Oldest first, newest last.
    pub steps: Vec<Step>,
}

/// `pod-name (revision)` — just the name when it starts with its revision's, as Knative names
/// pods — or the bare address when no pod of kasi's knowledge had it.
fn pod_name(pod: &Option<PodRef>, address: Option<&str>) -> String {
    match (pod, address) {
        (Some(p), _) if p.name.starts_with(&p.revision) => p.name.clone(),
        (Some(p), _) => format!("{} ({})", p.name, p.revision),
        (None, Some(a)) if !a.is_empty() => a.to_owned(),
        _ => "no address".to_owned(),
    }
}

/// Why a session was refused, as a clause.
fn refusal(reason: &str, address: &str) -> String {
    match reason {
        "expired" => "its cookie had expired".into(),
        "disallowed" => format!(
            "its cookie names {address}, outside allowed_cidrs/allowed_ports, where kasi never steers"
        ),
        "malformed" => "the client sent a session value the filter cannot decode".into(),
        "bad_signature" => {
            "its signature does not verify for this host (forged, altered, or signed with a key kasi no longer holds)"
                .into()
        }
        "dead" => format!("its pod {address} stopped answering and is quarantined"),
        "steer_failed" => format!("Envoy could not steer it to {address} (steer_failed)"),
        other => format!("it was refused ({other})"),
    }
}

fn step_text(h: &Happening) -> String {
    match &h.seen {
        Seen::EndpointRemoved => format!(
            "pod {} left the revision's Endpoints",
            pod_name(&h.pod, None)
        ),
        Seen::EndpointNotReady => {
            format!("pod {} is no longer ready", pod_name(&h.pod, None))
        }
        Seen::Decision(line) => {
            let at = pod_name(&h.pod, line.address.as_deref());
            match line.decision.as_str() {
                "pin" => format!("pinned to pod {at}"),
                "routed" if h.count > 1 => format!("{} requests routed to {at}", h.count),
                "routed" => format!("request routed to {at}"),
                "rebind" => {
                    let was = pod_name(&h.previous_pod, line.previous.as_deref());
                    match line.previous {
                        Some(_) => format!("rebound to pod {at} (was {was})"),
                        None => format!("re-pinned to pod {at}"),
                    }
                }
                "dead" => {
                    let quarantine = line
                        .quarantine_s
                        .map(|s| format!(" for {s} s"))
                        .unwrap_or_default();
                    format!("{at} stopped answering → quarantined{quarantine}")
                }
                // The step before names the pod.
                "rejected" if line.answer == Some(404) => {
                    "pod died → 404, client re-initialized".to_owned()
                }
                "rejected" => format!("session refused ({at})"),
                other => format!("{other} ({at})"),
            }
        }
    }
}

fn step_reason(h: &Happening) -> String {
    match &h.seen {
        Seen::EndpointRemoved => "removed".into(),
        Seen::EndpointNotReady => "not_ready".into(),
        Seen::Decision(line) => line.reason.clone(),
    }
}

fn ago(now: Seconds, at: Seconds) -> String {
    format!("{:.0}s ago", (now - at).max(0.0))
}

/// The timeline of one history and the sentence that explains it, as of `now`.
pub fn story(history: &History, now: Seconds) -> Story {
    let steps = history
        .happenings
        .iter()
        .map(|h| Step {
            at: h.at,
            source: h.source.clone(),
            what: step_text(h),
            reason: step_reason(h),
        })
        .collect();
    let (tone, headline) = headline(history, now);
    Story {
        headline,
        tone,
        steps,
    }
}

fn headline(history: &History, now: Seconds) -> (Tone, String) {
    let mcp = history.carrier == "envelope";
    let last = match history.happenings.back() {
        Some(last) => last,
        None => {
            return (
                Tone::NotSticking,
                "No decision line names this session yet.".into(),
            )
        }
    };
    let lines = || {
        history.happenings.iter().filter_map(|h| match &h.seen {
            Seen::Decision(line) => Some((h, line)),
            _ => None,
        })
    };
    // An MCP session whose request met a dead pod was answered 404; its client started a new
    // session, with a new id: this one's story ends here.
    if mcp {
        if let Some((h, _)) = lines().find(|(_, l)| l.answer == Some(404)) {
            return (
                Tone::Moved,
                format!(
                    "Its pod {} died → 404, client re-initialized: {} answered MCP's \"Session not found\" {}, so this session ended and its client goes on under a new session id.",
                    pod_name(&h.pod, Some(&history.address)),
                    h.source,
                    ago(now, h.at)
                ),
            );
        }
    }
    let here = pod_name(&last.pod, Some(&history.address));
    match &last.seen {
        Seen::EndpointRemoved | Seen::EndpointNotReady => {
            let what = if last.seen == Seen::EndpointRemoved {
                "left its revision's Endpoints"
            } else {
                "is no longer ready"
            };
            return (
                Tone::NotSticking,
                format!(
                    "Its pod {here} {what} {}: the session's next request finds it gone and is rebound to a live pod.",
                    ago(now, last.at)
                ),
            );
        }
        Seen::Decision(line) if line.decision == "dead" => {
            return (
                Tone::NotSticking,
                format!(
                    "Its pod {here} stopped answering {} (seen by {}) and is quarantined: the session's next request is rebound to a live pod.",
                    ago(now, last.at),
                    last.source
                ),
            );
        }
        _ => {}
    }
    let Some((h, line)) = lines().next_back() else {
        return (
            Tone::NotSticking,
            "No decision line names this session yet.".into(),
        );
    };
    // Requests routed since the session was last pinned or rebound.
    let pinned_at = lines()
        .filter(|(_, l)| l.decision == "pin" || l.decision == "rebind")
        .map(|(h, _)| h.at)
        .next_back()
        .unwrap_or(Seconds::MIN);
    let routed: u64 = lines()
        .filter(|(h, l)| l.decision == "routed" && h.at >= pinned_at)
        .map(|(h, _)| h.count)
        .sum();
    let since = match routed {
        0 => String::new(),
        1 => ", 1 request routed there since".to_owned(),
        n => format!(", {n} requests routed there since"),
    };
    match line.decision.as_str() {
        "rebind" => {
            let was = pod_name(&h.previous_pod, line.previous.as_deref());
            let why = refusal(&line.reason, &was);
            (
                Tone::Moved,
                format!(
                    "On pod {here} since {} rebound it {}{since}: {why}.",
                    h.source,
                    ago(now, h.at)
                ),
            )
        }
        "rejected" => (
            Tone::NotSticking,
            format!(
                "Not sticking: {} refused it {}, because {}.",
                h.source,
                ago(now, h.at),
                refusal(&line.reason, &pod_name(&h.pod, line.address.as_deref()))
            ),
        ),
        _ => {
            let pins: Vec<&Happening> = lines()
                .filter(|(_, l)| l.decision == "pin")
                .map(|(h, _)| h)
                .collect();
            let only_pins = lines().all(|(_, l)| l.decision == "pin");
            let spread = pins.last().map_or(0.0, |l| l.at) - pins.first().map_or(0.0, |f| f.at);
            // New sessions landing here again and again, for seconds, and never one coming back
            // with its session: a client that keeps none (curl without a jar, say).
            if !mcp && only_pins && pins.len() >= 3 && spread >= 3.0 {
                let sent = match history.carrier.as_str() {
                    "header" => "no session header",
                    _ => "no cookie",
                };
                return (
                    Tone::NotSticking,
                    format!(
                        "Not sticking: {} new sessions were pinned to {here} over {spread:.0} s and none came back with its session, so the client sends {sent}.",
                        pins.len()
                    ),
                );
            }
            let pin = lines()
                .rfind(|(_, l)| l.decision == "pin")
                .map(|(h, _)| h)
                .unwrap_or(h);
            let quiet = if routed == 0 {
                " (no line since: at log_decisions \"changes\" a request that stays on its pod logs none)"
            } else {
                ""
            };
            (
                Tone::Sticking,
                format!(
                    "Sticking to pod {here}: pinned by {} {}{since}{quiet}.",
                    pin.source,
                    ago(now, pin.at)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "10.0.0.1:8012";
    const Y: &str = "10.0.0.2:8012";
    const HELLO: &str = "hello.default.example.com";
    const MCP: &str = "mcp.default.example.com";

    fn pods(address: &str) -> Option<PodRef> {
        let name = match address {
            X => "x-pod",
            Y => "y-pod",
            _ => return None,
        };
        Some(PodRef {
            name: name.into(),
            revision: "hello-00001".into(),
        })
    }

    fn line(decision: &str, address: &str, reason: &str) -> DecisionLine {
        DecisionLine {
            decision: decision.into(),
            address: Some(address.into()),
            authority: Some(HELLO.into()),
            reason: reason.into(),
            ..DecisionLine::default()
        }
    }

    fn mcp(decision: &str, address: &str, reason: &str, session: Option<&str>) -> DecisionLine {
        DecisionLine {
            authority: Some(MCP.into()),
            carrier: Some("envelope".into()),
            session: session.map(str::to_owned),
            ..line(decision, address, reason)
        }
    }

    fn record(h: &mut Histories, at: Seconds, activator: &str, line: DecisionLine) {
        h.record_decision(at, activator, line, pods);
    }

    fn cookie_story(h: &Histories, address: &str, now: Seconds) -> Story {
        story(
            h.find(HELLO, "cookie", None, address).expect("a history"),
            now,
        )
    }

    fn whats(story: &Story) -> Vec<(&str, &str)> {
        story
            .steps
            .iter()
            .map(|s| (s.source.as_str(), s.what.as_str()))
            .collect()
    }

    #[test]
    fn a_pinned_session_sticks_and_routed_lines_fold() {
        let mut h = Histories::default();
        record(&mut h, 1.0, "act-a", line("pin", X, "new_session"));
        for t in 2..=6 {
            record(&mut h, t as f64, "act-b", line("routed", X, "cookie"));
        }
        let s = cookie_story(&h, X, 10.0);
        assert_eq!(s.tone, Tone::Sticking);
        assert_eq!(
            s.headline,
            "Sticking to pod x-pod (hello-00001): pinned by act-a 9s ago, 5 requests routed there since."
        );
        assert_eq!(
            whats(&s),
            [
                ("act-a", "pinned to pod x-pod (hello-00001)"),
                ("act-b", "5 requests routed to x-pod (hello-00001)"),
            ]
        );
        // At "changes" only the pin is logged: still sticking, and the sentence says why quiet.
        let mut h = Histories::default();
        record(&mut h, 1.0, "act-a", line("pin", X, "new_session"));
        assert!(cookie_story(&h, X, 5.0)
            .headline
            .contains("log_decisions \"changes\""));
    }

    #[test]
    fn a_dead_pod_then_a_rebind_on_the_other_activator() {
        let mut h = Histories::default();
        record(&mut h, 1.0, "act-a", line("pin", X, "new_session"));
        record(&mut h, 2.0, "act-a", line("routed", X, "cookie"));
        // act-a's request to X fails: X is quarantined (the dead line carries no host).
        let dead = DecisionLine {
            authority: None,
            quarantine_s: Some(30),
            ..line("dead", X, "connect_failure")
        };
        record(&mut h, 5.0, "act-a", dead);
        let s = cookie_story(&h, X, 6.0);
        assert_eq!(s.tone, Tone::NotSticking);
        assert!(
            s.headline.starts_with(
                "Its pod x-pod (hello-00001) stopped answering 1s ago (seen by act-a)"
            ),
            "{}",
            s.headline
        );
        // act-b meets the session's cookie next: rejected (dead), rebound to Y.
        record(&mut h, 7.0, "act-b", line("rejected", X, "dead"));
        let rebind = DecisionLine {
            previous: Some(X.into()),
            ..line("rebind", Y, "dead")
        };
        record(&mut h, 7.0, "act-b", rebind);
        let s = cookie_story(&h, Y, 9.0);
        assert_eq!(s.tone, Tone::Moved);
        assert_eq!(
            s.headline,
            "On pod y-pod (hello-00001) since act-b rebound it 2s ago: its pod x-pod (hello-00001) stopped answering and is quarantined."
        );
        assert_eq!(
            whats(&s),
            [
                ("act-a", "pinned to pod x-pod (hello-00001)"),
                ("act-a", "request routed to x-pod (hello-00001)"),
                (
                    "act-a",
                    "x-pod (hello-00001) stopped answering → quarantined for 30 s"
                ),
                ("act-b", "session refused (x-pod (hello-00001))"),
                (
                    "act-b",
                    "rebound to pod y-pod (hello-00001) (was x-pod (hello-00001))"
                ),
            ]
        );
        assert_eq!(s.steps[2].reason, "connect_failure");
        assert_eq!(s.steps[4].reason, "dead");
        // Newest last; the old pod keeps its own story, and a second rebind joins Y's.
        assert!(s.steps.windows(2).all(|w| w[0].at <= w[1].at));
        let again = DecisionLine {
            previous: Some(X.into()),
            ..line("rebind", Y, "dead")
        };
        record(&mut h, 8.0, "act-a", again);
        assert_eq!(h.len(), 2);
        assert_eq!(cookie_story(&h, Y, 9.0).steps.len(), 6);
    }

    #[test]
    fn refusals_explain_themselves() {
        let cases = [
            ("expired", "its cookie had expired"),
            ("disallowed", "outside allowed_cidrs/allowed_ports"),
            ("malformed", "cannot decode"),
            ("bad_signature", "signature does not verify"),
            ("dead", "stopped answering"),
            ("steer_failed", "could not steer"),
        ];
        for (reason, says) in cases {
            let mut h = Histories::default();
            record(&mut h, 1.0, "act-a", line("rejected", X, reason));
            let s = cookie_story(&h, X, 3.0);
            assert_eq!(s.tone, Tone::NotSticking, "{reason}");
            assert!(
                s.headline
                    .starts_with("Not sticking: act-a refused it 2s ago, because"),
                "{}",
                s.headline
            );
            assert!(s.headline.contains(says), "{reason}: {}", s.headline);
            // Re-pinned after an expired cookie: on the new pod, saying why.
            let rebind = DecisionLine {
                previous: Some(X.into()),
                ..line("rebind", Y, reason)
            };
            record(&mut h, 2.0, "act-a", rebind);
            let s = cookie_story(&h, Y, 3.0);
            assert_eq!(s.tone, Tone::Moved);
            assert!(s.headline.contains(says), "{reason}: {}", s.headline);
        }
        // A malformed value names no address: its story is kept under none.
        let mut h = Histories::default();
        let unreadable = DecisionLine {
            address: None,
            ..line("rejected", X, "malformed")
        };
        record(&mut h, 1.0, "act-a", unreadable);
        assert!(cookie_story(&h, "", 2.0).headline.contains("cannot decode"));
    }

    #[test]
    fn a_client_without_a_cookie_jar_is_named() {
        let mut h = Histories::default();
        for t in 0..4 {
            record(
                &mut h,
                t as f64 * 2.0,
                "act-a",
                line("pin", X, "new_session"),
            );
        }
        let s = cookie_story(&h, X, 8.0);
        assert_eq!(s.tone, Tone::NotSticking);
        assert!(
            s.headline.ends_with("so the client sends no cookie."),
            "{}",
            s.headline
        );
    }

    #[test]
    fn an_mcp_session_ends_with_404_and_a_reinitialization() {
        let mut h = Histories::default();
        record(
            &mut h,
            1.0,
            "act-a",
            mcp("pin", X, "new_session", Some("0a1b2c3d")),
        );
        record(
            &mut h,
            2.0,
            "act-b",
            mcp("pin", X, "new_session", Some("99990000")),
        );
        record(
            &mut h,
            3.0,
            "act-a",
            mcp("routed", X, "envelope", Some("0a1b2c3d")),
        );
        // The pod dies under a routed request: dead line, then the 404 (naming no session).
        record(
            &mut h,
            4.0,
            "act-a",
            mcp("dead", X, "connect_failure", None),
        );
        let answered = DecisionLine {
            answer: Some(404),
            ..mcp("rejected", X, "dead", None)
        };
        record(&mut h, 4.0, "act-a", answered);
        // The client re-initializes: a new session, a story of its own.
        record(
            &mut h,
            5.0,
            "act-a",
            mcp("pin", Y, "new_session", Some("77aa77aa")),
        );
        let s = story(h.find(MCP, "envelope", Some("0a1b2c3d"), X).unwrap(), 6.0);
        assert_eq!(s.tone, Tone::Moved);
        assert!(
            s.headline
                .starts_with("Its pod x-pod (hello-00001) died → 404, client re-initialized"),
            "{}",
            s.headline
        );
        assert_eq!(
            s.steps.last().unwrap().what,
            "pod died → 404, client re-initialized"
        );
        // The other MCP session on X was not the one in flight: it only heard of the death.
        let other = story(h.find(MCP, "envelope", Some("99990000"), X).unwrap(), 6.0);
        assert_eq!(other.tone, Tone::NotSticking);
        // Its own next request is refused with its identity, then answered 404 too.
        let refused = DecisionLine {
            answer: Some(404),
            ..mcp("rejected", X, "dead", Some("99990000"))
        };
        record(&mut h, 7.0, "act-b", refused);
        let other = story(h.find(MCP, "envelope", Some("99990000"), X).unwrap(), 8.0);
        assert!(other.headline.contains("404, client re-initialized"));
        let new = story(h.find(MCP, "envelope", Some("77aa77aa"), Y).unwrap(), 6.0);
        assert_eq!(new.tone, Tone::Sticking);
    }

    #[test]
    fn endpoint_removal_is_a_step() {
        let mut h = Histories::default();
        record(&mut h, 1.0, "act-a", line("pin", X, "new_session"));
        h.record_endpoint(3.0, X, pods(X).unwrap(), true);
        h.record_endpoint(3.0, Y, pods(Y).unwrap(), true);
        let s = cookie_story(&h, X, 4.0);
        assert_eq!(
            s.steps.last().unwrap(),
            &Step {
                at: 3.0,
                source: ENDPOINTS.into(),
                what: "pod x-pod (hello-00001) left the revision's Endpoints".into(),
                reason: "removed".into(),
            }
        );
        assert_eq!(s.steps.len(), 2);
        assert!(s.headline.contains("left its revision's Endpoints 1s ago"));
    }

    #[test]
    fn memory_is_bounded() {
        let mut h = Histories::default();
        for i in 0..(MAX_SESSIONS + 10) {
            let address = format!("10.1.{}.{}:8012", i / 250, i % 250);
            record(
                &mut h,
                i as f64,
                "act-a",
                line("pin", &address, "new_session"),
            );
        }
        assert_eq!(h.len(), MAX_SESSIONS);
        // The oldest went first.
        assert!(h.find(HELLO, "cookie", None, "10.1.0.0:8012").is_none());
        let mut h = Histories::default();
        for i in 0..(EVENTS_PER_SESSION * 2) {
            let kind = if i % 2 == 0 { "pin" } else { "rejected" };
            record(&mut h, i as f64, "act-a", line(kind, X, "new_session"));
        }
        let history = h.find(HELLO, "cookie", None, X).unwrap();
        assert_eq!(history.happenings.len(), EVENTS_PER_SESSION);
        assert_eq!(history.happenings[0].at, EVENTS_PER_SESSION as f64);
    }
}
