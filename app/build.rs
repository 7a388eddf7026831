//! Compiles the filter to wasm and embeds it in the `kasi` binary, so `kasi apply` can ship it in
//! a ConfigMap with no registry. A nested cargo builds it into its own target directory (the outer
//! build holds the lock on the shared one) with the workspace's pinned toolchain and `wasm` profile.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("app/ is inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    for watched in ["filter/src", "filter/Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=KASI_EMBED_WASM");

    // An already built module (./dev sets this after its own build) saves the nested build.
    let module = match env::var_os("KASI_EMBED_WASM") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            PathBuf::from(path)
        }
        None => build_filter(&workspace),
    };
    let bytes = std::fs::read(&module)
        .unwrap_or_else(|e| panic!("cannot read the filter module {}: {e}", module.display()));
    std::fs::write(out_dir.join("kasi_filter.wasm"), bytes)
        .expect("write OUT_DIR/kasi_filter.wasm");
}

fn build_filter(workspace: &std::path::Path) -> PathBuf {
    let target_dir = workspace.join("target").join("embedded-filter");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "kasi-filter",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "wasm",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build set for itself must not leak in (clippy's wrapper, host RUSTFLAGS, …).
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo to build the filter");
    if !status.success() {
        panic!(
            "building the filter for wasm32-wasip1 failed; is the target installed? \
             (`rustup target add wasm32-wasip1`, or run ./dev which sets everything up)"
        );
    }
    target_dir
        .join("wasm32-wasip1")
        .join("wasm")
        .join("kasi_filter.wasm")
}
