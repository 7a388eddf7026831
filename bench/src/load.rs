//! The load generator: closed loop over loopback, switching between targets many times a second.
//!
//! Why not wrk: on this kind of machine (a 2-vCPU VM) the speed of the CPU itself swings by
//! ±30 % from one second to the next (a fixed spin loop shows it), so variants measured a few
//! seconds apart, as wrk runs must be, differ by more than the few percent the benchmark is
//! about. This client keeps `connections` connections open to every target and hands the load
//! from one target to the next every `slice` (a quarter of a second by default), round after
//! round, for the whole run: every variant sees the same swings, and variants are compared
//! within a round, a fraction of a second apart.
//!
//! Closed loop: during a target's slice each of its connections has exactly one request in
//! flight, the next sent when the previous answer is in (wrk's model). At the end of a slice
//! no new request is sent and the ones in flight are awaited before the next target starts, so
//! one Envoy at a time is loaded and every answer is counted where it belongs. Every response
//! is checked (status 200 from the expected pod, `x-kasi-pod`), every latency recorded in an
//! HDR histogram (microseconds). It is one thread on one event loop, with a prebuilt request
//! and a buffer per connection: a fraction of a core at the rates one Envoy worker reaches.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One thing to load: an address, the request sent to it, the pod that must answer.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Each connection starts with a PROXY protocol v1 header naming this as its original
    /// destination, as the e2e harness's activator emulator does.
    pub original_dst: Option<SocketAddr>,
    pub headers: Vec<(String, String)>,
    pub expect_pod: String,
}

impl Target {
    fn request(&self) -> Vec<u8> {
        let mut request = String::from("GET / HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.into_bytes()
    }
}

/// What the caller reads around each slice (the upstream's count, Envoy's CPU time).
pub trait Probe {
    fn sample(&mut self, target: usize) -> Sample;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub upstream_requests: u64,
    pub cpu_ns: u64,
}

/// One target's slice of one round.
#[derive(Debug, Clone)]
pub struct Slice {
    pub round: usize,
    pub target: usize,
    pub responses: u64,
    /// From the first request sent to the last answer in.
    pub active: Duration,
    pub before: Sample,
    pub after: Sample,
}

impl Slice {
    pub fn requests_per_s(&self) -> f64 {
        self.responses as f64 / self.active.as_secs_f64().max(1e-9)
    }
}

pub struct Outcome {
    /// Measured slices, in the order they ran.
    pub slices: Vec<Slice>,
    /// Latency (µs) of every measured response, per target.
    pub latency: Vec<Histogram<u64>>,
    /// Responses that were not a 200 from the expected pod, or requests that failed.
    pub failures: u64,
    /// The first few failures, described.
    pub failure_examples: Vec<String>,
}

pub struct Plan {
    pub connections: usize,
    pub slice: Duration,
    /// Unmeasured rounds first (V8 and LuaJIT compile their hot code).
    pub warmup_rounds: usize,
    pub rounds: usize,
    /// Each round visits the targets in a fresh pseudo-random order (fixed seed), so no target
    /// always follows the same one; otherwise in the order given.
    pub shuffle: bool,
}

/// The order of round `round` over `n` targets: a permutation from a fixed-seed generator.
fn shuffled(n: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for i in (1..n).rev() {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        order.swap(i, (r % (i as u64 + 1)) as usize);
    }
    order
}

/// Runs `plan` over `targets` on a single-threaded event loop on the calling thread.
pub fn run(targets: &[Target], plan: &Plan, probe: &mut dyn Probe) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(targets, plan, probe))
}

async fn run_async(targets: &[Target], plan: &Plan, probe: &mut dyn Probe) -> Result<Outcome> {
    let mut pools = Vec::new();
    for target in targets {
        let mut pool = Vec::new();
        for _ in 0..plan.connections {
            pool.push(Connection::open(target).await?);
        }
        pools.push(pool);
    }
    let mut outcome = Outcome {
        slices: Vec::new(),
        latency: targets
            .iter()
            .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3))
            .collect::<Result<_, _>>()?,
        failures: 0,
        failure_examples: Vec::new(),
    };
    let mut scratch = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for round in 0..plan.warmup_rounds + plan.rounds {
        let measured = round >= plan.warmup_rounds;
        let order = if plan.shuffle {
            shuffled(targets.len(), round)
        } else {
            (0..targets.len()).collect()
        };
        for t in order {
            let before = probe.sample(t);
            let pool = std::mem::take(&mut pools[t]);
            let deadline = Instant::now() + plan.slice;
            let mut tasks = tokio::task::JoinSet::new();
            let started = Instant::now();
            for connection in pool {
                tasks.spawn(connection.run_until(deadline));
            }
            let mut responses = 0;
            let mut last = started;
            while let Some(done) = tasks.join_next().await {
                let (connection, mut done) = done.context("a load task panicked")?;
                responses += done.responses;
                last = last.max(done.last_answer);
                if measured {
                    outcome.failures += done.failures;
                    for example in done.failure_examples.drain(..) {
                        if outcome.failure_examples.len() < 5 {
                            outcome.failure_examples.push(example);
                        }
                    }
                    outcome.latency[t].add(&done.latency)?;
                } else {
                    scratch.add(&done.latency)?;
                }
                pools[t].push(connection.reopen_if_closed(&targets[t]).await?);
            }
            let after = probe.sample(t);
            if measured {
                outcome.slices.push(Slice {
                    round: round - plan.warmup_rounds,
                    target: t,
                    responses,
                    active: last.saturating_duration_since(started),
                    before,
                    after,
                });
            }
        }
    }
    Ok(outcome)
}

struct Connection {
    stream: Option<TcpStream>,
    request: std::sync::Arc<[u8]>,
    expect_pod: std::sync::Arc<str>,
    buf: Vec<u8>,
}

struct SliceResult {
    responses: u64,
    failures: u64,
    failure_examples: Vec<String>,
    latency: Histogram<u64>,
    last_answer: Instant,
}

impl Connection {
    async fn open(target: &Target) -> Result<Connection> {
        let mut stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?;
        stream.set_nodelay(true)?;
        if let Some(dst) = target.original_dst {
            let src = stream.local_addr()?;
            let family = if dst.is_ipv4() { "TCP4" } else { "TCP6" };
            let header = format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            );
            stream.write_all(header.as_bytes()).await?;
        }
        Ok(Connection {
            stream: Some(stream),
            request: target.request().into(),
            expect_pod: target.expect_pod.as_str().into(),
            buf: Vec::with_capacity(4096),
        })
    }

    async fn reopen_if_closed(self, target: &Target) -> Result<Connection> {
        if self.stream.is_some() {
            Ok(self)
        } else {
            Connection::open(target).await
        }
    }

    /// Sends requests one after the other until `deadline`.
    async fn run_until(mut self, deadline: Instant) -> (Connection, SliceResult) {
        let mut result = SliceResult {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            responses: 0,
            failures: 0,
            failure_examples: Vec::new(),
            last_answer: Instant::now(),
        };
        while Instant::now() < deadline {
            let sent = Instant::now();
            match self.exchange().await {
                Ok(()) => {
                    let now = Instant::now();
                    let us = now.duration_since(sent).as_micros().max(1) as u64;
                    let _ = result.latency.record(us);
                    result.responses += 1;
                    result.last_answer = now;
                }
                Err(e) => {
                    result.failures += 1;
                    if result.failure_examples.len() < 2 {
                        result.failure_examples.push(format!("{e:#}"));
                    }
                    // A broken connection is replaced after the slice.
                    if self.stream.is_none() {
                        break;
                    }
                }
            }
        }
        (self, result)
    }

    /// One request and its whole response; the connection is dropped on an I/O error.
    async fn exchange(&mut self) -> Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            bail!("connection closed");
        };
        let answer = exchange(stream, &self.request, &mut self.buf).await;
        match answer {
            Ok(Answer { status, pod }) => {
                if status != 200 || pod.as_deref() != Some(&*self.expect_pod) {
                    bail!(
                        "status {status} from pod {pod:?}, expected 200 from {}",
                        self.expect_pod
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.stream = None;
                self.buf.clear();
                Err(e)
            }
        }
    }
}

struct Answer {
    status: u16,
    pod: Option<String>,
}

async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<Answer> {
    stream.write_all(request).await?;
    // The head.
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        read_more(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not text")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line of {head:?}"))?;
    let mut length = None;
    let mut pod = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("x-kasi-pod") {
            pod = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not expected here: {head:?}");
        }
    }
    let length = length.with_context(|| format!("no content-length in {head:?}"))?;
    while buf.len() < head_end + length {
        read_more(stream, buf).await?;
    }
    buf.drain(..head_end + length);
    Ok(Answer { status, pod })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let start = buf.len();
    buf.resize(start + 4096, 0);
    let n = stream.read(&mut buf[start..]).await;
    match n {
        Ok(0) => {
            buf.truncate(start);
            bail!("connection closed by the server")
        }
        Ok(n) => {
            buf.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Upstream;

    #[test]
    fn shuffled_orders_are_permutations_that_vary() {
        let orders: Vec<Vec<usize>> = (0..50).map(|r| shuffled(4, r)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
        }
        // Every target follows every other one at some point.
        for a in 0..4 {
            for b in 0..4 {
                if a != b {
                    assert!(orders.iter().any(|o| o.windows(2).any(|w| w == [a, b])));
                }
            }
        }
        assert_eq!(shuffled(4, 7), shuffled(4, 7));
    }

    struct Upstreams<'a>(&'a [Upstream]);

    impl Probe for Upstreams<'_> {
        fn sample(&mut self, target: usize) -> Sample {
            Sample {
                upstream_requests: self.0[target].requests(),
                cpu_ns: 0,
            }
        }
    }

    #[test]
    fn loads_one_target_at_a_time_and_checks_the_pod() {
        let ups = [
            Upstream::start("a", "127.0.0.1".parse().unwrap()).unwrap(),
            Upstream::start("b", "127.0.0.1".parse().unwrap()).unwrap(),
        ];
        let target = |u: &Upstream, expect: &str| Target {
            addr: u.addr(),
            original_dst: None,
            headers: vec![("Host".into(), "x".into())],
            expect_pod: expect.into(),
        };
        let targets = [target(&ups[0], "a"), target(&ups[1], "b")];
        let plan = Plan {
            connections: 3,
            slice: Duration::from_millis(50),
            warmup_rounds: 1,
            rounds: 4,
            shuffle: true,
        };
        let outcome = run(&targets, &plan, &mut Upstreams(&ups)).unwrap();
        assert_eq!(outcome.failures, 0, "{:?}", outcome.failure_examples);
        assert_eq!(outcome.slices.len(), 8);
        for slice in &outcome.slices {
            assert!(slice.responses > 0);
            // Drained: the upstream answered exactly what the client counted.
            assert_eq!(
                slice.after.upstream_requests - slice.before.upstream_requests,
                slice.responses
            );
        }
        for round in 0..4 {
            let mut seen: Vec<usize> = outcome.slices[2 * round..2 * round + 2]
                .iter()
                .map(|s| s.target)
                .collect();
            seen.sort();
            assert_eq!(seen, vec![0, 1], "every round loads every target once");
        }
        assert!(!outcome.latency[0].is_empty() && !outcome.latency[1].is_empty());

        // The wrong pod is a failure, not a measurement.
        let wrong = [target(&ups[0], "b")];
        let plan = Plan {
            warmup_rounds: 0,
            rounds: 1,
            ..plan
        };
        let outcome = run(&wrong, &plan, &mut Upstreams(&ups)).unwrap();
        assert!(outcome.failures > 0);
        assert!(outcome.failure_examples[0].contains("expected 200 from b"));
    }
}
