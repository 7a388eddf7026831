//! The proxy-wasm layer: reads headers in, applies the [`policy`] verdict out, counts and logs.
//! Nothing here decides anything; every decision lives in the native, tested library.
//!
//! Each call between Envoy and the VM costs about as much as all of kasi's own logic, and a
//! value the host hands over several times more than a plain call out: the host allocates it by
//! calling into the VM's allocator (`./dev bench` measured them; see the README — Envoy calling
//! a callback that reads nothing cost nothing measurable). So this layer implements the
//! proxy-wasm ABI by hand rather than through the SDK:
//!
//! - It exports only the callbacks it needs. Envoy calls a callback only if the module exports
//!   it, and the SDK exports all of them, so an SDK filter pays for seven calls into the VM per
//!   request (context create, request headers, response headers, response body, log, done,
//!   delete). kasi is called twice: request headers and response headers.
//! - A request with a session cookie for an IPv4 pod, nearly all of them, takes a path without
//!   allocating ([`codec::decode_ipv4`], [`policy::routes_ipv4`]; property tests hold them to
//!   the general path's results): four host calls and one copy in — is the routing header
//!   there (a miss copies nothing), the first `cookie` header's value, the dead-host list (a
//!   miss, or an empty value, until a pod fails), setting the header — and two counters. The
//!   whole header map is read only when the first `cookie` header does not decide the request
//!   (no session cookie in it, or one that is not honoured and must be removed from them all).
//! - The clock is read only for a cookie with a Unix-time expiry or a non-empty dead-host list;
//!   `:authority` only when a decision line may be written.
//! - The response path reads the status, and Envoy's response flags only for a `5xx` (did the
//!   upstream connect?), and counts.
//!
//! Every host call goes through [`abi`], which returns errors instead of panicking (a panic
//! kills the VM for every later request). A request the filter cannot read is let through
//! with the routing header removed: the filter never fails a request because of itself.

// The `request-phase-only` benchmark build leaves the response phase's code unused.
#![cfg_attr(feature = "request-phase-only", allow(dead_code))]

mod abi;

use crate::codec::{self, Ipv4Cookie, SessionCookie};
use crate::config::{Config, LogDecisions};
use crate::decision_log::{self, Decision};
use crate::json::Json;
use crate::metrics::{self, Counter};
use crate::pending::PendingStreams;
use crate::policy::{self, Rejection, RequestPlan, Verdict};
use crate::{cookies, dead_hosts, header_map};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Shared-data key of the dead-host list, one per Envoy process (all worker VMs see it).
const DEAD_HOSTS_KEY: &str = "kasi_affinity.dead_hosts";

/// Streams in flight kept in the direct-mapped table, and at most in its overflow (see
/// [`PendingStreams`]).
const PENDING_SLOTS: usize = 256;
const MAX_SPILLED_STREAMS: usize = 16_384;

/// Action::Continue.
const CONTINUE: u32 = 0;

/// What the streams of this VM share: the last pluginConfig Envoy accepted.
struct Plugin {
    config: Config,
    metric_ids: [u32; metrics::ALL.len()],
}

/// What the request phase leaves for the response phase.
enum State {
    NoCookie,
    /// Routed on the fast path: the IPv4 address, inline.
    RoutedV4(Ipv4Text),
    Routed(String),
    Rejected(Rejection, Option<String>),
}

/// `255.255.255.255:65535` at most.
#[derive(Clone, Copy)]
struct Ipv4Text {
    len: u8,
    bytes: [u8; 21],
}

impl Ipv4Text {
    fn new(text: &str) -> Ipv4Text {
        let mut bytes = [0u8; 21];
        let len = text.len().min(bytes.len());
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Ipv4Text {
            len: len as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        // Copied from a `&str` of ASCII digits, dots and a colon.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

struct Pending {
    state: State,
    /// `:authority`, when the request phase read it for a decision line.
    authority: Option<String>,
}

thread_local! {
    // One VM per Envoy worker thread, single-threaded: these are just the VM's globals.
    static PLUGIN: RefCell<Option<Rc<Plugin>>> = const { RefCell::new(None) };
    static PENDING: RefCell<PendingStreams<Pending>> =
        RefCell::new(PendingStreams::new(PENDING_SLOTS, MAX_SPILLED_STREAMS));
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
            1
        }
        None => 0,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: u32, _eos: u32) -> u32 {
    if let Some(plugin) = PLUGIN.with(|p| p.borrow().clone()) {
        Request::new(&plugin).run(context_id);
    }
    CONTINUE
}

/// Not exported by the `request-phase-only` build, and doing nothing beyond taking the stream's
/// state in the `empty-response-phase` build (benchmark measurements, never installed).
#[cfg_attr(not(feature = "request-phase-only"), no_mangle)]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: u32, _eos: u32) -> u32 {
    let pending = PENDING.with(|p| p.borrow_mut().take(context_id));
    if cfg!(feature = "empty-response-phase") {
        return CONTINUE;
    }
    if let (Some(pending), Some(plugin)) = (pending, PLUGIN.with(|p| p.borrow().clone())) {
        Response::new(&plugin, pending.authority).run(pending.state);
    }
    CONTINUE
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
    Some(Plugin { config, metric_ids })
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
    /// `:authority`, once read (only for decision lines).
    authority: Option<Option<String>>,
}

impl<'a> Request<'a> {
    fn new(plugin: &'a Plugin) -> Request<'a> {
        Request {
            plugin,
            clock: Clock::new(),
            authority: None,
        }
    }

    fn run(mut self, context_id: u32) {
        let config = &self.plugin.config;
        let strip_header = matches!(
            abi::header_value(abi::REQUEST_HEADERS, &config.header),
            Ok(Some(_))
        );
        let first = abi::header_value(abi::REQUEST_HEADERS, "cookie");
        if let Ok(Some(value)) = &first {
            if let Some(cookie) = cookies::find([value.as_slice()], config.cookie_name.as_bytes()) {
                let mut buf = [0u8; codec::MAX_ENCODED_LEN];
                if let Some(cookie) = codec::decode_ipv4(cookie, &mut buf) {
                    let now = || self.clock.now();
                    if policy::routes_ipv4(config, &cookie, now, |a| self.is_dead(a)) {
                        self.route_ipv4(context_id, strip_header, &cookie);
                        return;
                    }
                }
            }
        }
        let Some(plan) = self.plan(strip_header, first) else {
            // Unreadable headers: let the request through, but never with a client's routing
            // header.
            let _ = abi::set_header(abi::REQUEST_HEADERS, &config.header, None);
            return;
        };
        let state = self.apply(plan);
        remember(context_id, state, self.authority.flatten());
    }

    /// The fast path's routed request: the same effects as [`Request::apply`] for a routed
    /// plan, with nothing allocated.
    fn route_ipv4(&mut self, context_id: u32, strip_header: bool, cookie: &Ipv4Cookie) {
        let plugin = self.plugin;
        if strip_header {
            count(plugin, Counter::HeaderStripped);
            self.log(Decision::Stripped, None, "client_sent_header", &[]);
        }
        count(plugin, Counter::Requests);
        // Replaces every copy of a client-sent header too.
        let _ = abi::set_header(
            abi::REQUEST_HEADERS,
            &plugin.config.header,
            Some(cookie.text.as_bytes()),
        );
        count(plugin, Counter::CookieRouted);
        if plugin.config.log_decisions == LogDecisions::All {
            self.log(
                Decision::Routed,
                Some(cookie.text),
                "cookie",
                &cookie_fields(&cookie.session_cookie()),
            );
        }
        let state = State::RoutedV4(Ipv4Text::new(cookie.text));
        remember(context_id, state, self.authority.take().flatten());
    }

    /// The request's plan from the first `cookie` header when that decides it (no cookie at all,
    /// or a session cookie that is honoured), else from the whole header map.
    fn plan(
        &self,
        strip_header: bool,
        first: Result<Option<Vec<u8>>, abi::Status>,
    ) -> Option<RequestPlan> {
        let config = &self.plugin.config;
        let decided = match &first {
            Ok(None) => Some(Verdict::NoCookie),
            Ok(Some(value)) => cookies::find([value.as_slice()], config.cookie_name.as_bytes())
                .map(|cookie| {
                    policy::judge(config, cookie, || self.clock.now(), |a| self.is_dead(a))
                })
                .filter(|verdict| matches!(verdict, Verdict::Routed { .. })),
            Err(_) => None,
        };
        if let Some(verdict) = decided {
            return Some(RequestPlan {
                strip_header,
                verdict,
                cookie_rewrite: None,
            });
        }
        // The session cookie is in another `cookie` header, or it is not honoured and must be
        // removed from all of them: the full map, and the policy over every header.
        let serialized = abi::header_map(abi::REQUEST_HEADERS).ok()?;
        let headers = header_map::pairs(&serialized)?;
        let now = self.clock.now();
        Some(policy::plan_request(
            config,
            headers.iter().copied(),
            now,
            |a| self.is_dead(a),
        ))
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

    fn apply(&mut self, plan: RequestPlan) -> State {
        let plugin = self.plugin;
        let header = plugin.config.header.as_str();
        let routed = matches!(plan.verdict, Verdict::Routed { .. });
        if plan.strip_header {
            // A routed request's header is replaced below, every copy at once.
            if !routed {
                let _ = abi::set_header(abi::REQUEST_HEADERS, header, None);
            }
            count(plugin, Counter::HeaderStripped);
            self.log(Decision::Stripped, None, "client_sent_header", &[]);
        }
        if let Some(rewrite) = &plan.cookie_rewrite {
            let _ = abi::set_header(abi::REQUEST_HEADERS, "cookie", rewrite.as_deref());
        }
        count(plugin, Counter::Requests);
        match plan.verdict {
            Verdict::NoCookie => {
                // The response phase logs the new pin (or the dead pod) under this authority.
                self.read_authority();
                State::NoCookie
            }
            Verdict::Routed { cookie, address } => {
                let _ = abi::set_header(abi::REQUEST_HEADERS, header, Some(address.as_bytes()));
                count(plugin, Counter::CookieRouted);
                if plugin.config.log_decisions == LogDecisions::All {
                    self.log(
                        Decision::Routed,
                        Some(&address),
                        "cookie",
                        &cookie_fields(&cookie),
                    );
                }
                State::Routed(address)
            }
            Verdict::Rejected { rejection, address } => {
                count(plugin, Counter::rejected(&rejection));
                let detail = match &rejection {
                    Rejection::Malformed(e) => vec![("detail", Json::String(e.to_string()))],
                    Rejection::Expired(at) => vec![("expires", number(*at))],
                    _ => Vec::new(),
                };
                self.log(
                    Decision::Rejected,
                    address.as_deref(),
                    rejection.reason(),
                    &detail,
                );
                // The response phase logs the new pin under this request's authority.
                self.read_authority();
                State::Rejected(rejection, address)
            }
        }
    }

    fn read_authority(&mut self) -> Option<&str> {
        if self.plugin.config.log_decisions == LogDecisions::Off {
            return None;
        }
        self.authority
            .get_or_insert_with(|| {
                abi::header_value(abi::REQUEST_HEADERS, ":authority")
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            })
            .as_deref()
    }

    fn log(
        &mut self,
        decision: Decision,
        address: Option<&str>,
        reason: &str,
        extra: &[(&str, Json)],
    ) {
        if wanted(&self.plugin.config, decision) {
            let authority = self.read_authority().map(str::to_owned);
            write_line(decision, address, authority.as_deref(), reason, extra);
        }
    }
}

/// The response phase of one stream.
struct Response<'a> {
    plugin: &'a Plugin,
    authority: Option<String>,
}

impl<'a> Response<'a> {
    fn new(plugin: &'a Plugin, authority: Option<String>) -> Response<'a> {
        Response { plugin, authority }
    }

    fn run(mut self, state: State) {
        let plugin = self.plugin;
        let failed = failed_to_connect();
        match state {
            State::RoutedV4(address) if failed => {
                self.mark_dead(address.as_str());
                self.drop_session_cookie();
            }
            State::Routed(address) if failed => {
                self.mark_dead(&address);
                self.drop_session_cookie();
            }
            State::RoutedV4(_) | State::Routed(_) => count(plugin, Counter::StickyHits),
            // Not routed by a cookie, yet the pod the activator picked is gone (its endpoints
            // not updated yet): stateful_session would pin the session to that dead pod.
            State::NoCookie | State::Rejected(..) if failed => {
                if let Some(address) = abi::property(&["upstream", "address"]).ok().flatten() {
                    self.mark_dead(&String::from_utf8_lossy(&address));
                }
                self.drop_session_cookie();
            }
            State::NoCookie => {
                if plugin.config.log_decisions != LogDecisions::Off {
                    if let Some(issued) = self.issued_cookie() {
                        let address = policy::canonical_address(&issued.address);
                        self.log(
                            Decision::Pin,
                            Some(&address),
                            "new_session",
                            &cookie_fields(&issued),
                        );
                    }
                }
            }
            State::Rejected(rejection, previous) => {
                if let Some(issued) = self.issued_cookie() {
                    count(plugin, Counter::Rebinds);
                    let address = policy::canonical_address(&issued.address);
                    let mut fields = cookie_fields(&issued);
                    fields.push(("previous", previous.map_or(Json::Null, Json::String)));
                    self.log(
                        Decision::Rebind,
                        Some(&address),
                        rejection.reason(),
                        &fields,
                    );
                }
            }
        }
    }

    /// Makes a failed response delete the session cookie: the client's next request may reach
    /// another activator replica that has not seen this failure, and must arrive there as a new
    /// session rather than fail a second time. A cookie `stateful_session` just wrote for the
    /// dead pod is taken out.
    fn drop_session_cookie(&self) {
        let name = self.plugin.config.cookie_name.as_bytes();
        if let Ok(serialized) = abi::header_map(abi::RESPONSE_HEADERS) {
            let set_cookies: Vec<&[u8]> = header_map::pairs(&serialized)
                .unwrap_or_default()
                .into_iter()
                .filter(|(n, _)| *n == b"set-cookie")
                .map(|(_, v)| v)
                .collect();
            let others: Vec<&[u8]> = set_cookies
                .iter()
                .copied()
                .filter(|v| policy::set_cookie_pair(v).is_none_or(|(n, _)| n != name))
                .collect();
            if others.len() != set_cookies.len() {
                let _ = abi::set_header(abi::RESPONSE_HEADERS, "set-cookie", None);
                for other in others {
                    let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", other);
                }
            }
        }
        let expire = policy::expiring_cookie(&self.plugin.config.cookie_name);
        let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", expire.as_bytes());
    }

    /// Quarantines `address` for every worker; retried on a concurrent write (CAS mismatch).
    fn mark_dead(&mut self, address: &str) {
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
            &[("quarantine_s", number(ttl))],
        );
    }

    fn issued_cookie(&self) -> Option<SessionCookie> {
        let serialized = abi::header_map(abi::RESPONSE_HEADERS).ok()?;
        let headers = header_map::pairs(&serialized)?;
        policy::issued_cookie(
            headers
                .iter()
                .filter(|(n, _)| *n == b"set-cookie")
                .map(|(_, v)| *v),
            &self.plugin.config.cookie_name,
        )
    }

    /// The authority is the one the request phase read: Envoy gives a filter the request's
    /// headers in the request phase only. A routed request's is not read (it would cost every
    /// routed request a host call), so its `dead` line, if it fails, says `null`.
    fn log(&self, decision: Decision, address: Option<&str>, reason: &str, extra: &[(&str, Json)]) {
        if wanted(&self.plugin.config, decision) {
            write_line(decision, address, self.authority.as_deref(), reason, extra);
        }
    }
}

fn remember(context_id: u32, state: State, authority: Option<String>) {
    if cfg!(feature = "request-phase-only") {
        // No response phase will take it.
        return;
    }
    PENDING.with(|p| {
        p.borrow_mut()
            .insert(context_id, Pending { state, authority })
    });
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
    extra: &[(&str, Json)],
) {
    let line = decision_log::line(decision, address, authority, reason, extra);
    abi::log(abi::LOG_INFO, &line);
}

fn cookie_fields(cookie: &SessionCookie) -> Vec<(&'static str, Json)> {
    vec![
        ("format", Json::String(cookie.format.as_str().to_owned())),
        ("expires", cookie.expires.map_or(Json::Null, number)),
    ]
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
