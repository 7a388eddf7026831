//! Point 2 of the benchmark: what loading the filter costs Envoy in memory, at 1, 2 and 4
//! worker threads (each worker runs its own wasm VM), against the same sidecar without it —
//! and, for scale, with the floor module instead (what any wasm filter costs: V8 itself).
//!
//! Each configuration is a fresh Envoy, warmed with traffic over enough connections to reach
//! every worker (counted from the listener's per-worker stats), then left alone for a second;
//! then `server.memory_allocated` (bytes tcmalloc handed out, read live from the admin API's
//! `/memory`: the stat of that name is only refreshed when Envoy flushes its stats, every 5 s) and the
//! process's `VmRSS` are read. Each is the median over `repeats` fresh starts, the
//! configurations interleaved.
//!
//! Then (issue 12, point 5) Envoy with kasi under streams that clients abandon with a 50 KB
//! `Host` ([`crate::abandoned`]): its memory and kasi's VM memory before and after.

use crate::abandoned::{self, AbandonedOptions, AbandonedReport};
use crate::load::{self, Plan, Probe, Target};
use crate::stats::median;
use crate::system::{self, Machine};
use crate::upstream::Upstream;
use crate::variants::Variant;
use anyhow::{ensure, Context, Result};
use kasi_e2e::Envoy;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct MemoryOptions {
    pub workers: Vec<u32>,
    pub repeats: usize,
    pub warmup: Duration,
    pub floor_wasm: PathBuf,
    /// The abandoned-stream run; `None` skips it.
    pub abandoned: Option<AbandonedOptions>,
}

struct NoProbe;

impl Probe for NoProbe {
    fn sample(&mut self, _target: usize) -> load::Sample {
        load::Sample::default()
    }
}

/// The configurations measured: no filter, the floor module, kasi.
pub const MEASURED: [Variant; 3] = [Variant::Baseline, Variant::Floor, Variant::Kasi];

/// One Envoy, measured once.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub workers: u32,
    pub variant: String,
    pub memory_allocated: u64,
    pub memory_heap_size: u64,
    pub rss: u64,
    /// Workers that accepted at least one connection during the warm-up.
    pub workers_with_traffic: u32,
    pub warmup_requests: u64,
}

/// Medians for one worker count: `(memory_allocated, RSS)` without a filter, with the floor
/// module, with kasi.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workers: u32,
    pub without: (u64, u64),
    pub floor: (u64, u64),
    pub kasi: (u64, u64),
}

impl Row {
    /// What kasi adds to the sidecar without a filter: `(memory_allocated, RSS)`.
    pub fn kasi_adds(&self) -> (i64, i64) {
        (
            self.kasi.0 as i64 - self.without.0 as i64,
            self.kasi.1 as i64 - self.without.1 as i64,
        )
    }

    /// What kasi adds beyond the floor module (beyond V8 and a VM per worker).
    pub fn kasi_adds_to_floor(&self) -> (i64, i64) {
        (
            self.kasi.0 as i64 - self.floor.0 as i64,
            self.kasi.1 as i64 - self.floor.1 as i64,
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub machine: Machine,
    pub repeats: usize,
    pub warmup_seconds: f64,
    pub rows: Vec<Row>,
    pub samples: Vec<Measurement>,
    pub abandoned: Option<AbandonedReport>,
}

pub fn run(options: &MemoryOptions, progress: &mut dyn FnMut(&str)) -> Result<MemoryReport> {
    ensure!(options.repeats > 0, "at least one repeat");
    ensure!(
        options.floor_wasm.is_file(),
        "the floor module is not built at {}",
        options.floor_wasm.display()
    );
    let envoy_path = kasi_e2e::envoy_binary();
    let machine = Machine::describe(&envoy_path);
    let upstream = Upstream::start("bench-pod", "127.0.0.2".parse().unwrap())
        .context("start the upstream on 127.0.0.2")?;
    let decoy = Upstream::start("decoy-pod", "127.0.0.3".parse().unwrap())
        .context("start the decoy on 127.0.0.3")?;

    let mut samples = Vec::new();
    for repeat in 0..options.repeats {
        for &workers in &options.workers {
            for variant in MEASURED {
                let module = (variant == Variant::Floor).then_some(options.floor_wasm.as_path());
                let mut envoy_options = variant.envoy_options(upstream.addr(), module);
                envoy_options.concurrency = workers;
                let envoy = Envoy::try_start(&envoy_options)
                    .map_err(|failure| anyhow::anyhow!("{workers} workers: {failure}"))?;
                system::ensure_envoy(envoy.pid())?;
                // Enough connections that the kernel's reuse-port hashing reaches every worker.
                let warm = load::run(
                    &[Target {
                        addr: envoy.listener_addr(),
                        original_dst: Some(variant.original_dst(upstream.addr(), decoy.addr())),
                        headers: variant.request_headers(upstream.addr()),
                        expect_pod: upstream.name().to_string(),
                    }],
                    &Plan {
                        connections: 8 * workers as usize,
                        slice: options.warmup,
                        warmup_rounds: 0,
                        rounds: 1,
                        shuffle: false,
                    },
                    &mut NoProbe,
                )?;
                let warmup_requests: u64 = warm.slices.iter().map(|s| s.responses).sum();
                ensure!(
                    warm.failures == 0 && warmup_requests > 0,
                    "{workers} workers, {}: the warm-up traffic failed: {:?}",
                    variant.key(),
                    warm.failure_examples
                );
                std::thread::sleep(Duration::from_secs(1));
                let stats = envoy.stats();
                let gauge = |name: &str| stats.get(name).copied().unwrap_or(0);
                let workers_with_traffic = stats
                    .iter()
                    .filter(|(name, value)| {
                        name.starts_with("listener.")
                            && name.contains(".worker_")
                            && name.ends_with(".downstream_cx_total")
                            && **value > 0
                    })
                    .count() as u32;
                let sample = Measurement {
                    workers,
                    variant: variant.key().to_string(),
                    memory_allocated: tcmalloc(&envoy, "allocated")
                        .unwrap_or_else(|| gauge("server.memory_allocated")),
                    memory_heap_size: tcmalloc(&envoy, "heap_size")
                        .unwrap_or_else(|| gauge("server.memory_heap_size")),
                    rss: system::rss_bytes(envoy.pid()).unwrap_or(0),
                    workers_with_traffic,
                    warmup_requests,
                };
                ensure!(
                    sample.memory_allocated > 0 && sample.rss > 0,
                    "no memory figures from Envoy: {sample:?}"
                );
                progress(&format!(
                    "repeat {}/{} {workers} worker(s) {:<9}: allocated {:>6.1} MiB, RSS {:>6.1} MiB ({} of {workers} workers took traffic)",
                    repeat + 1,
                    options.repeats,
                    variant.key(),
                    mib(sample.memory_allocated as i64),
                    mib(sample.rss as i64),
                    sample.workers_with_traffic
                ));
                samples.push(sample);
            }
        }
    }

    let rows = options
        .workers
        .iter()
        .map(|&workers| {
            let of = |variant: Variant| {
                let mine = || {
                    samples
                        .iter()
                        .filter(move |s| s.workers == workers && s.variant == variant.key())
                };
                (
                    median(mine().map(|s| s.memory_allocated as f64).collect()) as u64,
                    median(mine().map(|s| s.rss as f64).collect()) as u64,
                )
            };
            Row {
                workers,
                without: of(Variant::Baseline),
                floor: of(Variant::Floor),
                kasi: of(Variant::Kasi),
            }
        })
        .collect();
    let abandoned = match &options.abandoned {
        Some(abandoned) => Some(abandoned::run(abandoned, progress)?),
        None => None,
    };
    Ok(MemoryReport {
        machine,
        repeats: options.repeats,
        warmup_seconds: options.warmup.as_secs_f64(),
        rows,
        samples,
        abandoned,
    })
}

/// One of tcmalloc's figures from Envoy's admin `/memory`, read now (`allocated`: what
/// `server.memory_allocated` shows after the next stats flush).
pub fn tcmalloc(envoy: &Envoy, field: &str) -> Option<u64> {
    let response = kasi_e2e::admin_get(envoy.admin_addr(), "/memory").ok()?;
    let memory: serde_json::Value = serde_json::from_str(&response.body).ok()?;
    match &memory[field] {
        serde_json::Value::String(text) => text.parse().ok(),
        value => value.as_u64(),
    }
}

pub fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn write(report: &MemoryReport, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("memory.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    std::fs::write(out.join("memory.md"), markdown(report))?;
    Ok(())
}

/// The figures as Markdown, the README's table.
pub fn markdown(report: &MemoryReport) -> String {
    let mut out = format!(
        "Measured {} on {}: the sidecar's bootstrap without a filter, with the floor module \
         and with kasi's filter, after {} s of traffic over every worker; median of {} fresh \
         Envoy starts each. MiB.\n\n",
        report.machine.date(),
        report.machine.describe_briefly(),
        report.warmup_seconds,
        report.repeats
    );
    out.push_str("| workers | `memory_allocated`: none / floor / kasi | kasi adds | RSS: none / floor / kasi | kasi adds |\n");
    out.push_str("|---:|---|---:|---|---:|\n");
    for r in &report.rows {
        let (alloc, rss) = r.kasi_adds();
        out.push_str(&format!(
            "| {} | {:.1} / {:.1} / {:.1} | **{:+.1}** | {:.1} / {:.1} / {:.1} | **{:+.1}** |\n",
            r.workers,
            mib(r.without.0 as i64),
            mib(r.floor.0 as i64),
            mib(r.kasi.0 as i64),
            mib(alloc),
            mib(r.without.1 as i64),
            mib(r.floor.1 as i64),
            mib(r.kasi.1 as i64),
            mib(rss),
        ));
    }
    if let Some(abandoned) = &report.abandoned {
        out.push('\n');
        out.push_str(&abandoned::markdown(abandoned));
    }
    out
}

pub fn table(report: &MemoryReport) -> String {
    let mut out = format!(
        "Envoy {} memory, median of {} fresh starts each (MiB; none / floor / kasi)\n",
        report.machine.envoy_version, report.repeats
    );
    out.push_str(&format!(
        "{:>8} {:>26} {:>26} {:>16} {:>16}\n",
        "workers", "memory_allocated", "RSS", "kasi adds", "kasi - floor"
    ));
    for r in &report.rows {
        let (alloc, rss) = r.kasi_adds();
        let (falloc, frss) = r.kasi_adds_to_floor();
        out.push_str(&format!(
            "{:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>+7.1}/{:>+7.1} {:>+7.1}/{:>+7.1}\n",
            r.workers,
            mib(r.without.0 as i64),
            mib(r.floor.0 as i64),
            mib(r.kasi.0 as i64),
            mib(r.without.1 as i64),
            mib(r.floor.1 as i64),
            mib(r.kasi.1 as i64),
            mib(alloc),
            mib(rss),
            mib(falloc),
            mib(frss),
        ));
    }
    if let Some(abandoned) = &report.abandoned {
        out.push_str(&abandoned::table(abandoned));
    }
    out
}
