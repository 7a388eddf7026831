//! `kasi probe`'s words on a terminal: the progress line while it runs, the table at the end.

use super::report::{ProbeKind, ProbeReport};
use std::fmt::Write as _;

fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0))
}

/// The summary line: totals, MCP's 404s and re-initializations, the hit rate.
fn summary(report: &ProbeReport) -> String {
    let mcp = match report.kind {
        ProbeKind::Mcp => format!(
            " ({} answered 404, {} re-initializations)",
            report.not_found(),
            report.reinitializations()
        ),
        ProbeKind::Cookie => String::new(),
    };
    format!(
        "{} requests, {} failed{mcp}; hit rate {}",
        report.requests,
        report.failures,
        percent(report.hit_rate)
    )
}

/// One line for stderr while the probe runs.
pub fn progress_line(report: &ProbeReport) -> String {
    format!(
        "probing {} sessions: {}",
        report.sessions.len(),
        summary(report)
    )
}

/// One row per session, then the summary.
pub fn table(report: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<44} {:>8} {:>6} {:>8} {:>9}",
        "SESSION", "PINNED", "REQUESTS", "HITS", "FAILURES", "HIT RATE"
    );
    for (i, s) in report.sessions.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<8} {:<44} {:>8} {:>6} {:>8} {:>9}",
            i + 1,
            s.pinned.as_deref().unwrap_or("—"),
            s.requests,
            s.hits,
            s.failures,
            percent(s.hit_rate)
        );
    }
    let protocol = report
        .protocol
        .as_deref()
        .map_or(String::new(), |p| format!(" over {p}"));
    let _ = writeln!(out, "{}{protocol}", summary(report));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::SessionReport;

    #[test]
    fn the_table_ends_with_the_summary() {
        let mut report = ProbeReport {
            kind: ProbeKind::Mcp,
            sessions: vec![SessionReport {
                pinned: Some("10.0.0.1:8012".into()),
                requests: 5,
                hits: 3,
                counted: 4,
                failures: 1,
                not_found: 1,
                initializations: 2,
                protocol: Some("HTTP/1.1".into()),
                ..SessionReport::default()
            }],
            ..ProbeReport::default()
        };
        report.recompute();
        let table = table(&report);
        assert!(table.contains("10.0.0.1:8012"), "{table}");
        assert!(
            table.ends_with(
                "5 requests, 1 failed (1 answered 404, 1 re-initializations); hit rate 75.0 % over HTTP/1.1\n"
            ),
            "{table}"
        );
    }
}
