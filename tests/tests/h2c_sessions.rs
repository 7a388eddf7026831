//! Sessions on the lab's h2c revision (`hello-h2c`: pods speak HTTP/2 with prior knowledge on
//! 8013, the activator and its sidecar carry HTTP/2 end to end) and header-mode sessions (Envoy's
//! `stateful_session` header mode, for clients without cookie jars), before and after kasi.

use kasi::install::apply::apply;
use kasi::install::FILTER_WASM;
use kasi_e2e::lab_client::{apply_options, ingress_addr, kube_client, start_lab};
use kasi_e2e::{plain_get, Session, COOKIE_NAME};
use kasi_lab::knative::seed::{HELLO_H2C_HOST, HELLO_HOST};
use kasi_lab::Lab;
use std::net::SocketAddr;

const SESSIONS: usize = 20;
const REQUESTS: usize = 10;

async fn install(lab: &Lab, session_header: &str) {
    let client = kube_client(lab).await;
    let mut options = apply_options(FILTER_WASM.to_vec());
    options.render.session_header = session_header.to_owned();
    let mut out = Vec::new();
    apply(&client, options, &mut |_| Ok(true), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
}

/// Cookie sessions on `hello-h2c`: (hit rate, every response came from a pod over HTTP/2).
async fn h2c_cookie_sessions(ingress: SocketAddr) -> (f64, bool) {
    tokio::task::spawn_blocking(move || {
        let mut sessions: Vec<(Session, Option<String>)> = (0..SESSIONS)
            .map(|_| (Session::new(COOKIE_NAME), None))
            .collect();
        let (mut hits, mut counted, mut all_h2) = (0, 0, true);
        for _ in 0..REQUESTS {
            for (session, pinned) in sessions.iter_mut() {
                let response = session
                    .get_plain_with(ingress, "/", &[("Host", HELLO_H2C_HOST)])
                    .expect("ingress answers");
                assert_eq!(response.status, 200, "{response:?}");
                all_h2 &= response.header("x-kasi-proto") == Some("HTTP/2.0");
                let served = response.pod().expect("a pod answered").to_owned();
                match pinned {
                    None => *pinned = Some(served),
                    Some(p) => {
                        counted += 1;
                        hits += usize::from(*p == served);
                    }
                }
            }
        }
        (hits as f64 / counted as f64, all_h2)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_cookie_sessions_stick_with_kasi_over_http2() {
    let lab = start_lab(20).await;
    let ingress = ingress_addr(&lab);
    let (before, h2) = h2c_cookie_sessions(ingress).await;
    assert!(h2, "an h2c pod answered over something else than HTTP/2");
    assert!(before < 0.6, "hit rate without kasi {before:.2}");
    install(&lab, "").await;
    let (after, h2) = h2c_cookie_sessions(ingress).await;
    assert!(
        h2,
        "with kasi an h2c pod answered over something else than HTTP/2"
    );
    assert_eq!(after, 1.0, "hit rate with kasi");
    eprintln!("hello-h2c: hit rate {before:.2} before kasi, {after:.2} after, HTTP/2 at the pod");
    lab.shutdown().await;
}

/// Header-mode sessions through the ingress: the client keeps the header Envoy's
/// `stateful_session` sends and sends it back, as an SDK without a cookie jar would. (hits,
/// compared, sessions that got the header).
async fn header_sessions(ingress: SocketAddr, header: &'static str) -> (usize, usize, usize) {
    tokio::task::spawn_blocking(move || {
        let mut sessions: Vec<(Option<String>, Option<String>)> = vec![(None, None); SESSIONS];
        let (mut hits, mut counted) = (0, 0);
        for _ in 0..REQUESTS {
            for (value, pinned) in sessions.iter_mut() {
                let mut headers = vec![("Host", HELLO_HOST)];
                if let Some(v) = value.as_deref() {
                    headers.push((header, v));
                }
                let response = plain_get(ingress, "/", &headers).expect("ingress answers");
                assert_eq!(response.status, 200, "{response:?}");
                if let Some(v) = response.header(header) {
                    *value = Some(v.to_owned());
                }
                let served = response.pod().expect("a pod answered").to_owned();
                match pinned {
                    None => *pinned = Some(served),
                    Some(p) => {
                        counted += 1;
                        hits += usize::from(*p == served);
                    }
                }
            }
        }
        let with_header = sessions.iter().filter(|(v, _)| v.is_some()).count();
        (hits, counted, with_header)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mode_sessions_stick_with_kasi() {
    const HEADER: &str = "x-kasi-session";
    let lab = start_lab(20).await;
    let ingress = ingress_addr(&lab);
    let (hits, counted, with_header) = header_sessions(ingress, HEADER).await;
    assert_eq!(with_header, 0, "a header session without kasi's bundle");
    assert!(
        (hits as f64) < 0.6 * counted as f64,
        "hit rate without kasi {hits}/{counted}"
    );
    install(&lab, HEADER).await;
    let (hits, counted, with_header) = header_sessions(ingress, HEADER).await;
    assert_eq!(
        with_header, SESSIONS,
        "a session never got its {HEADER} header"
    );
    assert_eq!(hits, counted, "header-mode hit rate {hits}/{counted}");
    lab.shutdown().await;
}
