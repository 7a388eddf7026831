//! One virtual user's HTTP client: its own cookie jar and connections, so users share nothing a
//! browser would not (a pod that pins by connection would otherwise look sticky for free).
//! Built from the probe's options: `--resolve`, `--header`, `--http2`, `--insecure`.

use super::ProbeOptions;
use anyhow::{bail, Context as _};
use reqwest::cookie::Jar;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A request that takes longer than this counts as a failure (a stuck pod, not a slow one).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every virtual user's client is built from, checked once before any user starts.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub url: Url,
    /// The `--resolve` entry that applies to the URL: its host and where to connect instead.
    resolve: Option<(String, SocketAddr)>,
    headers: HeaderMap,
    http2: bool,
    insecure: bool,
}

/// A virtual user's client and the jar it keeps its cookies in (read back for the pinned pod).
pub struct UserClient {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl ClientPlan {
    /// Checks the URL and the flags; every error is one line naming the bad input.
    pub fn new(options: &ProbeOptions) -> anyhow::Result<Self> {
        let url = parse_url(&options.url)?;
        let mut resolve = None;
        for entry in &options.resolve {
            let (host, port, addr) = parse_resolve(entry)?;
            // As curl: an entry applies only to the URL's own host and port.
            let applies = url
                .host_str()
                .is_some_and(|h| h.trim_matches(['[', ']']).eq_ignore_ascii_case(&host))
                && url.port_or_known_default() == Some(port);
            if applies && resolve.is_none() {
                resolve = Some((host, SocketAddr::new(addr, port)));
            }
        }
        let mut headers = HeaderMap::new();
        for header in &options.headers {
            let (name, value) = parse_header(header)?;
            headers.append(name, value);
        }
        Ok(Self {
            url,
            resolve,
            headers,
            http2: options.http2,
            insecure: options.insecure,
        })
    }

    /// A fresh client: its own jar, its own connection pool.
    pub fn build(&self) -> anyhow::Result<UserClient> {
        install_crypto_provider();
        let jar = Arc::new(Jar::default());
        let mut builder = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .default_headers(self.headers.clone())
            .timeout(REQUEST_TIMEOUT)
            // The probe measures where requests land; a redirect would hide the first answer.
            .redirect(reqwest::redirect::Policy::none())
            // Talk to the gateway itself, never through a proxy from the environment.
            .no_proxy()
            .tls_danger_accept_invalid_certs(self.insecure);
        builder = if self.http2 {
            // Prior knowledge on http:// (h2c, as Knative's h2c services take it); on https://
            // reqwest then offers only `h2` in ALPN.
            builder.http2_prior_knowledge()
        } else {
            // HTTP/2 only when asked: what a browser-less HTTP/1.1 client sees is the default.
            builder.http1_only()
        };
        if let Some((host, addr)) = &self.resolve {
            builder = builder.resolve(host, *addr);
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(UserClient { http, jar })
    }
}

/// The probe's URL: http:// or https://, with a host.
fn parse_url(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).map_err(|e| {
        anyhow::anyhow!("{url}: {e}; expected a URL such as http://127.0.0.1:8080/")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("{url}: expected an http:// or https:// URL, such as http://127.0.0.1:8080/");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("{url}: no host in the URL");
    }
    Ok(parsed)
}

/// `HOST:PORT:ADDR`, as curl's `--resolve` (ADDR may be a bracketed IPv6 address).
fn parse_resolve(entry: &str) -> anyhow::Result<(String, u16, IpAddr)> {
    let mut parts = entry.splitn(3, ':');
    let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        bail!(
            "--resolve {entry:?}: expected HOST:PORT:ADDR, e.g. mcp.default.example.com:80:127.0.0.1"
        );
    };
    if host.is_empty() {
        bail!("--resolve {entry:?}: no host before the first ':'");
    }
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("--resolve {entry:?}: {port:?} is not a port"))?;
    let addr: IpAddr = addr
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| anyhow::anyhow!("--resolve {entry:?}: {addr:?} is not an IP address"))?;
    Ok((host.to_owned(), port, addr))
}

/// `Name: value`, as curl's `--header`.
fn parse_header(header: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = header.split_once(':') else {
        bail!("--header {header:?}: expected 'Name: value'");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        anyhow::anyhow!(
            "--header {header:?}: {:?} is not a header name",
            name.trim()
        )
    })?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        anyhow::anyhow!("--header {header:?}: the value is not a valid header value")
    })?;
    Ok((name, value))
}

/// rustls needs a process-wide crypto provider; kube brings ring, so the probe uses it too rather
/// than a second one. Installing twice is harmless: whoever came first wins.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(url: &str, resolve: &[&str], headers: &[&str]) -> anyhow::Result<ClientPlan> {
        ClientPlan::new(&ProbeOptions {
            url: url.into(),
            resolve: resolve.iter().map(|s| s.to_string()).collect(),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            ..ProbeOptions::default()
        })
    }

    #[test]
    fn urls_are_checked_with_a_reason() {
        assert!(plan("https://gateway.example.com/", &[], &[]).is_ok());
        assert!(plan("http://127.0.0.1:8080", &[], &[]).is_ok());
        let bad = |url| plan(url, &[], &[]).unwrap_err().to_string();
        assert!(
            bad("ftp://x").contains("http:// or https://"),
            "{}",
            bad("ftp://x")
        );
        assert!(bad("127.0.0.1:8080").contains("expected a URL"));
        assert!(bad("http://").contains("expected a URL"));
    }

    #[test]
    fn resolve_applies_only_to_the_urls_host_and_port() {
        let p = plan(
            "http://mcp.default.example.com:31380/mcp",
            &[
                "mcp.default.example.com:80:127.0.0.8",
                "other.example.com:31380:127.0.0.7",
                "MCP.default.example.com:31380:127.0.0.9",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            p.resolve,
            Some((
                "MCP.default.example.com".into(),
                "127.0.0.9:31380".parse().unwrap()
            ))
        );
        // The scheme's port counts when the URL names none.
        let p = plan("https://a.example/", &["a.example:443:[::1]"], &[]).unwrap();
        assert_eq!(p.resolve.unwrap().1, "[::1]:443".parse().unwrap());
        assert_eq!(
            plan("http://a.example/", &["a.example:443:::1"], &[])
                .unwrap()
                .resolve,
            None
        );
    }

    #[test]
    fn bad_resolve_entries_say_what_is_wrong() {
        let bad = |entry| plan("http://x/", &[entry], &[]).unwrap_err().to_string();
        assert!(bad("x:1").contains("HOST:PORT:ADDR"));
        assert!(bad("x:port:127.0.0.1").contains("\"port\" is not a port"));
        assert!(bad("x:80:host").contains("\"host\" is not an IP address"));
        assert!(bad(":80:127.0.0.1").contains("no host"));
    }

    #[test]
    fn headers_are_name_colon_value() {
        let p = plan(
            "http://x/",
            &[],
            &["X-Probe: one", "x-probe:two", "Authorization: Bearer t"],
        )
        .unwrap();
        let values: Vec<_> = p.headers.get_all("x-probe").iter().collect();
        assert_eq!(values, ["one", "two"]);
        assert_eq!(p.headers["authorization"], "Bearer t");
        let bad = |h| plan("http://x/", &[], &[h]).unwrap_err().to_string();
        assert!(bad("no colon").contains("'Name: value'"));
        assert!(bad("bad name: v").contains("is not a header name"));
        assert!(bad("x: a\u{7f}b").contains("not a valid header value"));
    }

    #[test]
    fn every_user_gets_its_own_client() {
        let p = plan("https://x.example/", &[], &[]).unwrap();
        let (a, b) = (p.build().unwrap(), p.build().unwrap());
        assert!(!Arc::ptr_eq(&a.jar, &b.jar));
    }
}
