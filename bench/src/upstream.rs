//! The benchmark's upstream pod: as little work per request as an HTTP/1.1 server can do, so
//! that Envoy, not the pod, limits the rate (the `filter` command measures the pod alone to show
//! it). One thread with one event loop (the harness's thread-per-connection [`kasi_e2e::Pod`]
//! would spend the shared cores on context switches); every request gets the same prebuilt
//! `200` naming the pod in `x-kasi-pod`, as the harness's pods do.
//!
//! It only understands requests without a body (the benchmark sends `GET`s): a request is
//! complete at its head's blank line.
//!
//! A silent upstream ([`Upstream::start_silent`]) answers nothing: it reads and drops whatever
//! arrives until the peer closes, so that a client always leaves before its response.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Longest request head accepted; Envoy's requests here are well under 1 KiB.
const MAX_HEAD: usize = 16 * 1024;

pub struct Upstream {
    name: String,
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on `ip` (a free port) and serves until dropped.
    pub fn start(name: &str, ip: IpAddr) -> io::Result<Upstream> {
        Upstream::start_with(name, ip, false)
    }

    /// Listens on `ip` (a free port), reads every connection until its peer closes and never
    /// answers; [`Upstream::requests`] counts the connections it accepted.
    pub fn start_silent(name: &str, ip: IpAddr) -> io::Result<Upstream> {
        Upstream::start_with(name, ip, true)
    }

    fn start_with(name: &str, ip: IpAddr, silent: bool) -> io::Result<Upstream> {
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let response: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\nx-kasi-pod: {name}\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"
        )
        .into_bytes()
        .into();
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let requests = requests.clone();
            std::thread::Builder::new()
                .name(format!("upstream-{name}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let Ok(listener) = TcpListener::from_std(listener) else {
                            return;
                        };
                        tokio::select! {
                            _ = stopped => {}
                            _ = accept_loop(listener, response, requests, silent) => {}
                        }
                    });
                    // Dropping the runtime drops every connection task.
                })?
        };
        Ok(Upstream {
            name: name.to_string(),
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    response: Arc<[u8]>,
    requests: Arc<AtomicU64>,
    silent: bool,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) if silent => {
                requests.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(drain(stream));
            }
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, response.clone(), requests.clone()));
            }
            // Out of file descriptors and the like: wait, do not spin.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve(mut stream: TcpStream, response: Arc<[u8]>, requests: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let (complete, consumed) = complete_heads(&buf[..filled]);
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if filled == buf.len() {
            return; // a head larger than MAX_HEAD: not a request this server answers
        }
        if complete == 0 {
            continue;
        }
        // Counted before answering, so a client that has its response sees the count.
        requests.fetch_add(complete as u64, Ordering::Relaxed);
        let written = if complete == 1 {
            stream.write_all(&response).await
        } else {
            out.clear();
            for _ in 0..complete {
                out.extend_from_slice(&response);
            }
            stream.write_all(&out).await
        };
        if written.is_err() {
            return;
        }
    }
}

/// Reads and drops until the peer closes.
async fn drain(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// How many complete request heads `bytes` starts with, and how many bytes they take.
fn complete_heads(bytes: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut start = 0;
    while let Some(end) = bytes[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        start += end + 4;
        count += 1;
    }
    (count, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn finds_pipelined_heads() {
        assert_eq!(complete_heads(b""), (0, 0));
        assert_eq!(complete_heads(b"GET / HTTP/1.1\r\nHost: x\r\n"), (0, 0));
        let two = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nGET";
        assert_eq!(complete_heads(two), (2, two.len() - 3));
    }

    #[test]
    fn answers_keep_alive_and_pipelined_requests_and_counts_them() {
        let upstream = Upstream::start("u", "127.0.0.1".parse().unwrap()).unwrap();
        let mut stream = std::net::TcpStream::connect(upstream.addr()).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.windows(3).filter(|w| w == b"ok\n").count() < 2 {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert_eq!(
            text.matches("HTTP/1.1 200 OK\r\nx-kasi-pod: u\r\n").count(),
            2
        );
        assert_eq!(upstream.requests(), 2);
        let response = kasi_e2e::plain_get(upstream.addr(), "/", &[]).unwrap();
        assert_eq!((response.status, response.pod()), (200, Some("u")));
    }
}
