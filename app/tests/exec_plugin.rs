//! Exec credential plugins under the UI, against the lab's real API server: the UI runs them with
//! `interactiveMode: Never` (never kasi's terminal: stdin piped, stderr captured), the CLI as the
//! kubeconfig says; a failing plugin is one line naming it.

use kasi::cluster::{connect, connect_for_ui, ClusterTarget};
use kasi_lab::kube_api::{serve, LabHooks, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct NoHooks;
impl LabHooks for NoHooks {}

async fn api_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Store::new(), Arc::new(NoHooks)));
    format!("http://{address}")
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn kubeconfig(dir: &Path, server: &str, plugin: &Path) -> ClusterTarget {
    let yaml = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}"}}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: "{}"
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
"#,
        plugin.display()
    );
    let path = dir.join(format!(
        "kubeconfig-{}",
        plugin.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, yaml).unwrap();
    ClusterTarget::kubeconfig(path)
}

#[tokio::test]
async fn the_ui_runs_plugins_without_the_terminal_and_names_a_failing_one() {
    let server = api_server().await;
    let dir = tempfile::tempdir().unwrap();
    let info = dir.path().join("exec-info");
    let good = script(
        dir.path(),
        "token-plugin",
        &format!(
            r#"echo "Refreshing the token… (this would land on the screen)" >&2
printf '%s' "$KUBERNETES_EXEC_INFO" > "{}"
echo '{{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{{"token":"t0ken"}}}}'"#,
            info.display()
        ),
    );
    let target = kubeconfig(dir.path(), &server, &good);

    let client = connect_for_ui(&target).await.expect("connect");
    client
        .apiserver_version()
        .await
        .expect("the plugin's token");
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(seen["spec"]["interactive"], false, "{seen}");

    // The CLI leaves the kubeconfig as it is: interactive, as kubectl runs it.
    let client = connect(&target).await.expect("connect");
    client
        .apiserver_version()
        .await
        .expect("the plugin's token");
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(seen["spec"]["interactive"], true, "{seen}");

    let bad = script(
        dir.path(),
        "expired-sso",
        "echo '' >&2\necho 'error: the SSO session has expired; run aws sso login' >&2\nexit 1",
    );
    // kube-rs runs the plugin for the first token when the client is built.
    let Err(error) = connect_for_ui(&kubeconfig(dir.path(), &server, &bad)).await else {
        panic!("a client without a token");
    };
    assert_eq!(
        error.to_string(),
        "credentials: exec plugin `expired-sso` failed: error: the SSO session has expired; run aws sso login"
    );
    let missing = kubeconfig(dir.path(), &server, Path::new("/nonexistent/kubelogin"));
    let Err(error) = connect_for_ui(&missing).await else {
        panic!("a client without its plugin");
    };
    let line = error.to_string();
    assert!(
        line.starts_with("credentials: the kubeconfig's exec plugin cannot start:")
            && !line.contains('\n'),
        "{line}"
    );
}
