//! Exec credential plugins (`users[].user.exec`: `aws eks get-token`, `gke-gcloud-auth-plugin`,
//! `kubelogin`, …) under a full-screen UI.
//!
//! kube-rs runs the plugin whenever a token is needed or has expired, and unless the kubeconfig
//! says `interactiveMode: Never` it hands the plugin kasi's own stdin and stderr
//! (kube-client 5.0 `src/client/auth/mod.rs`, `auth_exec`: `Stdio::inherit()` for both when
//! interactive). Under the UI's raw-mode alternate screen, whatever the plugin prints lands on
//! top of the drawing, and a plugin that prompts waits for input the UI is reading. So the UI
//! runs every plugin with `interactiveMode: Never`: kube-rs then pipes stdin and `output()`
//! captures stderr, and the plugin learns from `KUBERNETES_EXEC_INFO` (`interactive: false`)
//! that it must not prompt. A failing plugin becomes one line naming it ([`describe`]).

use kube::client::AuthError;
use kube::config::{ExecInteractiveMode, Kubeconfig};

/// Sets every user's exec plugin to `interactiveMode: Never`; returns the plugins that asked for
/// a terminal (`Always`), which may now fail (they are told why in [`describe`]'s line).
pub fn never_interactive(kubeconfig: &mut Kubeconfig) -> Vec<String> {
    let mut wanted_terminal = Vec::new();
    for named in &mut kubeconfig.auth_infos {
        let Some(exec) = named.auth_info.as_mut().and_then(|a| a.exec.as_mut()) else {
            continue;
        };
        if exec.interactive_mode == Some(ExecInteractiveMode::Always) {
            wanted_terminal.push(exec.command.clone().unwrap_or_default());
        }
        exec.interactive_mode = Some(ExecInteractiveMode::Never);
    }
    wanted_terminal
}

/// One line for a credential failure anywhere in `error`'s chain, naming the plugin; `None`
/// when the error is not one.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<AuthError>() {
            return Some(describe_auth(auth));
        }
        if let Some(kube::Error::Auth(auth)) = e.downcast_ref::<kube::Error>() {
            return Some(describe_auth(auth));
        }
        current = e.source();
    }
    None
}

fn describe_auth(error: &AuthError) -> String {
    match error {
        AuthError::AuthExecRun { cmd, out } => {
            let plugin = program(cmd).unwrap_or_else(|| "?".into());
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map_or_else(|| out.status.to_string(), |l| short(l, 160));
            format!("credentials: exec plugin `{plugin}` failed: {why}")
        }
        AuthError::AuthExecStart(e) => {
            format!("credentials: the kubeconfig's exec plugin cannot start: {e}")
        }
        AuthError::AuthExecParse(_) => {
            "credentials: the kubeconfig's exec plugin printed no ExecCredential".into()
        }
        other => format!("credentials: {}", short(&other.to_string(), 160)),
    }
}

/// The program in a `std::process::Command`'s `Debug` text, which kube-rs puts in its error:
/// `KEY="value" … "program" "arg" …` (environment first, each value Debug-quoted).
fn program(debug: &str) -> Option<String> {
    // Tokens split at unquoted spaces, each with whether it began with a quote: environment
    // assignments begin with their unquoted name, the program is the first quoted token.
    let mut tokens: Vec<(bool, String)> = Vec::new();
    let mut token: Option<(bool, String)> = None;
    let (mut quoted, mut escaped) = (false, false);
    for c in debug.chars() {
        let current = token.get_or_insert_with(|| (c == '"', String::new()));
        match c {
            _ if escaped => {
                current.1.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => tokens.extend(token.take()),
            _ => current.1.push(c),
        }
    }
    tokens.extend(token);
    let (_, program) = tokens.into_iter().find(|(began_quoted, _)| *began_quoted)?;
    let name = program.rsplit('/').next().unwrap_or(&program);
    (!name.is_empty()).then(|| name.to_owned())
}

fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max - 1).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_read_from_commands_debug_text() {
        let mut cmd = std::process::Command::new("/usr/local/bin/aws");
        cmd.args(["eks", "get-token", "--cluster-name", "a b"]);
        cmd.env(
            "KUBERNETES_EXEC_INFO",
            r#"{"kind":"ExecCredential","spec":{"x":"a b"}}"#,
        );
        assert_eq!(program(&format!("{cmd:?}")).as_deref(), Some("aws"));
        let plain = std::process::Command::new("gke-gcloud-auth-plugin");
        assert_eq!(
            program(&format!("{plain:?}")).as_deref(),
            Some("gke-gcloud-auth-plugin")
        );
    }

    #[test]
    fn every_plugin_is_made_non_interactive() {
        let yaml = r#"
apiVersion: v1
kind: Config
users:
- name: eks
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [eks, get-token]}
- name: login
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: kubelogin, interactiveMode: Always}
- name: token
  user: {token: abc}
"#;
        let mut config = Kubeconfig::from_yaml(yaml).unwrap();
        assert_eq!(never_interactive(&mut config), vec!["kubelogin"]);
        for named in &config.auth_infos[..2] {
            let exec = named.auth_info.as_ref().unwrap().exec.as_ref().unwrap();
            assert_eq!(exec.interactive_mode, Some(ExecInteractiveMode::Never));
        }
    }
}
