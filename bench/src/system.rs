//! What the figures were measured on, and what a process costs (from `/proc`).

use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// The machine and software a result was measured with.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub envoy_version: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on a shared machine shows here.
    pub load_average_at_start: String,
    /// Unix seconds.
    pub started_at: u64,
}

impl Machine {
    pub fn describe(envoy: &Path) -> Machine {
        Machine {
            envoy_version: envoy_version(envoy),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("model name"))
                        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
                })
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            load_average_at_start: load_average(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

impl Machine {
    /// `YYYY-MM-DD` (UTC) of `started_at`.
    pub fn date(&self) -> String {
        civil_date(self.started_at / 86_400)
    }

    /// `2 CPUs (AMD EPYC), Envoy 1.40.0`.
    pub fn describe_briefly(&self) -> String {
        format!(
            "{} CPUs ({}), Envoy {}",
            self.cpus, self.cpu_model, self.envoy_version
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `1.40.0` from `envoy --version` (`…version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`).
pub fn envoy_version(envoy: &Path) -> String {
    let out = Command::new(envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_envoy_version(&out).unwrap_or_else(|| out.trim().to_string())
}

fn parse_envoy_version(text: &str) -> Option<String> {
    let after = text.split("version: ").nth(1)?;
    Some(after.split('/').nth(1)?.to_string())
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time a process has used so far, all threads, in nanoseconds (`/proc/PID/task/*/schedstat`).
/// Exited threads are not counted, so this is for long-lived processes such as Envoy.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resident set size of a process in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data that sched_getaffinity fills; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Restricts every thread of process `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) -> std::io::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: i32 = task?
            .file_name()
            .to_string_lossy()
            .parse()
            .map_err(|_| std::io::Error::other("task id"))?;
        set_affinity(tid, cpu)?;
    }
    Ok(())
}

/// Restricts the calling thread (and the threads and processes it starts from now on) to `cpu`.
pub fn pin_this_thread(cpu: usize) -> std::io::Result<()> {
    set_affinity(0, cpu)
}

fn set_affinity(tid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it; sched_setaffinity
    // reads `size_of` bytes of it.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The executable behind `pid` (pip's `envoy` launcher execs the real binary).
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Fails unless `pid` is an Envoy process: its memory figures would be some launcher's.
pub fn ensure_envoy(pid: u32) -> anyhow::Result<()> {
    let exe = exe(pid).unwrap_or_default();
    anyhow::ensure!(
        exe.file_name().is_some_and(|n| n == "envoy"),
        "pid {pid} is {}, not Envoy: cannot read its memory",
        exe.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_version_and_vm_rss() {
        let v = "/usr/bin/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(parse_envoy_version(v).as_deref(), Some("1.40.0"));
        assert_eq!(parse_envoy_version("nope"), None);
        let status = "Name:\tenvoy\nVmPeak:\t  1 kB\nVmRSS:\t   53248 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(53248 * 1024));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_517), "2026-03-05");
        assert_eq!(civil_date(19_782), "2024-02-29");
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1 && cpu_ns(me) > 0);
        assert!(rss_bytes(me).unwrap() > 0);
    }
}
