//! `kasi-bench`: kasi's benchmarks on real Envoy. `./dev bench` runs them and writes
//! `bench/results/`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use kasi_bench::abandoned::AbandonedOptions;
use kasi_bench::filter_bench::{self, FilterOptions};
use kasi_bench::memory::{self, MemoryOptions};
use kasi_bench::variants::{Modules, Setup, Variant};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kasi-bench", about = "kasi's benchmarks on real Envoy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Throughput and latency through Envoy (1 worker): no filter, the floor wasm filter, kasi,
    /// Lua (steering by header), kasi's request phase alone, Lua as usually written, kasi with a
    /// response phase that reads nothing, kasi unsigned; one at a time in short slices, round
    /// after round, under the same closed-loop load.
    Filter {
        /// Measured rounds; each gives every variant one slice.
        #[arg(long, default_value_t = 80)]
        rounds: usize,
        /// How long each variant is loaded per round.
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        slice: Duration,
        /// Unmeasured rounds first.
        #[arg(long, default_value_t = 5)]
        warmup_rounds: usize,
        /// Requests in flight (connections), closed loop.
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// Envoy processes per variant (loaded in turn; evens out differences between processes).
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// The floor module (default: the workspace's wasm build, or KASI_FLOOR_WASM).
        #[arg(long)]
        floor_wasm: Option<PathBuf>,
        /// Let the scheduler place Envoy, the load and the upstream (default: Envoy on one CPU,
        /// the load generator and the upstream on another).
        #[arg(long)]
        no_pin: bool,
        /// Another build of the floor module to run alongside (repeatable).
        #[arg(long)]
        extra_floor: Vec<PathBuf>,
        /// Another build of kasi's module to run alongside, e.g. the previous one (repeatable).
        #[arg(long)]
        extra_kasi: Vec<PathBuf>,
        /// Where filter.json, filter.md and filter-latency.svg go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Envoy's memory (server.memory_allocated and RSS) without a filter, with the floor module
    /// and with kasi's filter, at 1, 2 and 4 workers; then Envoy's and kasi's VM memory before
    /// and after streams that clients abandon with a 50 KB Host.
    Memory {
        /// Worker thread counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        workers: Vec<u32>,
        /// Fresh Envoy starts per configuration (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Traffic before reading the figures.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// The floor module (default: the workspace's wasm build, or KASI_FLOOR_WASM).
        #[arg(long)]
        floor_wasm: Option<PathBuf>,
        /// Streams abandoned before their response, measured (0 skips the run).
        #[arg(long, default_value_t = 5_000)]
        abandoned_streams: usize,
        /// The abandoned streams' Host header, in KiB (Envoy accepts 60 KiB of headers).
        #[arg(long, default_value_t = 50)]
        host_kib: usize,
        /// Where memory.json and memory.md go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Starts the upstream and the Envoys of `filter` and keeps them running (for
    /// profiling with perf, or curl): prints their addresses and PIDs; stops on Enter or EOF.
    Serve {
        #[arg(long)]
        floor_wasm: Option<PathBuf>,
        #[arg(long)]
        extra_floor: Vec<PathBuf>,
        #[arg(long)]
        extra_kasi: Vec<PathBuf>,
    },
}

/// The bench modules where `./dev` builds them; `--floor-wasm` replaces the floor.
fn modules(floor_wasm: Option<PathBuf>) -> Modules {
    let mut modules = Modules::from_env();
    if let Some(floor) = floor_wasm {
        modules.floor = floor;
    }
    modules
}

/// A failed run ends with its cause on one line and exit status 1 (not the backtrace `anyhow`
/// prints for an `Err` out of `main` when `RUST_BACKTRACE` is set).
fn main() {
    if let Err(e) = run() {
        eprintln!("kasi-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut progress = |line: &str| eprintln!("  {line}");
    let result = match cli.command {
        Command::Filter {
            rounds,
            slice,
            warmup_rounds,
            connections,
            instances,
            floor_wasm,
            no_pin,
            extra_floor,
            extra_kasi,
            out,
        } => {
            let options = FilterOptions {
                slice,
                rounds,
                warmup_rounds,
                connections,
                instances,
                modules: modules(floor_wasm),
                extra: extras(&extra_floor, &extra_kasi).collect(),
                pin: !no_pin,
            };
            filter_bench::run(&options, &mut progress).and_then(|report| {
                let plot = filter_bench::write(&report, &out)?;
                print!("{}", filter_bench::table(&report));
                println!(
                    "wrote {}, filter.md and {} ({:.0} s)",
                    out.join("filter.json").display(),
                    plot.display(),
                    report.wall_seconds
                );
                Ok(())
            })
        }
        Command::Memory {
            workers,
            repeats,
            warmup,
            floor_wasm,
            abandoned_streams,
            host_kib,
            out,
        } => {
            let options = MemoryOptions {
                workers,
                repeats,
                warmup,
                floor_wasm: modules(floor_wasm).floor,
                abandoned: (abandoned_streams > 0).then(|| AbandonedOptions {
                    streams: abandoned_streams,
                    warmup_streams: (abandoned_streams / 10).max(1),
                    host_bytes: host_kib * 1024,
                    ..AbandonedOptions::default()
                }),
            };
            memory::run(&options, &mut progress).and_then(|report| {
                memory::write(&report, &out)?;
                print!("{}", memory::table(&report));
                println!("wrote {} and memory.md", out.join("memory.json").display());
                Ok(())
            })
        }
        Command::Serve {
            floor_wasm,
            extra_floor,
            extra_kasi,
        } => {
            let modules = modules(floor_wasm);
            let setups = Variant::ALL
                .iter()
                .map(|&v| Setup::standard(v, &modules))
                .chain(extras(&extra_floor, &extra_kasi))
                .collect::<Vec<_>>();
            serve(&setups)
        }
    };
    result
}

fn extras<'a>(floor: &'a [PathBuf], kasi: &'a [PathBuf]) -> impl Iterator<Item = Setup> + 'a {
    (floor.iter().map(|m| (Variant::Floor, m)))
        .chain(kasi.iter().map(|m| (Variant::Kasi, m)))
        .enumerate()
        .map(|(n, (variant, module))| Setup::extra(variant, module, n))
}

fn serve(setups: &[Setup]) -> Result<()> {
    use kasi_bench::upstream::Upstream;
    let upstream = Upstream::start("bench-pod", "127.0.0.2".parse()?)?;
    println!("upstream {} at {}", upstream.name(), upstream.addr());
    let mut envoys = Vec::new();
    for setup in setups {
        let envoy = kasi_e2e::Envoy::try_start(&setup.envoy_options(upstream.addr()))
            .map_err(|f| anyhow::anyhow!("{}: {f}", setup.label))?;
        println!(
            "{:<9} listener {} admin {} pid {}",
            setup.key,
            envoy.listener_addr(),
            envoy.admin_addr(),
            envoy.pid()
        );
        for (name, value) in setup.request_headers(upstream.addr()) {
            println!("          -H '{name}: {value}'");
        }
        envoys.push(envoy);
    }
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}
