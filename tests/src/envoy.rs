//! A real Envoy process with the sidecar bootstrap, its admin API and its log.

use crate::bootstrap::{self, EnvoyOptions};
use crate::client::{admin_get, Client};
use crate::scratch::ScratchDir;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long Envoy may take to become ready. Wasm compilation on a loaded 2-core machine takes a
/// few seconds; anything beyond this is a broken config, not slowness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    listener: SocketAddr,
    log_path: PathBuf,
    // Dropped last: the directory holds the log the Drop impl may print.
    _dir: ScratchDir,
}

/// Why Envoy did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    pub reason: String,
    /// `Some` when the process exited by itself.
    pub exit: Option<ExitStatus>,
    pub log: String,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Envoy did not become ready: {}\n--- Envoy log (tail) ---\n{}",
            self.reason,
            tail(&self.log, 60)
        )
    }
}

impl Envoy {
    /// Starts Envoy and waits until it serves; panics with the log tail if it does not.
    pub fn start(options: &EnvoyOptions) -> Envoy {
        Envoy::try_start(options).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts Envoy; `Err` if it exits or is not ready within [`READY_TIMEOUT`].
    pub fn try_start(options: &EnvoyOptions) -> Result<Envoy, StartFailure> {
        let envoy = crate::locate::envoy_binary();
        let wasm = options.with_filter.then(|| {
            options
                .filter_wasm
                .clone()
                .unwrap_or_else(crate::locate::filter_wasm)
        });
        let dir = ScratchDir::new("envoy");
        let config_path = dir.path().join("envoy.json");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let config = bootstrap::render(options, wasm.as_deref());
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .expect("write the bootstrap");
        // Envoy's log goes to stderr, captured in a file: unlike `--log-path`, stderr is not
        // buffered, so decision lines are readable as soon as a response is back.
        let log_file = File::create(&log_path).expect("create the Envoy log");
        let child = Command::new(&envoy)
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .args(["-l", "info"])
            // Parallel tests run several Envoys; hot restart would make them share memory.
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy.display()));
        let mut starting = Starting {
            child: Some(child),
            log_path: log_path.clone(),
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut admin = None;
        let mut last_problem = String::from("no admin address yet");
        loop {
            if let Some(status) = starting.exited() {
                return Err(starting.failure(format!("Envoy exited with {status}"), Some(status)));
            }
            if Instant::now() >= deadline {
                return Err(starting.failure(
                    format!("not ready after {READY_TIMEOUT:?} ({last_problem})"),
                    None,
                ));
            }
            if admin.is_none() {
                admin = std::fs::read_to_string(&admin_path)
                    .ok()
                    .and_then(|s| s.trim().parse::<SocketAddr>().ok());
            }
            if let Some(admin) = admin {
                match ready_listener(admin) {
                    Ok(listener) => {
                        return Ok(Envoy {
                            child: starting.child.take().unwrap(),
                            admin,
                            listener,
                            log_path,
                            _dir: dir,
                        })
                    }
                    Err(problem) => last_problem = problem,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn listener_addr(&self) -> SocketAddr {
        self.listener
    }

    /// The Envoy process (pip's `envoy` launcher execs the binary, so this is Envoy itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident memory (`VmRSS` in /proc/<pid>/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}: {status}"));
        kb * 1024
    }

    pub fn client(&self) -> Client {
        Client::new(self.listener)
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Every counter and gauge from the admin API, by full name.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let response = admin_get(self.admin, "/stats")
            .unwrap_or_else(|e| panic!("admin /stats on {}: {e}", self.admin));
        assert_eq!(response.status, 200, "admin /stats: {}", response.body);
        // Plain format is `name: value`; histograms (`name: P0(…)`) do not parse and are skipped.
        response
            .body
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// The counter named `name` under any prefix Envoy adds (wasm metrics appear as
    /// `wasmcustom.<name>`); 0 when it does not exist (yet).
    pub fn counter(&self, name: &str) -> u64 {
        let suffix = format!(".{name}");
        self.stats()
            .into_iter()
            .find(|(full, _)| full == name || full.ends_with(&suffix))
            .map_or(0, |(_, value)| value)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- Envoy log (tail, {}) ---\n{}",
                self.log_path.display(),
                tail(&self.log(), 80)
            );
        }
    }
}

/// An Envoy that is not ready yet: killed if it never gets there.
struct Starting {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Starting {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn failure(&mut self, reason: String, exit: Option<ExitStatus>) -> StartFailure {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        StartFailure {
            reason,
            exit,
            log: String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default())
                .into_owned(),
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Ok(listener address)` once admin says ready and the listener is bound.
fn ready_listener(admin: SocketAddr) -> Result<SocketAddr, String> {
    let ready = admin_get(admin, "/ready").map_err(|e| format!("admin /ready: {e}"))?;
    if ready.status != 200 {
        return Err(format!(
            "admin /ready: {} {}",
            ready.status,
            ready.body.trim()
        ));
    }
    let listeners =
        admin_get(admin, "/listeners?format=json").map_err(|e| format!("admin /listeners: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&listeners.body)
        .map_err(|e| format!("admin /listeners is not JSON ({e}): {}", listeners.body))?;
    let socket = &json["listener_statuses"][0]["local_address"]["socket_address"];
    let address = socket["address"].as_str();
    let port = socket["port_value"].as_u64().filter(|&p| p != 0);
    match (address, port) {
        (Some(address), Some(port)) => format!("{address}:{port}")
            .parse()
            .map_err(|e| format!("listener address {address}:{port}: {e}")),
        _ => Err(format!("listener not bound yet: {}", listeners.body)),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
