//! Issue 12, point 5, as `./dev bench` shows it: Envoy's memory with kasi does not grow with what
//! clients send. Streams that the client abandons before the response, each with a 50 KB `Host`
//! (Envoy's default `max_request_headers_kb` is 60), go through one Envoy with kasi as
//! `kasi apply` installs it (signed sessions) to a pod that never answers; Envoy's RSS, its
//! `server.memory_allocated` and kasi's VM memory (`kasi_affinity.vm_memory_bytes`, the VM's
//! linear memory, recorded when it grows) are read on the fresh Envoy, after a warm-up share of
//! the streams, and after all of them.
//!
//! The streams take turns being the three kinds a filter keeps per-stream state for: a session
//! signed for that `Host` (routed by kasi), no session (a new one: the response would be
//! signed for that `Host`), and a session with a wrong MAC (rejected and logged). Each is a
//! connection from the activator emulator (a PROXY protocol header naming the pod) that sends
//! the request, waits `linger` for Envoy to read it and closes. One Envoy worker, so the gauge
//! is that worker's VM. Loopback only; bounded in count and in time.

use crate::system;
use crate::upstream::Upstream;
use crate::variants::{self, Variant};
use anyhow::{bail, ensure, Context, Result};
use kasi_e2e::Envoy;
use serde::Serialize;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Envoy's limit on request headers by default (`max_request_headers_kb`), for the record.
pub const ENVOY_MAX_REQUEST_HEADERS_KB: usize = 60;

#[derive(Debug, Clone)]
pub struct AbandonedOptions {
    /// Streams measured (after the warm-up).
    pub streams: usize,
    /// Streams sent first, not measured: allocator pools and the VM reach their working size.
    pub warmup_streams: usize,
    /// The `Host` header's length.
    pub host_bytes: usize,
    /// Connections open at once.
    pub clients: usize,
    /// How long a client waits after sending before it closes.
    pub linger: Duration,
    /// The whole run (warm-up, streams, settling) must end within this.
    pub time_limit: Duration,
}

impl Default for AbandonedOptions {
    fn default() -> Self {
        AbandonedOptions {
            streams: 5_000,
            warmup_streams: 500,
            host_bytes: 50 * 1024,
            clients: 32,
            // Long enough for a busy 2-core machine to read 50 KB and run the filter first.
            linger: Duration::from_millis(100),
            time_limit: Duration::from_secs(300),
        }
    }
}

/// Envoy's memory at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryPoint {
    /// `VmRSS` of the Envoy process.
    pub rss: u64,
    /// `server.memory_allocated` (bytes tcmalloc handed out), read live from admin `/memory`.
    pub memory_allocated: u64,
    /// `kasi_affinity.vm_memory_bytes`: kasi's VM's linear memory (0 before it is recorded).
    pub vm_memory_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbandonedReport {
    pub envoy_workers: u32,
    pub streams: usize,
    pub warmup_streams: usize,
    pub host_bytes: usize,
    pub clients: usize,
    pub linger_ms: u64,
    /// Right after Envoy started.
    pub fresh: MemoryPoint,
    /// After the warm-up streams.
    pub before: MemoryPoint,
    /// After the measured streams, once Envoy has no stream left.
    pub after: MemoryPoint,
    /// kasi's counters over the measured streams: requests it saw, routed, rejected.
    pub seen_by_filter: u64,
    pub routed: u64,
    pub rejected: u64,
    /// Connections the silent pod accepted during the measured streams.
    pub reached_pod: u64,
    pub seconds: f64,
}

impl AbandonedReport {
    /// `after - before`: `(RSS, memory_allocated, VM memory)`.
    pub fn growth(&self) -> (i64, i64, i64) {
        (
            self.after.rss as i64 - self.before.rss as i64,
            self.after.memory_allocated as i64 - self.before.memory_allocated as i64,
            self.after.vm_memory_bytes as i64 - self.before.vm_memory_bytes as i64,
        )
    }
}

fn point(envoy: &Envoy) -> MemoryPoint {
    let stats = envoy.stats();
    let vm_suffix = format!(".{}", kasi_filter::metrics::VM_MEMORY_BYTES);
    MemoryPoint {
        rss: system::rss_bytes(envoy.pid()).unwrap_or(0),
        memory_allocated: crate::memory::tcmalloc(envoy, "allocated")
            .or_else(|| stats.get("server.memory_allocated").copied())
            .unwrap_or(0),
        vm_memory_bytes: stats
            .iter()
            .find(|(name, _)| {
                *name == kasi_filter::metrics::VM_MEMORY_BYTES || name.ends_with(&vm_suffix)
            })
            .map_or(0, |(_, v)| *v),
    }
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(name)
}

/// Runs the streams; `progress` gets one line per step.
pub fn run(options: &AbandonedOptions, progress: &mut dyn FnMut(&str)) -> Result<AbandonedReport> {
    ensure!(
        options.streams > 0 && options.clients > 0,
        "nothing to send"
    );
    ensure!(
        options.host_bytes > 16 && options.host_bytes < ENVOY_MAX_REQUEST_HEADERS_KB * 1024 - 2048,
        "a Host of {} bytes does not fit Envoy's {ENVOY_MAX_REQUEST_HEADERS_KB} KB of headers",
        options.host_bytes
    );
    let started = Instant::now();
    let deadline = started + options.time_limit;
    let pod = Upstream::start_silent("silent-pod", "127.0.0.4".parse().unwrap())
        .context("start the silent pod on 127.0.0.4")?;
    let mut envoy_options = Variant::Kasi.envoy_options(pod.addr(), None);
    envoy_options.concurrency = 1;
    let envoy = Envoy::try_start(&envoy_options)
        .map_err(|failure| anyhow::anyhow!("Envoy with kasi: {failure}"))?;
    system::ensure_envoy(envoy.pid())?;
    let fresh = point(&envoy);

    // The Host, lowercase already (kasi binds the MAC to the lowercased `:authority`).
    let suffix = ".example.com";
    let host = format!("{}{suffix}", "h".repeat(options.host_bytes - suffix.len()));
    let signed = variants::signed_session(pod.addr(), &host);
    let forged = format!(
        "{}.AAAAAAAAAAAAAAAAAAAAAA",
        kasi_filter::codec::encode_proto(pod.addr(), None)
    );
    let requests: [Vec<u8>; 3] = [
        request(&host, Some(&signed)),
        request(&host, None),
        request(&host, Some(&forged)),
    ];

    let send = |count: usize| -> Result<()> {
        let next = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..options.clients {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() > deadline {
                        break;
                    }
                    let sent = abandon(
                        envoy.listener_addr(),
                        pod.addr(),
                        &requests[i % requests.len()],
                        options.linger,
                    );
                    if sent.is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let failures = failures.into_inner();
        ensure!(
            failures * 100 <= count,
            "{failures} of {count} abandoned streams could not even be sent"
        );
        ensure!(
            Instant::now() <= deadline,
            "the abandoned streams took longer than {:?}",
            options.time_limit
        );
        // Streams close a moment after the last one was sent; a loaded machine gets that
        // moment even when sending used up the time limit.
        settle(&envoy, deadline.max(Instant::now() + SETTLE_GRACE))
    };

    send(options.warmup_streams)?;
    let before = point(&envoy);
    let seen_before = counter(&envoy, "kasi_affinity.requests");
    let routed_before = counter(&envoy, "kasi_affinity.cookie_routed");
    let rejected_before = counter(&envoy, "kasi_affinity.rejected_malformed");
    let pod_before = pod.requests();
    progress(&format!(
        "{} abandoned streams with a {} KB Host through Envoy with kasi (1 worker), {} at once, after {} to warm up",
        options.streams,
        options.host_bytes / 1024,
        options.clients,
        options.warmup_streams
    ));
    send(options.streams)?;
    let after = point(&envoy);
    let seen_by_filter = counter(&envoy, "kasi_affinity.requests") - seen_before;
    let routed = counter(&envoy, "kasi_affinity.cookie_routed") - routed_before;
    let rejected = counter(&envoy, "kasi_affinity.rejected_malformed") - rejected_before;
    let reached_pod = pod.requests() - pod_before;
    // Envoy parses the head before it sees the close: nearly every stream reached the filter,
    // a third of them routed and a third rejected.
    let share = |n: u64, of: usize| n * 100 >= of as u64 * 95;
    ensure!(
        share(seen_by_filter, options.streams)
            && share(routed * 3, options.streams)
            && share(rejected * 3, options.streams),
        "the streams did not reach kasi as planned: {seen_by_filter} seen, {routed} routed, \
         {rejected} rejected of {} (a longer linger gives Envoy more time to read them)",
        options.streams,
    );
    let report = AbandonedReport {
        envoy_workers: 1,
        streams: options.streams,
        warmup_streams: options.warmup_streams,
        host_bytes: options.host_bytes,
        clients: options.clients,
        linger_ms: options.linger.as_millis() as u64,
        fresh,
        before,
        after,
        seen_by_filter,
        routed,
        rejected,
        reached_pod,
        seconds: started.elapsed().as_secs_f64(),
    };
    let (rss, allocated, vm) = report.growth();
    progress(&format!(
        "abandoned streams: RSS {:+.1} MiB, memory_allocated {:+.1} MiB, kasi's VM {:+.1} MiB ({seen_by_filter} seen by kasi, {routed} routed, {rejected} rejected, {reached_pod} reached the pod)",
        mib(rss),
        mib(allocated),
        mib(vm)
    ));
    Ok(report)
}

/// `GET /` with `host` and, when given, the session cookie `value` (quoted as Envoy writes it)
/// among ordinary cookies.
fn request(host: &str, session: Option<&str>) -> Vec<u8> {
    let mut text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(session) = session {
        text.push_str(&format!("Cookie: {}\r\n", variants::cookie_header(session)));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// One connection as the activator emulator opens it (PROXY header naming `original_dst`): sends
/// `request`, waits `linger`, closes without reading.
fn abandon(
    listener: SocketAddr,
    original_dst: SocketAddr,
    request: &[u8],
    linger: Duration,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&listener, Duration::from_secs(5))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let src = stream.local_addr()?;
    let family = if original_dst.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let mut bytes = format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        original_dst.ip(),
        src.port(),
        original_dst.port()
    )
    .into_bytes();
    bytes.extend_from_slice(request);
    stream.write_all(&bytes)?;
    std::thread::sleep(linger);
    Ok(())
}

/// How long streams may take to close once the last was sent.
const SETTLE_GRACE: Duration = Duration::from_secs(30);

/// Waits until Envoy has no stream or connection left on the listener or to PassthroughCluster,
/// then a second more (as the memory figures without streams are read: Envoy left alone).
fn settle(envoy: &Envoy, deadline: Instant) -> Result<()> {
    loop {
        let stats = envoy.stats();
        let active = |name: &str| stats.get(name).copied().unwrap_or(0);
        let open = active("http.outbound_0.0.0.0_8012.downstream_rq_active")
            + active("http.outbound_0.0.0.0_8012.downstream_cx_active")
            + active("cluster.PassthroughCluster.upstream_rq_active")
            + active("cluster.PassthroughCluster.upstream_cx_active");
        if open == 0 {
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Envoy still has {open} streams open at the time limit");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The figures as Markdown.
pub fn markdown(report: &AbandonedReport) -> String {
    let row = |name: &str, f: fn(&MemoryPoint) -> u64| {
        format!(
            "| {name} | {:.1} | {:.1} | {:.1} | **{:+.1}** |\n",
            mib(f(&report.fresh) as i64),
            mib(f(&report.before) as i64),
            mib(f(&report.after) as i64),
            mib(f(&report.after) as i64 - f(&report.before) as i64),
        )
    };
    let mut out = format!(
        "{} streams abandoned by the client before the response (after {} to warm up), each \
         with a {} KB `Host`, {} at once, through Envoy with kasi (1 worker, signed sessions; a \
         third routed, a third new, a third rejected): {} seen by kasi, {} routed, {} rejected. \
         MiB.\n\n",
        report.streams,
        report.warmup_streams,
        report.host_bytes / 1024,
        report.clients,
        report.seen_by_filter,
        report.routed,
        report.rejected,
    );
    out.push_str("| | fresh Envoy | after the warm-up | after the streams | grew |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    out.push_str(&row("Envoy RSS", |p| p.rss));
    out.push_str(&row("`server.memory_allocated`", |p| p.memory_allocated));
    out.push_str(&row("kasi's VM (`kasi_affinity.vm_memory_bytes`)", |p| {
        p.vm_memory_bytes
    }));
    out
}

/// The human summary.
pub fn table(report: &AbandonedReport) -> String {
    let mut out = format!(
        "{} abandoned streams with a {} KB Host (Envoy with kasi, 1 worker; {} seen by kasi, {} routed, {} rejected), MiB\n",
        report.streams,
        report.host_bytes / 1024,
        report.seen_by_filter,
        report.routed,
        report.rejected
    );
    out.push_str(&format!(
        "{:<20} {:>10} {:>10} {:>10} {:>10}\n",
        "", "fresh", "before", "after", "grew"
    ));
    for (name, f) in [
        ("RSS", (|p: &MemoryPoint| p.rss) as fn(&MemoryPoint) -> u64),
        ("memory_allocated", |p| p.memory_allocated),
        ("kasi VM memory", |p| p.vm_memory_bytes),
    ] {
        out.push_str(&format!(
            "{name:<20} {:>10.1} {:>10.1} {:>10.1} {:>+10.1}\n",
            mib(f(&report.fresh) as i64),
            mib(f(&report.before) as i64),
            mib(f(&report.after) as i64),
            mib(f(&report.after) as i64 - f(&report.before) as i64),
        ));
    }
    out
}
