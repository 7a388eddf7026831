//! Installing and reverting never fail a request: 20 sessions, each sending a request every
//! 50 ms through the lab's ingress from before `kasi apply --yes` until after `kasi revert --yes`
//! returns, see only 200s — while the activators roll (the lab replaces pods as a Deployment
//! does, and a module the pods cannot load would fail every request). Once apply returns every
//! session sticks; and the activators' sidecars log the filter's decision lines while the rest of
//! istio-proxy stays at Istio's defaults.

use k8s_openapi::api::core::v1::Pod;
use kasi_e2e::lab_client::{activator_pods, ingress_addr, kube_client};
use kasi_e2e::{envoy_binary, run_kasi, Session, COOKIE_NAME};
use kasi_lab::{Lab, LabOptions};
use kube::api::Api;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(50);

/// One request as a session saw it.
#[derive(Debug, Clone)]
struct Sent {
    started: Instant,
    status: u16,
    pod: Option<String>,
    detail: String,
}

/// Each session on its own thread, with its own cookie jar, until `stop`.
fn probe(ingress: SocketAddr, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<Sent>>> {
    (0..SESSIONS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut session = Session::new(COOKIE_NAME);
                let mut sent = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let (status, pod, detail) = match session.get_plain(ingress, "/") {
                        Ok(r) => (r.status, r.pod().map(str::to_owned), r.body.clone()),
                        Err(e) => (0, None, e.to_string()),
                    };
                    sent.push(Sent {
                        started,
                        status,
                        pod,
                        detail,
                    });
                    std::thread::sleep(INTERVAL);
                }
                sent
            })
        })
        .collect()
}

async fn kasi(lab: &Lab, args: &'static [&'static str]) -> (i32, String, String) {
    let kubeconfig = lab.kubeconfig_path().to_owned();
    tokio::task::spawn_blocking(move || run_kasi(&kubeconfig, args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_revert_under_load_fail_no_request() {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 20,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts");
    let client = kube_client(&lab).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = probe(ingress_addr(&lab), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (code, stdout, stderr) = kasi(&lab, &["apply", "--yes"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled out"), "{stdout}");
    let applied = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The probe's sessions were pinned during the rollout, by whichever new activator came up
    // first; a few fresh sessions (the ingress alternates activators) give each one a new pin.
    let ingress = ingress_addr(&lab);
    tokio::task::spawn_blocking(move || {
        for _ in 0..4 {
            let _ = kasi_e2e::plain_get(ingress, "/", &[]);
        }
    })
    .await
    .unwrap();

    // Decision lines in `kubectl logs -c istio-proxy`; every other info line stays away.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    for pod in activator_pods(&client).await {
        let name = pod.metadata.name.unwrap();
        let params = kube::api::LogParams {
            container: Some("istio-proxy".into()),
            ..Default::default()
        };
        let log = pods.logs(&name, &params).await.expect("sidecar log");
        assert!(
            log.lines().any(|l| l.contains("kasi_affinity {")),
            "{name} logged no decision line:\n{log}"
        );
        // Istio's log format: time, level, `envoy <logger>`, message, tab-separated.
        let chatty: Vec<&str> = log
            .lines()
            .filter(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                fields
                    .get(1)
                    .is_some_and(|level| *level == "info" || *level == "debug")
                    && fields.get(2) != Some(&"envoy wasm")
            })
            .collect();
        assert!(
            chatty.is_empty(),
            "{name} logs more than `wasm` at info: {chatty:?}"
        );
    }

    let revert_started = Instant::now();
    let (code, stdout, stderr) = kasi(&lab, &["revert", "--yes"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled out"), "{stdout}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let sessions: Vec<Vec<Sent>> = sessions.into_iter().map(|t| t.join().unwrap()).collect();

    let total: usize = sessions.iter().map(Vec::len).sum();
    let failed: Vec<String> = sessions
        .iter()
        .flatten()
        .filter(|s| s.status != 200)
        .map(|s| {
            let phase = if s.started < applied {
                "during apply"
            } else if s.started < revert_started {
                "after apply"
            } else {
                "during revert"
            };
            format!("{} {phase}: {}", s.status, s.detail.trim())
        })
        .collect();
    assert!(total > SESSIONS * 20, "only {total} requests were sent");
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed:\n{}",
        failed.len(),
        failed.join("\n")
    );

    // Between apply's return and revert, every session stays on its pod.
    let (mut hits, mut counted) = (0, 0);
    for sent in &sessions {
        let after: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.started > applied && s.started < revert_started)
            .collect();
        let Some(first) = after.first() else { continue };
        for s in &after[1..] {
            counted += 1;
            hits += usize::from(s.pod == first.pod);
        }
    }
    assert!(
        counted > SESSIONS * 10,
        "only {counted} requests after apply"
    );
    assert_eq!(hits, counted, "hit rate after apply {hits}/{counted}");
    eprintln!("{total} requests, none failed; after apply {hits}/{counted} stuck");
    lab.shutdown().await;
}
