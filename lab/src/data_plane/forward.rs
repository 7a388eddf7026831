//! HTTP forwarding for the lab's ingress and activators: one upstream connection per request, so
//! every request makes its own routing decision in Envoy, as it does behind the real activator.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
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

/// Sends `request` over a new connection to `connect_to`, first writing `preamble` (a PROXY
/// header) if given. Failures become the 502/504 a proxy would answer.
pub async fn forward(
    connect_to: SocketAddr,
    preamble: Option<String>,
    request: Request<Incoming>,
) -> Response<Body> {
    match tokio::time::timeout(UPSTREAM_TIMEOUT, send(connect_to, preamble, request)).await {
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

async fn send(
    connect_to: SocketAddr,
    preamble: Option<String>,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(connect_to).await?;
    stream.set_nodelay(true)?;
    if let Some(preamble) = preamble {
        stream.write_all(preamble.as_bytes()).await?;
    }
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
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
