//! The proxy-wasm layer: reads headers in, applies the [`policy`] plan out, counts and logs.
//! Nothing here decides anything; every decision lives in the native, tested library.
//!
//! Host calls are the cost of a proxy-wasm filter, so the request path makes as few as it can:
//! one to read the request headers, one to set the routing header, one shared-data read for the
//! dead-host memory, and the response path one property read, only for requests it routed.

use crate::config::{Config, LogDecisions};
use crate::decision_log::{self, Decision};
use crate::json::Json;
use crate::metrics::{self, Counter};
use crate::policy::{self, Rejection, RequestPlan, Verdict};
use crate::{codec::SessionCookie, dead_hosts};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType, Status};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            size,
        ) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log_error(&format!("cannot read pluginConfig: {status:?}"));
                return false;
            }
        };
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log_error(&format!("kasi_affinity refuses to start: {e}"));
                return false;
            }
        };
        let mut metric_ids = [0u32; metrics::ALL.len()];
        for (id, name) in metric_ids.iter_mut().zip(metrics::ALL) {
            match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(defined) => *id = defined,
                Err(status) => {
                    log_error(&format!("cannot define counter {name}: {status:?}"));
                    return false;
                }
            }
        }
        self.shared = Some(Rc::new(Shared { config, metric_ids }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration there is nothing to enforce; Envoy does not create streams
        // for a plugin whose on_configure failed, so this is only belt and braces.
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
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return;
        };
        let shared = Rc::clone(&self.shared);
        let config = &shared.config;
        let now = now_unix_s();
        let plan = policy::plan_request(
            config,
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())),
            now,
            |address| is_dead(address, now),
        );
        self.count(Counter::Requests);
        let logging = config.log_decisions;
        if logging != LogDecisions::Off
            && (logging == LogDecisions::All || !matches!(plan.verdict, Verdict::Routed { .. }))
        {
            self.authority = headers
                .iter()
                .find(|(n, _)| n == ":authority")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        }
        self.apply(plan);
    }

    fn apply(&mut self, plan: RequestPlan) {
        let header = self.shared.config.header.as_str();
        if plan.strip_header {
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, header, None);
            self.count(Counter::HeaderStripped);
            self.log(Decision::Stripped, None, "client_sent_header", &[]);
        }
        if let Some(rewrite) = &plan.cookie_rewrite {
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                "cookie",
                rewrite.as_deref(),
            );
        }
        self.state = match plan.verdict {
            Verdict::NoCookie => State::NoCookie,
            Verdict::Routed { cookie, address } => {
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    header,
                    Some(address.as_bytes()),
                );
                self.count(Counter::CookieRouted);
                if self.shared.config.log_decisions == LogDecisions::All {
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
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {}
            State::Routed(address) => {
                let flags = hostcalls::get_property(vec!["response", "flags"])
                    .ok()
                    .flatten()
                    .and_then(|b| {
                        b.get(..8)
                            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                    })
                    .unwrap_or(0);
                if policy::failed_to_connect(flags) {
                    self.mark_dead(&address);
                } else {
                    self.count(Counter::StickyHits);
                }
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

    /// Quarantines `address` for every worker; retried on a concurrent write (CAS mismatch).
    fn mark_dead(&mut self, address: &str) {
        let now = now_unix_s();
        let until = now + self.shared.config.dead_host_ttl_s;
        for _ in 0..8 {
            let Ok((list, cas)) = hostcalls::get_shared_data(DEAD_HOSTS_KEY) else {
                return;
            };
            let updated = dead_hosts::with(
                list.as_deref().unwrap_or_default(),
                address.as_bytes(),
                until,
                now,
            );
            match hostcalls::set_shared_data(DEAD_HOSTS_KEY, Some(&updated), cas) {
                Err(Status::CasMismatch) => continue,
                _ => break,
            }
        }
        if self.shared.config.log_decisions != LogDecisions::Off {
            if self.authority.is_none() {
                self.authority =
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":authority")
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
            }
            let ttl = self.shared.config.dead_host_ttl_s;
            self.log(
                Decision::Dead,
                Some(address),
                "connect_failure",
                &[("quarantine_s", number(ttl))],
            );
        }
    }

    fn issued_cookie(&self) -> Option<SessionCookie> {
        let headers = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).ok()?;
        policy::issued_cookie(
            headers
                .iter()
                .filter(|(n, _)| n == "set-cookie")
                .map(|(_, v)| v.as_slice()),
            &self.shared.config.cookie_name,
        )
    }

    fn count(&self, counter: Counter) {
        let _ = hostcalls::increment_metric(self.shared.metric_ids[counter as usize], 1);
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
            let _ = hostcalls::log(LogLevel::Info, &line);
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

fn is_dead(address: &str, now: u64) -> bool {
    match hostcalls::get_shared_data(DEAD_HOSTS_KEY) {
        Ok((Some(list), _)) => dead_hosts::contains(&list, address.as_bytes(), now),
        _ => false,
    }
}

fn now_unix_s() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn log_error(message: &str) {
    let _ = hostcalls::log(LogLevel::Error, message);
}
