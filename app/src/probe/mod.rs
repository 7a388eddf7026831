//! The probe: virtual clients, each with its own cookie jar, measuring stickiness from the client
//! side. A session's pinned pod is the one that served its first request; its hit rate is the
//! share of later requests served by that pod (DESIGN.md). Pods are told apart by `x-kasi-pod`
//! when they send it (the lab's do), else by the address in the session cookie.

mod mcp;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const DEFAULT_COOKIE: &str = "kasi-session";

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub url: String,
    pub sessions: usize,
    pub requests_per_session: usize,
    pub cookie_name: String,
    /// Pause between rounds (all sessions send once per round), to look like users thinking.
    pub pause: Duration,
    /// MCP clients (Streamable HTTP sessions) instead of cookie jars.
    pub mcp: bool,
    /// `HOST:PORT:ADDR` overrides, as curl's `--resolve`: requests to HOST:PORT connect to ADDR
    /// (the URL's host stays the `Host` header, so an ingress routes by it).
    pub resolve: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One virtual user.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SessionReport {
    pub pinned: Option<String>,
    /// The address the session's cookie pins (decoded), when it has one.
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
    /// Requests compared against the pin (not the ones that set it).
    #[serde(skip)]
    counted: u64,
    #[serde(skip)]
    cookie: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeReport {
    pub url: String,
    pub sessions: Vec<SessionReport>,
    pub requests: u64,
    pub failures: u64,
    pub hit_rate: Option<f64>,
}

impl ProbeReport {
    pub(crate) fn recompute(&mut self) {
        self.requests = self.sessions.iter().map(|s| s.requests).sum();
        self.failures = self.sessions.iter().map(|s| s.failures).sum();
        let hits: u64 = self.sessions.iter().map(|s| s.hits).sum();
        // Every session's first request only establishes the pin.
        let counted: u64 = self
            .sessions
            .iter()
            .map(|s| s.requests.saturating_sub(1))
            .sum();
        self.hit_rate = (counted > 0).then(|| hits as f64 / counted as f64);
        for s in &mut self.sessions {
            let counted = s.requests.saturating_sub(1);
            s.hit_rate = (counted > 0).then(|| s.hits as f64 / counted as f64);
        }
    }
}

/// Where to send: `http://host:port/path` (the probe speaks plain HTTP: the lab's ingress or a
/// port-forwarded gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    resolve(parse_url_unresolved(url)?, &[])
}

/// The URL's authority and path, not yet resolved (`addr` is filled by [`resolve`]).
fn parse_url_unresolved(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            bail!("{url}: the probe speaks plain HTTP; port-forward the gateway and probe http://127.0.0.1:PORT");
        }
        bail!("{url}: expected a URL such as http://127.0.0.1:8080/");
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    if authority.is_empty() {
        bail!("{url}: no host in the URL");
    }
    Ok(Target {
        addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        host: authority.to_owned(),
        path,
    })
}

/// Where to connect: a `--resolve HOST:PORT:ADDR` that matches the URL's authority, else DNS.
fn resolve(mut target: Target, overrides: &[String]) -> anyhow::Result<Target> {
    for entry in overrides {
        let mut parts = entry.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("--resolve {entry:?}: expected HOST:PORT:ADDR, e.g. mcp.default.example.com:80:127.0.0.1");
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("--resolve {entry:?}: {port:?} is not a port"))?;
        let ip: std::net::IpAddr = addr
            .trim_matches(['[', ']'])
            .parse()
            .with_context(|| format!("--resolve {entry:?}: {addr:?} is not an IP address"))?;
        let (url_host, url_port) = match target.host.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(80)),
            None => (target.host.as_str(), 80),
        };
        if url_host.eq_ignore_ascii_case(host) && url_port == port {
            target.addr = std::net::SocketAddr::new(ip, port);
            return Ok(target);
        }
    }
    let authority = if target.host.contains(':') {
        target.host.clone()
    } else {
        format!("{}:80", target.host)
    };
    target.addr = std::net::ToSocketAddrs::to_socket_addrs(&authority)
        .with_context(|| {
            format!("cannot resolve {authority:?} (give host:port, or --resolve HOST:PORT:ADDR)")
        })?
        .next()
        .with_context(|| format!("{authority:?} resolves to nothing"))?;
    Ok(target)
}

/// Runs the probe; each finished round is sent to `progress` (if given) as the report so far.
pub async fn run(
    options: &ProbeOptions,
    progress: Option<mpsc::Sender<ProbeReport>>,
) -> anyhow::Result<ProbeReport> {
    if options.sessions == 0 || options.requests_per_session == 0 {
        bail!("--sessions and --requests must be at least 1");
    }
    let target = resolve(parse_url_unresolved(&options.url)?, &options.resolve)?;
    if options.mcp {
        return mcp::run(options, &target, progress).await;
    }
    let mut report = ProbeReport {
        url: options.url.clone(),
        sessions: vec![SessionReport::default(); options.sessions],
        ..Default::default()
    };
    for round in 0..options.requests_per_session {
        if round > 0 && !options.pause.is_zero() {
            tokio::time::sleep(options.pause).await;
        }
        // Sessions interleave, as users do, so each pod serves many sessions at once.
        for session in &mut report.sessions {
            let response = get(
                &target,
                session
                    .cookie
                    .as_deref()
                    .map(|c| (options.cookie_name.as_str(), c)),
            )
            .await;
            session.requests += 1;
            match response {
                Ok(r) if r.status < 500 => {
                    if let Some(cookie) = r.set_cookie(&options.cookie_name) {
                        session.cookie = (!cookie.is_empty()
                            && !r.deletes_cookie(&options.cookie_name))
                        .then_some(cookie);
                    } else if r.deletes_cookie(&options.cookie_name) {
                        session.cookie = None;
                    }
                    let served = r
                        .pod
                        .clone()
                        .or_else(|| session.cookie.as_deref().and_then(cookie_address));
                    match (&session.pinned, served) {
                        (None, served) => session.pinned = served,
                        (Some(pinned), Some(served)) if *pinned == served => session.hits += 1,
                        _ => {}
                    }
                }
                _ => session.failures += 1,
            }
        }
        report.recompute();
        if let Some(progress) = &progress {
            if progress.send(report.clone()).await.is_err() {
                break;
            }
        }
    }
    Ok(report)
}

/// The pod a session cookie names, signed or not.
fn cookie_address(value: &str) -> Option<String> {
    crate::affinity::decode::decode_value(value)
        .ok()
        .map(|(c, _)| c.address.to_string())
}

struct Response {
    status: u16,
    pod: Option<String>,
    set_cookies: Vec<String>,
}

impl Response {
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|h| {
            let (n, v) = h.split(';').next()?.split_once('=')?;
            (n.trim() == name).then(|| v.trim().to_owned())
        })
    }

    fn deletes_cookie(&self, name: &str) -> bool {
        self.set_cookies.iter().any(|h| {
            h.split(';')
                .next()
                .and_then(|p| p.split_once('='))
                .is_some_and(|(n, _)| n.trim() == name)
                && h.to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0")
        })
    }
}

async fn get(target: &Target, cookie: Option<(&str, &str)>) -> anyhow::Result<Response> {
    let work = async {
        let stream = TcpStream::connect(target.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request =
            hyper::Request::get(&target.path).header(http::header::HOST, &target.host);
        if let Some((name, value)) = cookie {
            request = request.header(http::header::COOKIE, format!("{name}={value}"));
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // Drain the body so the connection finishes cleanly.
        let _ = response.into_body().collect().await;
        let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        Ok::<_, anyhow::Error>(Response {
            status,
            pod: headers.get("x-kasi-pod").map(text),
            set_cookies: headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .map(text)
                .collect(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .context("request timed out")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_with_a_reason() {
        let t = parse_url("http://127.0.0.1:8080/hello?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/hello?x=1");
        assert_eq!(parse_url("http://127.0.0.1:8080").unwrap().path, "/");
        assert!(parse_url("https://x")
            .unwrap_err()
            .to_string()
            .contains("plain HTTP"));
        let t = resolve(
            parse_url_unresolved("http://mcp.default.example.com:31380/mcp").unwrap(),
            &["mcp.default.example.com:31380:127.0.0.9".to_owned()],
        )
        .unwrap();
        assert_eq!(t.addr, "127.0.0.9:31380".parse().unwrap());
        assert_eq!(t.host, "mcp.default.example.com:31380");
        assert!(resolve(
            parse_url_unresolved("http://x:1/").unwrap(),
            &["x:1".to_owned()]
        )
        .unwrap_err()
        .to_string()
        .contains("HOST:PORT:ADDR"));
        assert!(parse_url("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("expected a URL"));
    }

    #[test]
    fn the_first_request_only_pins() {
        let mut report = ProbeReport {
            sessions: vec![
                SessionReport {
                    requests: 10,
                    hits: 9,
                    ..Default::default()
                },
                SessionReport {
                    requests: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        report.recompute();
        assert_eq!(report.hit_rate, Some(1.0));
        assert_eq!(report.sessions[1].hit_rate, None);
    }
}
