//! The proxy-wasm layer: reads headers in, applies the [`policy`] plan out, counts and logs.
//! Nothing here decides anything; every decision lives in the native, tested library.
//!
//! The SDK provides the context dispatch; every host call goes through [`abi`], which returns
//! errors instead of panicking (a panic kills the VM for every later request). Host calls are the
//! cost of a proxy-wasm filter, so the request path makes as few as it can: one to read the
//! request headers, one to set the routing header, one shared-data read for the dead-host memory,
//! and the response path one property read, only for requests it routed.

mod abi;

use crate::codec::SessionCookie;
use crate::config::{Config, LogDecisions};
use crate::decision_log::{self, Decision};
use crate::json::Json;
use crate::metrics::{self, Counter};
use crate::policy::{self, Rejection, RequestPlan, Verdict};
use crate::{dead_hosts, header_map};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

/// Shared-data key of the dead-host list, one per Envoy process (all worker VMs see it).
const DEAD_HOSTS_KEY: &str = "kasi_affinity.dead_hosts";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { shared: None }) });
}}

/// What every request context of one plugin configuration shares.
struct Shared {
    config: Config,
    metric_ids: [u32; metrics::ALL.len()],
}

struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match abi::plugin_configuration(size) {
            Ok(bytes) => bytes,
            Err(status) => {
                abi::log(
                    abi::LOG_ERROR,
                    &format!("kasi_affinity cannot read its pluginConfig (status {status})"),
                );
                return false;
            }
        };
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                abi::log(
                    abi::LOG_ERROR,
                    &format!("kasi_affinity refuses to start: {e}"),
                );
                return false;
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
                    return false;
                }
            }
        }
        self.shared = Some(Rc::new(Shared { config, metric_ids }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no streams for a plugin whose on_configure failed; belt and braces.
        let shared = self.shared.clone()?;
        Some(Box::new(Stream {
            shared,
            state: State::Idle,
            authority: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// What the request phase leaves for the response phase.
enum State {
    Idle,
    NoCookie,
    Routed(String),
    Rejected(Rejection, Option<String>),
}

struct Stream {
    shared: Rc<Shared>,
    state: State,
    /// The request's `:authority`, kept for decision lines (request headers cannot be read in
    /// the response phase of a local reply).
    authority: Option<String>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_request();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_response();
        Action::Continue
    }
}

impl Stream {
    fn on_request(&mut self) {
        let Ok(serialized) = abi::header_map(abi::REQUEST_HEADERS) else {
            return;
        };
        let Some(headers) = header_map::pairs(&serialized) else {
            return;
        };
        let shared = Rc::clone(&self.shared);
        let config = &shared.config;
        let now = abi::now_unix_s();
        let plan = policy::plan_request(config, headers.iter().copied(), now, |address| {
            is_dead(address, now)
        });
        self.count(Counter::Requests);
        if config.log_decisions != LogDecisions::Off {
            self.authority = headers
                .iter()
                .find(|(n, _)| *n == b":authority")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        }
        self.apply(plan);
    }

    fn apply(&mut self, plan: RequestPlan) {
        let shared = Rc::clone(&self.shared);
        let header = shared.config.header.as_str();
        if plan.strip_header {
            let _ = abi::set_header(abi::REQUEST_HEADERS, header, None);
            self.count(Counter::HeaderStripped);
            self.log(Decision::Stripped, None, "client_sent_header", &[]);
        }
        if let Some(rewrite) = &plan.cookie_rewrite {
            let _ = abi::set_header(abi::REQUEST_HEADERS, "cookie", rewrite.as_deref());
        }
        self.state = match plan.verdict {
            Verdict::NoCookie => State::NoCookie,
            Verdict::Routed { cookie, address } => {
                let _ = abi::set_header(abi::REQUEST_HEADERS, header, Some(address.as_bytes()));
                self.count(Counter::CookieRouted);
                if shared.config.log_decisions == LogDecisions::All {
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
                self.count(Counter::rejected(&rejection));
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
                State::Rejected(rejection, address)
            }
        };
    }

    fn on_response(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        if matches!(state, State::Idle) {
            return;
        }
        let failed = policy::failed_to_connect(response_flags());
        match state {
            State::Idle => {}
            State::Routed(address) if failed => {
                self.mark_dead(&address);
                self.drop_session_cookie();
            }
            State::Routed(_) => self.count(Counter::StickyHits),
            // Not routed by a cookie, yet the pod the activator picked is gone (its endpoints
            // not updated yet): stateful_session would pin the session to that dead pod.
            State::NoCookie | State::Rejected(..) if failed => {
                if let Some(address) = abi::property(&["upstream", "address"]).ok().flatten() {
                    self.mark_dead(&String::from_utf8_lossy(&address));
                }
                self.drop_session_cookie();
            }
            State::NoCookie => {
                if self.shared.config.log_decisions != LogDecisions::Off {
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
                    self.count(Counter::Rebinds);
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
        let name = self.shared.config.cookie_name.as_bytes();
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
        let expire = policy::expiring_cookie(&self.shared.config.cookie_name);
        let _ = abi::add_header(abi::RESPONSE_HEADERS, "set-cookie", expire.as_bytes());
    }

    /// Quarantines `address` for every worker; retried on a concurrent write (CAS mismatch).
    fn mark_dead(&mut self, address: &str) {
        let now = abi::now_unix_s();
        let ttl = self.shared.config.dead_host_ttl_s;
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
            &self.shared.config.cookie_name,
        )
    }

    fn count(&self, counter: Counter) {
        abi::increment(self.shared.metric_ids[counter as usize]);
    }

    fn log(&self, decision: Decision, address: Option<&str>, reason: &str, extra: &[(&str, Json)]) {
        let wanted = match self.shared.config.log_decisions {
            LogDecisions::Off => false,
            LogDecisions::Changes => decision != Decision::Routed,
            LogDecisions::All => true,
        };
        if wanted {
            let line =
                decision_log::line(decision, address, self.authority.as_deref(), reason, extra);
            abi::log(abi::LOG_INFO, &line);
        }
    }
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

/// Envoy's response flags (a bit set; 0 when unavailable).
fn response_flags() -> u64 {
    abi::property(&["response", "flags"])
        .ok()
        .flatten()
        .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
        .unwrap_or(0)
}

fn is_dead(address: &str, now: u64) -> bool {
    match abi::shared_data(DEAD_HOSTS_KEY) {
        Ok((Some(list), _)) => dead_hosts::contains(&list, address.as_bytes(), now),
        _ => false,
    }
}
