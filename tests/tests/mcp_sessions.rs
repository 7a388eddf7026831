//! MCP sessions through the lab, end to end: the `mcp` service's pods are real stateful MCP
//! servers (rmcp, sessions in memory), reached through the ingress, the activators and their real
//! Envoy sidecars. Before kasi a session's requests land on pods that never issued it (404, the
//! client re-initializes); after `kasi apply` every call reaches the pod that issued the session;
//! when that pod dies each of its sessions fails over with one 404 and re-initializes onto a live
//! pod, where it sticks.

use kasi::install::apply::apply;
use kasi::install::FILTER_WASM;
use kasi_e2e::lab_client::{
    apply_options, ingress_addr, kube_client, start_lab, McpAnswer, McpClient,
};
use kasi_e2e::run_kasi;
use kasi_lab::knative::seed::MCP_HOST;
use kasi_lab::Lab;
use std::collections::BTreeMap;
use std::net::SocketAddr;

const SESSIONS: usize = 20;
const CALLS: usize = 10;

/// `calls` rounds of `whoami`, every client once per round (interleaved, as users are).
async fn rounds(clients: Vec<McpClient>, calls: usize) -> (Vec<McpClient>, Vec<Vec<McpAnswer>>) {
    tokio::task::spawn_blocking(move || {
        let mut clients = clients;
        let mut answers: Vec<Vec<McpAnswer>> = vec![Vec::new(); clients.len()];
        for _ in 0..calls {
            for (client, seen) in clients.iter_mut().zip(answers.iter_mut()) {
                let answer = client.whoami().unwrap_or_else(|e| McpAnswer {
                    status: 0,
                    pod: None,
                    body: e.to_string(),
                });
                seen.push(answer);
            }
        }
        (clients, answers)
    })
    .await
    .unwrap()
}

/// Share of successful calls after each session's first that reached the pod of its first.
fn hit_rate(answers: &[Vec<McpAnswer>]) -> f64 {
    let (mut hits, mut counted) = (0, 0);
    for seen in answers {
        let ok: Vec<&McpAnswer> = seen.iter().filter(|a| a.status == 200).collect();
        let Some(first) = ok.first() else { continue };
        for answer in &seen[1..] {
            counted += 1;
            hits += usize::from(answer.status == 200 && answer.pod == first.pod);
        }
    }
    hits as f64 / counted.max(1) as f64
}

/// `kasi probe --mcp --json` against the lab's `mcp` service, its name resolved to the ingress.
async fn probe(lab: &Lab) -> serde_json::Value {
    let ingress = ingress_addr(lab);
    let host = format!("{MCP_HOST}:{}", ingress.port());
    let url = format!("http://{host}/mcp");
    let resolve = format!("{host}:{}", ingress.ip());
    let kubeconfig = lab.kubeconfig_path().to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_kasi(
            &kubeconfig,
            &[
                "probe",
                "--mcp",
                "--json",
                "--sessions",
                "10",
                "--requests",
                "5",
                "--resolve",
                &resolve,
                &url,
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn clients(ingress: SocketAddr) -> Vec<McpClient> {
    (0..SESSIONS).map(|_| McpClient::new(ingress)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_stick_with_kasi_and_fail_over_with_one_404() {
    let lab = start_lab(20).await;
    let ingress = ingress_addr(&lab);

    // Before: nothing pins a session, so its calls meet pods that never issued it.
    let (_, before) = rounds(clients(ingress), CALLS).await;
    let not_found = before.iter().flatten().filter(|a| a.status == 404).count();
    let probed = probe(&lab).await;
    assert!(
        probed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["not_found"].as_u64().unwrap_or(0) > 0),
        "`kasi probe --mcp` saw no 404 without kasi: {probed}"
    );
    let before_rate = hit_rate(&before);
    assert!(not_found > 0, "no 404 without kasi: {before:?}");
    assert!(before_rate < 0.6, "hit rate without kasi {before_rate:.2}");

    let client = kube_client(&lab).await;
    let mut out = Vec::new();
    apply(
        &client,
        apply_options(FILTER_WASM.to_vec()),
        &mut |_| Ok(true),
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));

    // After: every call reaches the pod that issued the session; no session is lost.
    let (clients, after) = rounds(clients(ingress), CALLS).await;
    let failed: Vec<&McpAnswer> = after.iter().flatten().filter(|a| a.status != 200).collect();
    assert!(failed.is_empty(), "calls failed with kasi: {failed:?}");
    assert_eq!(hit_rate(&after), 1.0, "hit rate with kasi");
    assert!(clients.iter().all(|c| c.initializations == 1));
    let probed = probe(&lab).await;
    assert_eq!(probed["failures"], 0, "{probed}");
    assert_eq!(probed["hit_rate"], 1.0, "{probed}");

    // The pod holding the most sessions dies: each of its sessions sees exactly one failed
    // request, MCP's 404 (kasi answers the failed connection with it, and a dead envelope on the
    // other activator replica too), re-initializes onto a live pod and sticks there.
    let mut by_pod: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, seen) in after.iter().enumerate() {
        by_pod
            .entry(seen[0].pod.clone().unwrap())
            .or_default()
            .push(i);
    }
    let (victim, held) = by_pod.into_iter().max_by_key(|(_, s)| s.len()).unwrap();
    // One of its sessions has its server-to-client SSE stream open: it ends with the pod.
    let (stream_status, stream) = clients[held[0]]
        .open_stream(std::time::Duration::from_secs(15))
        .expect("open the SSE stream");
    assert_eq!(stream_status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!stream.is_finished(), "the SSE stream ended on its own");
    lab.stop_pod(&victim).await.expect("stop the pod");
    let ended = tokio::task::spawn_blocking(move || stream.join().unwrap())
        .await
        .unwrap();
    assert!(ended, "the SSE stream outlived its pod");
    let held_clients: Vec<McpClient> = clients
        .into_iter()
        .enumerate()
        .filter(|(i, _)| held.contains(i))
        .map(|(_, c)| c)
        .collect();
    let (held_clients, failover) = rounds(held_clients, 8).await;
    for (client, seen) in held_clients.iter().zip(&failover) {
        let statuses: Vec<u16> = seen.iter().map(|a| a.status).collect();
        let errors = statuses.iter().filter(|s| **s >= 500 || **s == 0).count();
        let not_found = statuses.iter().filter(|s| **s == 404).count();
        assert_eq!(errors, 0, "{statuses:?}");
        assert_eq!(not_found, 1, "{statuses:?}");
        assert_eq!(client.initializations, 2, "{statuses:?}");
        let served: Vec<&str> = seen
            .iter()
            .filter(|a| a.status == 200)
            .filter_map(|a| a.pod.as_deref())
            .collect();
        assert!(!served.contains(&victim.as_str()), "{served:?}");
        let last = served.last().expect("the session recovered");
        let tail = &served[served.len().saturating_sub(4)..];
        assert!(tail.iter().all(|p| p == last), "{served:?}");
    }
    eprintln!(
        "MCP: before kasi hit rate {before_rate:.2} with {not_found} 404s; with kasi 1.00; {} sessions failed over from {victim}",
        held.len()
    );
    lab.shutdown().await;
}
