//! Installing and reverting never fail a request: 20 sessions, each sending a request every
//! 50 ms through the lab's ingress from before `kasi apply --yes` until after `kasi revert --yes`
//! returns, see only 200s — while the activators roll (the lab replaces pods as a Deployment
//! does, and a module the pods cannot load would fail every request). Once apply returns every
//! session sticks; and the activators' sidecars log the filter's decision lines while the rest of
//! istio-proxy stays at Istio's defaults.

use k8s_openapi::api::core::v1::Pod;
use kasi::install::apply::apply;
use kasi::install::render::{module_label_value, sha256_hex, MODULE_LABEL};
use kasi::install::FILTER_WASM;
use kasi_e2e::lab_client::{activator_pods, apply_options, ingress_addr, kube_client, start_lab};
use kasi_e2e::{run_kasi, Session, COOKIE_NAME};
use kasi_lab::Lab;
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
    let lab = start_lab(20).await;
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
    // first; fresh sessions give each activator new pins (the ingress alternates activators, but
    // shares its turn with the probe, so keep sending until each has logged).
    let ingress = ingress_addr(&lab);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    let params = kube::api::LogParams {
        container: Some("istio-proxy".into()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                let _ = kasi_e2e::plain_get(ingress, "/", &[]);
            }
        })
        .await
        .unwrap();
        let mut logs = Vec::new();
        for pod in activator_pods(&client).await {
            let name = pod.metadata.name.unwrap();
            let log = pods.logs(&name, &params).await.expect("sidecar log");
            logs.push((name, log));
        }
        let silent: Vec<&str> = logs
            .iter()
            .filter(|(_, log)| !log.lines().any(|l| l.contains("kasi_affinity {")))
            .map(|(name, _)| name.as_str())
            .collect();
        if silent.is_empty() {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "no decision line in `kubectl logs -c istio-proxy` of {silent:?}"
        );
    };

    // Every other info line stays away.
    for (name, log) in &logs {
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

    let total = assert_none_failed(
        &sessions,
        &[(applied, "during apply"), (revert_started, "after apply")],
        "during revert",
    );
    let (hits, counted) = stuck_between(&sessions, applied, revert_started);
    assert_eq!(hits, counted, "hit rate after apply {hits}/{counted}");
    eprintln!("{total} requests, none failed; after apply {hits}/{counted} stuck");
    lab.shutdown().await;
}

/// Asserts every request got a 200, naming each failure with the phase it started in (`phases`:
/// each phase ends at its instant; `last` names what follows); returns how many were sent.
fn assert_none_failed(sessions: &[Vec<Sent>], phases: &[(Instant, &str)], last: &str) -> usize {
    let total: usize = sessions.iter().map(Vec::len).sum();
    let failed: Vec<String> = sessions
        .iter()
        .flatten()
        .filter(|s| s.status != 200)
        .map(|s| {
            let phase = phases
                .iter()
                .find(|(end, _)| s.started < *end)
                .map_or(last, |(_, name)| name);
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
    total
}

/// (requests served by the session's first pod in the window, requests compared), over the
/// requests each session started between `from` and `to`.
fn stuck_between(sessions: &[Vec<Sent>], from: Instant, to: Instant) -> (usize, usize) {
    let (mut hits, mut counted) = (0, 0);
    for sent in sessions {
        let window: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.started > from && s.started < to)
            .collect();
        let Some(first) = window.first() else {
            continue;
        };
        for s in &window[1..] {
            counted += 1;
            hits += usize::from(s.pod == first.pod);
        }
    }
    assert!(counted > SESSIONS * 10, "only {counted} requests compared");
    (hits, counted)
}

/// The module with one more custom section: the same filter to Envoy, another sha256 — a new
/// version, as far as the install can tell.
fn another_version(module: &[u8]) -> Vec<u8> {
    let name = b"kasi-test-version";
    let payload = b"2";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128, < 128
    out.extend_from_slice(&section);
    out
}

async fn module_labels(client: &kube::Client) -> Vec<String> {
    activator_pods(client)
        .await
        .into_iter()
        .map(|p| p.metadata.labels.unwrap_or_default()[MODULE_LABEL].clone())
        .collect()
}

/// A new module version rolls the activators onto it under the same guarantee: no failed request,
/// and sessions pinned before are on the same pod after (the session keys stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_version_rolls_the_activators_without_a_failed_request() {
    let lab = start_lab(20).await;
    let client = kube_client(&lab).await;
    let v1 = FILTER_WASM.to_vec();
    let v2 = another_version(&v1);
    let mut out = Vec::new();
    apply(
        &client,
        apply_options(v1.clone()),
        &mut |_| Ok(true),
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    let v1_label = module_label_value(&sha256_hex(&v1));
    assert_eq!(module_labels(&client).await, vec![v1_label.clone(); 2]);
    let v1_pods: Vec<String> = lab
        .activators()
        .iter()
        .map(|a| a.pod_name.clone())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sessions = probe(ingress_addr(&lab), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let upgrade_started = Instant::now();
    let mut out = Vec::new();
    apply(
        &client,
        apply_options(v2.clone()),
        &mut |_| Ok(true),
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    let upgraded = Instant::now();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.contains("rolled out"), "{text}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let sessions: Vec<Vec<Sent>> = sessions.into_iter().map(|t| t.join().unwrap()).collect();

    let v2_label = module_label_value(&sha256_hex(&v2));
    assert_ne!(v1_label, v2_label);
    assert_eq!(module_labels(&client).await, vec![v2_label; 2]);
    assert!(lab
        .activators()
        .iter()
        .all(|a| !v1_pods.contains(&a.pod_name)));
    let total = assert_none_failed(
        &sessions,
        &[
            (upgrade_started, "before the upgrade"),
            (upgraded, "during the upgrade"),
        ],
        "after the upgrade",
    );
    // While old activators drain they run without the filter (it selects the new module's
    // pods only), so requests through them are not steered; once the upgrade has returned every
    // session is back on the pod it was pinned to before (its cookie and the keys are unchanged).
    let (hits, counted) = stuck_between(&sessions, upgraded, Instant::now());
    assert_eq!(
        hits, counted,
        "sessions do not stick after the upgrade: {hits}/{counted}"
    );
    for sent in &sessions {
        let before = sent.iter().rev().find(|s| s.started < upgrade_started);
        let after = sent.iter().find(|s| s.started > upgraded);
        if let (Some(before), Some(after)) = (before, after) {
            assert_eq!(
                before.pod, after.pod,
                "a session changed pods across the upgrade"
            );
        }
    }
    eprintln!("{total} requests across the upgrade, none failed, {hits}/{counted} stuck");
    lab.shutdown().await;
}
