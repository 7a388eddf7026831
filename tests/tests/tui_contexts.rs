//! `kasi` (the UI, not the demo) in a real terminal on a kubeconfig with several contexts, as k9s
//! users keep them: `:ctx` lists them, a context whose API server does not answer is refused in
//! one line and the UI stays where it was, and a good one is switched to at runtime — the header
//! names it and the views fill again from the new cluster.

use kasi_e2e::kasi_binary;
use kasi_e2e::lab_client::start_lab;
use kasi_e2e::tmux::TmuxSession;
use std::time::Duration;

/// Two contexts on the lab's API server, and one on a port nothing listens on.
fn kubeconfig(server: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {{server: "{server}"}}
- name: gone
  cluster: {{server: "http://{closed}"}}
users:
- name: me
  user: {{}}
contexts:
- name: lab-eu
  context: {{cluster: lab, user: me}}
- name: lab-us
  context: {{cluster: lab, user: me}}
- name: gone
  context: {{cluster: gone, user: me}}
current-context: lab-eu
"#
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_switches_kubeconfig_contexts_at_runtime() {
    let lab = start_lab(10).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(lab.api_url(), dir.path());
    let command = format!(
        "{} --kubeconfig {}; echo KASI-EXITED-$?; sleep 30",
        kasi_binary().display(),
        config.display()
    );
    let name = format!("kasi-ctx-{}", std::process::id());
    let ui = tokio::task::spawn_blocking(move || {
        let ui = TmuxSession::start(&name, &command, 160, 48);
        ui.wait_for("the activators of lab-eu", Duration::from_secs(30), |s| {
            s.contains("● lab-eu") && s.contains("activator-")
        });

        ui.keys(&[":ctx", "Enter"]);
        let list = ui.wait_for("the context list", Duration::from_secs(5), |s| {
            s.contains("Contexts")
        });
        assert!(
            list.contains("● lab-eu") && list.contains("lab-us") && list.contains("gone"),
            "{list}"
        );
        ui.keys(&["Escape"]);

        // A cluster that does not answer: one line, and the UI stays on lab-eu.
        ui.keys(&[":ctx gone", "Enter"]);
        let refused = ui.wait_for("the refusal", Duration::from_secs(30), |s| {
            s.contains("context gone:")
        });
        assert!(refused.contains("● lab-eu"), "{refused}");

        // Picked from the list: j moves to lab-us, Enter switches.
        ui.keys(&[":ctx", "Enter", "j", "Enter"]);
        let switched = ui.wait_for("lab-us in the header", Duration::from_secs(30), |s| {
            s.contains("● lab-us") && s.contains("now on context lab-us")
        });
        assert!(!switched.contains("● lab-eu"), "{switched}");
        ui.wait_for(
            "the activators again, read from lab-us",
            Duration::from_secs(30),
            |s| s.contains("● lab-us") && s.contains("activator-"),
        );
        ui.keys(&["q"]);
        ui.wait_for("kasi to exit 0", Duration::from_secs(10), |s| {
            s.contains("KASI-EXITED-0")
        });
    });
    ui.await.expect("the terminal test");
    lab.shutdown().await;
}
