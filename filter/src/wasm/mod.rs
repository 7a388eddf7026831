//! The proxy-wasm layer: reads headers in, applies the [`policy`] verdict out, counts and logs.
//! Nothing here decides anything; every decision lives in the native, tested library.
//!
//! Each call between Envoy and the VM costs about as much as all of kasi's own logic, and a
//! value the host hands over several times more than a plain call out: the host allocates it by
//! calling into the VM's allocator (`./dev bench` measured them; see the README). So this layer
//! implements the proxy-wasm ABI by hand rather than through the SDK, and exports only the two
//! callbacks it needs (an SDK filter is called seven times per request):
//!
//! - Request headers: the whole header map in one copy (the routing header, every `cookie`
//!   header, the MCP envelope and header-mode headers and `:authority` for the signature are all
//!   needed, and one copy costs less than several lookups), the dead-host list (empty until a
//!   pod fails), then at most: the foreign function `set_envoy_filter_state` that steers
//!   PassthroughCluster, one rewrite per carrier (a signed session restored to the value
//!   `stateful_session` wrote), and two counters. A rejected MCP envelope is answered here with
//!   MCP's 404 and goes no further.
//! - Response headers: the status, and Envoy's response flags only for a `5xx` (did the upstream
//!   connect?). The response's headers and the request's host only when a session may be issued
//!   (to sign it: a request without a session, a rejected one, and a routed MCP or header-mode
//!   response that carries a re-issued session — looked up header by header first, an absent
//!   header costing no copy) or has failed.
//!
//! Nothing a client sends is kept between the two: the pending table holds a verdict and an
//! address of at most 47 bytes per stream, and is bounded in streams.
//!
//! Every host call goes through [`abi`], which returns errors instead of panicking (a panic
//! kills the VM for every later request). A request the filter cannot read is let through
//! with the routing header removed and nothing steered: the filter never fails a request
//! because of itself.

// The `request-phase-only` benchmark build leaves the response phase's code unused.
#![cfg_attr(feature = "request-phase-only", allow(dead_code))]

mod abi;

use crate::codec::SessionCookie;
use crate::config::{Config, LogDecisions, ROUTING_HEADER};
use crate::decision_log::{self, Decision};
use crate::json::Json;
use crate::metrics::{self, Counter};
use crate::pending::PendingStreams;
use crate::policy::{self, Carrier, Rejection, RequestPlan, Verdict};
use crate::signing::VerifiedSessions;
use crate::{dead_hosts, header_map};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Shared-data key of the dead-host list, one per Envoy process (all worker VMs see it).
const DEAD_HOSTS_KEY: &str = "kasi_affinity.dead_hosts";

/// Streams in flight kept in the direct-mapped table, and at most in its overflow (see
/// [`PendingStreams`]). Each entry is a verdict and an address (≤ 47 bytes): the table is
/// bounded in bytes whatever clients send or abandon.
const PENDING_SLOTS: usize = 256;
const MAX_SPILLED_STREAMS: usize = 4_096;

/// The stream property that carries `:authority` from the request phase to the response phase
/// (kept by Envoy in the stream's filter state, freed with the stream; the request's headers
/// are not readable in the response phase).
const AUTHORITY_PROPERTY: &str = "kasi_authority";

/// Sessions remembered as verified per VM: at most this many entries of ≤ 382 bytes each.
const VERIFIED_SLOTS: usize = 512;

/// Action::Continue.
const CONTINUE: u32 = 0;
/// Action::Pause: the stream was answered locally.
const PAUSE: u32 = 1;

/// `%RESPONSE_CODE_DETAILS%` of kasi's MCP 404 (one token, as Envoy wants details).
const MCP_NOT_FOUND_DETAILS: &str = "kasi_mcp_session_not_found";

/// What the streams of this VM share: the last pluginConfig Envoy accepted.
struct Plugin {
    config: Config,
    metric_ids: [u32; metrics::ALL.len()],
    vm_memory_gauge: u32,
}

/// What the request phase leaves for the response phase: nothing a client sized (addresses are
/// canonical `ip:port` text, at most 47 bytes; rejections carry no client bytes).
enum State {
    /// No session in any carrier.
    NoCookie,
    Routed(Carrier),
    Rejected(Carrier, Rejection, Option<String>),
    /// Approved, but Envoy refused the filter state: the request went where the activator sent
    /// it, and `stateful_session` re-pins the session there.
    SteerFailed(Carrier, String),
}

/// How the request phase ended.
enum Outcome {
    /// The request goes on; the response phase gets this state.
    Continue(State),
    /// kasi answered it (MCP's 404): nothing to remember, the stream stops here.
    Answered,
}

thread_local! {
    // One VM per Envoy worker thread, single-threaded: these are just the VM's globals.
    static PLUGIN: RefCell<Option<Rc<Plugin>>> = const { RefCell::new(None) };
    static PENDING: RefCell<PendingStreams<State>> =
        RefCell::new(PendingStreams::new(PENDING_SLOTS, MAX_SPILLED_STREAMS));
    /// Sessions verified under the current keys (cleared when the configuration changes).
    static VERIFIED: RefCell<VerifiedSessions> = RefCell::new(VerifiedSessions::new(VERIFIED_SLOTS));
    /// The linear memory size last recorded in the gauge.
    static VM_MEMORY: Cell<usize> = const { Cell::new(0) };
}

/// Records the VM's memory in its gauge when it has grown: one wasm instruction per request,
/// a host call only on growth.
fn record_vm_memory(plugin: &Plugin) {
    let bytes = core::arch::wasm32::memory_size(0) * 65_536;
    if VM_MEMORY.with(|m| m.replace(bytes)) != bytes {
        abi::record(plugin.vm_memory_gauge, bytes as u64);
    }
}

// ---- The exports Envoy calls (proxy-wasm ABI 0.2.1) ----

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Envoy allocates every buffer it hands to the VM through this; [`abi`] takes them back as the
/// `Vec`s they are.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    let data = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    data
}

/// A root context got its pluginConfig. Without `proxy_on_context_create` exported, Envoy does
/// not tell streams' roots apart, so the VM's streams follow the configuration accepted last
/// (a listener update with a new pluginConfig applies to streams from then on). A refused
/// configuration leaves the previous one in place, and Envoy refuses the update.
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, size: usize) -> u32 {
    match configure(size) {
        Some(plugin) => {
            PLUGIN.with(|p| *p.borrow_mut() = Some(Rc::new(plugin)));
            // Verified under the previous keys: not a proof under the new ones.
            VERIFIED.with(|v| v.borrow_mut().clear());
            1
        }
        None => 0,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: u32, _eos: u32) -> u32 {
    let Some(plugin) = PLUGIN.with(|p| p.borrow().clone()) else {
        return CONTINUE;
    };
    let outcome = Request::new(&plugin).run();
    record_vm_memory(&plugin);
    match outcome {
        Outcome::Continue(state) => {
            remember(context_id, state);
            CONTINUE
        }
        Outcome::Answered => PAUSE,
    }
}

/// Not exported by the `request-phase-only` build, and doing nothing beyond taking the stream's
/// state in the `empty-response-phase` build (benchmark measurements, never installed).
#[cfg_attr(not(feature = "request-phase-only"), no_mangle)]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: u32, _eos: u32) -> u32 {
    let pending = PENDING.with(|p| p.borrow_mut().take(context_id));
    if cfg!(feature = "empty-response-phase") {
        return CONTINUE;
    }
    let answered = PLUGIN
        .with(|p| p.borrow().clone())
        .is_some_and(|plugin| Response::new(&plugin).run(pending));
    if answered {
        PAUSE
    } else {
        CONTINUE
    }
}

fn configure(size: usize) -> Option<Plugin> {
    let bytes = match abi::plugin_configuration(size) {
        Ok(bytes) => bytes,
        Err(status) => {
            abi::log(
                abi::LOG_ERROR,
                &format!("kasi_affinity cannot read its pluginConfig (status {status})"),
            );
            return None;
        }
    };
    let config = match Config::parse(&bytes) {
        Ok(config) => config,
        Err(e) => {
            abi::log(
                abi::LOG_ERROR,
                &format!("kasi_affinity refuses to start: {e}"),
            );
            return None;
        }
    };
    if config.deprecated_header {
        abi::log(
            abi::LOG_WARN,
            "kasi_affinity: pluginConfig key \"header\" is obsolete and ignored (sessions are steered through filter state); remove it",
        );
    }
    if config.session_keys.is_empty() {
        abi::log(
            abi::LOG_WARN,
            "kasi_affinity runs unsigned: without pluginConfig \"session_keys\" a forged cookie can name any pod inside allowed_cidrs (kasi apply sets a key)",
        );
    }
    let mut metric_ids = [0u32; metrics::ALL.len()];
    for (id, name) in metric_ids.iter_mut().zip(metrics::ALL) {
        match abi::define_counter(name) {
            Ok(defined) => *id = defined,
            Err(status) => {
                abi::log(
                    abi::LOG_ERROR,
                    &format!("kasi_affinity cannot define counter {name} (status {status})"),
                );
                return None;
            }
        }
    }
    let vm_memory_gauge = abi::define_gauge(metrics::VM_MEMORY_BYTES).unwrap_or(u32::MAX);
    Some(Plugin {
        config,
        metric_ids,
        vm_memory_gauge,
    })
}

/// The wall clock, read at most once per callback and only if asked.
struct Clock(Cell<Option<u64>>);

impl Clock {
    fn new() -> Clock {
        Clock(Cell::new(None))
    }

    fn now(&self) -> u64 {
        match self.0.get() {
            Some(now) => now,
            None => {
                let now = abi::now_unix_s();
                self.0.set(Some(now));
                now
            }
        }
    }
}

/// The request phase of one stream.
struct Request<'a> {
    plugin: &'a Plugin,
    clock: Clock,
}

impl<'a> Request<'a> {
    fn new(plugin: &'a Plugin) -> Request<'a> {
        Request {
            plugin,
            clock: Clock::new(),
        }
    }

    fn run(self) -> Outcome {
        let serialized = abi::header_map(abi::REQUEST_HEADERS);
        let headers = serialized.as_deref().ok().and_then(header_map::pairs);
        let Some(headers) = headers else {
            // Unreadable headers: let the request through unsteered, and never with a client's
            // routing header. Whatever the session carriers hold is unread, hence unapproved:
            // the header carriers are removed (a cookie cannot be taken out of a map that
            // cannot be read without losing the others; the bundle's cluster ignores it).
            let _ = abi::set_header(abi::REQUEST_HEADERS, ROUTING_HEADER, None);
            for name in [
                &self.plugin.config.mcp_header,
                &self.plugin.config.session_header,
            ] {
                if !name.is_empty() {
                    let _ = abi::set_header(abi::REQUEST_HEADERS, name, None);
                }
            }
            return Outcome::Continue(State::NoCookie);
        };
        let config = &self.plugin.config;
        let plan = VERIFIED.with(|verified| {
            policy::plan_request_verified(
                config,
                &headers,
                || self.clock.now(),
                |a| self.is_dead(a),
                Some(&mut verified.borrow_mut()),
            )
        });
        // Kept as bytes: text only for a line, which most requests do not write.
        let authority = policy::authority(&headers);
        // An MCP session's lines name it by the hash of its server id, hashed only for a line.
        let logged = match plan.verdict {
            Verdict::Routed { .. } => config.log_decisions == LogDecisions::All,
            Verdict::Rejected { .. } => config.log_decisions != LogDecisions::Off,
            Verdict::NoCookie => false,
        };
        let session = (logged && plan.carrier == Carrier::Envelope)
            .then(|| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(config.mcp_header.as_bytes()))
                    .and_then(|(_, v)| crate::envelope::session_hash_of(v))
            })
            .flatten();
        self.apply(plan, authority, session)
    }

    fn is_dead(&self, address: &str) -> bool {
        match abi::shared_data(DEAD_HOSTS_KEY) {
            Ok((Some(list), cas)) if !list.is_empty() => {
                let now = self.clock.now();
                if dead_hosts::is_expired(&list, now) {
                    // Every quarantine has run out: an empty value is read without a copy
                    // into the VM. A concurrent write wins (CAS mismatch), which is right.
                    let _ = abi::set_shared_data(DEAD_HOSTS_KEY, b"", cas);
                    return false;
                }
                dead_hosts::contains(&list, address.as_bytes(), now)
            }
            _ => false,
        }
    }

    fn apply(&self, plan: RequestPlan, authority: &[u8], session: Option<String>) -> Outcome {
        let plugin = self.plugin;
        let config = &plugin.config;
        if plan.strip_header {
            let _ = abi::set_header(abi::REQUEST_HEADERS, ROUTING_HEADER, None);
            count(plugin, Counter::HeaderStripped);
            self.log(
                Decision::Stripped,
                None,
                authority,
                "client_sent_header",
                plan.carrier,
                &[],
            );
        }
        count(plugin, Counter::Requests);
        if plan.not_found {
            return self.answer_not_found(plan, authority, session);
        }
        if let Some(rewrite) = &plan.cookie_rewrite {
            rewrite_cookies(plan.cookie_headers, rewrite.as_deref());
        }
        if let Some(value) = &plan.envelope_rewrite {
            let _ = abi::set_header(abi::REQUEST_HEADERS, &config.mcp_header, Some(value));
        }
        if let Some(rewrite) = &plan.header_rewrite {
            let _ = abi::set_header(
                abi::REQUEST_HEADERS,
                &config.session_header,
                rewrite.as_deref(),
            );
        }
        for (carrier, rejection, address) in &plan.also_rejected {
            self.log(
                Decision::Rejected,
                address.as_deref(),
                authority,
                rejection.reason(),
                *carrier,
                &rejection_detail(rejection),
            );
        }
        let routed = matches!(plan.verdict, Verdict::Routed { .. });
        // The response needs the host to sign a session it issues, or for a line: a request
        // without an honoured session may get a new one; a routed envelope or header-mode one
        // gets Envoy's rewrite to sign (an envelope on every response that carries one). A
        // routed cookie's response issues nothing, and does not pay for the host call.
        let signed = !config.session_keys.is_empty();
        let needs_authority = if routed {
            signed && plan.carrier != Carrier::Cookie
        } else {
            signed || config.log_decisions != LogDecisions::Off
        };
        if needs_authority {
            let _ = abi::set_property(AUTHORITY_PROPERTY, authority);
        }
        let carrier = plan.carrier;
        let state = match plan.verdict {
            Verdict::NoCookie => State::NoCookie,
            Verdict::Routed { cookie, address } => {
                let arguments = policy::set_filter_state_arguments(
                    policy::ORIGINAL_DST_FILTER_STATE,
                    &address,
                    policy::LIFE_SPAN_DOWNSTREAM_REQUEST,
                );
                match abi::call_foreign_function("set_envoy_filter_state", &arguments) {
                    Ok(()) => {
                        count(plugin, Counter::CookieRouted);
                        if config.log_decisions == LogDecisions::All {
                            let mut fields = cookie_fields(&cookie);
                            fields.extend(session_field(session));
                            self.log(
                                Decision::Routed,
                                Some(&address),
                                authority,
                                carrier.as_str(),
                                carrier,
                                &fields,
                            );
                        }
                        State::Routed(carrier)
                    }
                    Err(status) => {
                        // Not steered: the request goes where the activator sent it, and the
                        // response re-pins the session there (signed as any new pin).
                        count(plugin, Counter::SteerFailed);
                        self.log(
                            Decision::Rejected,
                            Some(&address),
                            authority,
                            "steer_failed",
                            carrier,
                            &[("status", number(status.into()))],
                        );
                        State::SteerFailed(carrier, address)
                    }
                }
            }
            Verdict::Rejected { rejection, address } => {
                count(plugin, Counter::rejected(&rejection));
                let mut fields = rejection_detail(&rejection);
                fields.extend(session_field(session));
                self.log(
                    Decision::Rejected,
                    address.as_deref(),
                    authority,
                    rejection.reason(),
                    carrier,
                    &fields,
                );
                // The decode error's text may quote client bytes: only the reason is kept.
                State::Rejected(carrier, rejection.without_client_bytes(), address)
            }
        };
        Outcome::Continue(state)
    }

    /// Answers a request whose MCP envelope is not honoured with MCP's 404 "Session not found":
    /// the client starts a new session, which `stateful_session` pins where it lands. Nothing of
    /// the request goes upstream. Should Envoy refuse the local reply, the request goes on
    /// without its envelope instead (the server then answers for a session it does not know).
    fn answer_not_found(
        &self,
        plan: RequestPlan,
        authority: &[u8],
        session: Option<String>,
    ) -> Outcome {
        let plugin = self.plugin;
        let Verdict::Rejected { rejection, address } = plan.verdict else {
            return Outcome::Continue(State::NoCookie);
        };
        count(plugin, Counter::rejected(&rejection));
        let answered = send_mcp_not_found().is_ok();
        let mut fields = rejection_detail(&rejection);
        fields.extend(session_field(session));
        if answered {
            count(plugin, Counter::McpNotFound);
            fields.push(("answer", number(policy::MCP_NOT_FOUND_STATUS.into())));
        }
        self.log(
            Decision::Rejected,
            address.as_deref(),
            authority,
            rejection.reason(),
            Carrier::Envelope,
            &fields,
        );
        if answered {
            return Outcome::Answered;
        }
        let _ = abi::set_header(abi::REQUEST_HEADERS, &plugin.config.mcp_header, None);
        Outcome::Continue(State::Rejected(
            Carrier::Envelope,
            rejection.without_client_bytes(),
            address,
        ))
    }

    fn log(
        &self,
        decision: Decision,
        address: Option<&str>,
        authority: &[u8],
        reason: &str,
        carrier: Carrier,
        extra: &[(&str, Json)],
    ) {
        if wanted(&self.plugin.config, decision) {
            let authority = String::from_utf8_lossy(authority);
            write_line(decision, address, Some(&authority), reason, carrier, extra);
        }
    }
}

/// A rejection's extra fields on its decision line.
fn rejection_detail(rejection: &Rejection) -> Vec<(&'static str, Json)> {
    match rejection {
        Rejection::Malformed(e) => vec![("detail", Json::String(e.to_string()))],
        Rejection::MalformedHeader(e) => vec![("detail", Json::String(e.to_string()))],
        Rejection::Expired(at) => vec![("expires", number(*at))],
        _ => Vec::new(),
    }
}

/// Puts the rewritten `cookie` value in place of every `cookie` header (or removes them all).
/// With one header, one replace; with several, remove then add, so that the result does not
/// depend on whether this Envoy's `setCopy` replaces the first header or all of them.
fn rewrite_cookies(headers: usize, value: Option<&[u8]>) {
    match value {
        Some(value) if headers <= 1 => {
            let _ = abi::set_header(abi::REQUEST_HEADERS, "cookie", Some(value));
        }
        Some(value) => {
            let _ = abi::set_header(abi::REQUEST_HEADERS, "cookie", None);
            let _ = abi::add_header(abi::REQUEST_HEADERS, "cookie", value);
        }
        None => {
            let _ = abi::set_header(abi::REQUEST_HEADERS, "cookie", None);
        }
    }
}

/// What [`Response::issue`] does beside finding the sessions a response issues.
struct Issue {
    /// Name an envelope's session by its hash (for a line).
    with_session: bool,
    /// Take out the session cookie instead of signing it.
    drop_cookie: bool,
}

impl Issue {
    fn logged(with_session: bool) -> Issue {
        Issue {
            with_session,
            drop_cookie: false,
        }
    }
}

/// The response phase of one stream.
struct Response<'a> {
    plugin: &'a Plugin,
    /// The request's `:authority`, read when first needed (to sign an issued session, or for a
    /// decision line).
    authority: RefCell<Option<Option<String>>>,
}

impl<'a> Response<'a> {
    fn new(plugin: &'a Plugin) -> Response<'a> {
        Response {
            plugin,
            authority: RefCell::new(None),
        }
    }

    /// Returns whether kasi answered the stream itself (MCP's 404 in place of a failure).
    fn run(self, state: Option<State>) -> bool {
        let plugin = self.plugin;
        let failed = failed_to_connect();
        match state {
            Some(State::Routed(carrier)) if !failed => {
                count(plugin, Counter::StickyHits);
                // Envoy rewrites an envelope on every response that carries the header (and a
                // header-mode value when the host it names changed): sign what it wrote. The
                // session cookie Envoy's cookie `stateful_session` adds (the request had none)
                // is taken out instead of signed: the session travels in its header, and MCP and
                // header-mode clients keep no cookie jar — signing it on every response would
                // cost an HMAC per request for nothing.
                if carrier != Carrier::Cookie
                    && !plugin.config.session_keys.is_empty()
                    && self.carries_a_session()
                {
                    self.issue(Issue {
                        with_session: false,
                        drop_cookie: true,
                    });
                }
            }
            // The attempt failed to connect: quarantine the host Envoy actually tried (never
            // the session's address: a client must not be able to quarantine a pod that is
            // alive), and make the client drop the session: its next request, on any
            // activator replica, starts afresh instead of failing again. An MCP session's next
            // request is then answered 404 here, and the client re-initializes.
            _ if failed => {
                let carrier = match &state {
                    Some(State::Routed(c) | State::Rejected(c, ..) | State::SteerFailed(c, _)) => {
                        *c
                    }
                    _ => Carrier::Cookie,
                };
                let upstream = abi::property(&["upstream", "address"])
                    .ok()
                    .flatten()
                    .map(|a| String::from_utf8_lossy(&a).into_owned());
                if let Some(address) = &upstream {
                    self.mark_dead(address, carrier);
                }
                // An MCP session routed to its pod learns here that the pod is gone: MCP's
                // 404 now (not Envoy's 503) makes the client re-initialize at once, so this
                // failure is the session's only one.
                if matches!(state, Some(State::Routed(Carrier::Envelope)))
                    && self.answer_not_found(upstream.as_deref())
                {
                    return true;
                }
                self.drop_session();
            }
            Some(State::Routed(_)) => {}
            Some(State::NoCookie) => {
                for (carrier, issued, session) in self.issue(Issue::logged(self.logs_changes())) {
                    let address = policy::canonical_address(&issued.address);
                    let mut fields = cookie_fields(&issued);
                    fields.extend(session_field(session));
                    self.log(
                        Decision::Pin,
                        Some(&address),
                        "new_session",
                        carrier,
                        &fields,
                    );
                }
            }
            Some(State::Rejected(rejected_carrier, rejection, previous)) => {
                let issued = self.issue(Issue::logged(self.logs_changes()));
                if !issued.is_empty() {
                    count(plugin, Counter::Rebinds);
                }
                for (carrier, issued, session) in issued {
                    let address = policy::canonical_address(&issued.address);
                    let mut fields = cookie_fields(&issued);
                    fields.extend(session_field(session));
                    if carrier == rejected_carrier {
                        fields.push((
                            "previous",
                            previous.clone().map_or(Json::Null, Json::String),
                        ));
                        self.log(
                            Decision::Rebind,
                            Some(&address),
                            rejection.reason(),
                            carrier,
                            &fields,
                        );
                    } else {
                        self.log(
                            Decision::Pin,
                            Some(&address),
                            "new_session",
                            carrier,
                            &fields,
                        );
                    }
                }
            }
            Some(State::SteerFailed(failed_carrier, previous)) => {
                for (carrier, issued, session) in self.issue(Issue::logged(self.logs_changes())) {
                    let address = policy::canonical_address(&issued.address);
                    let mut fields = cookie_fields(&issued);
                    fields.extend(session_field(session));
                    if carrier == failed_carrier {
                        fields.push(("previous", Json::String(previous.clone())));
                        self.log(
                            Decision::Rebind,
                            Some(&address),
                            "steer_failed",
                            carrier,
                            &fields,
                        );
                    } else {
                        self.log(
                            Decision::Pin,
                            Some(&address),
                            "new_session",
                            carrier,
                            &fields,
                        );
                    }
                }
            }
            // A stream the table no longer held: a session issued on it must still be signed,
            // or its next request would be refused.
            None => {
                if !plugin.config.session_keys.is_empty() {
                    self.issue(Issue::logged(false));
                }
            }
        }
        false
    }

    /// Replaces a routed MCP request's failure with MCP's 404, as the request phase answers a
    /// dead envelope (Envoy sends the reply straight to the client: no filter after kasi, and
    /// so no `stateful_session`, sees it). Counted as a 404 answered (the request was counted
    /// routed already) and logged as the rejection its next request would have met.
    fn answer_not_found(&self, address: Option<&str>) -> bool {
        if send_mcp_not_found().is_err() {
            return false;
        }
        count(self.plugin, Counter::McpNotFound);
        self.log(
            Decision::Rejected,
            address,
            Rejection::Dead.reason(),
            Carrier::Envelope,
            &[("answer", number(policy::MCP_NOT_FOUND_STATUS.into()))],
        );
        true
    }

    /// Whether the response carries anything `stateful_session` may have issued: a
    /// `set-cookie`, the MCP header or the session header. Each is looked up on its own — a
    /// header that is absent is answered without handing anything into the VM — so that a
    /// routed MCP or header-mode response that re-issues nothing (nearly all of them, with the
    /// bundle's cookie `stateful_session` skipped for such requests) never pays for reading the
    /// whole map.
    fn carries_a_session(&self) -> bool {
        let config = &self.plugin.config;
        ["set-cookie", &config.mcp_header, &config.session_header]
            .into_iter()
            .filter(|name| !name.is_empty())
            .any(|name| !matches!(abi::header_value(abi::RESPONSE_HEADERS, name), Ok(None)))
    }

    /// The request's `:authority`, as the request phase left it for this response; `None`
    /// for a routed cookie request (it costs every routed request a host call, and only a rare
    /// dead line would use it).
    fn authority(&self) -> Option<String> {
        self.authority
            .borrow_mut()
            .get_or_insert_with(|| {
                abi::property(&[AUTHORITY_PROPERTY])
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            })
            .clone()
    }

    /// The sessions `stateful_session` issued on this response, in every carrier, each with its
    /// MAC appended when sessions are signed: a session cookie's `Set-Cookie`, the envelope
    /// Envoy wrapped the server's `mcp_header` in, the value Envoy wrote in `session_header`.
    fn issue(&self, how: Issue) -> Vec<(Carrier, SessionCookie, Option<String>)> {
        let config = &self.plugin.config;
        let mut issued = Vec::new();
        let Ok(serialized) = abi::header_map(abi::RESPONSE_HEADERS) else {
            return issued;
        };
        let Some(headers) = header_map::pairs(&serialized) else {
            return issued;
        };
        let values = |name: &str| -> Vec<&[u8]> {
            if name.is_empty() {
                return Vec::new();
            }
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| *v)
                .collect()
        };
        let signed = !config.session_keys.is_empty();
        // No authority, no signature: an unsigned session is refused on its next request, which
        // then starts afresh.
        let authority = || self.authority().unwrap_or_default();

        let set_cookies = values("set-cookie");
        if let Some(cookie) =
            policy::issued_cookie(set_cookies.iter().copied(), &config.cookie_name)
        {
            if how.drop_cookie {
                let name = config.cookie_name.as_bytes();
                let _ = abi::set_header(abi::RESPONSE_HEADERS, "set-cookie", None);
                for other in set_cookies
                    .iter()
                    .filter(|v| policy::set_cookie_pair(v).is_none_or(|(n, _)| n != name))
                {
                    let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", other);
                }
            } else if signed {
                let authority = authority();
                let rewritten: Vec<Option<Vec<u8>>> = set_cookies
                    .iter()
                    .map(|v| {
                        policy::sign_set_cookie(
                            v,
                            &config.cookie_name,
                            &config.session_keys,
                            authority.as_bytes(),
                        )
                    })
                    .collect();
                if rewritten.iter().any(Option::is_some) {
                    let _ = abi::set_header(abi::RESPONSE_HEADERS, "set-cookie", None);
                    for (original, signed) in set_cookies.iter().zip(&rewritten) {
                        let value = signed.as_deref().unwrap_or(original);
                        let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", value);
                    }
                }
            }
            if !how.drop_cookie {
                issued.push((Carrier::Cookie, cookie, None));
            }
        }

        for (carrier, name) in [
            (Carrier::Envelope, &config.mcp_header),
            (Carrier::Header, &config.session_header),
        ] {
            let found = values(name);
            if found.is_empty() {
                continue;
            }
            // Only what Envoy wrote for the host this response came from is a session.
            let Some(upstream) = abi::property(&["upstream", "address"]).ok().flatten() else {
                continue;
            };
            let Some(session) = policy::issued_in_header(carrier, &found, &upstream) else {
                continue;
            };
            if signed {
                let authority = authority();
                if let Some(value) = config.session_keys.sign(
                    found[0],
                    authority.as_bytes(),
                    carrier.mac_separator(),
                ) {
                    let _ = abi::set_header(abi::RESPONSE_HEADERS, name, Some(&value));
                }
            }
            let hash = (how.with_session && carrier == Carrier::Envelope)
                .then(|| crate::envelope::session_hash_of(found[0]))
                .flatten();
            issued.push((carrier, session, hash));
        }
        issued
    }

    /// Makes a failed response drop its session: the client's next request may reach another
    /// activator replica that has not seen this failure, and must arrive there as a new session
    /// rather than fail a second time. A cookie `stateful_session` just wrote for the dead pod
    /// is taken out and the client told to delete its own; an envelope or header-mode value
    /// Envoy wrote for the dead pod is taken out (MCP sessions are dropped by the 404 their
    /// next request gets).
    fn drop_session(&self) {
        let config = &self.plugin.config;
        let name = config.cookie_name.as_bytes();
        if let Ok(serialized) = abi::header_map(abi::RESPONSE_HEADERS) {
            let headers = header_map::pairs(&serialized).unwrap_or_default();
            let set_cookies: Vec<&[u8]> = headers
                .iter()
                .filter(|(n, _)| *n == b"set-cookie")
                .map(|(_, v)| *v)
                .collect();
            let others: Vec<&[u8]> = set_cookies
                .iter()
                .copied()
                .filter(|v| {
                    name.is_empty() || policy::set_cookie_pair(v).is_none_or(|(n, _)| n != name)
                })
                .collect();
            if others.len() != set_cookies.len() {
                let _ = abi::set_header(abi::RESPONSE_HEADERS, "set-cookie", None);
                for other in others {
                    let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", other);
                }
            }
            for session_header in [&config.mcp_header, &config.session_header] {
                let present = !session_header.is_empty()
                    && headers
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(session_header.as_bytes()));
                if present {
                    let _ = abi::set_header(abi::RESPONSE_HEADERS, session_header, None);
                }
            }
        }
        if !config.cookie_name.is_empty() {
            let expire = policy::expiring_cookie(&config.cookie_name, &config.cookie_path);
            let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", expire.as_bytes());
        }
    }

    /// Whether pin and rebind lines are written.
    fn logs_changes(&self) -> bool {
        wanted(&self.plugin.config, Decision::Pin)
    }

    /// Quarantines `address` for every worker; retried on a concurrent write (CAS mismatch).
    fn mark_dead(&self, address: &str, carrier: Carrier) {
        let now = abi::now_unix_s();
        let ttl = self.plugin.config.dead_host_ttl_s;
        for _ in 0..8 {
            let Ok((list, cas)) = abi::shared_data(DEAD_HOSTS_KEY) else {
                break;
            };
            let updated = dead_hosts::with(
                list.as_deref().unwrap_or_default(),
                address.as_bytes(),
                now + ttl,
                now,
            );
            match abi::set_shared_data(DEAD_HOSTS_KEY, &updated, cas) {
                Err(abi::CAS_MISMATCH) => continue,
                _ => break,
            }
        }
        self.log(
            Decision::Dead,
            Some(address),
            "connect_failure",
            carrier,
            &[("quarantine_s", number(ttl))],
        );
    }

    fn log(
        &self,
        decision: Decision,
        address: Option<&str>,
        reason: &str,
        carrier: Carrier,
        extra: &[(&str, Json)],
    ) {
        if wanted(&self.plugin.config, decision) {
            let authority = self.authority();
            write_line(
                decision,
                address,
                authority.as_deref(),
                reason,
                carrier,
                extra,
            );
        }
    }
}

/// MCP's 404 "Session not found" with its JSON-RPC body: the client starts a new session.
fn send_mcp_not_found() -> Result<(), abi::Status> {
    let headers: [(&[u8], &[u8]); 1] = [(
        b"content-type",
        policy::MCP_NOT_FOUND_CONTENT_TYPE.as_bytes(),
    )];
    abi::send_local_response(
        policy::MCP_NOT_FOUND_STATUS,
        MCP_NOT_FOUND_DETAILS,
        policy::MCP_NOT_FOUND_BODY.as_bytes(),
        &headers,
    )
}

fn remember(context_id: u32, state: State) {
    if cfg!(feature = "request-phase-only") {
        // No response phase will take it.
        return;
    }
    PENDING.with(|p| p.borrow_mut().insert(context_id, state));
}

fn count(plugin: &Plugin, counter: Counter) {
    abi::increment(plugin.metric_ids[counter as usize]);
}

fn wanted(config: &Config, decision: Decision) -> bool {
    match config.log_decisions {
        LogDecisions::Off => false,
        LogDecisions::Changes => decision != Decision::Routed,
        LogDecisions::All => true,
    }
}

fn write_line(
    decision: Decision,
    address: Option<&str>,
    authority: Option<&str>,
    reason: &str,
    carrier: Carrier,
    extra: &[(&str, Json)],
) {
    let line = decision_log::line(
        decision,
        address,
        authority,
        reason,
        carrier.as_str(),
        extra,
    );
    abi::log(abi::LOG_INFO, &line);
}

fn cookie_fields(cookie: &SessionCookie) -> Vec<(&'static str, Json)> {
    vec![
        ("format", Json::String(cookie.format.as_str().to_owned())),
        ("expires", cookie.expires.map_or(Json::Null, number)),
    ]
}

/// `"session"`: the hash of an MCP session's server id, on the lines about it.
fn session_field(session: Option<String>) -> Option<(&'static str, Json)> {
    session.map(|hash| ("session", Json::String(hash)))
}

fn number(n: u64) -> Json {
    Json::Number(n.to_string())
}

/// Whether the upstream could not be connected to. Envoy answers that with a local `503`
/// (flags UF or UH), so the status is read first (a header is cheaper to read than a property)
/// and the flags only for a `5xx`.
fn failed_to_connect() -> bool {
    match abi::header_value(abi::RESPONSE_HEADERS, ":status") {
        Ok(Some(status)) if status.first() != Some(&b'5') => false,
        _ => policy::failed_to_connect(response_flags()),
    }
}

/// Envoy's response flags (a bit set; 0 when unavailable).
fn response_flags() -> u64 {
    abi::property(&["response", "flags"])
        .ok()
        .flatten()
        .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
        .unwrap_or(0)
}
