//! The latency plot: one curve per variant, latency against percentile, the percentile axis
//! stretched toward the tail (x = 1 / (1 − p), logarithmic: 0 %, 90 %, 99 %, 99.9 %, 99.99 %
//! equally spaced), as HdrHistogram's plots draw it.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// The tail the plot stops at: beyond it a few seconds of load hold too few samples.
const LAST_PERCENTILE: f64 = 99.99;

const COLORS: [RGBColor; 7] = [
    RGBColor(90, 90, 90),    // baseline
    RGBColor(31, 119, 180),  // floor
    RGBColor(214, 39, 40),   // kasi
    RGBColor(255, 127, 14),  // Lua
    RGBColor(148, 103, 189), // kasi's request phase
    RGBColor(140, 86, 75),   // Lua as usually written
    RGBColor(23, 190, 207),  // kasi with a response phase that reads nothing
];

fn stretch(percentile: f64) -> f64 {
    1.0 / (1.0 - percentile / 100.0)
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Draws `series` (label, `[percentile, latency µs]`) into an SVG file at `path`.
pub fn latency_percentiles(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let shown = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|(p, us)| *p <= LAST_PERCENTILE + 1e-9 && us.is_finite())
            .map(|(p, us)| (stretch(*p), us / 1e3))
            .collect()
    };
    let y_max = series
        .iter()
        .flat_map(|(_, points)| shown(points))
        .map(|(_, ms)| ms)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.08;
    // A little past the last point, so that its decade (99.99 %) gets its label.
    let x_max = stretch(LAST_PERCENTILE) * 1.05;

    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 17))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (of requests answered at most this fast)")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(shown(points), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_percentiles() {
        assert_eq!(percentile_label(stretch(0.0)), "0%");
        assert_eq!(percentile_label(stretch(90.0)), "90%");
        assert_eq!(percentile_label(stretch(99.9)), "99.9%");
        assert_eq!(percentile_label(100.0), "99%");
    }

    #[test]
    fn draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("kasi-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let curve: Vec<(f64, f64)> = crate::stats::percentile_grid()
            .into_iter()
            .map(|p| (p, 100.0 + p))
            .collect();
        latency_percentiles(&path, "t", &[("a".into(), curve)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
