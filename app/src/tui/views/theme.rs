//! Colours and symbols, in one place so every view speaks the same language.

use ratatui::style::{Color, Modifier, Style};

pub const OK: Color = Color::Green;
pub const WARN: Color = Color::Yellow;
pub const BAD: Color = Color::Red;
pub const DIM: Color = Color::DarkGray;
pub const ACCENT: Color = Color::Cyan;

pub fn header() -> Style {
    Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)
}

pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn dim() -> Style {
    Style::new().fg(DIM)
}

pub fn good(yes: bool) -> Style {
    Style::new().fg(if yes { OK } else { BAD })
}

/// Colour for a hit rate: green at 100 %, yellow above 90 %, red below.
pub fn rate(rate: f64) -> Style {
    Style::new().fg(if rate >= 0.999 {
        OK
    } else if rate >= 0.9 {
        WARN
    } else {
        BAD
    })
}

pub fn check(yes: bool) -> &'static str {
    if yes {
        "✔"
    } else {
        "✘"
    }
}

/// `1.2 MB`, `140 kB`, `812 B`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 10_000 => format!("{} kB", n / 1000),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0))
}
