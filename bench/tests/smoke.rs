//! The benchmark, briefly, on every `./dev test`: all eight variants for about a second each,
//! one Envoy's memory and a few hundred abandoned streams with a 50 KB Host. It checks that they
//! run and route — the benchmark itself refuses a run in which any response was not a 200 from
//! the upstream pod (rather than the decoy the filters' requests are addressed to) or kasi's
//! counters show a request it did not route — and that the figures exist. Nothing about speed or
//! memory growth: that is `./dev bench`'s job (and the e2e tests'), on a quiet machine.

use kasi_bench::abandoned::AbandonedOptions;
use kasi_bench::filter_bench::{self, FilterOptions};
use kasi_bench::memory::{self, MemoryOptions};
use kasi_bench::variants::{Modules, Variant};
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

    assert_eq!(report.variants.len(), Variant::ALL.len());
    for key in [
        "baseline",
        "floor",
        "kasi",
        "lua",
        "kasi-request-phase",
        "lua-common",
        "kasi-empty-response",
        "kasi-unsigned",
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
        ("kasi", "kasi-unsigned"),
        ("kasi-unsigned", "floor"),
        ("kasi-mcp", "kasi"),
    ] {
        let r = report.ratio(of, over).expect("ratio reported");
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{r:?}");
    }
    let targets: Vec<_> = report
        .ratios
        .iter()
        .filter_map(|r| Some((r.of.as_str(), r.over.as_str(), r.target?, r.target_runs?)))
        .collect();
    assert_eq!(
        targets,
        [
            ("kasi-request-phase", "floor", 0.92, 1),
            ("kasi", "floor", 0.88, 3),
            ("kasi-mcp", "kasi", 0.95, 3)
        ]
    );
    let table = filter_bench::table(&report);
    assert!(
        table.contains("target ≥ 0.92") && table.contains("target ≥ 0.88 (median of 3 runs"),
        "{table}"
    );
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
        abandoned: Some(AbandonedOptions {
            streams: 300,
            warmup_streams: 60,
            ..AbandonedOptions::default()
        }),
    };
    let report =
        memory::run(&options, &mut |line| eprintln!("{line}")).unwrap_or_else(|e| panic!("{e:#}"));
    let row = &report.rows[0];
    assert_eq!(row.workers, 1);
    for (allocated, rss) in [row.without, row.floor, row.kasi] {
        assert!(allocated > 1024 * 1024 && rss > 1024 * 1024, "{row:?}");
    }
    let markdown = memory::markdown(&report);
    assert!(markdown.contains("| 1 |"), "{markdown}");

    let abandoned = report.abandoned.as_ref().expect("the abandoned-stream run");
    assert_eq!((abandoned.streams, abandoned.host_bytes), (300, 50 * 1024));
    for point in [abandoned.fresh, abandoned.before, abandoned.after] {
        assert!(
            point.rss > 1024 * 1024 && point.memory_allocated > 1024 * 1024,
            "{abandoned:?}"
        );
    }
    assert!(
        abandoned.after.vm_memory_bytes >= 64 * 1024,
        "{abandoned:?}"
    );
    assert!(abandoned.seen_by_filter >= 285, "{abandoned:?}");
    assert!(
        markdown.contains("kasi_affinity.vm_memory_bytes"),
        "{markdown}"
    );
    assert!(memory::table(&report).contains("kasi VM memory"));
}
