//! Config shrink: what the `Sidecar` does to an activator's istio-proxy as the mesh grows.
//! `cargo bench -p kasi-lab --bench config_shrink [-- COUNTS]` (part of `./dev bench`); COUNTS is a
//! comma-separated list of Service counts (default 50,150,500). Writes
//! `bench/results/config-shrink.{json,md}`.
//!
//! For each Service count, a lab (its istiod, one activator sidecar Envoy) is started unscoped and
//! read: config_dump bytes (without EDS, as istioctl shows it), cluster and listener counts,
//! `server.memory_allocated` and the Envoy process's RSS. Then the bundle's `Sidecar` (only that
//! piece) is applied, the config is awaited until it shrinks and settles, and the sidecar is
//! restarted — as installing kasi rolls the activator — so the second reading is of an Envoy that
//! only ever held the scoped config, not one still holding freed pages of the big one.

use anyhow::{bail, Context};
use kasi::envoy::config_dump::ConfigDump;
use kasi::install::objects::{self, ApplyMode};
use kasi::install::render::{render, FilterSource, RenderOptions};
use kasi_lab::data_plane::envoy::admin_get;
use kasi_lab::{Lab, LabOptions};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One sidecar reading.
#[derive(Debug, Clone, Serialize)]
struct Reading {
    config_dump_bytes: u64,
    clusters: usize,
    listeners: usize,
    /// Envoy's `server.memory_allocated`.
    memory_allocated: u64,
    /// VmRSS of the Envoy process.
    rss_bytes: u64,
}

/// Both readings at one Service count.
#[derive(Debug, Clone, Serialize)]
struct ShrinkRow {
    services: usize,
    unscoped: Reading,
    scoped: Reading,
}

impl ShrinkRow {
    fn config_ratio(&self) -> f64 {
        self.unscoped.config_dump_bytes as f64 / self.scoped.config_dump_bytes.max(1) as f64
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; anything else is the list of counts.
    let counts: Vec<usize> = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(list) => list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse()
                    .with_context(|| format!("not a Service count: {c:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
        None => vec![50, 150, 500],
    };
    let envoy = std::env::var_os("KASI_ENVOY").map(PathBuf::from);
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(run(&counts, envoy))?;
    let table = to_markdown(&rows);
    println!("activator sidecar config, unscoped → with the Sidecar (fresh Envoy each):\n{table}");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the lab crate sits in the workspace")?;
    let out = workspace.join("bench/results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("config-shrink.md"), &table)?;
    std::fs::write(
        out.join("config-shrink.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    eprintln!("wrote {}", out.join("config-shrink.{md,json}").display());
    Ok(())
}

/// Runs the measurement at each count in `services`, printing progress to stderr.
async fn run(services: &[usize], envoy: Option<PathBuf>) -> anyhow::Result<Vec<ShrinkRow>> {
    let mut rows = Vec::new();
    for &count in services {
        eprintln!("shrink: lab with {count} Services…");
        rows.push(measure(count, envoy.clone()).await?);
    }
    Ok(rows)
}

async fn measure(services: usize, envoy: Option<PathBuf>) -> anyhow::Result<ShrinkRow> {
    let lab = Lab::start(LabOptions {
        services,
        activators: 1,
        hello_pods: 1,
        envoy,
        ..LabOptions::default()
    })
    .await
    .with_context(|| format!("start a lab with {services} Services"))?;
    let result = measure_in(&lab, services).await;
    lab.shutdown().await;
    result
}

async fn measure_in(lab: &Lab, services: usize) -> anyhow::Result<ShrinkRow> {
    let (_, admin) = lab
        .sidecar_admins()
        .into_iter()
        .next()
        .context("the lab has no activator sidecar")?;
    let unscoped = settled(lab, admin).await?;

    let client = kube_client(lab).await?;
    let mut options = RenderOptions::new(FilterSource::ConfigMap { wasm: Vec::new() });
    options.allowed_cidrs = Some(vec![lab.layout.pod_cidr()]);
    let mut sidecar = render(&options)?
        .into_iter()
        .find(|piece| piece.id == "sidecar")
        .context("the bundle has no Sidecar piece")?;
    // The Sidecar alone, on the running activator: without the module label the rollout would
    // add, so only its scoping is measured.
    if let Some(labels) = sidecar.object["spec"]["workloadSelector"]["labels"].as_object_mut() {
        labels.remove(kasi::install::render::MODULE_LABEL);
    }
    objects::apply(
        &client,
        &sidecar.object,
        ApplyMode {
            dry_run: false,
            force: false,
        },
    )
    .await
    .context("apply the Sidecar")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while config_dump(admin).await?.0 * 2 > unscoped.config_dump_bytes {
        if Instant::now() > deadline {
            bail!("the config did not shrink within 60 s of applying the Sidecar");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lab.restart_sidecar(0).await?;
    let scoped = settled(lab, admin).await?;
    Ok(ShrinkRow {
        services,
        unscoped,
        scoped,
    })
}

/// A reading once the config has stopped changing (two equal sizes a second apart) and Envoy
/// has had a moment to free what it drained.
async fn settled(lab: &Lab, admin: SocketAddr) -> anyhow::Result<Reading> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, 0, 0);
    loop {
        let now = config_dump(admin).await?;
        if now == last && now.1 > 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the sidecar's config did not settle within 60 s");
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (config_dump_bytes, clusters, listeners) = config_dump(admin).await?;
    let memory_allocated = memory_allocated(admin).await?;
    let pid = lab
        .sidecar_pids()
        .await
        .first()
        .map(|(_, pid)| *pid)
        .context("the sidecar Envoy is not running")?;
    Ok(Reading {
        config_dump_bytes,
        clusters,
        listeners,
        memory_allocated,
        rss_bytes: rss_bytes(pid).context("read the sidecar Envoy's RSS")?,
    })
}

/// (bytes, clusters, listeners) of `/config_dump`.
async fn config_dump(admin: SocketAddr) -> anyhow::Result<(u64, usize, usize)> {
    let (status, body) = admin_get(admin, "/config_dump").await?;
    if status != 200 {
        bail!("{admin}/config_dump answered {status}");
    }
    let dump = ConfigDump::parse(body.as_bytes())?;
    Ok((
        body.len() as u64,
        dump.count("clusters"),
        dump.count("listeners"),
    ))
}

async fn memory_allocated(admin: SocketAddr) -> anyhow::Result<u64> {
    let (status, body) = admin_get(admin, "/stats?filter=^server\\.memory_allocated$").await?;
    if status != 200 {
        bail!("{admin}/stats answered {status}");
    }
    body.lines()
        .find_map(|line| line.strip_prefix("server.memory_allocated: "))
        .and_then(|v| v.trim().parse().ok())
        .context("no server.memory_allocated in the sidecar's stats")
}

/// VmRSS of `pid`, from /proc.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

async fn kube_client(lab: &Lab) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(lab.kubeconfig_path())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The table for the terminal and the README.
fn to_markdown(rows: &[ShrinkRow]) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = String::from(
        "| Services | config_dump unscoped → with Sidecar | ratio | clusters | memory_allocated | Envoy RSS |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (u, s) = (&row.unscoped, &row.scoped);
        out.push_str(&format!(
            "| {} | {:.0} kB → {:.0} kB | {:.1}× | {} → {} | {:.1} → {:.1} MiB | {:.1} → {:.1} MiB |\n",
            row.services,
            u.config_dump_bytes as f64 / 1000.0,
            s.config_dump_bytes as f64 / 1000.0,
            row.config_ratio(),
            u.clusters,
            s.clusters,
            mib(u.memory_allocated),
            mib(s.memory_allocated),
            mib(u.rss_bytes),
            mib(s.rss_bytes),
        ));
    }
    out
}
