//! The statistics the benchmark reports.

/// The percentiles (0–100) a latency distribution is reported at: a log-spaced grid toward 100
/// (1 − p/100 from 1 down to 10⁻⁵ in tenths of a decade), the shape a latency-percentile plot
/// needs, plus the usual round ones (50, 75, 95, 99.5).
pub fn percentile_grid() -> Vec<f64> {
    let mut grid: Vec<f64> = (0..=50)
        .map(|k| {
            let p = 100.0 * (1.0 - 10f64.powf(-(k as f64) / 10.0));
            (p * 1e6).round() / 1e6
        })
        .chain([50.0, 75.0, 95.0, 99.5])
        .collect();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    grid
}

/// The median (the mean of the middle two for an even count); NaN for no values.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_goes_from_zero_toward_the_tail() {
        let grid = percentile_grid();
        assert_eq!(grid[0], 0.0);
        for p in [50.0, 90.0, 99.0, 99.9, 99.99] {
            assert!(grid.contains(&p), "{p}");
        }
        assert_eq!(grid.last(), Some(&99.999));
        assert!(grid.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
