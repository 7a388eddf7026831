//! `kasi manifests` as a user runs it: the real binary, its stdout, stderr and exit code.

use kasi::install::render::session_state_of;
use serde_json::Value;
use std::process::{Command, Output};

fn kasi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kasi"))
        .args(args)
        .output()
        .expect("run kasi")
}

fn documents(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect()
}

fn plugin_config(docs: &[Value]) -> &Value {
    &docs
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .expect("a WasmPlugin")["spec"]["pluginConfig"]
}

#[test]
fn cookie_flags_drive_both_stateful_session_and_the_filter() {
    let out = kasi(&[
        "manifests",
        "--cookie-name",
        "sticky",
        "--cookie-path",
        "/app",
        "--cookie-ttl",
        "30m",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&out.stdout);
    let config = plugin_config(&docs);
    assert_eq!(config["cookie_name"], "sticky");
    assert_eq!(config["cookie_path"], "/app");
    assert!(config.get("header").is_none(), "{config}");
    let session = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "kasi-stateful-session")
        .unwrap();
    let cookie_patches: Vec<&Value> = session["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            session_state_of(&p["patch"]["value"])["name"] == "envoy.http.stateful_session.cookie"
        })
        .collect();
    assert_eq!(cookie_patches.len(), 2, "one per port (8012, 8013)");
    for patch in cookie_patches {
        let cookie = &session_state_of(&patch["patch"]["value"])["typed_config"]["cookie"];
        assert_eq!(cookie["name"], "sticky");
        assert_eq!(cookie["path"], "/app");
        assert_eq!(cookie["ttl"], "1800s");
    }
}

#[test]
fn a_fresh_key_each_time_said_on_stderr_unless_one_is_given() {
    let keys = |out: &Output| plugin_config(&documents(&out.stdout))["session_keys"].clone();
    let (a, b) = (kasi(&["manifests"]), kasi(&["manifests"]));
    for out in [&a, &b] {
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end(),
            "kasi: generated a new session key; `kasi apply` keeps the cluster's"
        );
        let key = keys(out)[0].as_str().unwrap().to_owned();
        assert_eq!(
            kasi_filter::signing::parse_key(&key).map(|k| k.len()),
            Some(32)
        );
        assert!(!stderr.contains(&key));
    }
    assert_ne!(keys(&a), keys(&b), "each run generates its own key");

    let pinned = kasi_filter::signing::key_text(&[5u8; 32]);
    let out = kasi(&["manifests", "--session-key", &pinned]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(keys(&out), serde_json::json!([pinned]));
}

#[test]
fn a_bad_session_key_exits_2_with_one_line() {
    for bad in ["", "short", "AAAA", "not base64 at all!"] {
        let out = kasi(&["manifests", "--session-key", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{bad:?}: {err}");
        assert!(err.contains("--session-key"), "{err}");
    }
}
