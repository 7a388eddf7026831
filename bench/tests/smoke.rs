//! The benchmark, briefly, on every `./dev test`: all seven variants for about a second each and
//! one Envoy's memory. It checks that they run and route — the benchmark itself refuses a run in
//! which any response was not a 200 from the upstream pod (rather than the decoy the requests
//! are addressed to) or kasi's counters show a request it did not route — and that the figures
//! exist. Nothing about speed: that is `./dev bench`'s job, on a quiet machine.

use kasi_bench::filter_bench::{self, FilterOptions};
use kasi_bench::memory::{self, MemoryOptions};
use kasi_bench::variants::Modules;
use std::time::Duration;

fn modules() -> Modules {
    let modules = Modules::from_env();
    if let Some(missing) = modules.missing() {
        panic!("{missing}");
    }
    modules
}

#[test]
fn every_variant_routes_to_the_pod_and_is_measured() {
    let options = FilterOptions {
        slice: Duration::from_millis(250),
        rounds: 4,
        warmup_rounds: 1,
        connections: 4,
        instances: 1,
        modules: modules(),
        extra: Vec::new(),
        pin: false,
    };
    let report = filter_bench::run(&options, &mut |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprint!("{}", filter_bench::table(&report));

    for key in [
        "baseline",
        "floor",
        "kasi",
        "lua",
        "kasi-request-phase",
        "lua-common",
        "kasi-empty-response",
    ] {
        let v = report
            .variant(key)
            .unwrap_or_else(|| panic!("no {key} in the report"));
        let s = &v.summary;
        assert!(s.responses > 0, "{key}: {s:?}");
        assert!(s.requests_per_s > 0.0, "{key}: {s:?}");
        assert!(s.p50_us > 0.0 && s.p99_us >= s.p50_us, "{key}: {s:?}");
        assert!(s.envoy_cpu_us_per_request > 0.0, "{key}: {s:?}");
        assert_eq!(v.round_requests_per_s.len(), 4, "{key}");
    }
    for (of, over) in [
        ("kasi", "floor"),
        ("kasi", "lua"),
        ("kasi", "baseline"),
        ("kasi-request-phase", "floor"),
        ("kasi", "lua-common"),
        ("kasi-empty-response", "kasi-request-phase"),
        ("kasi", "kasi-empty-response"),
    ] {
        let r = report.ratio(of, over).expect("ratio reported");
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{r:?}");
    }
    let routed = report
        .kasi_counters
        .iter()
        .find(|(name, _)| name.ends_with("kasi_affinity.cookie_routed"))
        .map_or(0, |(_, n)| *n);
    assert!(
        routed >= report.variant("kasi").unwrap().summary.responses,
        "{:?}",
        report.kasi_counters
    );

    let out = std::env::temp_dir().join(format!("kasi-bench-smoke-{}", std::process::id()));
    let plot = filter_bench::write(&report, &out).unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    for v in &report.variants {
        assert!(
            svg.contains(&v.label),
            "no curve for {} in the plot",
            v.label
        );
    }
    let md = std::fs::read_to_string(out.join("filter.md")).unwrap();
    assert!(md.contains("| kasi / floor |"), "{md}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn envoy_memory_is_read_with_and_without_the_filter() {
    let options = MemoryOptions {
        workers: vec![1],
        repeats: 1,
        warmup: Duration::from_millis(500),
        floor_wasm: modules().floor,
    };
    let report =
        memory::run(&options, &mut |line| eprintln!("{line}")).unwrap_or_else(|e| panic!("{e:#}"));
    let row = &report.rows[0];
    assert_eq!(row.workers, 1);
    for (allocated, rss) in [row.without, row.floor, row.kasi] {
        assert!(allocated > 1024 * 1024 && rss > 1024 * 1024, "{row:?}");
    }
    assert!(memory::markdown(&report).contains("| 1 |"));
}
