//! Logs go to a file, never to the terminal the UI draws on.

use std::path::PathBuf;
use tracing_appender::non_blocking::WorkerGuard;

/// `$XDG_STATE_HOME/kasi/kasi.log`, else `~/.local/state/kasi/kasi.log`, else the temp dir.
pub fn log_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kasi").join("kasi.log")
}

/// Sends `tracing` output to [`log_path`] (level from `KASI_LOG`, default `info`). The guard
/// flushes on drop; keep it for the life of the program.
pub fn to_file() -> Option<WorkerGuard> {
    let path = log_path();
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KASI_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}
