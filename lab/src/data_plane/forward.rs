//! HTTP forwarding for the lab's ingress and activators: one upstream connection per request, so
//! every request makes its own routing decision in Envoy, as it does behind the real activator.
//! Upstream speaks HTTP/1.1 or HTTP/2 with prior knowledge (h2c), whatever the client spoke:
//! a request crossing versions gets its Host from `:authority` or the other way round.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long the lab waits for an upstream before answering 504 itself.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

/// A PROXY protocol v1 header naming `destination` as the connection's original destination:
/// what iptables' REDIRECT plus Envoy's `original_dst` give a sidecar inside a pod.
pub fn proxy_v1_header(source: SocketAddr, destination: SocketAddr) -> String {
    let family = if destination.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
}

/// How the lab talks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Http1,
    /// HTTP/2 with prior knowledge, as Go's `http2.Transport{AllowHTTP: true}` and Envoy's
    /// `http2_protocol_options` on a plaintext cluster send it.
    H2c,
}

/// Sends `request` over a new connection to `connect_to`, first writing `preamble` (a PROXY
/// header) if given. Failures become the 502/504 a proxy would answer.
pub async fn forward(
    connect_to: SocketAddr,
    preamble: Option<String>,
    request: Request<Incoming>,
    upstream: Upstream,
) -> Response<Body> {
    let request = match for_upstream(request, upstream) {
        Ok(request) => request,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("lab: cannot forward the request: {e}\n"),
            )
        }
    };
    let sent = send(connect_to, preamble, request, upstream);
    match tokio::time::timeout(UPSTREAM_TIMEOUT, sent).await {
        Ok(Ok(response)) => response.map(|b| b.boxed()),
        Ok(Err(e)) => text_response(
            StatusCode::BAD_GATEWAY,
            &format!("lab: upstream {connect_to}: {e}\n"),
        ),
        Err(_) => text_response(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("lab: upstream {connect_to} timed out\n"),
        ),
    }
}

/// The request as `upstream` carries it. HTTP/1.1 names the target in `Host` and an
/// origin-form path; HTTP/2 in `:authority` and `:scheme` (hyper's h2 client takes them from
/// the URI, and a `host` field next to them would be a second, conflicting authority).
fn for_upstream(
    mut request: Request<Incoming>,
    upstream: Upstream,
) -> Result<Request<Incoming>, http::Error> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .cloned()
        .or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match upstream {
        Upstream::Http1 => {
            *request.version_mut() = http::Version::HTTP_11;
            *request.uri_mut() = path.parse()?;
            if let Some(host) = host {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
        Upstream::H2c => {
            *request.version_mut() = http::Version::HTTP_2;
            let authority = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_owned();
            *request.uri_mut() = http::Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query(path)
                .build()?;
            request.headers_mut().remove(http::header::HOST);
        }
    }
    Ok(request)
}

async fn send(
    connect_to: SocketAddr,
    preamble: Option<String>,
    request: Request<Incoming>,
    upstream: Upstream,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(connect_to).await?;
    stream.set_nodelay(true)?;
    if let Some(preamble) = preamble {
        stream.write_all(preamble.as_bytes()).await?;
    }
    let io = TokioIo::new(stream);
    match upstream {
        Upstream::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(connection);
            Ok(sender.send_request(request).await?)
        }
        Upstream::H2c => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            Ok(sender.send_request(request).await?)
        }
    }
}

pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_name_source_and_destination() {
        let h = proxy_v1_header(
            "127.9.0.10:40000".parse().unwrap(),
            "127.9.1.10:8012".parse().unwrap(),
        );
        assert_eq!(h, "PROXY TCP4 127.9.0.10 127.9.1.10 40000 8012\r\n");
        let h6 = proxy_v1_header(
            "[::1]:1".parse().unwrap(),
            "[fd00::1]:8012".parse().unwrap(),
        );
        assert_eq!(h6, "PROXY TCP6 ::1 fd00::1 1 8012\r\n");
    }
}
